"""One command per paper table: train every cell over several seeds, tabulate beside the paper.

``eghn reproduce table2`` trains every config of Table 2 for seeds ``1..S`` (each run in
``<out>/<table>-<protocol>[-quick]/<config>/seed<k>``), then writes ``<table>.md`` and
``<table>.csv`` with the mean +- standard deviation (over the finished seeds, ``ddof=0``; the
mean alone for one seed) of the test MSE at the best validation epoch, beside the published
number (``eghn/results/paper.json``), all in the paper's units (the CSV's ``scale`` column:
MSE / scale), and ``<table>.png``, the same as a figure (:mod:`eghn.train.plots`; needs
matplotlib). A cell whose model is missing, cannot take a config option, or runs out of memory
is reported as such instead of stopping the table; a seed that diverges leaves the others
running, and its cell says how many seeds diverged.

One command can run a whole campaign (:func:`campaign`): several tables, several protocols
and any seeds (``--seeds 3``: seeds 1 to 3; ``--seeds 4,5`` or ``1,3-5``: those seeds), with
``--jobs N`` trainings at a time, each in a worker process with one torch thread. Each run --
a config, a protocol and a seed -- is trained once, even when several cells or tables use it
(:mod:`eghn.train.runs`). A campaign resumes and never reruns: a finished run is reused, a diverged
one is reported as diverged again (its ``diverged.json``; delete it to retry), and an
interrupted one resumed from its ``last.pt``, when its resolved config -- every ``--set`` option
included -- and the eghn version match; otherwise it is moved aside to
``seed<k>.replaced-<time>`` and trained again. Every run ends with a stop reason
(:data:`~eghn.train.runs.STOP_REASONS`); ``campaign.json`` in each table's folder, rewritten
whenever a run starts or ends, records the command, the eghn version and commit, and per run its
overrides, the ``eghn train`` command that trains it alone, its stop reason, best epoch, test
MSE, wall time, the version that trained it and its learning curve. ``collect`` (CLI:
``--collect DIR``) copies the files of the finished and diverged runs, never a checkpoint, into
``DIR/run_files/<key>/`` beside ``DIR/campaign_<table>_<protocol>.json``.

Every run follows one *protocol* (:data:`PROTOCOLS`), named in its config, its ``result.json``
and the tables: ``"released"`` (the default: the sample counts, input features and batching of
the authors' released code, the most likely source of the published numbers) or ``"paper"``
(the counts and inputs the paper's text gives); each config's ``[protocols]`` tables hold the
settings that differ. The EGHN configs also define ``"eghn"``, eghn's own recipe: the
released protocol's training data with stabilisers that change the model (not a reproduction).

With ``quick=True`` every config's ``[quick]`` table is applied (reduced data, width and
epochs): the table then finishes on a 2-core CPU in minutes and is labelled as not comparable.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import shlex
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..io import DirLock
from .runs import RunRecord, RunSpec, _status_of, collect_runs, parse_seeds, run_all, source_commit, write_campaign

__all__ = ["PROTOCOLS", "TABLES", "Cell", "CellResult", "TableSpec", "campaign", "paper_results", "reproduce",
           "write_table"]

#: The protocols a reproduction can follow (the first is the default).
PROTOCOLS: dict[str, str] = {
    "released": "the authors' released code: its sample counts, input features and batching",
    "paper": "the paper's text: its sample counts and input features",
    "eghn": "eghn's own recipe (EGHN configs only): the released protocol's training data with the "
            "stabilisers of the Training stability page; not a reproduction",
}


@dataclass(frozen=True)
class Cell:
    """One measured number: ``row`` x ``column`` of the paper's table from config ``config``.

    ``transform`` (``{"rotate": bool, "translate": float}``) evaluates the trained model of
    ``config`` again under random test-time transformations instead of reading its test MSE.

    Example:
        >>> from eghn.train.reproduce import Cell
        >>> cell = Cell("EGHN", "Run (Subject 9)", "mocap/run_eghn", transform={"rotate": True, "translate": 0.0})
        >>> cell.config, cell.transform["rotate"]
        ('mocap/run_eghn', True)
    """

    row: str
    column: str
    config: str
    transform: dict[str, Any] | None = None


@dataclass(frozen=True)
class TableSpec:
    """The cells of one paper table (:data:`TABLES`).

    Example:
        >>> from eghn.train.reproduce import TABLES
        >>> spec = TABLES["table1"]
        >>> spec.key, len(spec.cells), spec.cells[0].config
        ('table1', 16, 'table1/egnn_single_3x3')
    """

    key: str
    cells: tuple[Cell, ...]


@dataclass
class CellResult:
    """The test MSE of every seed of one :class:`Cell` (``status``: ``"ok"`` or why it has none).

    Example:
        >>> from eghn.train.reproduce import Cell, CellResult
        >>> r = CellResult(Cell("EGHN", "Run (Subject 9)", "mocap/run_eghn"), values=[0.5, 0.7])
        >>> round(r.mean, 6), round(r.std, 6)  # the standard deviation with ddof = 0
        (0.6, 0.1)
    """

    cell: Cell
    values: list[float] = field(default_factory=list)
    status: str = "ok"

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        if not self.values:
            return math.nan
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / len(self.values))


def _table1() -> TableSpec:
    cells = []
    for model, label in (("egnn", "EGNN"), ("eghn", "EGHN")):
        for jname, jlabel in (("single", "single"), ("multi", "multiple")):
            for m, a in ((3, 3), (5, 5), (5, 10), (10, 10)):
                cells.append(Cell(label, f"{jlabel} ({m},{a})", f"table1/{model}_{jname}_{m}x{a}"))
    return TableSpec("table1", tuple(cells))


_T2_MODELS = (
    ("mpnn", "MPNN"),
    ("rf", "RF"),
    ("tfn", "TFN"),
    ("se3_transformer", "SE(3)-Tr."),
    ("egnn", "EGNN"),
    ("gmn", "GMN"),
    ("eghn", "EGHN"),
    ("eghn_released", "EGHN (released architecture)"),
)
_SUBJECTS = (("walk", "Walk (Subject 35)"), ("run", "Run (Subject 9)"))
_ABLATIONS = (
    ("k3", "K=3"),
    ("k8", "K=8"),
    ("emmp_mpnn", "EMMP -> MPNN (non-equivariant)"),
    ("no_hierarchy", "no hierarchy (s_i = 1)"),
    ("emmp_egnn", "EMMP -> EGNN"),
    ("no_connectivity", "no connectivity loss"),
    ("global_only", "A_global for all EMMPs"),
    ("local_only", "A_local for all EMMPs"),
)

#: The paper's tables as lists of cells.
TABLES: dict[str, TableSpec] = {
    "table1": _table1(),
    "table2": TableSpec(
        "table2",
        tuple(
            Cell(label, col, f"mocap/{subj}_{model}")
            for model, label in _T2_MODELS
            for subj, col in _SUBJECTS
        ),
    ),
    "table3": TableSpec(
        "table3",
        (
            Cell("MPNN", "MSE", "protein/adk_mpnn"),
            Cell("MPNN", "MSE (test-time rotation)", "protein/adk_mpnn", {"rotate": True}),
            Cell("TFN", "MSE", "protein/adk_tfn"),
            Cell("SE(3)-Tr.", "MSE", "protein/adk_se3_transformer"),
            Cell("EGHN", "MSE", "protein/adk_eghn"),
            Cell("EGHN", "MSE (test-time rotation)", "protein/adk_eghn", {"rotate": True}),
        ),
    ),
    "table4": TableSpec(
        "table4",
        tuple(
            [Cell("EGHN (K=5)", col, f"mocap/{subj}_eghn") for subj, col in _SUBJECTS]
            + [
                Cell(label, col, f"table4/{subj}_{key}")
                for key, label in _ABLATIONS
                for subj, col in _SUBJECTS
            ]
        ),
    ),
}


def paper_results() -> dict[str, Any]:
    """The published numbers of Tables 1-4 (``eghn/results/paper.json``).

    Example:
        >>> from eghn.train.reproduce import paper_results
        >>> t1 = paper_results()["table1"]
        >>> t1["scale"], t1["columns"][0], t1["rows"]["EGHN"]["single (3,3)"] > 0
        (0.01, 'single (3,3)', True)
    """
    return json.loads((resources.files("eghn") / "results" / "paper.json").read_text())



def _evaluate_transformed(run_dir: Path, transform: dict[str, Any], seed: int, device: str | None) -> float:
    """The test MSE of a run's best checkpoint under the cell's test-time transformation, drawn
    from ``1000 + seed``."""
    from .trained import evaluate_run

    return evaluate_run(run_dir, device=device, rotate=bool(transform.get("rotate")),
                        translate=float(transform.get("translate", 0.0)), seed=1000 + seed)["mse_transformed"]


@dataclass
class _Part:
    """One table under one protocol: its folder, its cells and the runs they need, in order."""

    table: str
    protocol: str
    folder: Path
    cells: list[Cell]
    specs: list[RunSpec] = field(default_factory=list)


def _check_names(tables: Sequence[str], protocols: Sequence[str], overrides: Sequence[str]) -> None:
    """Unknown protocols and tables, and a protocol chosen by an override, are refused."""
    if not tables or not protocols:
        raise ValueError("give at least one table and one protocol")
    for protocol in protocols:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if any(o.partition("=")[0].strip() == "protocol" for o in overrides):
        raise ValueError("choose the protocol with protocol= (CLI: --protocol), not with a protocol=... override")
    for table in tables:
        if table not in TABLES:
            raise KeyError(f"unknown table {table!r}; choose one of {', '.join(sorted(TABLES))}")


def _selected_cells(tables: Sequence[str], only: Sequence[str]) -> dict[str, list[Cell]]:
    """The cells of each table to run (``only`` those configs); every ``only`` config must be in a table."""
    cells = {t: [c for c in TABLES[t].cells if not only or c.config in only] for t in tables}
    configs = {c.config for t in tables for c in TABLES[t].cells}
    unmatched = [o for o in only if o not in configs]
    if unmatched:
        raise ValueError(
            f"--only {unmatched} matches no config of {', '.join(tables)}; "
            f"{'its' if len(tables) == 1 else 'their'} configs: {', '.join(sorted(configs))}"
        )
    return {t: cs for t, cs in cells.items() if cs}


def _plan(tables: Sequence[str], protocols: Sequence[str], seeds: Sequence[int], *, only: Sequence[str],
          out: Path, quick: bool, options: dict[str, Any]) -> list[_Part]:
    """One :class:`_Part` per table and protocol, with the runs its cells need.

    A run (config, protocol, seed) is trained once for the whole campaign: it lives in the folder
    of the first of its tables that already holds it, else of the first that needs it.
    """
    cells = _selected_cells(tables, only)
    parts = [_Part(t, p, out / (f"{t}-{p}-quick" if quick else f"{t}-{p}"), cs)
             for p in protocols for t, cs in cells.items()]
    specs: dict[tuple[str, str, int], RunSpec] = {}
    for part in parts:
        for config in dict.fromkeys(c.config for c in part.cells):
            holders = [q.folder for q in parts
                       if q.protocol == part.protocol and any(c.config == config for c in q.cells)]
            for seed in seeds:
                key = (config, part.protocol, seed)
                if key not in specs:
                    specs[key] = RunSpec(config, part.protocol, seed, _run_dir(config, seed, holders), quick=quick,
                                         **options)
                part.specs.append(specs[key])
    return parts


def _run_dir(config: str, seed: int, folders: Sequence[Path]) -> Path:
    """``<folder>/<config, / as __>/seed<k>`` in the first folder that holds the run, else the first."""
    name = config.replace("/", "__")
    for folder in folders:
        run_dir = folder / name / f"seed{seed}"
        if run_dir.is_dir() and any(run_dir.iterdir()):
            return run_dir
    return folders[0] / name / f"seed{seed}"


def _seed_text(seeds: Sequence[int]) -> str:
    """``seeds`` as a ``--seeds`` value: ranges joined by commas (``"3-3"``: seed 3 alone)."""
    spans: list[list[int]] = []
    for s in seeds:
        if spans and s == spans[-1][1] + 1:
            spans[-1][1] = s
        else:
            spans.append([s, s])
    return ",".join(f"{a}-{b}" for a, b in spans)


def _command_line(tables: Sequence[str], protocols: Sequence[str], seeds: Sequence[int], jobs: int, *,
                  quick: bool, device: str | None, out: Path, only: Sequence[str], overrides: Sequence[str],
                  collect: Path | None) -> str:
    """The ``eghn reproduce`` command that runs this campaign."""
    words = ["eghn", "reproduce", *tables]
    for protocol in protocols:
        words += ["--protocol", protocol]
    words += ["--seeds", _seed_text(seeds), "--jobs", str(jobs), "--out", str(out)]
    words += ["--quick"] if quick else []
    words += ["--device", device] if device else []
    for config in only:
        words += ["--only", config]
    for option in overrides:
        words += ["--set", option]
    words += ["--collect", str(collect)] if collect is not None else []
    return shlex.join(words)


def campaign(
    tables: str | Sequence[str],
    *,
    seeds: int | str | Sequence[int] = 3,
    protocols: str | Sequence[str] = ("released",),
    jobs: int = 1,
    quick: bool = False,
    device: str | None = None,
    out: str | Path = "reproduce",
    only: Sequence[str] = (),
    overrides: Sequence[str] = (),
    progress: bool = True,
    echo: Callable[[str], None] = print,
    collect: str | Path | None = None,
    command: str | None = None,
) -> dict[tuple[str, str], list[CellResult]]:
    """Train every cell of ``tables`` under every protocol of ``protocols`` for ``seeds`` and
    write each table's ``<table>.md``/``.csv``/``.png`` and ``campaign.json``.

    Each run (config, protocol, seed) is trained once (:mod:`eghn.train.runs`), even when several
    cells or tables use it, at most ``jobs`` at a time (``jobs > 1``: in worker processes with one
    torch thread each). ``seeds``: a count (seeds ``1..n``) or seeds and ranges such as
    ``"4,5"`` or ``"1,3-5"`` (:func:`~eghn.train.runs.parse_seeds`). A cell's mean and standard
    deviation are over its finished seeds; a diverged seed does not stop the others, and the
    cell's status says how many diverged. ``collect``: a folder into which the files of the
    finished and diverged runs are copied (:func:`~eghn.train.runs.collect_runs`).
    ``command`` is the command line recorded in ``campaign.json`` (default: the
    ``eghn reproduce`` command equivalent to the call).

    Returns:
        the per-cell results (values: test MSE per finished seed) of each ``(table, protocol)``.

    Example:
        The call trains models for minutes, so it is skipped when the docs are tested; its arguments are
        checked before anything is trained.

        >>> from eghn.train.reproduce import campaign
        >>> results = campaign(["table2", "table4"], seeds="1-2", jobs=2, quick=True,
        ...                    only=["mocap/run_eghn"])  # doctest: +SKIP
        >>> campaign("table2", seeds="2-1")
        Traceback (most recent call last):
        ...
        ValueError: bad seed range '2-1' in '2-1': the first seed is larger than the last
    """
    from .. import __version__

    tables = [tables] if isinstance(tables, str) else list(dict.fromkeys(tables))
    protocols = [protocols] if isinstance(protocols, str) else list(dict.fromkeys(protocols))
    only = [only] if isinstance(only, str) else list(only)
    _check_names(tables, protocols, overrides)
    seed_list = parse_seeds(seeds)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    out = Path(out)
    collect = Path(collect) if collect is not None else None
    options = {"overrides": tuple(overrides), "device": device, "progress": progress}
    parts = _plan(tables, protocols, seed_list, only=only, out=out, quick=quick, options=options)
    header = {"eghn_version": __version__, "commit": source_commit() or "unknown",
              "command": command or _command_line(tables, protocols, seed_list, jobs, quick=quick, device=device,
                                                  out=out, only=only, overrides=overrides, collect=collect),
              "tables": tables, "protocols": protocols, "seeds": list(seed_list), "jobs": jobs, "only": only,
              "overrides": list(overrides)}
    with contextlib.ExitStack() as stack:
        for part in parts:
            part.folder.mkdir(parents=True, exist_ok=True)
            stack.enter_context(DirLock(part.folder, "campaign folder"))
        return _run_campaign(parts, seed_list, jobs, header, quick=quick, device=device, echo=echo, collect=collect)


def _part_header(part: _Part, header: Mapping[str, Any], quick: bool) -> dict[str, Any]:
    return {"table": part.table, "protocol": part.protocol, "quick": quick, **header,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _run_campaign(parts: Sequence[_Part], seeds: Sequence[int], jobs: int, header: Mapping[str, Any], *,
                  quick: bool, device: str | None, echo: Callable[[str], None],
                  collect: Path | None) -> dict[tuple[str, str], list[CellResult]]:
    """Train the runs of ``parts``, then write each table (and its collection)."""
    for table in dict.fromkeys(p.table for p in parts):
        if quick:
            echo(f"[quick mode] {table}: reduced data, model width and epochs (each config's [quick] table); "
                 "the numbers show that the pipeline runs, they are NOT comparable to the paper.")
    skipped = [t for t in header["tables"] if t not in {p.table for p in parts}]
    if skipped:
        echo(f"[only] no config of {', '.join(skipped)} is among --only {header['only']}: skipped")

    def save(records: Mapping[RunSpec, RunRecord]) -> None:
        for part in parts:
            write_campaign(part.folder / "campaign.json", _part_header(part, header, quick),
                           [records[s] for s in part.specs])

    specs = list(dict.fromkeys(s for p in parts for s in p.specs))
    echo(f"{len(specs)} run{'s' if len(specs) != 1 else ''} for {len(parts)} table"
         f"{'s' if len(parts) != 1 else ''}, at most {jobs} at a time")
    t0 = time.perf_counter()
    records = run_all(specs, jobs=jobs, echo=echo, on_change=save)
    wall = time.perf_counter() - t0
    results = {}
    for part in parts:
        by_seed = {(s.config, s.seed): records[s] for s in part.specs}
        res = [_cell_result(c, [by_seed[c.config, s] for s in seeds], part.folder, device, echo) for c in part.cells]
        _write_part(part, res, len(seeds), wall, quick=quick, echo=echo)
        if collect is not None:
            name = f"campaign_{part.table}_{part.protocol}{'_quick' if quick else ''}.json"
            path = collect_runs(collect, name, _part_header(part, header, quick), [records[s] for s in part.specs])
            echo(f"collected the finished and diverged runs of {part.table} ({part.protocol}) in {path}")
        results[(part.table, part.protocol)] = res
    return results


def _write_part(part: _Part, results: Sequence[CellResult], seeds: int, wall: float, *, quick: bool,
                echo: Callable[[str], None]) -> None:
    """``<table>.md``, ``.csv`` and ``.png`` of one table under one protocol."""
    for r in results:
        summary = _fmt_measured(r, 1.0, digits=4) + f" ({len(r.values)} seed{'s' if len(r.values) > 1 else ''}"
        summary += f"; {r.status})" if r.status != "ok" else ")"
        echo(f"[{part.table} {part.protocol}] {r.cell.row} / {r.cell.column}: "
             + (summary if r.values else r.status))
    md, csv_path = write_table(part.table, results, part.folder, quick=quick, seeds=seeds, wall_s=wall,
                               protocol=part.protocol)
    echo(f"wrote {md} and {csv_path} ({wall:,.0f} s)")
    figure = _write_figure(part.table, results, part.folder, quick=quick, echo=echo)
    if figure is not None:
        echo(f"wrote {figure}")
    echo(md.read_text())


def _partial_status(records: Sequence[RunRecord]) -> str:
    """``"ok"`` when every seed finished, else e.g. ``"2 of 3 seeds; 1 diverged"``."""
    done = sum(r.finished for r in records)
    if done == len(records):
        return "ok"
    others = Counter(r.stop_reason for r in records if not r.finished)
    return f"{done} of {len(records)} seeds; " + "; ".join(f"{n} {why}" for why, n in others.items())


def _cell_result(cell: Cell, records: Sequence[RunRecord], folder: Path, device: str | None,
                 echo: Callable[[str], None]) -> CellResult:
    """The cell's values over its finished seeds; a failed run (not a divergence) leaves none."""
    res = CellResult(cell, status=_partial_status(records))
    failed = next((r for r in records if r.stop_reason == "failed"), None)
    if failed is not None:
        res.status = failed.message
        return res
    for r in records:
        if not r.finished:
            continue
        if not cell.transform:
            res.values.append(float(r.test))
            continue
        try:
            res.values.append(_evaluate_transformed(r.spec.run_dir, cell.transform, r.spec.seed, device))
        except Exception as e:  # one failing evaluation must not stop the table
            res.status, res.values = _status_of(e), []
            with (folder / "errors.log").open("a") as log_file:
                log_file.write(f"== {cell.config} {cell.transform} seed {r.spec.seed}\n{traceback.format_exc()}\n")
            echo(f"[{cell.row} / {cell.column}] test-time {cell.transform}: {res.status}")
            break
    return res


