"""
Table 3: protein molecular dynamics (AdK)
=========================================

Table 3 of the paper: predict the backbone of adenylate kinase (AdK) 15 frames ahead in an
equilibrium MD trajectory, with MPNN, TFN, SE(3)-Transformer and EGHN; MPNN is also scored
under a random rotation of every test sample, which exposes that it is not equivariant (EGHN's
score does not change). TFN and SE(3)-Transformer ran out of memory in the paper.

This page runs :func:`eghn.train.reproduce.reproduce`, the function behind

.. code-block:: bash

   eghn reproduce table3            # released protocol (--protocol paper: the paper's), 1.004 us trajectory (GPU)
   eghn reproduce table3 --quick    # the embedded 98-frame AdK trajectory (CPU, minutes)

and renders the measured test MSE (at the best validation epoch) beside the paper's numbers
in full mode.
With ``EGHN_GALLERY=fast`` (the documentation build) it trains MPNN and EGHN on the short AdK
trajectory embedded in MDAnalysisTests (10/4/4 frame pairs, 6 Å cutoff, the configs'
``[quick]`` width and 4 epochs, one seed): **those numbers are a pipeline check, not
comparable to the paper**, and the page shows the collected full-length runs above them.
With ``EGHN_GALLERY=full`` it runs every cell with three seeds on the paper's trajectory, which
is downloaded once with MDAnalysisData (network access needed on the first run).
"""

# %%
# What runs
# ---------
import matplotlib.pyplot as plt

from eghn.train.report import GalleryRun, ResultTable, plot_results

RUN = GalleryRun.from_env(
    "table3",
    fast_only=("protein/adk_mpnn", "protein/adk_eghn"),
    fast_summary=("MPNN and EGHN on the embedded AdK trajectory (10/4/4 frame pairs), quick width, 4 epochs, "
                  "1 seed"),
    overrides=["data.progress=false"],
    fast_overrides=["data.split_sizes=[10, 4, 4]"],
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
# Every config trains with Adam and reports the test MSE at its best validation evaluation;
# learning rate, batch size and evaluation interval are those of the config's protocol (the
# ``released`` protocol takes the released MD configuration's, :doc:`/fidelity`) unless the
# config's ``[quick]`` table changes them in fast mode. Only the log lines that summarise
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
