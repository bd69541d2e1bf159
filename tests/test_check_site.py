"""The documentation checks of docs/check_site.py that guard against hand-typed numbers,
raw markup, cut-off output and public names without an API page."""

from __future__ import annotations

import importlib.util
import shutil
import zlib
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _check_site():
    spec = importlib.util.spec_from_file_location("check_site", DOCS / "check_site.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _inventory(path: Path, names: list[str]) -> None:
    header = b"# Sphinx inventory version 2\n# Project: eghn\n# Version: 0\n# compressed with zlib\n"
    body = "".join(f"{n} py:function 1 page.html#$ -\n" for n in names).encode()
    path.write_bytes(header + zlib.compress(body))


def test_public_names_without_a_page(tmp_path):
    import eghn.testing

    check_site = _check_site()
    api = tmp_path / "api.rst"
    api.write_text(".. autosummary::\n   :toctree: gen_modules\n\n   eghn.testing\n")
    names = ["eghn.testing", *(f"eghn.testing.{n}" for n in eghn.testing.__all__ if n != "TOLERANCES")]
    _inventory(tmp_path / "objects.inv", names)
    problems = check_site.api_problems(tmp_path, api)
    assert "api.rst: public name eghn.testing.TOLERANCES (in __all__) has no page" in problems
    assert any("subpackage eghn.data is not in the API reference" in p for p in problems)


#: a page with unsourced numbers (a decimal, a percentage, a number in scientific notation, a
#: paper value typed by hand) beside numbers that are sourced, code, or on the allow-list
NUMBERS_PAGE = (
    '<html><body><nav>9.99 in the sidebar</nav><article role="main">'
    "<p>The run reached 4.09 after the first spike.</p>"
    "<li>The fast path saves 13 % of the step time.</li>"
    "<p>The paper reports 25.9e-2 on Run.</p>"
    '<p>Test <span class="eghn-result">24.2</span>e-2 against the paper\'s <span class="eghn-result">25.9</span>, '
    '<span class="eghn-generated">5%</span> of it.</p>'
    "<p>Trained with <code>lr = 5e-4</code>; the formula <span class=\"math\">x^{0.5}</span>.</p>"
    '<div class="highlight"><pre>print(0.372)</pre></div>'
    '<div class="sphx-glr-script-out"><pre>test MSE 0.3553</pre></div>'
    "<p>eghn 0.2.0 needs Python 3.11 and PyTorch (2.4 or newer), see Section 3.2 and Lemmas 2.3, 2.7 and 2.8.</p>"
    "<table><tr><td>EGHN v2</td><td>1.36</td></tr></table>"
    "</article></body></html>")


def test_number_rule_on_text():
    check_site = _check_site()
    found = check_site.unsourced_numbers("reached 4.09 and 0.372 at epoch 150, 13 % and 31% of the time, "
                                         "paper 25.9e-2, tolerance 1e-5, 2.5x faster, 1,000 epochs")
    numbers = ["4.09", "0.372", "13 %", "31%", "25.9e-2", "1e-5", "2.5x"]
    assert len(found) == len(numbers)
    for snippet, number in zip(found, numbers, strict=True):
        assert number in snippet
    assert check_site.unsourced_numbers("epoch 150 of 1,000, K = 3, seed 43, 5000/2000/2000") == []
    # the allow-list: versions, addresses, numbered parts of the paper and the proofs
    for text in ("eghn 0.2.0", "127.0.0.1", "Python 3.11", "torch 2.13", "PyTorch (2.4 or newer)",
                 "Section 3.2", "Eq. 4.1", "Lemmas 2.3, 2.7 and 2.8", "Corollary 2.10"):
        assert check_site.unsourced_numbers(text) == [], text
    # names and hashes that hold digits are no numbers
    assert check_site.unsourced_numbers("py3.11, commit 12e45ab, float32") == []
    # the context: the number with some characters on either side
    (snippet,) = check_site.unsourced_numbers("a" * 100 + " 4.09 " + "b" * 100)
    assert snippet.startswith("a") and snippet.endswith("b") and len(snippet) < 50
    for pattern, why in check_site.ALLOWED_NUMBERS:
        assert pattern and why


def test_unsourced_numbers_of_a_page():
    """Without a browser: the page's text outside sourced elements and code, then the rule."""
    check_site = _check_site()
    text = check_site.prose_text(NUMBERS_PAGE)
    assert "9.99" not in text  # outside the main part of the page
    found = check_site.unsourced_numbers(text)
    # only the four unsourced numbers, in the order of the page: not the sourced values, the
    # generated share, the code, the formula, the gallery output or the allowed versions
    assert len(found) == 4, found
    for snippet, number in zip(found, ("4.09", "13 %", "25.9e-2", "1.36"), strict=True):
        assert number in snippet
    for number in ("24.2", "5%", "5e-4", "0.372", "0.3553"):
        assert number not in text, number


def test_number_check_in_a_browser(tmp_path):
    """The browser applies the same rule to the same elements as :func:`prose_text`."""
    pytest.importorskip("playwright")
    check_site = _check_site()
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    if chromium is None:
        pytest.skip("no Chromium on this machine")
    (tmp_path / "index.html").write_text(NUMBERS_PAGE)
    problems = [p for p in check_site.check(tmp_path, chromium) if "number without a source" in p]
    assert len(problems) == 4, problems
    for problem, number in zip(problems, ("4.09", "13 %", "25.9e-2", "1.36"), strict=True):
        assert number in problem
    assert all(p.startswith("index.html: number without a source: ...") for p in problems)
    expected = check_site.unsourced_numbers(check_site.prose_text(NUMBERS_PAGE))
    assert [p.split("...")[1] for p in problems] == expected


def test_text_checks_in_a_browser(tmp_path):
    pytest.importorskip("playwright")
    check_site = _check_site()
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
    if chromium is None:
        pytest.skip("no Chromium on this machine")
    (tmp_path / "index.html").write_text(
        '<html><body><article role="main">'
        "<p>The default job reached 18.1 in 4.1 minutes; it is still far above the no-motion baseline.</p>"
        '<p>Set it to ``"auto"``.</p>'
        '<table class="eghn-measured"><tr><td>51.7</td><td><span class="eghn-result">25.9</span></td></tr></table>'
        '<div class="highlight-text"><pre style="width:200px;overflow:auto">' + "x" * 300 + "</pre></div>"
        '<div style="width:300px"><table style="display:block;overflow-x:auto"><tr>'
        + "<td>measured&nbsp;effect</td>" * 30 + "</tr></table></div>"
        '<div class="sphx-glr-script-out"><pre>&lt;matplotlib.legend.Legend object at 0x7f3a2c&gt;</pre></div>'
        "<h3>Hand-written chains (removed)</h3><p>The clipped run was stopped for lack of session time.</p>"
        '<p class="eghn-fold-summary">eghn is a PyTorch implementation of EGHN.</p>'
        '<div style="height:2000px"></div><p class="eghn-status">status, below the fold</p>'
        "</article></body></html>")
    problems = "\n".join(check_site.check(tmp_path, chromium))
    assert "raw reST markup" in problems
    assert "output block cut off on the right" in problems
    assert "number without a source in a measured context: ...51.7..." in problems
    assert "hand-typed duration" in problems and "4.1 minutes" in problems
    assert "hand-written comparison with a baseline: 'above the no-motion baseline'" in problems
    assert "25.9" not in problems.split("measured context")[-1]
    assert "table cut off on the right" in problems and "measured effect" in problems
    leftovers = "\n".join(line for line in problems.splitlines() if "leftover shown to readers" in line)
    for phrase in ("<matplotlib.legend.Legend object at 0x7f3a2c>", "(removed)", "for lack of session time"):
        assert phrase in leftovers
    # the landing page's first screen: the status is below the fold, the install block missing
    assert "not on the first screen (1400x900): the reproduction status table" in problems
    assert "the install line" in problems
    assert "what eghn is" not in problems


def test_script_from_another_host_fails_before_the_browser(tmp_path):
    check_site = _check_site()
    cdn = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"
    (tmp_path / "index.html").write_text(
        f'<html><head><script async="async" src="{cdn}"></script></head><body></body></html>')
    (tmp_path / "theory.html").write_text(
        f"<html><head><script src='{cdn}'></script></head><body></body></html>")
    (tmp_path / "local.html").write_text(
        '<html><head><script src="_static/mathjax/MathJax.js?config=TeX-AMS_CHTML"></script>'
        "</head><body></body></html>")
    pages = check_site.pages_of(tmp_path)
    problems = check_site.external_scripts(tmp_path, pages)
    assert len(problems) == 1
    assert cdn in problems[0] and "on 2 page(s)" in problems[0] and "libjs-mathjax" in problems[0]
    assert check_site.external_scripts(tmp_path, ["local.html"]) == []
    # the whole check returns these at once, without launching a browser (the path is never run)
    found = check_site.check(tmp_path, "/nonexistent/chromium")
    assert any(cdn in p for p in found)
