"""Render the results of :func:`eghn.train.reproduce.reproduce`: a table of measured cells
beside the paper's numbers (HTML in notebooks and the gallery) and a figure of training curves
and measured against published values; a quick run's numbers are shown as a pipeline check,
never beside the paper's."""

from __future__ import annotations

import html
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.paths import cache_dir
from .reproduce import CellResult, paper_results, reproduce

__all__ = ["GalleryRun", "ResultTable", "plot_results", "run_histories"]


@dataclass
class GalleryRun:
    """How a gallery page that reproduces a paper table trains, chosen by ``EGHN_GALLERY``.

    ``full`` (``EGHN_GALLERY=full``): every cell, three seeds, the paper's data and epochs, runs
    kept under ``EGHN_REPRODUCE_DIR`` (default: the cache) for reuse. Otherwise *fast*: the cells
    ``fast_only`` with the configs' ``[quick]`` tables and ``fast_overrides``, one seed, one
    thread, in a temporary directory that :meth:`finish` removes.

    Example:
        Built directly; :meth:`from_env` reads ``EGHN_GALLERY``.

        >>> import tempfile
        >>> from pathlib import Path
        >>> from eghn.train.report import GalleryRun
        >>> out = Path(tempfile.mkdtemp())
        >>> run = GalleryRun("table2", False, ("mocap/run_eghn",), 1, [], out, "FAST mode")
        >>> lines = run.show_collected(out)  # doctest: +ELLIPSIS
        no collected runs here (...)
        >>> run.finish()
        >>> out.exists()
        False
    """

    table: str
    full: bool
    only: tuple[str, ...]
    seeds: int
    overrides: list[str]
    out: Path
    mode: str

    @classmethod
    def from_env(cls, table: str, *, fast_only: Sequence[str], fast_summary: str,
                 overrides: Sequence[str] = (), fast_overrides: Sequence[str] = ()) -> GalleryRun:
        if os.environ.get("EGHN_GALLERY", "fast") == "full":
            out = Path(os.environ.get("EGHN_REPRODUCE_DIR", cache_dir() / "reproduce")).expanduser()
            mode = ("FULL mode: every model of the table, the paper's data and epochs, 3 seeds "
                    f"(device: {'cuda' if torch.cuda.is_available() else 'cpu'})")
            return cls(table, True, (), 3, list(overrides), out, mode)
        torch.set_num_threads(1)  # predictable on a busy CPU
        mode = (f"FAST mode (CPU, reduced): {fast_summary} -- "
                "these numbers only show that the pipeline runs; they are NOT comparable to the paper")
        return cls(table, False, tuple(fast_only), 1, [*overrides, *fast_overrides],
                   Path(tempfile.mkdtemp(prefix=f"eghn-gallery-{table}-")), mode)

    def train(self) -> list[CellResult]:
        """Run :func:`~eghn.train.reproduce.reproduce`, printing only each run's summary lines."""
        start = time.perf_counter()
        results = reproduce(
            self.table, seeds=self.seeds, quick=not self.full, out=self.out, only=self.only,
            overrides=self.overrides, progress=False,
            echo=lambda line: print(line) if line.startswith(("[", "    ->", "done")) else None,
        )
        print(f"trained {len(results)} cells in {time.perf_counter() - start:.0f} s")
        return results

    def show_collected(self, directory: str | Path | None = None) -> list[str]:
        """Print and plot the full-length runs of this table collected in a source checkout.

        Reads the result files of ``directory`` (default ``docs/results`` of the checkout, see
        :mod:`eghn.train.collected`): one line per run setting with its test MSE beside the
        paper's value, protocol, seeds and whether it finished; for a table of ablations (Table 4),
        also the rows without a value in ``paper.json`` ("not stored") and one line per ablation with
        its difference from the full model under the same protocol
        (:func:`~eghn.train.collected.ablations`); then the dot plot of paper against eghn and
        the validation curves (open pyplot figures). Without collected files, or without a run
        of this table, it says so and draws nothing.

        Returns:
            the printed lines.
        """
        from .collected import (
            SAME_AS,
            SEEDS_ENOUGH,
            ablations,
            collect,
            learning_curves,
            paper_vs_eghn,
            read_result_files,
            unit_label,
        )

        of_ablations = any(t == self.table for t, _ in SAME_AS)  # rows without a stored value count
        try:
            sources = read_result_files(directory)
        except FileNotFoundError as exc:
            lines = [f"no collected runs here ({exc})"]
        else:
            paper = paper_results()
            cells = collect(paper, sources, unpublished=of_ablations)[self.table]
            found = ablations(paper, sources, self.table) if of_ablations else []
            scale = float(paper[self.table]["scale"])
            lines = []
            for cell in cells:
                for group in cell.groups:
                    std = f" ± {group.std / scale:.2f}" if len(group.runs) > 1 else ""
                    variant = cell.variant(group)
                    published = "not stored" if cell.paper is None else cell.paper
                    lines.append(
                        f"{cell.row} · {cell.column} ({group.first.get('protocol', '?')}"
                        f"{'; ' + variant if variant else ''}): {group.mean / scale:.2f}{std} "
                        f"(paper {published}); seed{'s' if len(group.runs) > 1 else ''} "
                        f"{', '.join(map(str, group.seeds))}; {'finished' if group.finished else 'cut short'}")
            for ablation in found:
                if ablation.reference is None:
                    continue
                judged = {"above": "every seed above the full model's", "below": "every seed below the full model's",
                          "overlap": "the seeds overlap"}.get(ablation.separation,
                                                              f"not judged ({len(ablation.group.runs)} of "
                                                              f"{SEEDS_ENOUGH} seeds)")
                lines.append(f"{ablation.cell.row} · {ablation.cell.column} minus the full model "
                             f"({ablation.group.first.get('protocol', '?')}, {len(ablation.reference.runs)} seeds): "
                             f"{ablation.difference / scale:+.2f}; {judged}")
            if lines:
                lines.insert(0, f"{unit_label(scale)}, full-length runs collected in docs/results:")
                paper_vs_eghn(cells, scale, title="paper against eghn, per run setting")
                learning_curves(cells, scale, directory, title="validation curves of the collected runs")
            else:
                lines = [f"no full-length run of {self.table} has been collected yet"]
        print("\n".join(lines))
        return lines

    def finish(self) -> None:
        """Remove the runs of fast mode (they only served the page); full runs are kept."""
        if not self.full:
            shutil.rmtree(self.out, ignore_errors=True)


