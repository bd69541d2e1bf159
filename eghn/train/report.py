"""Render the results of :func:`eghn.train.reproduce.reproduce`: a table of measured cells
beside the paper's numbers (HTML in notebooks and the gallery) and a figure of training curves
and measured-vs-published bars."""

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

    def finish(self) -> None:
        """Remove the runs of fast mode (they only served the page); full runs are kept."""
        if not self.full:
            shutil.rmtree(self.out, ignore_errors=True)


class ResultTable:
    """Measured cells of a table beside the published numbers (in the paper's units).

    ``repr`` gives plain text; ``_repr_html_`` an HTML table, so notebooks and
    sphinx-gallery render it. "—" marks a cell without a published value in
    ``eghn/results/paper.json``; the paper column is left out when no shown cell has one.
    """

    def __init__(self, table: str, results: Sequence[CellResult], mode: str) -> None:
        paper = paper_results()[table]
        self.scale = float(paper["scale"])
        self.title, self.mode = paper["title"], mode
        self.rows: list[tuple[str, str, str, str]] = []
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
        # a paper column without any stored value says nothing: leave it out
        self.header = ("model", "column", "paper", "measured")
        if self.rows and all(row[2] == "—" for row in self.rows):
            self.header = ("model", "column", "measured")
            self.rows = [(a, b, d) for a, b, _, d in self.rows]

    def __repr__(self) -> str:
        return "\n".join([self.title, self.mode, *(" | ".join(row) for row in self.rows)])

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        return (f'<p><strong>{html.escape(self.mode)}</strong></p><table class="docutils align-default">'
                f"<caption>{html.escape(self.title)}</caption><thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table>")


def run_histories(out: Path, table: str, result: CellResult, quick: bool,
                  protocol: str = "released") -> Iterator[list[dict[str, Any]]]:
    """Evaluation histories of every seed of one cell, read from the runs' ``result.json``
    (the folder layout of :func:`~eghn.train.reproduce.reproduce`)."""
    base = Path(out) / (f"{table}-{protocol}-quick" if quick else f"{table}-{protocol}") / result.cell.config.replace(
        "/", "__")
    for path in sorted(base.glob("seed*/result.json")):
        yield json.loads(path.read_text())["history"]


def plot_results(table: str, results: Sequence[CellResult], out: Path, *, quick: bool):
    """Validation curves of every run (left) and measured vs. published test MSE (right).

    Both on linear axes in the paper's units; the bars are horizontal so that long labels
    never overlap, and the legends sit outside the data. Needs matplotlib; returns the figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    paper = paper_results()[table]
    scale = float(paper["scale"])
    exponent = round(math.log10(scale)) if scale != 1 else 0
    unit = "Å²" if table == "table3" else (f"in units of 10$^{{{exponent}}}$" if scale != 1 else "")
    label_unit = f" ({unit})" if unit else ""
    n = len(results)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9.5, max(4.0, 0.45 * n + 2.2)), layout="constrained",
                                   gridspec_kw={"width_ratios": [1, 1.1]})
    seen = set()
    for k, r in enumerate(results):
        if r.cell.config in seen or r.cell.transform:
            continue
        seen.add(r.cell.config)
        for j, hist in enumerate(run_histories(out, table, r, quick)):
            ax0.plot([h["epoch"] for h in hist], [h["val_mse"] / scale for h in hist], color=f"C{k % 10}",
                     alpha=1.0 if j == 0 else 0.4, marker="o", ms=3,
                     label=f"{r.cell.row}, {r.cell.column}" if j == 0 else None)
    ax0.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax0.set_xlabel("epoch", fontsize=10)
    ax0.set_ylabel("validation MSE" + label_unit, fontsize=10)
    ax0.set_title("training curves", fontsize=11)
    ax0.grid(alpha=0.3)
    if ax0.get_lines():
        ax0.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=1, frameon=False)
    labels = [f"{r.cell.row}, {r.cell.column}" + (" (rotated)" if r.cell.transform else "") for r in results]
    measured = [r.mean / scale if r.values else np.nan for r in results]
    spread = [r.std / scale if len(r.values) > 1 else 0.0 for r in results]
    published = [paper["rows"].get(r.cell.row, {}).get(r.cell.column) for r in results]
    published = [p if isinstance(p, (int, float)) else np.nan for p in published]
    y = np.arange(n)
    ax1.barh(y - 0.2, published, 0.4, label="paper", color="0.65")
    ax1.barh(y + 0.2, measured, 0.4, xerr=spread, label="measured" + (" (reduced run)" if quick else ""),
             color="tab:red", error_kw={"lw": 1})
    for yi, (m, p) in enumerate(zip(measured, published, strict=True)):
        if np.isnan(p):
            ax1.text(0, yi - 0.2, " no published value", va="center", fontsize=7, color="0.4")
        if np.isnan(m):
            ax1.text(0, yi + 0.2, " " + results[yi].status, va="center", fontsize=7, color="0.4")
    ax1.set_yticks(y, labels, fontsize=9)
    ax1.invert_yaxis()
    ax1.set_xlim(left=0)
    ax1.set_xlabel("test MSE" + label_unit, fontsize=10)
    ax1.set_title("measured vs. paper", fontsize=11)
    ax1.grid(axis="x", alpha=0.3)
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2, frameon=False)
    return fig
