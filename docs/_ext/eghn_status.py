"""The reproduction status: every cell of the paper's tables beside eghn's best run of it.

``.. eghn-status::`` renders one compact table (class ``eghn-status``, a measured context) from
``eghn/results/paper.json`` and the collected runs of ``docs/results/`` (``STATUS_SOURCES``):
for each published cell that has runs, the paper's value, eghn's best run (finished runs first;
the mean and standard deviation across seeds where a run was repeated with other seeds), the
run's protocol and variant, the number of seeds and whether the run finished or was cut short;
the cells without any run are listed per table as "not run". Nothing is typed by hand: a new
result file (or a new run in one) changes the table at the next build.

With ``:compact:`` it is one row per cell with a column per protocol; ``:max-rows: N`` (the
landing page, whose first screen must hold the table) folds a table's baseline rows into one row
that counts their verdicts per protocol (:func:`eghn.train.collected.verdict_counts`), the table
with the most baselines first, until at most ``N`` rows remain or only EGHN's rows and the "not
run" lines are left.

Which run belongs to which cell: :mod:`eghn.train.collected`.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from eghn_results import _table, load_source, result_node
from sphinx import addnodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from eghn.train.collected import (
    PROTOCOL_ORDER,
    SAME_AS,
    SEEDS_ENOUGH,
    STATUS_SOURCES,
    TABLES,
    WITHIN_SHARE,
    Cell,
    Group,
    ablations,
    collect,
    overrides,
    separation_chance,
    trained_configs,
    unit_label,
    verdict_counts,
)

__all__ = ["ANALOGUES", "STATUS_SOURCES", "AblationTable", "Cell", "Group", "NotRunTable", "StatusTable", "collect",
           "setup"]

logger = logging.getLogger(__name__)

#: result files of runs that are not the paper's cells but an analogue of a table's (other data),
#: named beside that table's cells not run when the file holds runs
ANALOGUES = {"table3": ("offline_adk_runs", "The Results page has an offline analogue of this table on other "
                                             "AdK frames, not these cells.")}


def _decimals(paper_table: dict[str, Any]) -> int:
    values = [v for row in paper_table["rows"].values() for v in row.values() if isinstance(v, float)]
    return max((len(repr(v).partition(".")[2]) for v in values), default=2)


def _join(items: list[str]) -> str:
    return ", ".join(items)


class StatusTable(SphinxDirective):
    """``.. eghn-status::``: the reproduction status of every published cell."""

    has_content = False
    option_spec: ClassVar[dict[str, Any]] = {"compact": directives.flag, "max-rows": directives.positive_int}

    def _xref(self, text: str, target: str, reftype: str = "ref") -> addnodes.pending_xref:
        ref = addnodes.pending_xref("", refdomain="std", reftype=reftype, reftarget=target,
                                    refexplicit=True, refwarn=True, refdoc=self.env.docname)
        ref += nodes.inline(text, text)
        return ref

    def _row(self, cell: Cell, best: Group, short: str, scale: float, decimals: int) -> list[nodes.Node | str]:
        """One line: the cell, the paper's value (± where given), eghn's best group of one
        protocol (mean ± std over seeds), its setting, seeds and verdict."""
        run = best.first
        src = _source(best)
        value = _measured(best, scale, decimals)
        paper = _published(cell)
        variant = cell.variant(best)
        protocol = nodes.inline()
        protocol += nodes.Text(run.get("protocol", "?"))
        for i, setting in enumerate(overrides(run.get("command", ""), values=True)):
            protocol += nodes.Text(" + " if i == 0 else ", ")
            protocol += nodes.literal(setting, setting)
        if variant:
            protocol += nodes.Text(f"; {variant}")
        status = "finished" if best.finished else "cut short"
        verdict = cell.verdict(best.mean / scale)
        if verdict:
            ratio = nodes.inline()
            ratio += nodes.Text(f"{verdict} ({status}, ")
            ratio += result_node(format(best.mean / scale / cell.paper, ".2f"), src + ".test_mse / paper")
            ratio += nodes.Text("x paper)")
        else:
            ratio = status
        return [f"{short} {cell.column} · {cell.row}", paper, value, protocol, str(len(best.runs)), ratio]

    def _compact_row(self, cell: Cell, short: str, scale: float, decimals: int,
                     protocols: list[str]) -> list[nodes.Node | str]:
        """One line per cell: the paper's value, then per protocol eghn's best group that runs
        the protocol as shipped (else its best group with a changed setting, marked ``+``) as
        ``mean ± std ×seeds verdict`` ("-" where the protocol has no run)."""
        label = f"{short} {_brief(cell.column)} · {_brief(cell.row)}"
        row: list[nodes.Node | str] = [label, _published(cell)]
        for protocol in protocols:
            best = cell.best(protocol, plain=True) or cell.best(protocol)
            if best is None:
                row.append("-")
                continue
            value = _measured(best, scale, decimals)
            value += nodes.Text(f" ×{len(best.runs)}" + ("" if cell.is_plain(best) else "+"))
            verdict = cell.verdict(best.mean / scale)
            value += nodes.Text(f" {verdict or ''}{'' if best.finished else ' (cut short)'}")
            row.append(value)
        return row

    def run(self) -> list[nodes.Node]:
        try:
            paper = load_source("paper")
            sources = {name: load_source(name) for name in STATUS_SOURCES}
        except Exception as exc:
            logger.warning("cannot read the result files of the status: %s", exc, location=self.get_location())
            return []
        cells = collect(paper, sources)
        compact = "compact" in self.options
        protocols = list(PROTOCOL_ORDER)
        header = (["paper cell", "paper", *(f"eghn, {p}" for p in protocols)] if compact else
                  ["paper cell", "paper", "eghn", "run: protocol, variant", "seeds", "status"])
        rows: list[list[nodes.Node | str]] = []
        run_cells: list[tuple[int, str, Cell, float]] = []  # compact: (row index, table, cell, scale) of run cells
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
                if not cell.groups:
                    missing.setdefault(cell.row, []).append(cell.column)
                    continue
                if compact:
                    rows.append(self._compact_row(cell, short, scale, decimals, protocols))
                    run_cells.append((len(rows) - 1, table, cell, scale))
                    continue
                for protocol in cell.protocols():
                    best = cell.best(protocol)
                    rows.append(self._row(cell, best, short, scale, decimals))
                    modified = modified or bool(overrides(best.first.get("command", "")))
            if same:
                for row in sorted(same):
                    other, other_row = SAME_AS[table, row]
                    rows.append(_fit([f"{short} {row}", "", "", f"the {other_row} rows of {TABLES[other]}"],
                                     len(header), compact))
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
                text = "not run: " + "; ".join(parts)
                if table in ANALOGUES and _has_runs(ANALOGUES[table][0]):
                    text += f". {ANALOGUES[table][1]}"
                rows.append(_fit([f"{short} other cells", "", "", text], len(header), compact))
        if compact and "max-rows" in self.options:
            rows = _fold_baselines(rows, run_cells, self.options["max-rows"], protocols)
        table_node = _status_table(header, rows, compact)
        note = nodes.paragraph(classes=["eghn-status-note"])
        note += nodes.Text("Test MSE as the paper's tables: ×10⁻² (T1, T2, T4), Å² (T3); the paper's ± "
                           "where transcribed. eghn: the best finished setting of the cell per "
                           "protocol (mean ± sample std"
                           + (" ×seeds; + marks a changed setting" if compact else " over its seeds")
                           + "); status: reached (at or below the paper), within (above it by at most "
                           + ("its ± or " if compact else "the paper's ± or "))
        # the share comes from the code that gives the verdicts (eghn.train.collected)
        note += nodes.inline("", f"{WITHIN_SHARE:.0%}", classes=["eghn-generated"])
        note += nodes.Text(") or missed. " if compact else
                           " of it) or missed, whether the runs finished or were cut short, and eghn's MSE "
                           "over the paper's. ")
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


class NotRunTable(SphinxDirective):
    """``.. eghn-not-run::``: every cell of the paper's tables that no collected run trained, with
    the command that runs it and its measured CPU cost (``docs/results/cell_costs.json``, written
    by ``benchmarks/cell_cost.py``). A cell leaves this table once a result file holds a run of
    its config."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        try:
            costs = load_source("cell_costs")
            sources = {name: load_source(name) for name in STATUS_SOURCES}
        except Exception as exc:
            logger.warning("cannot read the cell costs: %s", exc, location=self.get_location())
            return []
        trained = trained_configs(sources)
        header = ["cells", "protocol", "CPU s / epoch", "load", "epoch cap", "CPU h, 3 seeds at the cap",
                  "CPU h, 3 seeds at typical epochs", "command"]
        rows: list[list[nodes.Node | str]] = []
        unmeasured: list[tuple[str, str]] = []
        for key, entry in sorted(costs["cells"].items(), key=lambda kv: _cell_order(kv[1])):
            if entry["config"] in trained:
                continue
            names = "; ".join(f"{TABLES[t]} {column} · {row}" for t, row, column in entry["cells"])
            protocol = " + ".join([entry["protocol"], *entry.get("overrides", [])])
            if "error" in entry:
                unmeasured.append((f"{names} ({protocol}): ", entry["error"]))
                continue
            src = f"cell_costs:cells.{key}"
            typical: nodes.Node | str = "-"
            if "typical_epochs" in entry:
                typical = nodes.inline()
                typical += result_node(format(entry["cpu_hours_3_seeds_typical"], ".2f"),
                                       src + ".cpu_hours_3_seeds_typical")
                typical += nodes.Text(" (")
                typical += result_node(str(entry["typical_epochs"]), src + ".typical_epochs")
                typical += nodes.Text(" epochs, the median of ")
                typical += result_node(str(entry["typical_from_runs"]), src + ".typical_from_runs")
                typical += nodes.Text(" finished runs on this data)")
            command = nodes.literal(entry["command"], entry["command"])
            cap = nodes.inline()
            cap += result_node(str(entry["epoch_cap"]), src + ".epoch_cap")
            if entry.get("probe_epochs"):  # train.init_tries: the starts probed before epoch 1
                cap += nodes.Text(" + up to ")
                cap += result_node(str(entry["probe_epochs"]), src + ".probe_epochs")
                cap += nodes.Text(" probing")
            load: nodes.Node | str = "-"  # the load average before the timing (recorded since 0.8.0)
            if "load_avg" in entry:
                load = result_node(format(entry["load_avg"][0], ".1f"), src + ".load_avg.0")
            rows.append([names, protocol,
                         result_node(format(entry["cpu_s_per_epoch"], ".2f"), src + ".cpu_s_per_epoch"),
                         load, cap,
                         result_node(format(entry["cpu_hours_3_seeds"], ".1f"), src + ".cpu_hours_3_seeds"),
                         typical, command])
        container = nodes.container(classes=["eghn-measured"])
        container += _table(header, rows, [22, 8, 7, 5, 8, 9, 17, 24], classes=("eghn-measured",))
        note = nodes.paragraph()
        note += nodes.Text("CPU time measured by ")
        note += nodes.literal("benchmarks/cell_cost.py", "benchmarks/cell_cost.py")
        note += nodes.Text(" (one torch thread; the median of the training epochs after the first, plus "
                           "one evaluation every eval_every epochs and the setup), on ")
        note += result_node(costs["machine"]["cpu"], "cell_costs:machine.cpu")
        note += nodes.Text(". Early stopping usually ends a run well before the epoch cap, so the cap's "
                           "figure is an upper bound; the typical figure uses the epochs that eghn's "
                           "finished runs on the same data needed. A protocol that probes its starts "
                           "(train.init_tries, eghn's recipe on M-complex) is charged every probed epoch, "
                           "although a probe often passes at its first start. The load is the machine's load average "
                           "when the entry was measured (\"-\": not recorded): on these two cores, CPU "
                           "seconds per epoch grow when other processes run beside the timing, so entries "
                           "measured under different loads compare only roughly.")
        container += note
        if unmeasured:
            items = nodes.bullet_list()
            for cell_text, error in unmeasured:
                item = nodes.list_item()
                para = nodes.paragraph(text="not measured: " + cell_text)
                para += nodes.literal(error, error)
                item += para
                items += item
            container += items
        return [container]


