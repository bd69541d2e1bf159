"""The package's citation, for the version and commit the site is built from.

``.. eghn-citation::`` renders a BibTeX ``@software`` entry from ``CITATION.cff`` (its title,
authors and version) and the configuration value ``eghn_commit`` (set by ``docs/conf.py`` from
``git rev-parse HEAD``), so that the entry on the site names the exact code its numbers come from.
"""

from __future__ import annotations

from pathlib import Path

from citation_cff import bibtex, cff_field  # docs/_ext is on sys.path (docs/conf.py)
from docutils import nodes
from sphinx.util.docutils import SphinxDirective

__all__ = ["bibtex", "cff_field", "setup"]

_ROOT = Path(__file__).resolve().parents[2]


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
