"""
Table 1: M-complex simulation
=============================

Table 1 of the paper compares EGNN and EGHN on systems of ``M`` charged rigid complexes of
about ``N/M`` particles each -- (3,3), (5,5), (5,10) and (10,10) -- for a single system type
(``J = 1``) and for five system types mixed (``J = 5``). The task: from the positions and
velocities at frame 10, predict the positions at frame 25 (1500 integration steps later).

This page runs :func:`eghn.train.reproduce.reproduce`, the function behind

.. code-block:: bash

   eghn reproduce table1            # released protocol (--protocol paper: the paper's): 16 configs x 3 seeds (GPU)
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
import matplotlib.pyplot as plt

from eghn.train.report import GalleryRun, ResultTable, plot_results

RUN = GalleryRun.from_env(
    "table1",
    fast_only=("table1/egnn_single_3x3", "table1/eghn_single_3x3"),
    fast_summary="2 of 16 configs, quick data and width, batch 25, 20 epochs, 1 seed",
    overrides=["data.progress=false"],
    fast_overrides=["train.epochs=20", "train.batch_size=25"],
)
print(RUN.mode)

# %%
# Training
# --------
# Every config trains with Adam (lr 5e-4) and reports the test MSE at its best validation
# evaluation; batch size and evaluation interval are the paper's (100, every 5 epochs) unless
# the config's ``[quick]`` table changes them in fast mode. Only the log lines that summarise
# each run are shown.

results = RUN.train()


# %%
# Measured beside published
# -------------------------
# Test MSE in the units of the table's caption, mean :math:`\pm` standard deviation over the
# seeds.


ResultTable(RUN.table, results, RUN.mode)

# %%
# Training curves and the comparison
# ----------------------------------
# Left: validation MSE at every evaluation of each run (read from the run's
# ``result.json``). Right: measured test MSE beside the published number, on a linear axis.


plot_results(RUN.table, results, RUN.out, quick=not RUN.full)
plt.show()
RUN.finish()
