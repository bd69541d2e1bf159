"""
Table 1: M-complex simulation
=============================

Table 1 of the paper compares EGNN and EGHN on systems of ``M`` charged rigid complexes of
about ``N/M`` particles each -- (3,3), (5,5), (5,10) and (10,10) -- for a single system type
(``J = 1``) and for five system types mixed (``J = 5``). The task: from the positions and
velocities at frame 10, predict the positions at frame 25 (1500 integration steps later).

This page runs :func:`eghn.train.reproduce.reproduce`, the function behind

.. code-block:: bash

   eghn reproduce table1            # the paper's protocol: 16 configs x 3 seeds (GPU)
   eghn reproduce table1 --quick    # reduced data, width and epochs (CPU, minutes)

and renders the measured test MSE (at the best validation epoch) beside the paper's numbers.
With ``EGHN_GALLERY=fast`` (the documentation build) it trains EGNN and EGHN on the single
(3,3) system only, with the configs' ``[quick]`` data (100/50/50 trajectories) and width, in
batches of 25 for 20 epochs (80 optimiser steps) and one seed: **those numbers are not
comparable to the paper**. With ``EGHN_GALLERY=full`` it runs every cell of the table with
three seeds.
"""

# %%
# What runs
# ---------
import html
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from eghn.data.paths import cache_dir
from eghn.train.reproduce import paper_results, reproduce

TABLE = "table1"
FULL = os.environ.get("EGHN_GALLERY", "fast") == "full"
if FULL:
    ONLY: tuple[str, ...] = ()  # every cell of the table
    SEEDS = 3
    OVERRIDES = ["data.progress=false"]
    OUT = Path(os.environ.get("EGHN_REPRODUCE_DIR", cache_dir() / "reproduce")).expanduser()
    MODE = ("FULL mode: every model of the table, the paper's data and epochs, 3 seeds "
            f"(device: {'cuda' if torch.cuda.is_available() else 'cpu'})")
else:
    torch.set_num_threads(1)  # predictable on a busy CPU
    ONLY = ("table1/egnn_single_3x3", "table1/eghn_single_3x3")
    SEEDS = 1
    OVERRIDES = ["train.epochs=20", "train.batch_size=25", "data.progress=false"]
    OUT = Path(tempfile.mkdtemp(prefix="eghn-gallery-table1-"))
    MODE = ("FAST mode (CPU, reduced): "
            "2 of 16 configs, quick data and width, batch 25, 20 epochs, 1 seed -- "
            "these numbers only show that the pipeline runs; they are NOT comparable to the paper")
print(MODE)

# %%
# Training
# --------
# Every config trains with Adam (lr 5e-4) and reports the test MSE at its best validation
# evaluation; batch size and evaluation interval are the paper's (100, every 5 epochs) unless
# the config's ``[quick]`` table changes them in fast mode. Only the log lines that summarise
# each run are shown.

start = time.perf_counter()
results = reproduce(
    TABLE, seeds=SEEDS, quick=not FULL, out=OUT, only=ONLY, overrides=OVERRIDES, progress=False,
    echo=lambda line: print(line) if line.startswith(("[", "    ->", "done")) else None,
)
print(f"trained {len(results)} cells in {time.perf_counter() - start:.0f} s")


# %%
# Measured beside published
# -------------------------
# Test MSE in the units of the table's caption, mean :math:`\pm` standard deviation over the
# seeds.


class ResultTable:
    """The measured cells beside the paper's numbers; rendered as HTML in the gallery."""

    def __init__(self, table, results, mode):
        paper = paper_results()[table]
        self.scale = float(paper["scale"])
        self.title, self.mode = paper["title"], mode
        self.rows = []
        for r in results:
            published = paper["rows"].get(r.cell.row, {}).get(r.cell.column)
            n = len(r.values)
            measured = (f"{r.mean / self.scale:.2f} ± {r.std / self.scale:.2f} ({n} seed{'s' if n > 1 else ''})"
                        if r.values else r.status)
            self.rows.append((r.cell.row, r.cell.column, "—" if published is None else str(published), measured))

    def __repr__(self):
        lines = [self.title, self.mode]
        lines += [" | ".join(row) for row in self.rows]
        return "\n".join(lines)

    def _repr_html_(self):
        head = "".join(f"<th>{h}</th>" for h in ("model", "column", "paper", "measured"))
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        return (f'<p><strong>{html.escape(self.mode)}</strong></p><table class="docutils align-default">'
                f"<caption>{html.escape(self.title)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


ResultTable(TABLE, results, MODE)

# %%
# Training curves and the comparison
# ----------------------------------
# Left: validation MSE at every evaluation of each run (read from the run's
# ``result.json``). Right: measured test MSE beside the published number (log scale).


def run_histories(table, result, quick):
    base = OUT / (f"{table}-quick" if quick else table) / result.cell.config.replace("/", "__")
    for path in sorted(base.glob("seed*/result.json")):
        yield json.loads(path.read_text())["history"]


def plot_curves_and_bars(table, results, quick):
    paper = paper_results()[table]
    scale = float(paper["scale"])
    unit = "" if scale == 1 else f" / {scale:g}"  # plotted in the paper's units
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.8))
    seen = set()
    for k, r in enumerate(results):
        if r.cell.config in seen or r.cell.transform:
            continue
        seen.add(r.cell.config)
        for j, hist in enumerate(run_histories(table, r, quick)):
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
    ax1.bar(x + 0.2, measured, 0.4, label="measured" + ("" if FULL else " (fast mode)"), color="tab:red")
    ax1.set_xticks(x, labels, fontsize=7, rotation=90 if len(x) > 6 else 0)
    ax1.set(ylabel="test MSE" + unit, yscale="log", title="measured vs. paper")
    ax1.legend(fontsize=7)
    fig.tight_layout()
    return fig


plot_curves_and_bars(TABLE, results, quick=not FULL)
plt.show()
if not FULL:  # the fast runs only served this page; full runs are kept for reuse
    shutil.rmtree(OUT, ignore_errors=True)
