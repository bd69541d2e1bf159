"""Runs collected into a source checkout: each published cell of the paper's tables with
eghn's runs of it, and the figures drawn from them.

``docs/scripts/collect_runs.py`` copies finished (or cut-short) runs into ``docs/results/``:
one JSON file per series of runs (``runs`` maps a run key to its record: ``data``, ``model``,
``protocol``, ``seed``, ``test_mse``, ``command``, ``finished``) and, per run key, the run's
``metrics.csv`` under ``docs/results/run_files/<key>/``. The documentation renders the
reproduction status, the Results page's plots and the gallery's table pages from these files;
nothing is typed by hand.

A run belongs to the paper's cell of its ``data`` (a column of one published table) and of the
longest row name that starts its ``model`` label ("EGNN, paper protocol" -> EGNN); a label that
starts no row of that table belongs to EGHN's row (eghn's variants of EGHN). Runs with the same
data, model label and command up to ``--seed`` form one :class:`Group` (one setting, several
seeds).

Example:
    >>> paper = {"table9": {"scale": 0.01, "columns": ["A"], "rows": {"EGHN": {"A": 9.0}}}}
    >>> runs = {"r1": {"data": "A", "model": "EGHN", "protocol": "paper", "seed": 1,
    ...                "test_mse": 0.08, "command": "eghn train x --seed 1"},
    ...         "r2": {"data": "A", "model": "EGHN", "protocol": "paper", "seed": 2,
    ...                "test_mse": 0.10, "command": "eghn train x --seed 2"}}
    >>> cell = collect(paper, {"demo": {"runs": runs}}, tables=["table9"])["table9"][0]
    >>> group = cell.best()
    >>> len(group.runs), round(group.mean / 0.01, 2), round(group.std / 0.01, 2), group.finished
    (2, 9.0, 1.41, True)
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
import shlex
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PROTOCOL_ORDER", "SAME_AS", "SEEDS_ENOUGH", "STATUS_SOURCES", "TABLES", "WITHIN_SHARE", "Ablation",
           "Cell", "Group", "ablations", "collect", "learning_curves", "overrides", "paper_vs_eghn",
           "read_collected", "read_metrics", "read_result_files", "results_dir", "separation_chance", "table_of",
           "trained_configs", "unit_label", "verdict_counts"]

#: result files of full-length runs of the paper's tables (the short ablations of
#: ``fidelity_ablation`` are not reproductions of a cell)
STATUS_SOURCES = ["paper_protocol_runs", "released_runs", "released_walk_runs", "released_seed_runs",
                  "released_baselines", "table1_runs", "recipe_runs", "recipe_eps_runs", "recipe_table1_runs",
                  "table1_gpu_runs", "table4_runs", "selection_runs_3x3"]
#: the paper's tables in the order shown, with a short name
TABLES = {"table1": "T1", "table2": "T2", "table3": "T3", "table4": "T4"}
#: ``--set`` keys of a command that do not change what a run measures
NEUTRAL_KEYS = {"train.threads", "protocol"}
#: seeds beyond which a setting's mean does not rank higher in :meth:`Cell.best` (the campaign's three)
SEEDS_ENOUGH = 3
#: cells of one table that repeat another's: Table 4's full model is Table 2's EGHN (K = 5)
SAME_AS = {("table4", "EGHN (K=5)"): ("table2", "EGHN")}
#: the order in which protocols are listed
PROTOCOL_ORDER = ("released", "paper", "eghn")
#: a mean above the paper by at most this share of its value (or its standard deviation) is "within"
WITHIN_SHARE = 0.05
#: marker colour of each protocol in the figures
_PROTOCOL_COLOURS = {"released": "tab:blue", "paper": "tab:orange", "eghn": "tab:green"}


@dataclass
class Group:
    """The runs of one setting (same data, model label and command up to the seed).

    Attributes:
        runs: ``(source, key, run)`` triples, one per seed: the result file's name, the run's
            key in it (also its folder under ``run_files/``) and its record.

    Example:
        >>> from eghn.train.collected import Group
        >>> group = Group([("f", "r1", {"seed": 1, "test_mse": 0.08}),
        ...                ("f", "r2", {"seed": 2, "test_mse": 0.10, "finished": False})])
        >>> group.values, round(group.mean, 4), group.seeds, group.finished
        ([0.08, 0.1], 0.09, [1, 2], False)
    """

    runs: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    @property
    def values(self) -> list[float]:
        """Test MSE of every seed, in the data's units."""
        return [float(r["test_mse"]) for _, _, r in self.runs]

    @property
    def mean(self) -> float:
        """Mean test MSE across seeds."""
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation of the test MSE across seeds (0 for one seed)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    @property
    def finished(self) -> bool:
        """Whether every seed reached its end (early stopping or the epoch cap) without diverging."""
        return all(r.get("finished", True) and not r.get("diverged") for _, _, r in self.runs)

    @property
    def first(self) -> dict[str, Any]:
        """The record of the first seed (model label, protocol and command are shared)."""
        return self.runs[0][2]

    @property
    def seeds(self) -> list[int]:
        """The seeds of the runs."""
        return [int(r.get("seed", 1)) for _, _, r in self.runs]