def reproduce(
    table: str,
    *,
    seeds: int | str | Sequence[int] = 3,
    quick: bool = False,
    device: str | None = None,
    out: str | Path = "reproduce",
    only: Sequence[str] = (),
    overrides: Sequence[str] = (),
    progress: bool = True,
    echo: Callable[[str], None] = print,
    protocol: str = "released",
    jobs: int = 1,
    collect: str | Path | None = None,
) -> list[CellResult]:
    """Train every cell of ``table`` for ``seeds`` under ``protocol`` and write ``<table>.md``/``.csv``.

    One table under one protocol of :func:`campaign`; ``seeds`` is a count (seeds ``1..n``) or
    seeds and ranges (``"4,5"``, ``"1,3-5"``, a list of integers).

    Returns the per-cell results (values: test MSE per finished seed).

    Example:
        The call trains models for minutes, so it is skipped when the docs are tested; its arguments are
        checked before anything is trained.

        >>> from eghn.train.reproduce import reproduce
        >>> results = reproduce("table2", seeds=1, quick=True, only=["mocap/run_eghn"])  # doctest: +SKIP
        >>> reproduce("table9")
        Traceback (most recent call last):
        ...
        KeyError: "unknown table 'table9'; choose one of table1, table2, table3, table4"
    """
    if not isinstance(table, str) or not isinstance(protocol, str):
        raise ValueError("reproduce() takes one table and one protocol; use campaign() for several")
    results = campaign(table, seeds=seeds, protocols=protocol, jobs=jobs, quick=quick, device=device, out=out,
                       only=only, overrides=overrides, progress=progress, echo=echo, collect=collect)
    return results[(table, protocol)]


