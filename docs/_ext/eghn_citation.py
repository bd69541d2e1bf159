"""The package's citation, for the version and commit the site is built from.

``.. eghn-citation::`` renders a BibTeX ``@software`` entry from ``CITATION.cff`` (its title,
authors and version) and the configuration value ``eghn_commit`` (set by ``docs/conf.py`` from
``git rev-parse HEAD``), so that the entry on the site names the exact code its numbers come from.
"""

from __future__ import annotations

import re
from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

__all__ = ["bibtex", "cff_field", "setup"]

_ROOT = Path(__file__).resolve().parents[2]


def cff_field(text: str, key: str) -> str:
    """The value of a top-level scalar ``key`` of a CITATION.cff text (quotes removed)."""
    m = re.search(rf'^{re.escape(key)}:\s*"?([^"\n]*)"?\s*$', text, flags=re.M)
    if m is None:
        raise KeyError(f"CITATION.cff has no top-level {key!r}")
    return m.group(1).strip()


def bibtex(cff: str, commit: str) -> str:
    """The ``@software`` BibTeX entry of a CITATION.cff text at ``commit``."""
    version = cff_field(cff, "version")
    author = re.search(r'^authors:\s*\n\s*-\s*name:\s*"?([^"\n]*)"?', cff, flags=re.M)
    lines = [
        f"@software{{eghn_{version.replace('.', '_')},",
        f"  title   = {{{cff_field(cff, 'title')}}},",
        f"  author  = {{{{{author.group(1) if author else 'eghn developers'}}}}},",
        f"  version = {{{version}}},",
        f"  note    = {{commit {commit}}},",
        f"  year    = {{{cff_field(cff, 'date-released')[:4]}}}",
        "}",
    ]
    return "\n".join(lines)


class Citation(SphinxDirective):
    """``.. eghn-citation::``: the BibTeX entry of the package at the commit of the build."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        text = bibtex((_ROOT / "CITATION.cff").read_text(), self.config.eghn_commit)
        block = nodes.literal_block(text, text, language="bibtex")
        return [block]


def setup(app):
    app.add_config_value("eghn_commit", "unknown", "env")
    app.add_directive("eghn-citation", Citation)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
