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
