"""The reproduction status: every cell of the paper's tables beside eghn's best run of it.

``.. eghn-status::`` renders one compact table (class ``eghn-status``, a measured context) from
``eghn/results/paper.json`` and the collected runs of ``docs/results/`` (``STATUS_SOURCES``):
for each published cell that has runs, the paper's value, eghn's best run (finished runs first;
the mean and standard deviation across seeds where a run was repeated with other seeds), the
run's protocol and variant, the number of seeds and whether the run finished or was cut short;
the cells without any run are listed per table as "not run". Nothing is typed by hand: a new
result file (or a new run in one) changes the table at the next build.

A run belongs to the paper's cell of its ``data`` (a column of one published table) and of the
longest row name that starts its ``model`` label ("EGNN, paper protocol" -> EGNN); a label that
starts no row of that table belongs to EGHN's row (eghn's variants of EGHN).
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from typing import Any

from docutils import nodes
from eghn_results import load_source, result_node
from sphinx import addnodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

__all__ = ["STATUS_SOURCES", "Cell", "Group", "collect", "setup"]

logger = logging.getLogger(__name__)

#: result files of full-length runs of the paper's tables (the short ablations of
#: ``fidelity_ablation`` are not reproductions of a cell)
STATUS_SOURCES = ["paper_protocol_runs", "released_runs", "released_walk_runs", "released_baselines",
                  "table1_runs"]
#: the paper's tables in the order shown, with a short name
TABLES = {"table1": "T1", "table2": "T2", "table3": "T3", "table4": "T4"}
#: cells of one table that repeat another's: Table 4's full model is Table 2's EGHN (K = 5)
SAME_AS = {("table4", "EGHN (K=5)"): ("table2", "EGHN")}
#: ``--set`` keys of a command that do not change what a run measures
NEUTRAL_KEYS = {"train.threads", "protocol"}


@dataclass
class Group:
    """The runs of one setting (same data, model, protocol and command up to the seed).

    Attributes:
        runs: ``(source, key, run)`` triples, one per seed.
    """

    runs: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    @property
    def values(self) -> list[float]:
        return [float(r["test_mse"]) for _, _, r in self.runs]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def finished(self) -> bool:
        return all(r.get("finished", True) and not r.get("diverged") for _, _, r in self.runs)

    @property
    def first(self) -> dict[str, Any]:
        return self.runs[0][2]


@dataclass
class Cell:
    """One published cell and the run groups that reproduce it."""

    table: str
    row: str
    column: str
    paper: Any
    groups: list[Group] = field(default_factory=list)

    def best(self) -> Group | None:
        """The finished group with the lowest mean test MSE, else the lowest cut-short one."""
        if not self.groups:
            return None
        return min(self.groups, key=lambda g: (not g.finished, g.mean))


def overrides(command: str) -> list[str]:
    """The ``--set`` keys of a command that change the protocol (not threads, not the protocol)."""
    keys = re.findall(r"--set\s+'?([\w.]+)=", command)
    return [k for k in dict.fromkeys(keys) if k not in NEUTRAL_KEYS]


def _setting(command: str) -> str:
    return re.sub(r"--seed\s+\d+", "", command).strip()


def collect(paper: dict[str, Any], sources: dict[str, dict[str, Any]]) -> dict[str, list[Cell]]:
    """The cells of every published table, each with the groups of runs that reproduce it.

    Args:
        paper: the content of ``eghn/results/paper.json``.
        sources: result file name -> its content (a ``runs`` mapping of run key -> run record
            with ``data``, ``model``, ``protocol``, ``seed``, ``test_mse`` and ``command``).
    """
    cells: dict[str, list[Cell]] = {}
    index: dict[tuple[str, str, str], Cell] = {}
    for table in TABLES:
        cells[table] = []
        for row, values in paper[table]["rows"].items():
            for column in paper[table]["columns"]:
                if column in values:
                    cell = Cell(table, row, column, values[column])
                    cells[table].append(cell)
                    index[table, row, column] = cell
    groups: dict[tuple[str, str, str, str], Group] = {}
    for source, content in sources.items():
        for key, run in content.get("runs", {}).items():
            table = next((t for t in TABLES if run.get("data") in paper[t]["columns"]), None)
            if table is None or "test_mse" not in run:
                continue
            rows = paper[table]["rows"]
            row = next((r for r in sorted(rows, key=len, reverse=True)
                        if run["model"].startswith(r) and run["data"] in rows[r]), "EGHN")
            cell = index.get((table, row, run["data"]))
            if cell is None:
                continue
            gkey = (table, row, run["data"], run["model"] + "|" + _setting(run.get("command", key)))
            if gkey not in groups:
                groups[gkey] = Group()
                cell.groups.append(groups[gkey])
            groups[gkey].runs.append((source, key, run))
    return cells


def _decimals(paper_table: dict[str, Any]) -> int:
    values = [v for row in paper_table["rows"].values() for v in row.values() if isinstance(v, float)]
    return max((len(repr(v).partition(".")[2]) for v in values), default=2)


def _join(items: list[str]) -> str:
    return ", ".join(items)


class StatusTable(SphinxDirective):
    """``.. eghn-status::``: the reproduction status of every published cell."""

    has_content = False

    def _xref(self, text: str, target: str, reftype: str = "ref") -> addnodes.pending_xref:
        ref = addnodes.pending_xref("", refdomain="std", reftype=reftype, reftarget=target,
                                    refexplicit=True, refwarn=True, refdoc=self.env.docname)
        ref += nodes.inline(text, text)
        return ref

    def run(self) -> list[nodes.Node]:
        try:
            paper = load_source("paper")
            sources = {name: load_source(name) for name in STATUS_SOURCES}
        except Exception as exc:
            logger.warning("cannot read the result files of the status: %s", exc, location=self.get_location())
            return []
        cells = collect(paper, sources)
        header = ["paper cell", "paper", "eghn", "run: protocol, variant", "seeds", "status"]
        rows: list[list[nodes.Node | str]] = []
        modified = False
        for table, short in TABLES.items():
            scale = paper[table].get("scale", 1.0)
            decimals = _decimals(paper[table])
            missing: dict[str, list[str]] = {}
            same: set[str] = set()
            for cell in cells[table]:
                if (table, cell.row) in SAME_AS:
                    same.add(cell.row)
                    continue
                best = cell.best()
                if best is None:
                    missing.setdefault(cell.row, []).append(cell.column)
                    continue
                run = best.first
                src = f"{best.runs[0][0]}:runs.{best.runs[0][1]}"
                value = nodes.inline()
                value += result_node(format(best.mean / scale, f".{decimals}f"), src + ".test_mse")
                if len(best.runs) > 1:
                    std = statistics.stdev(best.values) / scale
                    value += nodes.Text(" ± ")
                    value += result_node(format(std, f".{decimals}f"), src + ".test_mse (std)")
                model = run["model"]
                variant = model[len(cell.row):].strip(" ,") if model.startswith(cell.row) else model
                if variant.startswith("(") and variant.endswith(")"):
                    variant = variant[1:-1]
                keys = overrides(run.get("command", ""))
                protocol = run.get("protocol", "?") + (" + " + _join(keys) if keys else "")
                modified = modified or bool(keys)
                status = "finished" if best.finished else "cut short"
                if isinstance(cell.paper, (int, float)):
                    ratio = nodes.inline()
                    ratio += nodes.Text(f"{status}, ")
                    ratio += result_node(format(best.mean / scale / cell.paper, ".2f"), src + ".test_mse / paper")
                    ratio += nodes.Text("x paper")
                else:
                    ratio = status
                rows.append([f"{short} {cell.column} · {cell.row}",
                             result_node(str(cell.paper), f"paper:{table}.rows.{cell.row}.{cell.column}"),
                             value, protocol + (f"; {variant}" if variant else ""),
                             str(len(best.runs)), ratio])
            if same:
                for row in sorted(same):
                    other, other_row = SAME_AS[table, row]
                    rows.append([f"{short} {row}", "", "", f"the {other_row} rows of {TABLES[other]}", "", ""])
            if missing:
                by_columns: dict[tuple[str, ...], list[str]] = {}
                for row, columns in missing.items():
                    by_columns.setdefault(tuple(columns), []).append(row)
                parts = []
                all_columns = list(paper[table]["columns"])
                for columns, models in by_columns.items():
                    if len(columns) > 3:
                        where = f"{len(columns)} columns"
                    elif list(columns) == all_columns and len(columns) > 1:
                        where = "every column"
                    else:
                        where = _join(list(columns))
                    parts.append(f"{_join(models)} ({where})")
                rows.append([f"{short} other cells", "", "", "; ".join(parts), "", "not run"])
        table_node = _status_table(header, rows)
        note = nodes.paragraph(classes=["eghn-status-note"])
        note += nodes.Text("Test MSE as the paper's tables: ×10⁻² (T1, T2, T4), Å² (T3). eghn: the best "
                           "finished run of the cell (mean ± std where repeated with other seeds); "
                           "status: finished or cut short, and eghn's MSE over the paper's. ")
        if modified:
            note += nodes.Text("\"+ key\": the protocol with that setting changed. ")
        note += nodes.Text("Terms: ")
        note += self._xref("glossary", "glossary")
        note += nodes.Text("; every run with its command: ")
        note += self._xref("Results", "/results", "doc")
        note += nodes.Text(".")
        container = nodes.container(classes=["eghn-status", "eghn-measured"])
        container += table_node
        container += note
        return [container]


def _status_table(header: list[str], rows: list[list[nodes.Node | str]]) -> nodes.table:
    table = nodes.table(classes=["eghn-status-table"])
    group = nodes.tgroup(cols=len(header))
    table += group
    for w in (30, 8, 12, 34, 6, 18):
        group += nodes.colspec(colwidth=w)
    thead, tbody = nodes.thead(), nodes.tbody()
    group += thead
    group += tbody
    for cells, into in [(header, thead), *((r, tbody) for r in rows)]:
        row = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            para = nodes.paragraph()
            para += cell if isinstance(cell, nodes.Node) else nodes.Text(cell)
            entry += para
            row += entry
        into += row
    return table


def setup(app):
    app.add_directive("eghn-status", StatusTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