#: how the ablation table words :attr:`eghn.train.collected.Ablation.separation`
_SEPARATION = {"above": "higher on every seed", "below": "lower on every seed",
               "overlap": "seeds overlap", "no full model": "full model not run"}


class AblationTable(SphinxDirective):
    """``.. eghn-ablations:: tableN``: each ablation of the table that has runs under
    ``:protocol:`` (default ``eghn``), per data column, beside the full model's runs under the same
    protocol (:func:`eghn.train.collected.ablations`): mean ± std over seeds, the difference of
    the means, and whether every seed lies beyond every seed of the full model. The table's rows
    without any run are listed as not run."""

    required_arguments = 1
    has_content = False
    option_spec: ClassVar[dict[str, Any]] = {"protocol": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        table = self.arguments[0]
        protocol = self.options.get("protocol", "eghn")
        try:
            paper = load_source("paper")
            sources = {name: load_source(name) for name in STATUS_SOURCES}
            found = ablations(paper, sources, table, protocol)
        except Exception as exc:
            logger.warning("cannot compare the ablations of %s: %s", table, exc, location=self.get_location())
            return []
        scale = paper[table].get("scale", 1.0)
        decimals = max(_decimals(paper[table]), 2)  # seeds of one setting differ in the second decimal
        rows: list[list[nodes.Node | str]] = []
        references: dict[str, Group] = {}
        for ablation in found:
            if ablation.reference is not None:
                references.setdefault(ablation.cell.column, ablation.reference)
        full_row = next(row for (t, row) in SAME_AS if t == table)
        for column, reference in references.items():
            rows.append([f"{full_row} (full model)", column, str(len(reference.runs)),
                         _measured(reference, scale, decimals), "", "",
                         _published(Cell(table, full_row, column, paper[table]["rows"][full_row].get(column)))
                         if column in paper[table]["rows"][full_row] else "not stored"])
        for ablation in found:
            cell, group = ablation.cell, ablation.group
            difference: nodes.Node | str = ""
            if ablation.difference is not None:
                difference = result_node(format(ablation.difference / scale, f"+.{decimals}f"),
                                         _source(group) + ".test_mse - full model")
            separation = ablation.separation
            text = _SEPARATION.get(separation, separation)
            if separation == "too few seeds":
                text = f"not judged: {len(group.runs)} of {SEEDS_ENOUGH} seeds"
            status = "" if group.finished else " (cut short)"
            rows.append([cell.row, cell.column, str(len(group.runs)), _measured(group, scale, decimals),
                         difference, text + status, _published(cell) if cell.paper is not None else "not stored"])
        run_rows = {a.cell.row for a in found}
        missing = [row for row in paper[table]["rows"] if row != full_row and row not in run_rows]
        header = ["ablation", "data", "seeds", unit_label(scale), "minus full model",
                  "every seed vs the full model", "paper"]
        container = nodes.container(classes=["eghn-measured"])
        container += _table(header, rows, [20, 12, 5, 12, 9, 18, 9], classes=("eghn-measured",))
        full_table, full_cell_row = SAME_AS[table, full_row]
        note = nodes.paragraph()
        note += nodes.Text(f"Protocol {protocol} on both sides; the full model's runs are those of "
                           f"{_table_name(full_table)}'s {full_cell_row} cell on the same "
                           "data (mean ± sample std over seeds). \"Higher (lower) on every seed\": every seed of "
                           "the ablation lies above (below) every seed of the full model; with ")
        note += nodes.inline("", str(SEEDS_ENOUGH), classes=["eghn-generated"])
        note += nodes.Text(" seeds on each side, if the ablation changed nothing, this happens with a chance of ")
        chance = separation_chance(SEEDS_ENOUGH, SEEDS_ENOUGH)
        note += nodes.inline("", f"1 in {1 / chance:.0f}", classes=["eghn-generated"])
        note += nodes.Text(" (the exact rank test's two-sided p-value, its smallest at three seeds), so three "
                           "seeds can show a difference beyond seed noise only this far; fewer seeds are not "
                           "judged. ")
        if missing:
            note += nodes.Text("Not run under this protocol: " + _join(missing) + ".")
        container += note
        return [container]


def _table_name(table: str) -> str:
    """``table2`` -> ``Table 2``."""
    return "Table " + table.removeprefix("table")


def _has_runs(name: str) -> bool:
    """Whether ``docs/results/NAME.json`` exists and holds runs."""
    try:
        return bool(load_source(name).get("runs"))
    except Exception:
        return False


def _cell_order(entry: dict[str, Any]) -> tuple[int, str, str]:
    table = entry["cells"][0][0]
    return list(TABLES).index(table), entry["protocol"], entry["config"]


def _source(group: Group) -> str:
    """The result-file key of a group's first run, which its rendered numbers cite."""
    return f"{group.runs[0][0]}:runs.{group.runs[0][1]}"


def _measured(group: Group, scale: float, decimals: int) -> nodes.inline:
    """A group's mean test MSE in the table's units, ``± std`` over its seeds where it has several."""
    src = _source(group)
    value = nodes.inline()
    value += result_node(format(group.mean / scale, f".{decimals}f"), src + ".test_mse")
    if len(group.runs) > 1:
        value += nodes.Text(" ± ")
        value += result_node(format(group.std / scale, f".{decimals}f"), src + ".test_mse (std)")
    return value


def _published(cell: Cell) -> nodes.inline:
    """The paper's value of a cell, ``± std`` where ``paper.json`` has one."""
    key = f"{cell.table}.{{}}.{cell.row}.{cell.column}"
    paper = nodes.inline()
    paper += result_node(str(cell.paper), "paper:" + key.format("rows"))
    if cell.paper_std is not None:
        paper += nodes.Text(" ± ")
        paper += result_node(str(cell.paper_std), "paper:" + key.format("std"))
    return paper


def _fold_baselines(rows: list[list[nodes.Node | str]], run_cells: list[tuple[int, str, Cell, float]], max_rows: int,
                    protocols: list[str]) -> list[list[nodes.Node | str]]:
    """Compact rows cut to at most ``max_rows`` (where that is possible): the baseline rows of a
    table (every model but EGHN), the table with the most of them first, become one row that
    counts their verdicts per protocol. EGHN's rows and the "not run" lines always stay."""
    folded: dict[int, list[nodes.Node | str] | None] = {}  # row index -> its summary (None: dropped)
    by_table: dict[str, list[tuple[int, Cell, float]]] = {}
    for i, table, cell, scale in run_cells:
        if not cell.row.startswith("EGHN"):
            by_table.setdefault(table, []).append((i, cell, scale))
    count = len(rows)
    for table, found in sorted(by_table.items(), key=lambda item: -len(item[1])):
        if count <= max_rows or len(found) < 2:
            break
        models = list(dict.fromkeys(cell.row for _, cell, _ in found))
        summary: list[nodes.Node | str] = [f"{TABLES[table]} {', '.join(models)} ({len(found)} cells)", ""]
        for protocol in protocols:
            counts = verdict_counts([(cell, scale) for _, cell, scale in found], protocol)
            short = counts.pop("cut short", 0)
            text = ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
            summary.append((text + (f" ({short} cut short)" if short else "")) or "-")
        folded[found[0][0]] = summary
        folded.update({i: None for i, _, _ in found[1:]})
        count -= len(found) - 1
    return [folded.get(i, row) for i, row in enumerate(rows) if folded.get(i, row) is not None]


def _brief(name: str) -> str:
    """A row or column name of ``paper.json`` without its worded parentheses, for the compact
    table's narrow first column: ``Walk (Subject 35)`` -> ``Walk``, ``EMMP -> MPNN
    (non-equivariant)`` -> ``EMMP -> MPNN``; a system size such as ``single (3,3)`` stays."""
    return re.sub(r"\s*\([^()]*[A-Za-z][^()]*\)", "", name).strip() or name


def _fit(row: list[nodes.Node | str], width: int, compact: bool) -> list[nodes.Node | str | None]:
    """A summary line (name, then its text from the column of eghn's value (compact) or of the
    run's protocol on) whose text spans the rest of the table's width."""
    cells = [*row[:2], row[3]] if compact else row
    return [*cells, *[None] * (width - len(cells))]


def _status_table(header: list[str], rows: list[list[nodes.Node | str | None]],
                  compact: bool = False) -> nodes.table:
    widths = [30, 10, 20, 20, 20] if compact else [30, 8, 12, 34, 6, 18]
    return _table(header, rows, widths, classes=("eghn-status-table",))


def setup(app):
    app.add_directive("eghn-status", StatusTable)
    app.add_directive("eghn-not-run", NotRunTable)
    app.add_directive("eghn-ablations", AblationTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