@dataclass
class Cell:
    """One published cell and the run groups that reproduce it.

    Attributes:
        table: ``"table1"`` .. ``"table4"``.
        row, column: the cell's row (model) and column (data) in ``eghn/results/paper.json``.
        paper: the published value in the table's units (a number, or a string such as "OOM").
        groups: eghn's runs of the cell, one :class:`Group` per setting.
        paper_std: the published standard deviation (``paper.json``'s ``std`` table), ``None``
            where the paper gives none or it is not transcribed.

    Example:
        >>> from eghn.train.collected import Cell, Group
        >>> cut_short = Group([("f", "r1", {"model": "EGHN", "test_mse": 0.05, "finished": False})])
        >>> finished = Group([("f", "r2", {"model": "EGHN (K=8)", "test_mse": 0.09})])
        >>> cell = Cell("table9", "EGHN", "A", 9.0, [cut_short, finished])
        >>> cell.best() is finished, cell.variant(finished)  # a finished group comes first
        (True, 'K=8')
    """

    table: str
    row: str
    column: str
    paper: Any
    groups: list[Group] = field(default_factory=list)
    paper_std: float | None = None

    def best(self, protocol: str | None = None, *, plain: bool = False) -> Group | None:
        """The group a verdict rests on: finished before cut short, then the most seeds (counted
        up to :data:`SEEDS_ENOUGH`, so that one lucky seed never outranks a three-seed mean),
        then the lowest mean test MSE (among the groups of ``protocol`` when given; with
        ``plain``, among the groups that run the protocol as shipped: no setting changed, no
        variant of the row's model).

        >>> one = Group([("f", "a", {"seed": 1, "test_mse": 0.20, "command": "x --set train.lr=1"})])
        >>> three = Group([("f", "b", {"seed": s, "test_mse": v, "command": "x"})
        ...                for s, v in ((1, 0.24), (2, 0.26), (3, 0.25))])
        >>> Cell("table2", "EGHN", "Run", 25.9, [one, three]).best() is three
        True
        """
        groups = [g for g in self.groups if (protocol is None or g.first.get("protocol") == protocol)
                  and (not plain or self.is_plain(g))]
        if not groups:
            return None
        return min(groups, key=lambda g: (not g.finished, -min(len(g.runs), SEEDS_ENOUGH), g.mean))

    def is_plain(self, group: Group) -> bool:
        """Whether ``group`` runs its protocol as shipped (no ``--set`` that changes the protocol,
        no variant of the row's model).

        >>> cell = Cell("table2", "EGHN", "Run", 25.9)
        >>> cell.is_plain(Group([("f", "a", {"model": "EGHN", "command": "eghn train x --seed 2"})]))
        True
        >>> cell.is_plain(Group([("f", "b", {"model": "EGHN", "command": "eghn train x --set train.clip_grad=1"})]))
        False
        """
        return not overrides(group.first.get("command", "")) and not self.variant(group)

    def protocols(self) -> list[str]:
        """The protocols of the cell's groups, in a fixed order (``released``, ``paper``,
        ``eghn``, then any other)."""
        found = {g.first.get("protocol", "?") for g in self.groups}
        order = [p for p in PROTOCOL_ORDER if p in found]
        return order + sorted(found - set(order))

    def verdict(self, mean: float) -> str:
        """``"reached"`` (at or below the paper), ``"within"`` (above it by at most the paper's
        standard deviation or :data:`WITHIN_SHARE` of its value, whichever is larger) or ``"missed"``, for a mean
        test MSE in the table's units; ``""`` where the paper has no number.

        >>> cell = Cell("table2", "EGHN", "Run", 25.9, paper_std=0.3)
        >>> cell.verdict(25.0), cell.verdict(27.1), cell.verdict(27.3)
        ('reached', 'within', 'missed')
        """
        if not isinstance(self.paper, (int, float)) or isinstance(self.paper, bool):
            return ""
        if mean <= self.paper:
            return "reached"
        tolerance = max(self.paper_std or 0.0, WITHIN_SHARE * self.paper)
        return "within" if mean <= self.paper + tolerance else "missed"

    def variant(self, group: Group) -> str:
        """How a group's model label differs from the cell's row ("" for the row itself).

        >>> Cell("table1", "EGNN", "A", 1.0).variant(Group([("f", "k", {"model": "EGNN, 600-epoch cap"})]))
        '600-epoch cap'
        """
        model = group.first["model"]
        variant = model[len(self.row):].strip(" ,") if model.startswith(self.row) else model
        if variant.startswith("(") and variant.endswith(")"):
            variant = variant[1:-1]
        return variant


