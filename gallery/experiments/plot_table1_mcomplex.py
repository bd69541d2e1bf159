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

and renders the measured test MSE (at the best validation epoch) beside the paper's numbers
in full mode.
With ``EGHN_GALLERY=fast`` (the documentation build) it trains EGNN and EGHN on the single
(3,3) system only, with the configs' ``[quick]`` data (100/50/50 trajectories) and width, in
batches of 25 for 20 epochs (80 optimiser steps) and one seed: **those numbers are a pipeline
check, not comparable to the paper**, and the page shows the collected full-length runs
above them. With ``EGHN_GALLERY=full`` it runs every cell of the table with
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
# Collected full-length runs
# --------------------------
# Except in full mode, the page first shows the full-length runs of this table collected in
# the source checkout's ``docs/results/`` (:mod:`eghn.train.collected`; the same runs as on
# :doc:`/results`): each run setting's test MSE in the table's units beside the paper's value,
# with its protocol, seeds and whether it finished, a dot plot of the two (one line per
# setting) and the runs' validation curves. Nothing here is trained on this page.

if not RUN.full:
    RUN.show_collected()
    plt.show()

# %%
# Training
# --------
# Every config trains with Adam (``lr = 5e-4``) and reports the test MSE at its best validation
# evaluation; batch size and evaluation interval are the paper's (100, every 5 epochs) unless
# the config's ``[quick]`` table changes them in fast mode. Only the log lines that summarise
# each run are shown. In fast mode this and the sections below are a **pipeline check**: they
# show that training, evaluation and reporting run end to end, and their numbers are never
# set beside the paper's.

results = RUN.train()


# %%
# Measured
# --------
# Test MSE in the units of the table's caption, mean :math:`\pm` standard deviation over the
# seeds; beside the paper's numbers in full mode only.


ResultTable(RUN.table, results, RUN.mode, compare=RUN.full)

# %%
# Training curves and test errors
# -------------------------------
# Left: validation MSE at every evaluation of each run (read from the run's
# ``result.json``). Right: the measured test MSE; in full mode beside the published number
# (a log axis where the values span a decade or more), in fast mode alone.


plot_results(RUN.table, results, RUN.out, quick=not RUN.full)
plt.show()
RUN.finish()
