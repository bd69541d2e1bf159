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


def setup(app):
    autosummary.extract_summary = extract_summary
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