def overrides(command: str, *, values: bool = False) -> list[str]:
    """The ``--set`` keys of a command that change the protocol (not threads, not the protocol);
    with ``values``, as ``key=value`` (the value without shell or TOML quoting).

    >>> overrides("eghn train a --set train.threads=1 --set train.clip_grad=1.0")
    ['train.clip_grad']
    >>> overrides("eghn train a --set 'model.clusters=[4, 2]' --set train.adam_eps=1e-8", values=True)
    ['model.clusters=[4, 2]', 'train.adam_eps=1e-8']
    """
    try:
        tokens = shlex.split(command)
    except ValueError:
        tokens = command.split()
    found: dict[str, str] = {}
    for flag, setting in itertools.pairwise(tokens):
        key, eq, value = setting.partition("=")
        if flag == "--set" and eq and re.fullmatch(r"[\w.]+", key) and key not in NEUTRAL_KEYS:
            found.setdefault(key, re.sub(r'^"(.*)"$', r"\1", value))
    return [f"{k}={v}" for k, v in found.items()] if values else list(found)


def _setting(command: str) -> str:
    r"""A command without what does not change the measurement: the seed, ``--no-progress``, a
    CPU device and the number of threads (``--set train.threads=N`` or a leading
    ``OMP_NUM_THREADS=N`` / ``MKL_NUM_THREADS=N``; the protocol stays: it is part of the
    setting). Shell and TOML quoting of a value do not matter (``protocol='"paper"'`` is
    ``protocol=paper``).

    >>> _setting("eghn train a --seed 2 --no-progress --set train.threads=1") == _setting(
    ...     "eghn train a --seed 1 --device cpu --set train.threads=1")
    True
    >>> _setting("OMP_NUM_THREADS=1 eghn train a --seed 2") == _setting("eghn train a --seed 1")
    True
    >>> _setting("EGHN_X=1 eghn train a") == _setting("eghn train a")
    False
    >>> _setting("eghn train a --set protocol=paper --seed 2") == _setting(
    ...     "eghn train a --seed 1 --set protocol='\"paper\"'")
    True
    """
    try:
        tokens = shlex.split(command)
    except ValueError:
        tokens = command.split()
    while tokens and re.fullmatch(r"(OMP|MKL)_NUM_THREADS=\d+", tokens[0]):
        tokens = tokens[1:]
    tokens = [re.sub(r'^([\w.]+)="(.*)"$', r"\1=\2", t) for t in tokens]
    text = re.sub(r"--seed\s+\d+|--no-progress|--device\s+cpu\b|--set\s+train\.threads=\S+", "", " ".join(tokens))
    return " ".join(text.split())


