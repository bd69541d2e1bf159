"""Numbers on the site come from result files, never from the page source.

``:result:`SOURCE:PATH[|OP]``` renders one value of a result file: ``SOURCE`` is ``paper``
(``eghn/results/paper.json``, the published numbers) or the name of a JSON file in
``docs/results/`` (measured runs, with their provenance), or ``bench/NAME`` for
``benchmarks/results/NAME.json``; ``PATH`` is a dotted key path (list items by index); the
optional ``OP`` scales and formats it, ``*100:.1f`` (times 100, one decimal) or ``/60:.0f``
(seconds to minutes). The value is rendered as ``<span class="eghn-result">``.

``.. eghn-paper-table:: table1`` renders a published table of ``paper.json`` and
``.. eghn-runs-table:: paper_protocol_runs`` the measured runs of a result file. Both mark their output
as a measured context (class ``eghn-measured``), as does ``.. container:: eghn-measured``
around prose: ``docs/check_site.py`` fails on a decimal number or a duration inside such a
context that is not a rendered result, i.e. on a hand-typed measurement.

Outside measured contexts ``docs/check_site.py`` fails on any decimal number, number in
scientific notation or percentage of a page that is neither rendered from a source (class
``eghn-result``; a ``csv-table`` read from a result file takes ``:class: eghn-result``), nor
generated at build time by code (class ``eghn-generated``), nor code.

A missing file or key is a build warning (an error under ``-W``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx import addnodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

_DOCS = Path(__file__).resolve().parents[1]
_SOURCES = {"paper": _DOCS.parent / "eghn" / "results" / "paper.json"}
_OP = re.compile(r"^(?:(?P<op>[*/])(?P<num>[0-9.eE+-]+))?(?::(?P<spec>.+))?$")


def load_source(name: str) -> dict[str, Any]:
    if name.startswith("bench/"):  # benchmark results, next to the scripts that write them
        path = _DOCS.parent / "benchmarks" / "results" / f"{name[len('bench/'):]}.json"
    else:
        path = _SOURCES.get(name, _DOCS / "results" / f"{name}.json")
    return json.loads(path.read_text())


def lookup(source: str, path: str) -> Any:
    value: Any = load_source(source)
    for key in path.split("."):
        value = value[int(key)] if isinstance(value, list) else value[key]
    return value


def render(value: Any, op: str = "") -> str:
    if value is None:  # a value the result file records as undefined (e.g. the spread of one run)
        return "n/a"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return str(value)
    m = _OP.match(op.strip())
    if m is None:
        raise ValueError(f"bad format {op!r}; use e.g. '*100:.1f' or '/60:.0f'")
    if m["op"] == "*":
        value = value * float(m["num"])
    elif m["op"] == "/":
        value = value / float(m["num"])
    return format(value, m["spec"]) if m["spec"] else f"{value:g}"


def result_node(text: str, source: str) -> nodes.inline:
    return nodes.inline(text, text, classes=["eghn-result"], source_key=source)


def result_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    spec, _, op = text.partition("|")
    source, _, path = spec.partition(":")
    try:
        value = render(lookup(source.strip(), path.strip()), op)
    except Exception as exc:
        msg = inliner.reporter.warning(f"result {text!r} not found: {exc}", line=lineno)
        return [nodes.problematic(rawtext, rawtext)], [msg]
    return [result_node(value, spec)], []


def _table(header: list[str], rows: list[list[nodes.Node | str | None]], widths: list[int],
           classes: tuple[str, ...] = ("eghn-measured",)) -> nodes.table:
    """A table node: ``header`` then ``rows`` (text or nodes), columns in the ratio ``widths``.
    A ``None`` in a row extends the cell before it by one column (a line of text across several
    columns)."""
    table = nodes.table(classes=list(classes))
    group = nodes.tgroup(cols=len(header))
    table += group
    for w in widths:
        group += nodes.colspec(colwidth=w)
    thead, tbody = nodes.thead(), nodes.tbody()
    group += thead
    group += tbody

    def add(cells, into, stub=False):
        row = nodes.row()
        for cell in cells:
            if cell is None:  # merged into the entry before it
                last = row.children[-1]
                last["morecols"] = last.get("morecols", 0) + 1
                continue
            entry = nodes.entry()
            para = nodes.paragraph()
            para += cell if isinstance(cell, nodes.Node) else nodes.Text(cell)
            entry += para
            row += entry
        into += row

    add(header, thead)
    for r in rows:
        add(r, tbody)
    return table


_UNITS = {0.01: "test MSE ×10⁻²", 1.0: "test MSE in Å²"}


def glossary_note(docname: str, scale: float, seeds: list[int] | None = None) -> nodes.paragraph:
    """The line under a results table: its unit, its seeds and a link to the glossary."""
    para = nodes.paragraph(classes=["eghn-table-note"])
    text = _UNITS.get(scale, f"test MSE / {scale:g}")
    if seeds is not None:
        text += "; one seed per row (seed " + ", ".join(str(s) for s in sorted(set(seeds))) + ")"
    para += nodes.Text(text + ". Protocols, run scales, seeds and units: ")
    ref = addnodes.pending_xref("", refdomain="std", reftype="ref", reftarget="glossary",
                                refexplicit=True, refwarn=True, refdoc=docname)
    ref += nodes.inline("glossary", "glossary")
    para += ref
    para += nodes.Text(".")
    return para


class PaperTable(SphinxDirective):
    """``.. eghn-paper-table:: tableN``: the published numbers of one table (paper's units)."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        key = self.arguments[0]
        try:
            table = load_source("paper")[key]
        except Exception as exc:
            logger.warning("no table %s in paper.json: %s", key, exc, location=self.get_location())
            return []
        cols = [c for c in table["columns"]
                if any(c in vals for vals in table["rows"].values())]
        rows = []
        for model, vals in table["rows"].items():
            cells: list[nodes.Node | str] = [model]
            for c in cols:
                v = vals.get(c)
                cells.append(result_node(str(v), f"paper:{key}.rows.{model}.{c}") if v is not None else "—")
            rows.append(cells)
        return [_table(["model", *cols], rows, [22] + [12] * len(cols)),
                glossary_note(self.env.docname, table.get("scale", 1.0))]


class RunsTable(SphinxDirective):
    """``.. eghn-runs-table:: NAME``: the measured runs of ``docs/results/NAME.json``, beside the
    published numbers of ``:paper: tableN`` (default ``table2``) for each run's model and data,
    in that table's units. A run on data that is not a column of the table (an offline
    analogue) shows no published number; runs with a ``rotated`` test MSE
    (``collect_runs.py --rotated``) get a column for it. Beside each run's stop (early stop,
    epoch cap, diverged, cut short) stand the detectors' counts of spikes and pooling collapses
    where they are not zero."""

    required_arguments = 1
    has_content = False
    option_spec: ClassVar[dict[str, Any]] = {"paper": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        table = self.options.get("paper", "table2")  # the published table the runs reproduce
        try:
            runs = load_source(name)["runs"]
            paper_table = load_source("paper")[table]
            paper_rows = paper_table["rows"]
        except Exception as exc:
            logger.warning("cannot read result file %s: %s", name, exc, location=self.get_location())
            return []
        scale = float(paper_table.get("scale", 0.01))
        digits = ":.1f" if scale == 0.01 else ":.3f"
        op = f"*{1 / scale:g}{digits}"
        rotated = any("rotated" in run for run in runs.values())
        rows = []
        for key, run in runs.items():
            src = f"{name}:runs.{key}"
            # the paper's row of the model: the longest row name that starts the model's label
            # ("EGNN, 600-epoch cap" -> EGNN); an EGHN variant without a row of its own: EGHN's
            # (a table without an EGHN row, Table 4's ablations: no published number)
            row = next((r for r in sorted(paper_rows, key=len, reverse=True)
                        if run["model"].startswith(r) and run["data"] in paper_rows[r]),
                       "EGHN" if "EGHN" in paper_rows else None)
            if run.get("diverged"):
                cap = f"diverged at epoch {run['diverged']['epoch']}"
            elif run.get("finished") is False:
                cap = "cut short"
            elif "stopped_early" in run:  # from the run's result.json
                cap = "early stop" if run["stopped_early"] else "cap reached"
            else:
                cap = "cap reached" if run["epochs"] - run["best_epoch"] < 50 else "early stop"
            published: nodes.Node | str = "not a published cell"
            if row is not None and run["data"] in paper_rows[row]:
                published = result_node(str(paper_rows[row][run["data"]]), f"paper:{table}.rows.{row}.{run['data']}")
            stop = nodes.inline("", "", result_node(str(run["epochs"]), src + ".epochs"), nodes.Text(f", {cap} ("),
                                result_node(str(run["best_epoch"]), src + ".best_epoch"), nodes.Text(")"))
            # a run that spiked or collapsed on the way says so beside its stop (the detectors'
            # counts, eghn.train.stability), so that it never reads as a plain early stop
            stability = run.get("stability") or {}
            for what in ("spikes", "collapses"):
                if stability.get(what):
                    stop += [nodes.Text("; "), result_node(str(stability[what]), f"{src}.stability.{what}"),
                             nodes.Text(f" {what[:-1] if stability[what] == 1 else what}")]
            row_nodes = [
                run["data"], run["model"], stop,
                result_node(render(run["wall_s"], "/60:.1f") + " min", src + ".wall_s"),
                result_node(render(run["test_mse"], op), src + ".test_mse"),
            ]
            if rotated:
                row_nodes.append(result_node(render(run["rotated"]["test_mse"], op), src + ".rotated.test_mse")
                                 if "rotated" in run else "-")
            rows.append([*row_nodes, published, nodes.literal(run["command"], run["command"])])
        unit = "×10⁻²" if scale == 0.01 else "(Å²)" if scale == 1.0 else f"/ {scale:g}"
        header = ["data", "model", "epochs (best)", "wall time", f"test MSE {unit}",
                  *([f"test MSE, rotated {unit}"] if rotated else []), "paper", "command"]
        widths = [14, 8, 16, 10, 9, *([9] if rotated else []), 7, 36]
        seeds = [int(run.get("seed", 1)) for run in runs.values()]
        return [_table(header, rows, widths), glossary_note(self.env.docname, scale, seeds)]


def setup(app):
    app.add_role("result", result_role)
    app.add_directive("eghn-paper-table", PaperTable)
    app.add_directive("eghn-runs-table", RunsTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
