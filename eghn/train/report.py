"""Render the results of :func:`eghn.train.reproduce.reproduce`: a table of measured cells
beside the paper's numbers (HTML in notebooks and the gallery) and a figure of training curves
and measured-vs-published bars."""

from __future__ import annotations

import html
import json
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
    sphinx-gallery render it.
    """

    def __init__(self, table: str, results: Sequence[CellResult], mode: str) -> None:
        paper = paper_results()[table]
        self.scale = float(paper["scale"])
        self.title, self.mode = paper["title"], mode
        self.rows: list[tuple[str, str, str, str]] = []
        for r in results:
            published = paper["rows"].get(r.cell.row, {}).get(r.cell.column)
            n = len(r.values)
            measured = (f"{r.mean / self.scale:.2f} ± {r.std / self.scale:.2f} ({n} seed{'s' if n > 1 else ''})"
                        if r.values else r.status)
            self.rows.append((r.cell.row, r.cell.column, "—" if published is None else str(published), measured))

    def __repr__(self) -> str:
        return "\n".join([self.title, self.mode, *(" | ".join(row) for row in self.rows)])

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in ("model", "column", "paper", "measured"))
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

    Needs matplotlib; returns the figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    paper = paper_results()[table]
    scale = float(paper["scale"])
    unit = "" if scale == 1 else f" / {scale:g}"  # plotted in the paper's units
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.8))
    seen = set()
    for k, r in enumerate(results):
        if r.cell.config in seen or r.cell.transform:
            continue
        seen.add(r.cell.config)
        for j, hist in enumerate(run_histories(out, table, r, quick)):
            ax0.plot([h["epoch"] for h in hist], [h["val_mse"] / scale for h in hist], color=f"C{k}",
                     alpha=1.0 if j == 0 else 0.4, label=f"{r.cell.row} {r.cell.column}" if j == 0 else None)
    values = [y for line in ax0.get_lines() for y in line.get_ydata()]
    wide = len(values) > 1 and max(values) > 5 * min(values)  # log scale only for a wide range
    ax0.set(xlabel="epoch", ylabel="validation MSE" + unit, yscale="log" if wide else "linear",
            title="training curves")
    ax0.legend(fontsize=7)
    labels = [f"{r.cell.row}\n{r.cell.column}" for r in results]
    measured = [r.mean / scale if r.values else np.nan for r in results]
    published = [paper["rows"].get(r.cell.row, {}).get(r.cell.column) for r in results]
    published = [p if isinstance(p, (int, float)) else np.nan for p in published]
    x = np.arange(len(results))
    ax1.bar(x - 0.2, published, 0.4, label="paper", color="0.6")
    ax1.bar(x + 0.2, measured, 0.4, label="measured" + (" (quick)" if quick else ""), color="tab:red")
    ax1.set_xticks(x, labels, fontsize=7, rotation=90 if len(x) > 6 else 0)
    ax1.set(ylabel="test MSE" + unit, yscale="log", title="measured vs. paper")
    ax1.legend(fontsize=7)
    fig.tight_layout()
    return fig