def collect(paper: Mapping[str, Any], sources: Mapping[str, Mapping[str, Any]],
            tables: Sequence[str] = tuple(TABLES), *, unpublished: bool = False) -> dict[str, list[Cell]]:
    """The cells of every published table, each with the groups of runs that reproduce it.

    Args:
        paper: the content of ``eghn/results/paper.json``.
        sources: result file name -> its content (a ``runs`` mapping of run key -> run record
            with ``data``, ``model``, ``protocol``, ``seed``, ``test_mse`` and ``command``).
        tables: the tables of ``paper`` to collect.
        unpublished: also the cells of a table's rows and columns for which ``paper.json``
            stores no value (their ``paper`` is ``None``): Table 4's ablations without a stored
            number (:func:`ablations`).

    Returns:
        table -> its published cells in the table's order (rows, then columns); cells without a
        run have no groups. See the module's example.

    Example:
        >>> from eghn.train.collected import collect
        >>> paper = {"table9": {"columns": ["A", "B"], "rows": {"EGNN": {"A": 2.0, "B": 3.0}, "EGHN": {"A": 1.0}}}}
        >>> runs = {"r1": {"data": "A", "model": "EGNN, 600-epoch cap", "test_mse": 0.02, "command": "x"}}
        >>> cells = collect(paper, {"mine": {"runs": runs}}, tables=["table9"])["table9"]
        >>> [(c.row, c.column, len(c.groups)) for c in cells]
        [('EGNN', 'A', 1), ('EGNN', 'B', 0), ('EGHN', 'A', 0)]
    """
    cells: dict[str, list[Cell]] = {}
    index: dict[tuple[str, str, str], Cell] = {}
    for table in tables:
        cells[table] = []
        for row, values in paper[table]["rows"].items():
            for column in paper[table]["columns"]:
                if column in values or unpublished:
                    std = paper[table].get("std", {}).get(row, {}).get(column)
                    cell = Cell(table, row, column, values.get(column), paper_std=std)
                    cells[table].append(cell)
                    index[table, row, column] = cell
    groups: dict[tuple[str, str, str, str], Group] = {}
    for source, content in sources.items():
        for key, run in content.get("runs", {}).items():
            table = table_of(run, paper, tables)
            if table is None or "test_mse" not in run:
                continue
            rows = paper[table]["rows"]
            row = next((r for r in sorted(rows, key=len, reverse=True)
                        if run["model"].startswith(r) and (unpublished or run["data"] in rows[r])), "EGHN")
            cell = index.get((table, row, run["data"]))
            if cell is None:
                continue
            gkey = (table, row, run["data"], run["model"] + "|" + _setting(run.get("command", key)))
            if gkey not in groups:
                groups[gkey] = Group()
                cell.groups.append(groups[gkey])
            groups[gkey].runs.append((source, key, run))
    return cells


def table_of(run: Mapping[str, Any], paper: Mapping[str, Any], tables: Sequence[str]) -> str | None:
    """The published table a collected run reproduces: the one its command's shipped config
    belongs to (``tableN/...``, e.g. ``table4/walk_k3``), else the first of ``tables`` with a
    column named as the run's ``data``. A run of one table's
    config never lands in another table's cell: Table 4's ablations on Walk share the column
    ``Walk (Subject 35)`` with Table 2, and count for Table 4 only. ``None``: no such table (or
    its column does not have the run's ``data``).

    Example:
        >>> from eghn.train.collected import table_of
        >>> paper = {"table2": {"columns": ["Walk"]}, "table4": {"columns": ["Walk"]}}
        >>> run = {"data": "Walk", "command": "eghn train table4/walk_k3 --seed 1"}
        >>> table_of(run, paper, ["table2", "table4"]), table_of({"data": "Walk"}, paper, ["table2", "table4"])
        ('table4', 'table2')
        >>> table_of(run, paper, ["table2"])
        >>> table_of({**run, "data": "Run"}, paper, ["table2", "table4"])
    """
    data = run.get("data")
    config = _config_of(run.get("command", ""))
    named = config.split("/", 1)[0] if config and "/" in config else None
    if named in paper:
        return named if named in tables and data in paper[named]["columns"] else None
    return next((t for t in tables if data in paper[t]["columns"]), None)


def verdict_counts(cells: Sequence[tuple[Cell, float]], protocol: str) -> dict[str, int]:
    """How many of ``cells`` (each with its table's ``scale``) eghn reached, came within or missed
    under ``protocol``, judged as the compact status judges one cell: its best group that runs the
    protocol as shipped, else its best group (:meth:`Cell.best`). ``"run"`` counts a group of a
    cell without a published number, ``"cut short"`` (also counted under its verdict) an
    unfinished group; cells without a group of ``protocol`` are not counted.

    Example:
        >>> from eghn.train.collected import Cell, Group, verdict_counts
        >>> def run(model, mse, **kw):
        ...     return Group([("f", "r", {"model": model, "protocol": "released", "test_mse": mse, "command": "x",
        ...                               **kw})])
        >>> cells = [(Cell("table2", "MPNN", "Walk", 36.1, [run("MPNN", 0.117)]), 0.01),
        ...          (Cell("table2", "RF", "Walk", 188.0, [run("RF", 1.958, finished=False)]), 0.01),
        ...          (Cell("table2", "RF", "Run", 521.3, [run("RF", 10.755)]), 0.01),
        ...          (Cell("table2", "GMN", "Run", 44.1), 0.01)]
        >>> verdict_counts(cells, "released"), verdict_counts(cells, "paper")
        ({'reached': 1, 'within': 1, 'missed': 1, 'cut short': 1}, {})
    """
    counts = dict.fromkeys(("reached", "within", "missed", "run", "cut short"), 0)
    for cell, scale in cells:
        best = cell.best(protocol, plain=True) or cell.best(protocol)
        if best is None:
            continue
        counts[cell.verdict(best.mean / scale) or "run"] += 1
        counts["cut short"] += not best.finished
    return {k: n for k, n in counts.items() if n}


