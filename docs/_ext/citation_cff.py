"""Reading ``CITATION.cff`` and writing the package's BibTeX entry (no Sphinx needed).

Used by the ``eghn-citation`` directive (:mod:`eghn_citation`) and by the tests.
"""

from __future__ import annotations

import re

__all__ = ["bibtex", "cff_field"]


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
