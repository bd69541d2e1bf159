"""One command per paper table: train every cell over several seeds, tabulate beside the paper.

``eghn reproduce table2`` trains every config of Table 2 for seeds ``1..S`` (each run in
``<out>/<table>-<protocol>[-quick]/<config>/seed<k>``; a finished run is reused, and an interrupted
one resumed, only when its resolved config -- every ``--set`` option included -- and the eghn
version match; otherwise it is moved aside to ``seed<k>.replaced-<time>`` and trained
again), then writes ``<table>.md`` and ``<table>.csv`` with the mean +- standard deviation
(over seeds, ``ddof=0``; the mean alone for one seed) of the test MSE at the best validation
epoch, beside the published number (``eghn/results/paper.json``), all in the paper's units (the
CSV's ``scale`` column: MSE / scale), and ``<table>.png``, the same as a figure
(:mod:`eghn.train.plots`; needs matplotlib). A cell whose model is missing, cannot take a
config option, or runs out of memory is reported as such instead of stopping the table.

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

import csv
import json
import math
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..io import read_json_object

__all__ = ["PROTOCOLS", "TABLES", "Cell", "CellResult", "TableSpec", "paper_results", "reproduce", "write_table"]

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


def _status_of(err: BaseException) -> str:
    name = type(err).__name__
    msg = str(err).splitlines()[0] if str(err) else name
    if isinstance(err, MemoryError) or "out of memory" in msg.lower():
        return f"OOM: {msg}"
    return f"not run ({name}: {msg})"


def _run_cell_seed(
    cell: Cell,
    seed: int,
    *,
    quick: bool,
    device: str | None,
    run_dir: Path,
    overrides: Sequence[str],
    progress: bool,
    echo: Callable[[str], None],
    protocol: str = "released",
) -> float:
    from .config import load_config
    from .loop import train

    ov = [*overrides, f"seed={seed}"]
    if device:
        ov.append(f"device={json.dumps(device)}")
    if not progress:
        ov.append("train.progress=false")
    config = load_config(cell.config, ov, quick=quick, protocol=protocol)
    result_path = run_dir / "result.json"
    reason = _reuse_mismatch(run_dir, config)
    if reason is None and result_path.is_file():
        echo(f"    seed {seed}: reusing the finished run {run_dir} (same config and eghn version)")
        test = float(read_json_object(result_path)["test"])
    else:
        if reason is not None:
            aside = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
            k = 1
            while aside.exists():
                k += 1
                aside = aside.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}-{k}")
            run_dir.rename(aside)
            echo(f"    seed {seed}: not reusing {run_dir}: {reason}; moved it to {aside.name} and training again")
        test = train(config, run_dir, resume=(run_dir / "last.pt").exists(), echo=echo).test
    if not cell.transform:
        return test
    return _evaluate_transformed(run_dir, cell.transform, seed, device)


#: config keys that change only what is displayed, not what is computed
_COSMETIC = frozenset({"train.progress", "train.tensorboard", "description"})


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _reuse_mismatch(run_dir: Path, config: dict[str, Any]) -> str | None:
    """Why the existing run in ``run_dir`` cannot stand for ``config`` (``None``: it can, or none exists).

    A run is reused (or resumed) only when its resolved config (``config.json``) equals
    ``config`` up to display-only keys and, once finished, its ``result.json`` was written
    by this eghn version.
    """
    from .. import __version__

    if not run_dir.exists() or not any(run_dir.iterdir()):
        return None
    try:
        saved = read_json_object(run_dir / "config.json")
    except ValueError as e:
        return str(e)
    old, new = _flatten(saved), _flatten(config)
    if new.get("data.length_scale", "auto") == "auto":  # resolved from the training data at the start
        old.pop("data.length_scale", None)
        new.pop("data.length_scale", None)
    diff = [k for k in sorted(set(old) | set(new)) if k not in _COSMETIC and old.get(k) != new.get(k)]
    if diff:
        shown = ", ".join(f"{k} {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}" for k in diff[:4])
        return f"it was trained with another config ({shown}{', ...' if len(diff) > 4 else ''})"
    result_path = run_dir / "result.json"
    if result_path.is_file():
        try:
            version = read_json_object(result_path).get("version")
        except ValueError as e:
            return str(e)
        if version != __version__:
            return f"it was trained by eghn {version or '(unknown version)'}, this is eghn {__version__}"
    return None


def _evaluate_transformed(run_dir: Path, transform: dict[str, Any], seed: int, device: str | None) -> float:
    import torch

    from .checkpoint import load_checkpoint
    from .loader import GraphBank
    from .loop import build_datasets, build_model, evaluate_model, select_device

    state = load_checkpoint(run_dir / "best.pt")
    config = state["config"]
    dev = select_device(device or config["device"])
    ds = build_datasets(config, splits=("test",))["test"]
    dtype = torch.float64 if config["train"]["dtype"] == "float64" else torch.float32
    model = build_model(config, ds).to(device=dev, dtype=dtype)
    model.load_state_dict(state["model"])
    bank = GraphBank(ds, dev, dtype, config["train"]["preload"], config["train"]["preload_max_gb"])
    gen = torch.Generator().manual_seed(1000 + seed)
    return evaluate_model(
        model,
        bank,
        config["train"]["batch_size"],
        rotate=bool(transform.get("rotate")),
        translate=float(transform.get("translate", 0.0)),
        generator=gen,
    )


def reproduce(
    table: str,
    *,
    seeds: int = 3,
    quick: bool = False,
    device: str | None = None,
    out: str | Path = "reproduce",
    only: Sequence[str] = (),
    overrides: Sequence[str] = (),
    progress: bool = True,
    echo: Callable[[str], None] = print,
    protocol: str = "released",
) -> list[CellResult]:
    """Train every cell of ``table`` for seeds ``1..seeds`` under ``protocol`` and write
    ``<table>.md``/``.csv``.

    Returns the per-cell results (values: test MSE per seed).

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
    cells = _cells(table, seeds, only, overrides, protocol)
    out = Path(out)
    base = out / (f"{table}-{protocol}-quick" if quick else f"{table}-{protocol}")
    base.mkdir(parents=True, exist_ok=True)
    if quick:
        echo(
            f"[quick mode] {table}: reduced data, model width and epochs (each config's [quick] table); "
            "the numbers show that the pipeline runs, they are NOT comparable to the paper."
        )
    t0 = time.perf_counter()
    results = []
    failed: dict[str, str] = {}
    for k, cell in enumerate(cells, 1):
        echo(
            f"[{k}/{len(cells)}] {cell.row} / {cell.column}: config {cell.config}"
            + (f" + test-time {cell.transform}" if cell.transform else "")
        )
        res = _run_cell(cell, seeds, base, failed, dict(quick=quick, device=device, overrides=overrides,
                                                         progress=progress, echo=echo, protocol=protocol))
        summary = (_fmt_measured(res, 1.0, digits=4) + f" ({len(res.values)} seed{'s' if len(res.values) > 1 else ''})"
                   if res.values else res.status)
        echo(f"    -> {summary}")
        results.append(res)
    wall = time.perf_counter() - t0
    md, csv_path = write_table(table, results, base, quick=quick, seeds=seeds, wall_s=wall, protocol=protocol)
    echo(f"wrote {md} and {csv_path} ({wall:,.0f} s)")
    figure = _write_figure(table, results, base, quick=quick, echo=echo)
    if figure is not None:
        echo(f"wrote {figure}")
    echo(md.read_text())
    return results


