"""
Table 4: ablations on motion capture
====================================

Table 4 of the paper takes EGHN apart on the motion-capture data: other numbers of clusters
(``K = 3, 8`` instead of 5), EMMP replaced by a non-equivariant MPNN or by EGNN layers, no
hierarchy (one cluster holding every node: ``clusters = [1]``), no connectivity loss, and only the global or only the
local edges in every EMMP.

This page runs :func:`eghn.train.reproduce.reproduce`, the function behind

.. code-block:: bash

   eghn reproduce table4            # released protocol (--protocol paper: the paper's): 18 configs x 3 seeds (GPU)
   eghn reproduce table4 --quick    # reduced data, width and epochs (CPU, minutes)

and renders the measured test MSE (at the best validation epoch) beside the paper's numbers
in full mode (the paper's ablation table is only partly stored in ``eghn/results/paper.json``; cells
without a published value show a dash). With ``EGHN_GALLERY=fast`` (the documentation build)
it trains EGHN with ``K = 5`` and three ablations -- ``K = 3``, no connectivity loss, EMMP
replaced by MPNN -- on the *run* data only, with the configs' ``[quick]`` sample counts and
width, in batches of 10 for 10 epochs and one seed: **those numbers are a pipeline check, not
comparable to the paper**, and the page shows the collected full-length runs above them.
With ``EGHN_GALLERY=full`` it runs every cell with three seeds. Like :ref:`Table 2
<sphx_glr_auto_examples_experiments_plot_table2_mocap.py>`, it needs the motion-capture data.
"""

# %%
# What runs
# ---------
import matplotlib.pyplot as plt

from eghn.train.report import GalleryRun, ResultTable, plot_results

RUN = GalleryRun.from_env(
    "table4",
    fast_only=("mocap/run_eghn", "table4/run_k3", "table4/run_no_connectivity",
               "table4/run_emmp_mpnn"),
    fast_summary="EGHN and 3 of 16 ablations (run only), quick data and width, batch 10, 10 epochs, 1 seed",
    fast_overrides=["train.epochs=10", "train.batch_size=10"],
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