@dataclass
class Ablation:
    """One ablation of a table (Table 4) on one data column, beside the full model's runs under
    the same protocol.

    Attributes:
        cell: the ablation's cell (``cell.paper`` is ``None`` where ``paper.json`` stores no value).
        group: eghn's runs of the ablation (:meth:`Cell.best` under the protocol).
        reference: the full model's runs on the same data under the same protocol, as shipped
            (the cell :data:`SAME_AS` names; ``None``: not run).

    Example:
        >>> from eghn.train.collected import Ablation, Cell, Group
        >>> def runs(*values):
        ...     return Group([("f", f"r{s}", {"seed": s, "test_mse": v}) for s, v in enumerate(values, 1)])
        >>> full = runs(0.046, 0.049, 0.047)
        >>> ablation = Ablation(Cell("table4", "K=8", "Walk", None), runs(0.060, 0.052, 0.071), full)
        >>> round(ablation.difference, 4), ablation.separation
        (0.0137, 'above')
        >>> Ablation(Cell("table4", "K=3", "Walk", None), runs(0.041, 0.045), full).separation
        'too few seeds'
    """

    cell: Cell
    group: Group
    reference: Group | None

    @property
    def difference(self) -> float | None:
        """The ablation's mean test MSE minus the full model's (``None`` without a reference)."""
        return None if self.reference is None else self.group.mean - self.reference.mean

    @property
    def separation(self) -> str:
        """``"above"`` or ``"below"``: every seed of the ablation lies above (below) every seed of
        the full model; ``"overlap"``: the seeds interleave; ``"too few seeds"``: either side has
        fewer than :data:`SEEDS_ENOUGH` seeds; ``"no full model"``: the reference was not run.
        With three seeds on each side and no real difference, "above" or "below" happens by
        chance with the probability ``separation_chance(3, 3)`` (the exact rank test)."""
        if self.reference is None:
            return "no full model"
        if min(len(self.group.runs), len(self.reference.runs)) < SEEDS_ENOUGH:
            return "too few seeds"
        if min(self.group.values) > max(self.reference.values):
            return "above"
        if max(self.group.values) < min(self.reference.values):
            return "below"
        return "overlap"


def separation_chance(n: int, m: int) -> float:
    """The probability that ``n`` values all lie above, or all below, ``m`` others when all
    ``n + m`` come from one distribution (every order equally likely): ``2 / C(n + m, n)``, the
    two-sided p-value of the exact rank test (Mann-Whitney U) at complete separation.

    >>> separation_chance(3, 3), separation_chance(2, 3)
    (0.1, 0.2)
    """
    return 2 / math.comb(n + m, n)


def ablations(paper: Mapping[str, Any], sources: Mapping[str, Mapping[str, Any]], table: str = "table4",
              protocol: str = "eghn") -> list[Ablation]:
    """Every ablation of ``table`` that has runs under ``protocol``, per data column, beside the
    full model: the runs of the cell that :data:`SAME_AS` names for the table's full-model row
    (Table 4's K = 5 is Table 2's EGHN), under the same protocol, as shipped.

    Rows with runs but no value in ``paper.json`` count (``collect(..., unpublished=True)``);
    a table's ``tableN/`` configs never count for the full model's cell (:func:`table_of`).

    Example:
        >>> from eghn.train.collected import ablations
        >>> paper = {"table2": {"columns": ["Walk"], "rows": {"EGHN": {"Walk": 8.5}}},
        ...          "table4": {"columns": ["Walk"], "rows": {"EGHN (K=5)": {"Walk": 8.5}, "K=8": {}}}}
        >>> def run(config, seed, mse):
        ...     return {"data": "Walk", "model": "K=8" if "k8" in config else "EGHN", "protocol": "eghn",
        ...             "seed": seed, "test_mse": mse, "command": f"eghn train {config} --seed {seed}"}
        >>> runs = {f"{c}{s}": run(c, s, v) for c, values in (("mocap/walk_eghn", (0.046, 0.049, 0.047)),
        ...         ("table4/walk_k8", (0.060, 0.052, 0.071))) for s, v in enumerate(values, 1)}
        >>> found = ablations(paper, {"f": {"runs": runs}})
        >>> [(a.cell.row, a.cell.column, len(a.group.runs), a.separation) for a in found]
        [('K=8', 'Walk', 3, 'above')]
    """
    full = next(((row, target) for (t, row), target in SAME_AS.items() if t == table), None)
    if full is None:
        raise ValueError(f"{table} has no full-model row to compare its ablations with (SAME_AS)")
    full_row, (full_table, full_cell_row) = full
    cells = collect(paper, sources, tables=list(dict.fromkeys([full_table, table])), unpublished=True)
    found = []
    for cell in cells[table]:
        group = cell.best(protocol)
        if cell.row == full_row or group is None:
            continue
        ref = next((c for c in cells[full_table] if c.row == full_cell_row and c.column == cell.column), None)
        reference = ref.best(protocol, plain=True) if ref is not None else None
        found.append(Ablation(cell, group, reference))
    return found