class ResultTable:
    """Measured cells of a table beside the published numbers (in the paper's units).

    ``repr`` gives plain text; ``_repr_html_`` an HTML table, so notebooks and
    sphinx-gallery render it. "—" marks a cell without a published value in
    ``eghn/results/paper.json``; the paper column is left out when no shown cell has one, and
    when ``compare`` is false: the numbers of a quick run are a pipeline check, never shown
    beside the paper's.

    Example:
        >>> from eghn.train.reproduce import Cell, CellResult
        >>> quick = [CellResult(Cell("EGHN", "Run (Subject 9)", "mocap/run_eghn"), values=[0.5])]
        >>> print(repr(ResultTable("table2", quick, "FAST mode", compare=False)).splitlines()[-2:])
        ['model | column | pipeline check (quick run, not comparable)', 'EGHN | Run (Subject 9) | 50.00 (1 seed)']
    """

    def __init__(self, table: str, results: Sequence[CellResult], mode: str, *, compare: bool = True) -> None:
        paper = paper_results()[table]
        self.scale = float(paper["scale"])
        self.title, self.mode = paper["title"], mode
        self.rows: list[tuple[str, ...]] = []
        for r in results:
            published = paper["rows"].get(r.cell.row, {}).get(r.cell.column)
            n = len(r.values)
            if not r.values:
                measured = r.status
            elif n > 1:
                measured = f"{r.mean / self.scale:.2f} ± {r.std / self.scale:.2f} ({n} seeds)"
            else:
                measured = f"{r.mean / self.scale:.2f} (1 seed)"
            self.rows.append((r.cell.row, r.cell.column, "—" if published is None else str(published), measured))
        # a paper column without any stored value says nothing, and a quick run is no comparison
        self.header: tuple[str, ...] = ("model", "column", "paper", "measured")
        if not compare or (self.rows and all(row[2] == "—" for row in self.rows)):
            self.header = ("model", "column", "measured" if compare else "pipeline check (quick run, not comparable)")
            self.rows = [(a, b, d) for a, b, _, d in self.rows]

    def __repr__(self) -> str:
        return "\n".join([self.title, self.mode, " | ".join(self.header), *(" | ".join(row) for row in self.rows)])

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        return (f'<p><strong>{html.escape(self.mode)}</strong></p><table class="docutils align-default">'
                f"<caption>{html.escape(self.title)}</caption><thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table>")


def run_histories(out: Path, table: str, result: CellResult, quick: bool,
                  protocol: str = "released") -> Iterator[list[dict[str, Any]]]:
    """Evaluation histories of every seed of one cell, read from the runs' ``result.json``
    (the folder layout of :func:`~eghn.train.reproduce.reproduce`).

    Example:
        >>> import json, tempfile
        >>> from pathlib import Path
        >>> from eghn.train.report import run_histories
        >>> from eghn.train.reproduce import Cell, CellResult
        >>> out = Path(tempfile.mkdtemp())
        >>> seed1 = out / "table2-released-quick" / "mocap__run_eghn" / "seed1"
        >>> seed1.mkdir(parents=True)
        >>> _ = (seed1 / "result.json").write_text(json.dumps({"history": [{"epoch": 5, "val_mse": 0.5}]}))
        >>> result = CellResult(Cell("EGHN", "Run (Subject 9)", "mocap/run_eghn"), values=[0.5])
        >>> list(run_histories(out, "table2", result, quick=True))
        [[{'epoch': 5, 'val_mse': 0.5}]]
    """
    base = Path(out) / (f"{table}-{protocol}-quick" if quick else f"{table}-{protocol}") / result.cell.config.replace(
        "/", "__")
    for path in sorted(base.glob("seed*/result.json")):
        yield json.loads(path.read_text())["history"]