def _markdown_rows(rows: Sequence[str], cols: Sequence[str], by: Mapping[tuple[str, str], CellResult],
                   paper: Mapping[str, Any], scale: float) -> list[str]:
    """The Markdown table: one line per model, the paper's values then the measured ones."""
    header = ["Model"] + [f"{c} paper" for c in cols] + [f"{c} measured" for c in cols]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        prow = paper.get("rows", {}).get(row, {})
        cells = [row] + [_fmt_paper(prow.get(c)) for c in cols]
        for c in cols:
            r = by.get((row, c))
            if r is None:
                cells.append("")
            elif r.values:
                cells.append(_fmt_measured(r, scale) + (f" ({r.status})".replace("|", "/") if r.status != "ok" else ""))
            else:
                cells.append(r.status.replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


_CSV_COLUMNS = ["table", "protocol", "row", "column", "config", "transform", "quick", "scale", "paper", "mean",
                "std", "n_seeds", "values", "status"]


def _write_csv_table(path: Path, table: str, results: Sequence[CellResult], paper: Mapping[str, Any], scale: float,
                     *, quick: bool, protocol: str) -> None:
    """``<table>.csv``: one line per cell, values divided by the paper's ``scale``."""
    from ..io import atomic_write

    with atomic_write(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(_CSV_COLUMNS)
        for r in results:
            pv = paper.get("rows", {}).get(r.cell.row, {}).get(r.cell.column)
            w.writerow([table, protocol, r.cell.row, r.cell.column, r.cell.config, json.dumps(r.cell.transform or {}),
                        quick, scale, "" if pv is None else pv, f"{r.mean / scale:.6g}" if r.values else "",
                        f"{r.std / scale:.6g}" if len(r.values) > 1 else "", len(r.values),
                        json.dumps([float(f"{v / scale:.8g}") for v in r.values]), r.status])


def _write_figure(table: str, results: Sequence[CellResult], folder: Path, *, quick: bool,
                  echo: Callable[[str], None]) -> Path | None:
    """``<folder>/<table>.png``: measured beside published test MSE (skipped without matplotlib)."""
    from .plots import write_table_figure

    paper = paper_results().get(table, {})
    scale = float(paper.get("scale", 1.0))
    rows = list(dict.fromkeys(r.cell.row for r in results))
    cols = list(dict.fromkeys(r.cell.column for r in results))
    measured = {(r.cell.row, r.cell.column): (r.mean / scale, r.std / scale, len(r.values))
                for r in results if r.values}
    published = {(row, col): v for row, vals in paper.get("rows", {}).items() for col, v in vals.items()
                 if isinstance(v, (int, float))}
    unit = "Å²" if table == "table3" else (f"in units of {scale:g}" if scale != 1.0 else "")
    note = "quick mode: reduced data and epochs, NOT comparable to the paper" if quick else ""
    try:
        return write_table_figure(folder / f"{table}.png", paper.get("title", table), rows, cols, measured,
                                  published, unit=unit, note=note, echo=echo)
    except Exception as exc:  # a figure must never fail a finished reproduction
        echo(f"{table}.png not written: {exc}")
        return None


def _fmt_measured(r: CellResult, scale: float, digits: int = 2) -> str:
    """``mean +- std`` over seeds in units of ``scale``; the mean alone for one seed."""
    if len(r.values) < 2:
        return f"{r.mean / scale:.{digits}f}"
    return f"{r.mean / scale:.{digits}f} +- {r.std / scale:.{digits}f}"


def _fmt_paper(v: Any) -> str:
    if v is None:
        return "-"
    return v if isinstance(v, str) else f"{v:g}"


def write_table(
    table: str, results: Sequence[CellResult], folder: Path, *, quick: bool, seeds: int, wall_s: float,
    protocol: str = "released",
) -> tuple[Path, Path]:
    """Write ``<folder>/<table>.md`` (paper vs. measured) and ``<table>.csv`` (one line per cell).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from eghn.train.reproduce import Cell, CellResult, write_table
        >>> results = [CellResult(Cell("EGHN", "Run (Subject 9)", "mocap/run_eghn"), values=[0.5])]
        >>> md, csv_path = write_table("table2", results, Path(tempfile.mkdtemp()), quick=True, seeds=1, wall_s=60)
        >>> md.name, csv_path.name, md.read_text().startswith("# ")
        ('table2.md', 'table2.csv', True)
    """
    paper = paper_results().get(table, {})
    scale = float(paper.get("scale", 1.0))
    unit = " in the paper's units" if scale == 1.0 else f" in units of {scale:.0e}"
    rows: list[str] = []
    cols: list[str] = []
    for r in results:
        if r.cell.row not in rows:
            rows.append(r.cell.row)
        if r.cell.column not in cols:
            cols.append(r.cell.column)
    by = {(r.cell.row, r.cell.column): r for r in results}
    lines = [f"# {paper.get('title', table)}", "",
             f"Protocol: **{protocol}** ({PROTOCOLS.get(protocol, 'unknown')}).", ""]
    if quick:
        lines += [
            "**Quick mode** (`--quick`): reduced data, width and epochs on purpose; these numbers check "
            "that the pipeline runs and are NOT comparable to the paper.",
            "",
        ]
    lines += [
        "Measured: test MSE at the best validation epoch, "
        + (f"mean +- std over {seeds} seeds (those that finished; a cell with fewer says why); "
           if seeds > 1 else "one seed; ")
        + f"values{unit}. Paper: {paper_results().get('source', '')}.",
        "",
    ]
    lines += _markdown_rows(rows, cols, by, paper, scale)
    lines += ["", f"Wall time of this command: {wall_s:,.0f} s."]
    md = folder / f"{table}.md"
    from ..io import atomic_write_text

    atomic_write_text(md, "\n".join(lines) + "\n")
    csv_path = folder / f"{table}.csv"
    _write_csv_table(csv_path, table, results, paper, scale, quick=quick, protocol=protocol)
    return md, csv_path