def _cells(table: str, seeds: int, only: Sequence[str], overrides: Sequence[str], protocol: str) -> list[Cell]:
    """The cells of ``table`` to run (``only`` those configs), after checking the arguments."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if any(o.partition("=")[0].strip() == "protocol" for o in overrides):
        raise ValueError("choose the protocol with protocol= (CLI: --protocol), not with a protocol=... override")
    if table not in TABLES:
        raise KeyError(f"unknown table {table!r}; choose one of {', '.join(sorted(TABLES))}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    spec = TABLES[table]
    cells = [c for c in spec.cells if not only or c.config in only]
    if not cells:
        raise ValueError(
            f"--only {list(only)} matches no config of {table}; its configs: "
            f"{', '.join(sorted({c.config for c in spec.cells}))}"
        )
    return cells


def _run_cell(cell: Cell, seeds: int, base: Path, failed: dict[str, str], opts: dict[str, Any]) -> CellResult:
    """Every seed of one cell; the first failure (recorded in ``failed`` and ``errors.log``) ends it."""
    res = CellResult(cell)
    if cell.config in failed:
        res.status = failed[cell.config]
        return res
    for seed in range(1, seeds + 1):
        run_dir = base / cell.config.replace("/", "__") / f"seed{seed}"
        try:
            res.values.append(_run_cell_seed(cell, seed, run_dir=run_dir, **opts))
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one failing cell must not stop the table
            res.status = _status_of(e)
            failed[cell.config] = res.status
            with (base / "errors.log").open("a") as log_file:
                log_file.write(f"== {cell.config} seed {seed}\n{traceback.format_exc()}\n")
            res.values.clear()
            break
    return res


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
                cells.append(_fmt_measured(r, scale))
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
        + (f"mean +- std over {seeds} seeds; " if seeds > 1 else "one seed; ")
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
