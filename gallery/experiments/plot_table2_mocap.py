"""
Table 2: CMU motion capture
===========================

Table 2 of the paper: from the pose and velocity of the 31 joints of a CMU motion-capture
skeleton at one frame, predict the pose 30 frames later, for walking (Subject 35) and running
(Subject 9), with seven models: MPNN, Radial Field, TFN, SE(3)-Transformer, EGNN, GMN and EGHN.

This page runs :func:`eghn.train.reproduce.reproduce`, the function behind

.. code-block:: bash

   eghn reproduce table2            # the paper's protocol: 14 configs x 3 seeds (GPU)
   eghn reproduce table2 --quick    # reduced data, width and epochs (CPU, minutes)

and renders the measured test MSE (at the best validation epoch) beside the paper's numbers.
With ``EGHN_GALLERY=fast`` (the documentation build) it trains MPNN, EGNN and EGHN on the
*run* data only, with the configs' ``[quick]`` sample counts (50/30/30) and width, in
batches of 10 for 10 epochs (50 optimiser steps) and one seed: **those numbers are not
comparable to the paper**. With ``EGHN_GALLERY=full`` it runs every cell with three seeds.
The data are read from
``$EGHN_DATA_DIR/mocap`` or ``../shared/data/mocap`` beside the source checkout (see
:doc:`/user_guide/mocap`); the documentation build leaves this page out when they are missing.
"""

# %%
# What runs
# ---------
import os
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from eghn.data.paths import cache_dir
from eghn.train.report import ResultTable, plot_results
from eghn.train.reproduce import reproduce

TABLE = "table2"
FULL = os.environ.get("EGHN_GALLERY", "fast") == "full"
if FULL:
    ONLY: tuple[str, ...] = ()  # every cell of the table
    SEEDS = 3
    OVERRIDES = []
    OUT = Path(os.environ.get("EGHN_REPRODUCE_DIR", cache_dir() / "reproduce")).expanduser()
    MODE = ("FULL mode: every model of the table, the paper's data and epochs, 3 seeds "
            f"(device: {'cuda' if torch.cuda.is_available() else 'cpu'})")
else:
    torch.set_num_threads(1)  # predictable on a busy CPU
    ONLY = ("mocap/run_mpnn", "mocap/run_egnn", "mocap/run_eghn")
    SEEDS = 1
    OVERRIDES = ["train.epochs=10", "train.batch_size=10"]
    OUT = Path(tempfile.mkdtemp(prefix="eghn-gallery-table2-"))
    MODE = ("FAST mode (CPU, reduced): "
            "3 of 14 configs (run only), quick data and width, batch 10, 10 epochs, 1 seed -- "
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


ResultTable(TABLE, results, MODE)

# %%
# Training curves and the comparison
# ----------------------------------
# Left: validation MSE at every evaluation of each run (read from the run's
# ``result.json``). Right: measured test MSE beside the published number (log scale).


plot_results(TABLE, results, OUT, quick=not FULL)
plt.show()
if not FULL:  # the fast runs only served this page; full runs are kept for reuse
    shutil.rmtree(OUT, ignore_errors=True)
