"""CITATION.cff and the package agree on the version; the site's BibTeX entry names the commit."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import eghn

ROOT = Path(__file__).resolve().parents[1]


def _citation():
    spec = importlib.util.spec_from_file_location("citation_cff", ROOT / "docs" / "_ext" / "citation_cff.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_citation_file_names_the_package_version():
    cff = (ROOT / "CITATION.cff").read_text()
    citation = _citation()
    assert citation.cff_field(cff, "version") == eghn.__version__
    assert citation.cff_field(cff, "cff-version") == "1.2.0"
    assert "preferred-citation:" in cff and "2202.10643" in cff


def test_bibtex_entry_names_version_and_commit():
    cff = (ROOT / "CITATION.cff").read_text()
    entry = _citation().bibtex(cff, "0123456789abcdef")
    assert f"version = {{{eghn.__version__}}}" in entry
    assert "note    = {commit 0123456789abcdef}" in entry
    assert entry.startswith("@software{eghn_") and entry.endswith("}")