def trained_configs(sources: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """The configs that the collected runs of ``sources`` trained: the name after ``eghn train``
    in each run's command.

    >>> trained_configs({"f": {"runs": {"r": {"command": "eghn train mocap/run_eghn --seed 2"}}}})
    {'mocap/run_eghn'}
    """
    return {config for content in sources.values() for run in content.get("runs", {}).values()
            if (config := _config_of(run.get("command", "")))}


def _config_of(command: str) -> str | None:
    """The config a run's command trains: the name after ``eghn train`` (``None`` if there is none)."""
    m = re.search(r"eghn train (\S+)", str(command))
    return m.group(1) if m else None


def results_dir() -> Path | None:
    """``docs/results`` of the source checkout this package is imported from, if there is one
    (an installed wheel has no collected runs).

    Example:
        >>> from eghn.train.collected import results_dir
        >>> folder = results_dir()
        >>> folder is None or (folder.name, folder.parent.name) == ("results", "docs")
        True
    """
    path = Path(__file__).resolve().parents[2] / "docs" / "results"
    return path if path.is_dir() else None


def read_collected(directory: str | Path | None = None, sources: Sequence[str] = tuple(STATUS_SOURCES), *,
                   unpublished: bool = False) -> dict[str, list[Cell]]:
    """:func:`collect` on the published tables and the result files of ``directory``.

    Args:
        directory: a folder of result files (default: :func:`results_dir`).
        sources: the names of the result files (``NAME.json``) to read.
        unpublished: also the cells without a value in ``paper.json`` (see :func:`collect`).

    Raises:
        FileNotFoundError: no such folder, or a result file is missing.

    Example:
        >>> import json, tempfile
        >>> from pathlib import Path
        >>> from eghn.train.collected import read_collected
        >>> folder = Path(tempfile.mkdtemp())
        >>> run = {"data": "single (3,3)", "model": "EGHN", "test_mse": 0.03, "seed": 1, "command": "x"}
        >>> _ = (folder / "mine.json").write_text(json.dumps({"runs": {"r1": run}}))
        >>> cells = read_collected(folder, sources=["mine"])["table1"]
        >>> [(c.row, c.column) for c in cells if c.groups]
        [('EGHN', 'single (3,3)')]
    """
    from .reproduce import paper_results

    return collect(paper_results(), read_result_files(directory, sources), unpublished=unpublished)


def read_result_files(directory: str | Path | None = None, sources: Sequence[str] = tuple(STATUS_SOURCES),
                      *, missing_ok: bool = False) -> dict[str, dict[str, Any]]:
    """The result files ``NAME.json`` of ``directory`` for each name in ``sources``, parsed, by name.

    Args:
        directory: a folder of result files (default: :func:`results_dir`).
        sources: the names of the result files to read.
        missing_ok: leave out the names that have no file instead of raising.

    Raises:
        FileNotFoundError: no such folder, or (without ``missing_ok``) a result file is missing.

    Example:
        >>> import json, tempfile
        >>> from pathlib import Path
        >>> from eghn.train.collected import read_result_files
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "mine.json").write_text(json.dumps({"runs": {}}))
        >>> read_result_files(folder, sources=["mine", "absent"], missing_ok=True)
        {'mine': {'runs': {}}}
    """
    folder = Path(directory) if directory is not None else results_dir()
    if folder is None or not folder.is_dir():
        raise FileNotFoundError(f"no folder of collected results at {folder} (docs/results of a source checkout)")
    paths = {name: folder / f"{name}.json" for name in sources}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing and not missing_ok:
        raise FileNotFoundError(f"no result file {', '.join(missing)}")
    return {name: json.loads(path.read_text()) for name, path in paths.items() if path.is_file()}


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.csv`` as numbers (empty fields are NaN).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "metrics.csv"
    >>> _ = p.write_text("epoch,val_mse,step_share\\n5,0.5,\\n10,0.25,0.9\\n")
    >>> [(row["epoch"], row["val_mse"]) for row in read_metrics(p)]
    [(5.0, 0.5), (10.0, 0.25)]
    """
    with open(path, newline="") as fh:
        return [{k: float(v) if v not in ("", None) else math.nan for k, v in row.items()}
                for row in csv.DictReader(fh)]


def unit_label(scale: float) -> str:
    """The unit of a table's errors as its caption writes it.

    >>> unit_label(0.01), unit_label(1.0)
    ('test MSE ×10⁻²', 'test MSE (Å²)')
    """
    if scale == 1.0:
        return "test MSE (Å²)"
    exponent = round(math.log10(scale))
    digits = str(-exponent).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"test MSE ×10⁻{digits}" if exponent < 0 else f"test MSE / {scale:g}"


def _describe(cell: Cell, group: Group, *, with_cell: bool = True) -> str:
    """"ROW · COLUMN — PROTOCOL; VARIANT": the changed ``--set`` settings (``key=value``) only
    where the model label does not already say what differs."""
    variant = cell.variant(group)
    keys = [] if variant else overrides(group.first.get("command", ""), values=True)
    text = group.first.get("protocol", "?") + (" + " + ", ".join(keys) if keys else "")
    text += f"; {variant}" if variant else ""
    return f"{cell.row} · {cell.column} — {text}" if with_cell else f"{cell.row}: {text}"


def _spans_decades(values: Sequence[float]) -> bool:
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    return bool(positive) and max(positive) / min(positive) >= 10


def _scale(cells: Sequence[Cell], scale: float | None) -> float:
    if scale is not None:
        return scale
    from .reproduce import paper_results

    return float(paper_results()[cells[0].table]["scale"]) if cells else 1.0


def paper_vs_eghn(cells: Sequence[Cell], scale: float | None = None, *, title: str = ""):
    """Dot plot of the paper's value against eghn's runs, one line per run setting.

    Each line is one :class:`Group` of a published cell: the paper's value (grey diamond) and
    eghn's mean test MSE with a bar of ± one standard deviation where the setting ran with
    several seeds, coloured by protocol (``released`` blue, ``paper`` orange), filled when
    every seed finished and hollow when cut short. The axis is logarithmic where the values
    span a decade or more. Cells without a run are left out.

    Args:
        cells: the cells of one table (from :func:`collect` or :func:`read_collected`).
        scale: the table's unit in the data's units (``paper.json``'s ``scale``: ``0.01`` for
            ×10⁻², ``1.0`` for Å²); default: the published table's.
        title: the figure's title.

    Returns:
        a :class:`matplotlib.figure.Figure`, open in pyplot (so that the documentation's plot
        directive and sphinx-gallery show it; close it with ``plt.close(fig)``).

    Example:
        >>> cells = [Cell("table9", "EGHN", "A", 9.0,
        ...               [Group([("f", "r1", {"model": "EGHN", "protocol": "paper",
        ...                                     "test_mse": 0.08, "command": "c"})])])]
        >>> fig = paper_vs_eghn(cells, 0.01)
        >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
        ['EGHN · A — paper']
        >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    scale = _scale(cells, scale)
    lines = [(cell, group) for cell in cells for group in cell.groups]
    fig = plt.figure(figsize=(9.0, 0.32 * len(lines) + 1.6), layout="constrained")
    ax = fig.subplots()
    values: list[float] = []
    for y, (cell, group) in enumerate(lines):
        colour = _PROTOCOL_COLOURS.get(group.first.get("protocol", ""), "tab:gray")
        mean, std = group.mean / scale, group.std / scale
        ax.errorbar([mean], [y], xerr=[std] if len(group.runs) > 1 else None, fmt="o", ms=6, color=colour,
                    markerfacecolor=colour if group.finished else "white", capsize=3, zorder=3)
        values.append(mean)
        if isinstance(cell.paper, (int, float)):
            ax.plot([cell.paper], [y], "D", color="0.45", ms=5, zorder=2)
            values.append(float(cell.paper))
    ax.set_yticks(range(len(lines)), [_describe(c, g) for c, g in lines], fontsize=8)
    ax.set_ylim(len(lines) - 0.5, -0.5)
    if _spans_decades(values):
        ax.set_xscale("log")
    ax.set_xlabel(unit_label(scale) + (", log scale" if ax.get_xscale() == "log" else ""), fontsize=9)
    ax.grid(axis="x", which="both", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    shown = {g.first.get("protocol", "") for c in cells for g in c.groups}
    handles = [Line2D([], [], ls="", marker="D", color="0.45", label="paper"),
               *(Line2D([], [], ls="", marker="o", color=c, label=f"eghn, {p} protocol")
                 for p, c in _PROTOCOL_COLOURS.items() if p in shown or p != "eghn"),
               Line2D([], [], ls="", marker="o", color="0.3", markerfacecolor="white", label="cut short")]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    return fig


def _curve_panel(ax: Any, column: str, cells: Sequence[Cell], folder: Path, scale: float, k: int, *,
                 many: bool) -> int:
    """One panel of :func:`learning_curves`: the paper's lines and the runs' curves of ``column``;
    returns the next colour index."""
    levels: list[float] = []
    annotated = 0
    for cell in cells:
        if isinstance(cell.paper, (int, float)):
            ax.axhline(cell.paper, color="0.45", ls="--", lw=1)
            ax.annotate(f"paper {cell.row}", (0.99, cell.paper), xycoords=("axes fraction", "data"),
                        ha="right", va="bottom" if annotated % 2 == 0 else "top", fontsize=7, color="0.35")
            annotated += 1
            levels.append(float(cell.paper))
        for group in cell.groups:
            label = _describe(cell, group, with_cell=False) + ("" if group.finished else " (cut short)")
            for j, (_, key, _) in enumerate(group.runs):
                path = folder / "run_files" / key / "metrics.csv"
                if not path.is_file():
                    continue
                rows = [r for r in read_metrics(path) if math.isfinite(r.get("val_mse", math.nan))]
                if not rows:
                    continue
                curve = [r["val_mse"] / scale for r in rows]
                levels.append(min(curve))
                ax.plot([r["epoch"] for r in rows], curve, lw=1, color=f"C{k % 10}", ls="-" if k < 10 else "--",
                        alpha=1.0 if j == 0 else 0.5,
                        label=(f"{column} · " if many else "") + label if j == 0 else None)
            k += 1
    ax.set_yscale("log")
    if levels:  # spikes (a diverging run) would hide the differences that matter: clip them
        ax.set_ylim(0.8 * min(levels), 4 * max(levels))
    ax.set_xlabel("epoch", fontsize=9)
    ax.set_ylabel("validation " + unit_label(scale).removeprefix("test "), fontsize=9)
    ax.set_title(column, fontsize=9)
    ax.grid(which="both", alpha=0.3)
    return k


def learning_curves(cells: Sequence[Cell], scale: float | None = None, directory: str | Path | None = None, *,
                    title: str = ""):
    """Validation MSE against the epoch of every collected run of a table, one panel per column.

    The curves are read from ``run_files/<key>/metrics.csv`` under ``directory``; the paper's
    value of each row with a run in that column is a dashed grey line. Logarithmic MSE axis,
    from a little below the lowest value to four times the highest best value (a diverging
    run's spike is cut off). Runs without a ``metrics.csv`` are left out; a cut-short run is
    marked so in the legend.

    Args:
        cells: the cells of one table (from :func:`read_collected`).
        scale: the table's unit in the data's units (see :func:`paper_vs_eghn`).
        directory: the folder of result files (default: :func:`results_dir`).
        title: the figure's title.

    Returns:
        a :class:`matplotlib.figure.Figure`, open in pyplot (so that the documentation's plot
        directive and sphinx-gallery show it; close it with ``plt.close(fig)``).

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> (folder / "run_files" / "r1").mkdir(parents=True)
        >>> _ = (folder / "run_files" / "r1" / "metrics.csv").write_text("epoch,val_mse\\n5,0.2\\n10,0.1\\n")
        >>> cells = [Cell("table9", "EGHN", "A", 9.0,
        ...               [Group([("f", "r1", {"model": "EGHN", "protocol": "paper",
        ...                                     "test_mse": 0.08, "command": "c"})])])]
        >>> fig = learning_curves(cells, 0.01, folder)
        >>> [float(y) for y in fig.axes[0].get_lines()[-1].get_ydata()]
        [20.0, 10.0]
        >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    import matplotlib.pyplot as plt

    scale = _scale(cells, scale)
    folder = Path(directory) if directory is not None else results_dir()
    columns = list(dict.fromkeys(c.column for c in cells if c.groups))
    fig = plt.figure(figsize=(9.0, 3.4 + 0.16 * sum(len(c.groups) for c in cells)), layout="constrained")
    axes = fig.subplots(1, max(len(columns), 1), squeeze=False)[0]
    k = 0
    for ax, column in zip(axes, columns, strict=False):
        k = _curve_panel(ax, column, [c for c in cells if c.column == column and c.groups], folder, scale, k,
                         many=len(columns) > 1)
    handles = [h for ax in axes for h in ax.get_lines() if not h.get_label().startswith("_")]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=1, fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
