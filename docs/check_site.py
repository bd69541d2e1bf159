"""Check the built documentation in a real headless browser.

Serves the built site on 127.0.0.1 and opens every HTML page in headless Chromium, driven by
Playwright for Python (``pip install playwright``; Playwright's own browser download is *not*
used: the script launches the Chromium installed on the system, e.g. Debian's ``chromium``
package). Fails (exit status 1) when

* a page logs a console error, raises an uncaught JavaScript exception, or a request of the
  page fails or answers with HTTP >= 400;
* a page tries to reach another host than the local server (the site must work offline;
  ``--allow-external`` lifts this); a page whose HTML loads a script from another host (MathJax
  from its CDN when the build found no local copy) fails at once, before any page is opened,
  instead of waiting out the typesetting timeout on every page with a formula;
* a formula on a page is not typeset by MathJax, or MathJax reports a TeX error; the theory
  page must hold typeset formulas;
* an image is broken, a gallery example page has no figure, or a gallery index has no
  thumbnails;
* an internal link points at a missing page or at an anchor that the target page lacks;
* the text of a page shows raw reST markup (````literal````, ``:func:`...```, ``.. directive::``)
  that the build did not render;
* an output block (script output of the gallery, command help, other text blocks) is wider
  than its box, i.e. cut off on the right, or a page is wider than the window (1400 x 900);
* a table is wider than the column that holds it (hidden behind a horizontal scroll bar);
* a page shows the repr of a Python object (``<matplotlib.legend.Legend object at 0x...>``),
  a ``# noqa`` comment, a path of the development setup (``../shared/data``) or a working note
  (``LEFTOVER_PATTERNS``: "(removed)", "for lack of session time", "measured while writing this
  page", "targets ... missed");
* the first screen of the landing page (1400 x 900, before any scrolling) lacks one of the
  blocks of ``ABOVE_THE_FOLD``: what eghn is, the install and first command, how to get the
  source, the reproduction status;
* a measured context (``eghn-measured``: the tables and prose that ``docs/_ext/eghn_results.py``
  feeds from result files) holds a decimal number or a duration that does not come from a
  result file -- a hand-typed measurement;
* a page holds a decimal number (``4.09``), a number in scientific notation (``25.9e-2``,
  ``1e-5``) or a percentage (``13 %``) in its prose, tables, lists or rendered docstrings that
  does not come from a source (``NUMBER_PATTERN``): numbers are sourced inside the elements of
  ``SOURCED_SELECTORS`` (rendered from a result file or ``eghn/results/paper.json`` by
  ``docs/_ext/eghn_results.py``, gallery output and other text generated at build time), code
  and formulas (``CODE_SELECTORS``) are not prose, and ``ALLOWED_NUMBERS`` names the few
  numbers that are no measurement (versions, section numbers);
* a page outside ``HAND_TYPED_TIMINGS`` states a duration ("4.1 minutes", "47 s") in its prose
  that is not rendered from a result file;
* prose compares a result with a baseline ("above the no-motion baseline"): such a statement
  can contradict the numbers it sits next to, so it must be printed by the code that computes
  both numbers (gallery output) instead of written by hand;
* a public name -- an entry of ``__all__`` of a module listed in ``docs/api.rst`` -- has no
  entry in the built API reference, or a subpackage of ``eghn`` is missing from that list.

Usage::

    python docs/check_site.py [docs/_build/html] [--chromium PATH] [--screenshots DIR]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REQUIRED_PAGES = [
    "index.html",
    "install.html",
    "theory.html",
    "proofs/theorem1.html",
    "proofs/theorem2.html",
    "proofs/tests.html",
    "api.html",
    "auto_examples/index.html",
]
# pages whose formulas must be present and typeset
MATH_PAGES = {"theory.html": 10, "proofs/theorem1.html": 10, "proofs/theorem2.html": 10}
# pages whose durations are still typed by hand (measured once with the named script and
# not yet re-measured at build time); every other page fails on a duration in its prose
HAND_TYPED_TIMINGS: dict[str, str] = {}
#: the browser window: every page must fit its width, the landing page's first screen is this tall
VIEWPORT = {"width": 1400, "height": 900}
#: blocks of the landing page (CSS classes, set in docs/index.rst) that must be fully visible on
#: its first screen
ABOVE_THE_FOLD = {
    "eghn-fold-summary": "what eghn is, in one sentence",
    "eghn-fold-install": "the install line and `eghn train default`",
    "eghn-fold-source": "how to get the source",
    "eghn-status": "the reproduction status table",
}
#: working notes that must not reach a reader (JavaScript regular expressions, case-insensitive),
#: searched in the prose of every page
LEFTOVER_PATTERNS = [
    r"\(removed\)",
    r"lack of (?:session |device |machine )?time",
    r"while (?:writing|this page was written)",
    r"\btargets?\b[^.]{0,200}\bmissed\b",
]
#: searched in the whole text of every page, code and output included (not in the highlighted
#: module sources of ``_modules/``)
LEFTOVER_CODE_PATTERNS = [
    r"<[\w.]+ object at 0x[0-9a-fA-F]+>",
    r"#\s*noqa\b",
    r"\.\./shared/data",
]
SKIP_DIRS = {"_sources", "_static", "_images", "_downloads", "plot_directive"}

# Numbers on a page come from a result file or from paper.json ---------------------------
#: a number that reads as a measurement: a number in scientific notation (``25.9e-2``,
#: ``1e-5``), a percentage (``13 %``, ``31%``, ``2.5 %``) or a decimal (``4.09``, ``0.372``);
#: integers stay allowed. The same text is a Python and a JavaScript regular expression (ASCII
#: classes, no inline flags), applied to text whose whitespace is collapsed to single spaces.
#: A number glued to a word or a dot (``py3.11``, ``sm_90``) is part of a name, not a number.
NUMBER_PATTERN = (r"(?<![\w.])[0-9]+(?:\.[0-9]+)?[eE][+-]?[0-9]+(?![0-9A-Za-z_])"
                  r"|(?<![\w.])[0-9]+(?:\.[0-9]+)? ?%"
                  r"|(?<![\w.])[0-9]+\.[0-9]+")
#: numbers that are not measurements, each with the reason: a number is allowed when one of
#: these patterns matches a stretch of the text that holds it whole. Keep this list short.
ALLOWED_NUMBERS: list[tuple[str, str]] = [
    # release numbers (0.2.0) and addresses (127.0.0.1) have three or more parts
    (r"[0-9]+(?:\.[0-9]+){2,}", "a version or address of three or more parts"),
    # the version of a named dependency: Python 3.11, PyTorch 2.13, CUDA 12.4
    (r"\b(?:Python|PyTorch|torch|CUDA|NumPy|numpy) ?\(?[0-9]+\.[0-9]+", "a dependency's version"),
    # numbered parts of the paper and of the proofs, alone or listed: Section 3.2, Eq. 4.1,
    # Lemmas 2.3, 2.7 and 2.8, Corollary 2.10
    (r"\b(?:Sections?|Eqs?\.|Equations?|Theorems?|Lemmas?|Corollary|Corollaries|Definitions?|Appendix)"
     r"\s?[0-9]+(?:\.[0-9]+)+(?:(?:, ?| and | or )[0-9]+(?:\.[0-9]+)+)*",
     "a section, equation, lemma or theorem number"),
]
#: elements whose numbers are sourced (CSS selectors, a tag name or ``.class`` only, so that
#: ``prose_text`` can apply them without a browser): values rendered from a result file or
#: paper.json (``eghn_results.result_node``), tables read from a result file (``csv-table``
#: with ``:class: eghn-result``), text generated at build time (gallery output and timings,
#: ``eghn-generated``, the HTML output and execution-time tables of sphinx-gallery)
SOURCED_SELECTORS = [".eghn-result", ".eghn-generated", ".sphx-glr-script-out", ".output_subarea",
                     ".sphx-glr-timing", ".sg-datatable"]
#: code, formulas and what is no prose: numbers there are code or settings, not measurements
CODE_SELECTORS = ["pre", "code", "kbd", "samp", "tt", ".pre", ".highlight", ".literal-block", ".doctest",
                  ".math", ".MathJax", ".MathJax_CHTML", "mjx-container", ".sig", "script", "style",
                  ".headerlink"]
#: elements whose text is separate from their neighbours' (table cells, list items, paragraphs):
#: a space on each side, so that two cells never read as one number
BLOCK_TAGS = ["p", "div", "li", "td", "th", "tr", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6",
              "caption", "br", "section", "table"]
#: context shown around an unsourced number in the check's message, in characters before and after
CONTEXT = (24, 16)

# JavaScript run in each page -------------------------------------------------------------
MATH_DONE_JS = """() => {
  const maths = Array.from(document.querySelectorAll('.math'));
  if (maths.length === 0) return true;
  const typeset = el => el.querySelector('.MathJax_CHTML, .mjx-chtml, mjx-container, .MathJax_SVG, .MathJax');
  return maths.every(typeset);
}"""
MATH_REPORT_JS = """() => {
  const maths = Array.from(document.querySelectorAll('.math'));
  const typeset = el => el.querySelector('.MathJax_CHTML, .mjx-chtml, mjx-container, .MathJax_SVG, .MathJax');
  const raw = maths.filter(el => !typeset(el)).map(el => el.textContent.trim().slice(0, 80));
  const errors = Array.from(document.querySelectorAll(
      '.mjx-merror, merror, mjx-merror, [data-mjx-error], .MathJax_Error'))
      .map(el => (el.getAttribute('data-mjx-error') || el.textContent || '').trim().slice(0, 120));
  return {count: maths.length, raw: raw, errors: errors};
}"""
PAGE_REPORT_JS = """() => ({
  broken: Array.from(document.images)
      .filter(img => !img.complete || img.naturalWidth === 0).map(img => img.src),
  gallery_figures: document.querySelectorAll('img.sphx-glr-single-img, img.sphx-glr-multi-img').length,
  thumbnails: document.querySelectorAll('.sphx-glr-thumbcontainer img').length,
  ids: Array.from(document.querySelectorAll('[id]')).map(el => el.id)
      .concat(Array.from(document.querySelectorAll('a[name]')).map(el => el.getAttribute('name'))),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
})"""


# text checks run in each page: raw reST, wide output blocks, unsourced numbers, baselines
TEXT_REPORT_JS = r"""() => {
  const main = document.querySelector('article[role=main]') || document.querySelector('div.body')
      || document.body;
  const prose = (root, extra) => {
    const clone = root.cloneNode(true);
    clone.querySelectorAll('pre, code, script, style, .math, .MathJax, .MathJax_CHTML, mjx-container, '
        + '.highlight, .sphx-glr-script-out, .sphx-glr-download-link-note, .headerlink' + (extra || ''))
        .forEach(el => el.remove());
    return clone.textContent.replace(/\s+/g, ' ');
  };
  const text = prose(main);
  const raw = [];
  const patterns = [/``[^`\s][^`]{0,60}``/,
                    /:(?:py:)?(?:func|class|mod|meth|attr|data|ref|doc|math|obj|exc|term|result):`/,
                    /(^|\s)\.\. [a-z][a-z-]*::/, /`[^`\s][^`]{0,60}`_(\s|$)/];
  for (const re of patterns) {
    const m = text.match(re);
    if (m) raw.push(text.slice(Math.max(0, m.index - 30), m.index + 50));
  }
  const wide = [];
  document.querySelectorAll('.sphx-glr-script-out pre, div[class*="highlight-text"] pre, '
      + 'div[class*="highlight-none"] pre, div[class*="highlight-console"] pre').forEach(pre => {
    if (pre.scrollWidth > pre.clientWidth + 1) {
      const line = pre.textContent.split('\n').reduce((a, b) => (b.length > a.length ? b : a), '');
      wide.push(`${pre.scrollWidth - pre.clientWidth}px too wide: ${line.trim().slice(0, 60)}`);
    }
  });
  if (document.documentElement.scrollWidth > window.innerWidth + 1)
    wide.push(`page ${document.documentElement.scrollWidth}px wide in a ${window.innerWidth}px window`);
  const unsourced = [];
  document.querySelectorAll('.eghn-measured').forEach(el => {
    const t = prose(el, ', .eghn-result');
    const m = t.match(/\d+\.\d+|\b\d+(?:\.\d+)?\s*(?:ms|s|min|minutes|seconds|hours|h)\b/);
    if (m) unsourced.push(t.slice(Math.max(0, m.index - 40), m.index + 30).trim());
  });
  // a duration anywhere in the prose is a measurement: it must be rendered from a result
  const durations = [];
  const dur = /\b\d+(?:\.\d+)?\s*(?:ms|s|min|minutes|seconds|hours|h)\b/g;
  const plain = prose(main, ', .eghn-result, .sphx-glr-timing');
  for (const m of plain.matchAll(dur)) durations.push(plain.slice(Math.max(0, m.index - 40), m.index + 12).trim());
  // a decimal, scientific number or percentage outside a sourced element, code or formula
  const numbers = [];
  const bare = main.cloneNode(true);
  bare.querySelectorAll(NUMBER_SKIP).forEach(el => el.replaceWith(' '));
  bare.querySelectorAll(NUMBER_BLOCKS).forEach(el => { el.before(' '); el.after(' '); });
  const btext = bare.textContent.replace(/\s+/g, ' ');
  const allowed = [];
  for (const pattern of NUMBER_ALLOWED)
    for (const m of btext.matchAll(new RegExp(pattern, 'g'))) allowed.push([m.index, m.index + m[0].length]);
  for (const m of btext.matchAll(new RegExp(NUMBER_PATTERN, 'g'))) {
    const start = m.index, end = m.index + m[0].length;
    if (allowed.some(([a, b]) => a <= start && end <= b)) continue;
    numbers.push(btext.slice(Math.max(0, start - NUMBER_BEFORE), end + NUMBER_AFTER).trim());
  }
  const comparisons = [];
  const cmp = new RegExp('\\b(above|below|under|over|beats?|exceeds?|'
      + '(?:better|worse|lower|higher|smaller|larger|less|more) than)'
      + '\\s+(?:the|its|a|an)\\s+(?:[\\w()-]+\\s+){0,3}baseline', 'gi');
  for (const m of prose(main, ', .eghn-generated').matchAll(cmp))
    comparisons.push(m[0]);
  const tables = [];
  main.querySelectorAll('table').forEach(t => {
    if (t.closest('.highlight, .highlighttable') || t.parentElement.closest('table')) return;
    const box = t.parentElement;
    const over = Math.max(t.getBoundingClientRect().width - box.clientWidth, t.scrollWidth - t.clientWidth);
    if (over > 1) {
      const head = (t.querySelector('th, td') || t).textContent.trim().replace(/\s+/g, ' ').slice(0, 40);
      tables.push(`${Math.round(over)}px wider than its ${box.clientWidth}px column (first cell: ${head})`);
    }
  });
  const leftovers = [];
  const full = main.textContent.replace(/\s+/g, ' ');
  for (const [source, list] of [[text, LEFTOVER_PROSE], [full, LEFTOVER_CODE]]) {
    for (const pattern of list) {
      const m = source.match(new RegExp(pattern, 'i'));
      if (m) leftovers.push(source.slice(Math.max(0, m.index - 30), m.index + m[0].length + 30).trim());
    }
  }
  return {raw, wide, unsourced, numbers, durations, comparisons, tables, leftovers};
}"""
# the first screen of the landing page: each block of ABOVE_THE_FOLD present and fully visible
FOLD_JS = """(classes) => classes.filter(cls => {
  const el = document.querySelector('.' + cls);
  if (!el) return true;
  const r = el.getBoundingClientRect();
  return r.height === 0 || r.top < 0 || r.bottom > window.innerHeight + 1;
})"""


def _text_report_js(code_checks: bool) -> str:
    """TEXT_REPORT_JS with the leftover patterns filled in (code patterns only when asked)."""
    import json

    return (TEXT_REPORT_JS
            .replace("LEFTOVER_PROSE", json.dumps(LEFTOVER_PATTERNS))
            .replace("LEFTOVER_CODE", json.dumps(LEFTOVER_CODE_PATTERNS if code_checks else []))
            .replace("NUMBER_SKIP", json.dumps(", ".join(SOURCED_SELECTORS + CODE_SELECTORS)))
            .replace("NUMBER_BLOCKS", json.dumps(", ".join(BLOCK_TAGS)))
            .replace("NUMBER_ALLOWED", json.dumps([pattern for pattern, _ in ALLOWED_NUMBERS]))
            .replace("NUMBER_PATTERN", json.dumps(NUMBER_PATTERN))
            .replace("NUMBER_BEFORE", str(CONTEXT[0]))
            .replace("NUMBER_AFTER", str(CONTEXT[1])))


def unsourced_numbers(text: str) -> list[str]:
    """The numbers of ``text`` that ``NUMBER_PATTERN`` calls measurements and no pattern of
    ``ALLOWED_NUMBERS`` allows, each with ``CONTEXT`` characters around it: the rule that the
    browser applies to the text of every page outside its sourced elements and its code."""
    import re

    text = " ".join(text.split())
    allowed = [m.span() for pattern, _ in ALLOWED_NUMBERS for m in re.finditer(pattern, text, re.ASCII)]
    found = []
    for m in re.finditer(NUMBER_PATTERN, text, re.ASCII):
        start, end = m.span()
        if not any(a <= start and end <= b for a, b in allowed):
            found.append(text[max(0, start - CONTEXT[0]):end + CONTEXT[1]].strip())
    return found


def prose_text(html: str) -> str:
    """The text of the main part of a page (``<article role="main">``, else the body) without
    the elements of ``SOURCED_SELECTORS`` and ``CODE_SELECTORS``, each replaced by a space: what
    the browser hands to the rule of :func:`unsourced_numbers`, read here without a browser."""
    from html.parser import HTMLParser

    tags = {s for s in SOURCED_SELECTORS + CODE_SELECTORS if not s.startswith(".")}
    classes = {s[1:] for s in SOURCED_SELECTORS + CODE_SELECTORS if s.startswith(".")}
    blocks = set(BLOCK_TAGS)
    void = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}

    class Parser(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.stack: list[tuple[str, bool, bool]] = []  # (tag, skipped, main) per open element
            self.main: list[str] = []
            self.body: list[str] = []

        def handle_starttag(self, tag, attrs):
            attr = dict(attrs)
            skip = tag in tags or bool(classes & set((attr.get("class") or "").split()))
            is_main = tag == "article" and attr.get("role") == "main"
            if (skip or tag in blocks) and not any(s for _, s, _ in self.stack):
                self._text(" ")
            if tag not in void:
                self.stack.append((tag, skip, is_main))

        def handle_endtag(self, tag):
            for k in range(len(self.stack) - 1, -1, -1):  # close up to the matching element
                if self.stack[k][0] == tag:
                    del self.stack[k:]
                    if tag in blocks:
                        self.handle_data(" ")
                    return

        def handle_data(self, data):
            if not any(s for _, s, _ in self.stack):
                self._text(data)

        def _text(self, data):
            self.body.append(data)
            if any(m for _, _, m in self.stack):
                self.main.append(data)

    parser = Parser()
    parser.feed(html)
    parser.close()
    return " ".join("".join(parser.main or parser.body).split())


def api_problems(root: Path, api_rst: Path | None = None) -> list[str]:
    """Public names (``__all__`` of the modules listed in ``api.rst``) without an entry in the
    built site's ``objects.inv``, and subpackages of ``eghn`` that ``api.rst`` does not list."""
    import importlib
    import pkgutil
    import re
    import zlib

    api_rst = api_rst or Path(__file__).resolve().parent / "api.rst"
    inv_path = root / "objects.inv"
    if not inv_path.is_file():
        return ["objects.inv missing: cannot check the API reference"]
    data = inv_path.read_bytes()
    body = data.split(b"\n", 4)[4]  # four header lines, then zlib-compressed entries
    documented = {line.split(" ", 1)[0] for line in zlib.decompress(body).decode().splitlines()
                  if " py:" in line}
    listed = re.findall(r"^   (eghn(?:\.\w+)*)\s*$", api_rst.read_text(), flags=re.M)
    problems = []
    eghn = importlib.import_module("eghn")
    for info in pkgutil.iter_modules(eghn.__path__, "eghn."):
        if info.ispkg and not info.name.rpartition(".")[2].startswith("_") and info.name not in listed:
            problems.append(f"api.rst: subpackage {info.name} is not in the API reference")
    for mod_name in listed:
        if mod_name not in documented:
            problems.append(f"api.rst: module {mod_name} has no page")
        mod = importlib.import_module(mod_name)
        for name in getattr(mod, "__all__", []):
            if f"{mod_name}.{name}" not in documented:
                problems.append(f"api.rst: public name {mod_name}.{name} (in __all__) has no page")
    return problems


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def find_chromium(explicit: str | None) -> str:
    candidates = [explicit, os.environ.get("CHROMIUM")] if explicit or os.environ.get("CHROMIUM") else []
    candidates += [shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")]
    for cand in candidates:
        if cand and Path(cand).is_file():
            return cand
    raise SystemExit("check_site: no Chromium found; install it (Debian: apt-get install chromium) "
                     "or pass --chromium PATH")


_SCRIPT_SRC = re.compile(r"""<script\b[^>]*\bsrc=["']((?:https?:)?//[^"']+)["']""", re.IGNORECASE)


def external_scripts(root: Path, pages: list[str]) -> list[str]:
    """Problems for scripts that the pages' HTML loads from another host, one per URL.

    Such a site does not work offline, and the browser check would block each load and then
    wait out its timeout on every page, so they are reported before any page is opened.
    """
    users: dict[str, list[str]] = {}
    for name in pages:
        html = (root / name).read_text(encoding="utf-8", errors="replace")
        for url in _SCRIPT_SRC.findall(html):
            users.setdefault(url, []).append(name)
    problems = []
    for url, names in users.items():
        hint = (" (MathJax from its CDN: the build found no local MathJax; install one, e.g. Debian's "
                "libjs-mathjax, or set EGHN_MATHJAX=DIR, and rebuild with sphinx-build -E)"
                if "mathjax" in url.lower() else "")
        problems.append(f"{names[0]}: loads a script from another host: {url}, "
                        f"on {len(names)} page(s){hint}")
    return problems


def pages_of(root: Path) -> list[str]:
    pages = []
    for path in sorted(root.rglob("*.html")):
        rel = path.relative_to(root)
        if rel.parts[0] in SKIP_DIRS:
            continue
        pages.append(rel.as_posix())
    return pages


def check(root: Path, chromium: str, *, allow_external: bool = False, screenshots: Path | None = None,
          timeout_ms: int = 30000, only: list[str] | None = None) -> list[str]:
    problems: list[str] = []
    pages = pages_of(root)
    for req in REQUIRED_PAGES:
        if req not in pages:
            problems.append(f"missing page: {req}")
    if only:  # a quick look at some pages; links into pages not opened are not checked
        pages = [p for p in pages if any(part in p for part in only)]
    if not allow_external:
        blocked = external_scripts(root, pages)
        if blocked:
            return problems + blocked
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise SystemExit("check_site: needs the Python package 'playwright' (pip install playwright); "
                         "the browser itself comes from the system, never from 'playwright install'") from exc
    server, base = serve(root)
    host = urlparse(base).netloc
    ids: dict[str, set[str]] = {}
    links: list[tuple[str, str]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="eghn-check-site-") as profile, sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                profile, executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
                viewport=VIEWPORT)
            try:
                page = browser.new_page()
                current: dict[str, str] = {"name": ""}

                def note(msg: str) -> None:
                    problems.append(f"{current['name']}: {msg}")

                def on_console(msg) -> None:
                    if msg.type == "error":
                        note(f"console error: {msg.text}")

                def on_route(route) -> None:
                    if urlparse(route.request.url).netloc == host or allow_external:
                        route.continue_()
                    else:
                        note(f"request to another host blocked: {route.request.url}")
                        route.abort()

                def on_response(resp) -> None:
                    if resp.status >= 400:
                        note(f"HTTP {resp.status} for {resp.url}")

                page.on("console", on_console)
                page.on("pageerror", lambda exc: note(f"uncaught exception: {exc}"))
                def on_failed(req) -> None:
                    # requests still in flight when the next page is opened end as ERR_ABORTED
                    if urlparse(req.url).netloc == host and "ERR_ABORTED" not in str(req.failure):
                        note(f"request failed: {req.url} ({req.failure})")

                page.on("requestfailed", on_failed)
                page.on("response", on_response)
                page.route("**/*", on_route)

                for name in pages:
                    current["name"] = name
                    page.goto(base + name, wait_until="load", timeout=timeout_ms)
                    if page.locator(".math").count():
                        try:
                            page.wait_for_function(MATH_DONE_JS, timeout=timeout_ms)
                            # let MathJax finish loading fonts/extensions before leaving the page
                            page.wait_for_load_state("networkidle", timeout=timeout_ms)
                        except Exception:
                            pass  # reported below with the formulas that stayed raw
                        math = page.evaluate(MATH_REPORT_JS)
                        if math["raw"]:
                            note(f"{len(math['raw'])} of {math['count']} formulas not typeset, "
                                 f"e.g. {math['raw'][0]!r}")
                        for err in math["errors"]:
                            note(f"MathJax error: {err}")
                        need = MATH_PAGES.get(name, 0)
                        if math["count"] < need:
                            note(f"only {math['count']} formulas, expected at least {need}")
                    elif name in MATH_PAGES:
                        note("no formulas found")
                    report = page.evaluate(PAGE_REPORT_JS)
                    for src in report["broken"]:
                        note(f"broken image: {src}")
                    if name.startswith("auto_examples/"):
                        if name.endswith("index.html") and report["thumbnails"] == 0:
                            note("gallery index without thumbnails")
                        is_example = Path(name).name.startswith("plot_")
                        if is_example and report["gallery_figures"] == 0:
                            note("gallery example without any figure")
                    text = page.evaluate(_text_report_js(code_checks=not name.startswith("_modules/")))
                    for snippet in text["raw"]:
                        note(f"raw reST markup in the text: ...{snippet}...")
                    for msg in text["wide"]:
                        note(f"output block cut off on the right: {msg}")
                    for snippet in text["unsourced"]:
                        note(f"number without a source in a measured context: ...{snippet}... "
                             "(use :result: or a results table, docs/_ext/eghn_results.py)")
                    for snippet in dict.fromkeys(text["numbers"]):
                        note(f"number without a source: ...{snippet}... (render it from a result file or "
                             "paper.json with :result:, mark a setting as ``literal``, or drop it)")
                    if name not in HAND_TYPED_TIMINGS:
                        for snippet in text["durations"][:3]:
                            note(f"hand-typed duration: ...{snippet}... (use :result:, docs/_ext/eghn_results.py)")
                    for msg in text["tables"]:
                        note(f"table cut off on the right: {msg}")
                    for snippet in text["leftovers"]:
                        note(f"leftover shown to readers: ...{snippet}...")
                    if name == "index.html":
                        for cls in page.evaluate(FOLD_JS, list(ABOVE_THE_FOLD)):
                            note(f"not on the first screen ({VIEWPORT['width']}x{VIEWPORT['height']}): "
                                 f"{ABOVE_THE_FOLD[cls]} (.{cls})")
                    for phrase in text["comparisons"]:
                        note(f"hand-written comparison with a baseline: {phrase!r}; print it from the "
                             "code that computes both numbers")
                    ids[name] = set(report["ids"])
                    links += [(name, href) for href in report["links"]]
                    if screenshots is not None and name in REQUIRED_PAGES:
                        out = screenshots / (name.replace("/", "__").removesuffix(".html") + ".png")
                        out.parent.mkdir(parents=True, exist_ok=True)
                        page.screenshot(path=str(out), full_page=False)
            finally:
                browser.close()
    finally:
        server.shutdown()

    problems += api_problems(root)
    for name, href in links:
        url, frag = urldefrag(href)
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or parsed.netloc != host:
            continue
        target = unquote(parsed.path.lstrip("/")) or "index.html"
        if target.endswith("/"):
            target += "index.html"
        if not (root / target).exists():
            problems.append(f"{name}: link to missing file {target}")
        elif frag and target in ids and unquote(frag) not in ids[target]:
            problems.append(f"{name}: link to missing anchor {target}#{frag}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("site", nargs="?", default=str(Path(__file__).resolve().parent / "_build" / "html"),
                    help="folder of the built HTML site (default: docs/_build/html)")
    ap.add_argument("--chromium", default=None, help="Chromium binary (default: $CHROMIUM, then PATH)")
    ap.add_argument("--allow-external", action="store_true", help="allow requests to other hosts")
    ap.add_argument("--screenshots", type=Path, default=None, help="save screenshots of the main pages here")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per page load / typesetting")
    ap.add_argument("--only", action="append", default=None, metavar="TEXT",
                    help="open only the pages whose path contains TEXT (repeatable; for a quick look)")
    args = ap.parse_args(argv)
    root = Path(args.site).resolve()
    if not (root / "index.html").is_file():
        print(f"check_site: {root} holds no built site (no index.html); build it first", file=sys.stderr)
        return 2
    chromium = find_chromium(args.chromium)
    problems = check(root, chromium, allow_external=args.allow_external, screenshots=args.screenshots,
                     timeout_ms=int(args.timeout * 1000), only=args.only)
    n = len(pages_of(root))
    for p in problems:
        print(f"FAIL {p}")
    print(f"check_site: {n} pages checked in {Path(chromium).name}, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