def _label(cell) -> str:
    """"ROW, COLUMN", with "(rotated)" for a transformed cell whose column does not say so."""
    text = f"{cell.row}, {cell.column}"
    return text + (" (rotated)" if cell.transform and "rotation" not in cell.column else "")


def _curves_panel(ax0: Any, table: str, results: Sequence[CellResult], out: Path, quick: bool, scale: float,
                  label_unit: str) -> None:
    """The left panel of :func:`plot_results`: the validation curve of every run."""
    from matplotlib.ticker import MaxNLocator

    seen = set()
    curves: list[float] = []
    for k, r in enumerate(results):
        if r.cell.config in seen or r.cell.transform:
            continue
        seen.add(r.cell.config)
        for j, hist in enumerate(run_histories(out, table, r, quick)):
            values = [h["val_mse"] / scale for h in hist]
            curves += values
            ax0.plot([h["epoch"] for h in hist], values, color=f"C{k % 10}",
                     alpha=1.0 if j == 0 else 0.4, marker="o", ms=3,
                     label=f"{r.cell.row}, {r.cell.column}" if j == 0 else None)
    if _spans_decades(curves):
        ax0.set_yscale("log")
    ax0.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax0.set_xlabel("epoch", fontsize=10)
    ax0.set_ylabel("validation MSE" + label_unit, fontsize=10)
    ax0.set_title("training curves" + (" (quick run)" if quick else ""), fontsize=11)
    ax0.grid(alpha=0.3)
    if ax0.get_lines():
        ax0.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=1, frameon=False)


def plot_results(table: str, results: Sequence[CellResult], out: Path, *, quick: bool):
    """Validation curves of every run (left) and the measured test MSE (right).

    In the paper's units. With ``quick`` the right panel shows the measured values alone, as a
    pipeline check: a quick run is never drawn beside the paper's numbers. Otherwise it is a
    dot plot of the published value (grey diamond) and the measured mean (± one standard
    deviation over the seeds). Axes are logarithmic where the values span a decade or more.
    Needs matplotlib; returns the figure.

    Example:
        >>> import tempfile
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> from eghn.train.report import plot_results
        >>> from eghn.train.reproduce import Cell, CellResult
        >>> results = [CellResult(Cell("EGHN", "Run (Subject 9)", "mocap/run_eghn"), values=[0.005, 0.007])]
        >>> fig = plot_results("table2", results, tempfile.mkdtemp(), quick=True)
        >>> [ax.get_title() for ax in fig.axes]
        ['training curves (quick run)', 'pipeline check: not comparable to the paper']
        >>> plt.close(fig)
    """
    import matplotlib.pyplot as plt
    import numpy as np

    paper = paper_results()[table]
    scale = float(paper["scale"])
    exponent = round(math.log10(scale)) if scale != 1 else 0
    unit = "Å²" if table == "table3" else (f"in units of 10$^{{{exponent}}}$" if scale != 1 else "")
    label_unit = f" ({unit})" if unit else ""
    n = len(results)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9.5, max(4.0, 0.45 * n + 2.2)), layout="constrained",
                                   gridspec_kw={"width_ratios": [1, 1.1]})
    _curves_panel(ax0, table, results, out, quick, scale, label_unit)
    measured = [r.mean / scale if r.values else np.nan for r in results]
    spread = [r.std / scale if len(r.values) > 1 else 0.0 for r in results]
    published = [paper["rows"].get(r.cell.row, {}).get(r.cell.column) for r in results]
    published = [np.nan if quick or not isinstance(p, (int, float)) else p for p in published]
    y = np.arange(n)
    if not quick:
        ax1.plot(published, y, "D", color="0.45", ms=6, ls="", label="paper")
    ax1.errorbar(measured, y, xerr=spread, fmt="o", ms=6, color="tab:red", capsize=3,
                 label="pipeline check (quick run)" if quick else "measured")
    shown = [v for v in [*measured, *published] if np.isfinite(v)]
    log = _spans_decades(shown)
    for yi, m in enumerate(measured):
        if np.isnan(m):
            ax1.annotate(" " + results[yi].status, (0, yi), xycoords=("axes fraction", "data"), va="center",
                         fontsize=7, color="0.4")
        elif not quick and np.isnan(published[yi]):
            ax1.annotate(" no published value", (0, yi), xycoords=("axes fraction", "data"), va="center",
                         fontsize=7, color="0.4")
    ax1.set_yticks(y, [_label(r.cell) for r in results], fontsize=9)
    ax1.set_ylim(n - 0.5, -0.5)
    if log:
        ax1.set_xscale("log")
    elif shown:
        ax1.set_xlim(left=0, right=1.1 * max(shown))
    ax1.set_xlabel("test MSE" + label_unit + (", log scale" if log else ""), fontsize=10)
    ax1.set_title("pipeline check: not comparable to the paper" if quick else "measured vs. paper", fontsize=11)
    ax1.grid(axis="x", which="both", alpha=0.3)
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2, frameon=False)
    return fig


def _spans_decades(values: Sequence[float]) -> bool:
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    return bool(positive) and max(positive) / min(positive) >= 10
