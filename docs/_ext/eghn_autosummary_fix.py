"""Work around two weaknesses of ``sphinx.ext.autosummary.extract_summary`` (Sphinx 8.2 - 9.0).

To find the first sentence of a docstring, autosummary tries ever longer prefixes until one
parses without breaking inline markup, but it re-parses the whole first paragraph instead of
the prefix, so it always stops after the first period. A first sentence holding a literal
with a period inside (``Linear -> act -> ... -> Linear``) is then cut inside the literal and
the summary table gets an "Inline literal start-string without end-string" warning. This
extension replaces the function with one that parses the prefix it is testing, and that does
not end a summary at an abbreviation such as "Eq." or "e.g.".
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.ext import autosummary

#: abbreviations after which a period does not end a sentence ("EMMP (Eq. 3-6), ...")
_ABBREVIATIONS = ("Eq.", "Eqs.", "Fig.", "Sec.", "e.g.", "i.e.", "cf.", "vs.", "et al.", "resp.")


def _ends_in_abbreviation(text: str) -> bool:
    return text.rstrip().endswith(_ABBREVIATIONS)


def extract_summary(doc: list[str], settings: Any) -> str:
    summary = _original(doc, settings)
    if _ends_in_abbreviation(summary):
        return _whole_sentence(doc, settings)
    if not summary.count("``") % 2 and not summary.count("`") % 2:
        return summary
    first = []
    for line in doc:
        if not line.strip():
            if first:
                break
            continue
        first.append(line)
    sentences = autosummary.periods_re.split(" ".join(first))
    for i in range(len(sentences)):
        candidate = ". ".join(sentences[: i + 1]).rstrip(".") + "."
        node = autosummary._parse_summary([candidate], settings)
        if not any(node.findall(nodes.system_message)) and not candidate.count("``") % 2:
            return autosummary.literal_re.sub(".", candidate)
    return autosummary.literal_re.sub(".", " ".join(first))


def _whole_sentence(doc: list[str], settings: Any) -> str:
    """The first sentence of the first paragraph, not cut at an abbreviation."""
    first = []
    for line in doc:
        if not line.strip():
            if first:
                break
            continue
        first.append(line.strip())
    text = " ".join(first)
    for match in autosummary.periods_re.finditer(text):
        sentence = text[: match.start() + 1]
        if not _ends_in_abbreviation(sentence) and not sentence.count("``") % 2:
            return sentence
    return text


_original = autosummary.extract_summary


def constant_docstring(app, what, name, obj, options, lines) -> None:
    """A constant re-exported by a package (``eghn.testing.TOLERANCES``) gets the ``#:`` comment
    of the module that defines it instead of the docstring of its type (``dict``)."""
    if what != "data":
        return
    import importlib
    import pkgutil

    from sphinx.pycode import ModuleAnalyzer

    modname, _, attr = name.rpartition(".")
    try:
        package = importlib.import_module(modname)
    except ImportError:
        return
    candidates = [modname]
    if hasattr(package, "__path__"):
        candidates += [info.name for info in pkgutil.iter_modules(package.__path__, modname + ".")]
    for cand in candidates:
        try:
            module = importlib.import_module(cand)
            if getattr(module, attr, None) is not obj:
                continue
            docs = ModuleAnalyzer.for_module(cand).find_attr_docs()
        except Exception:
            continue
        if ("", attr) in docs:
            lines[:] = [line for line in docs[("", attr)]]
            return
    if obj is not None and type(obj).__doc__ and lines and lines[0].strip() in (type(obj).__doc__ or ""):
        lines[:] = []  # never show the docstring of the value's type


def fix_viewcode_backlinks(app, env) -> None:
    """viewcode keeps one documented name per source module: the first one read. A module
    documented both through its package (``eghn.train.ConfigError``) and on its own page
    (``eghn.train.config.ConfigError``) then gets back-links to anchors that do not exist;
    use the name under which most of the module is documented and point every back-link at
    the page that documents it."""
    modules = getattr(env, "_viewcode_modules", {})
    domain = env.get_domain("py")

    def documented(prefix: str, name: str):
        entry = domain.objects.get(f"{prefix}.{name}")
        return entry if entry is not None and not entry.aliased else None

    for modname, entry in list(modules.items()):
        if not entry:
            continue
        code, tags, used, refname = entry
        # the documented prefix that covers most of the module's names (a package re-exporting
        # them, or the module's own page)
        best = max((refname, modname), key=lambda prefix: sum(documented(prefix, n) is not None for n in used))
        fixed = {}
        for name, docname in used.items():
            found = documented(best, name)
            fixed[name] = found.docname if found is not None else docname
        modules[modname] = (code, tags, fixed, best)


def setup(app):
    app.connect("autodoc-process-docstring", constant_docstring)
    app.connect("env-updated", fix_viewcode_backlinks)
    autosummary.extract_summary = extract_summary
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
