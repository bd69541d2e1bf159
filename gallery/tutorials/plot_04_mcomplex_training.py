"""
Train EGHN on a small M-complex system
======================================

The M-complex benchmark of the paper's Section 4.1: ``M`` rigid complexes of charged
particles move under their Coulomb forces; from the positions and velocities at frame 10 the
model predicts the positions at frame 25 (1500 integration steps later). Here we simulate a
small system -- three complexes of about three particles, one system type, the "(3,3),
single system" column of Table 1 -- train EGHN on it, compare its predictions with the ground
truth (an analogue of the paper's Fig. 3), and see how the error grows with the prediction
horizon.

``EGHN_GALLERY=fast`` (the documentation build) simulates 200 training trajectories and
trains a narrower model (width 32) for 150 steps of 25 systems on the CPU;
``EGHN_GALLERY=full`` uses 2000 trajectories, width 64 and 3000 steps of 50 systems. Neither
is the paper's protocol (5000 trajectories, 600 epochs, early stopping): for that, run
``eghn reproduce table1`` (see
:ref:`sphx_glr_auto_examples_experiments_plot_table1_mcomplex.py`).
"""

# %%
# Simulating the system
# ---------------------
# :func:`~eghn.data.simulate_mcomplex` integrates the rigid-body dynamics and records a frame
# every 100 steps. The same trajectories give datasets for any pair of frames through
# :meth:`~eghn.data.MComplexDataset.from_trajectories`, which we use below to vary the
# horizon.
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from eghn.data import MComplexDataset, simulate_mcomplex
from eghn.data.mcomplex import linear_extrapolation_baseline
from eghn.models import EGHN
from eghn.train.objective import training_objective

FULL = os.environ.get("EGHN_GALLERY", "fast") == "full"
torch.manual_seed(0)
torch.set_num_threads(1 if not FULL else torch.get_num_threads())  # predictable on a busy CPU
N_TRAIN, N_TEST = (2000, 500) if FULL else (200, 50)
STEPS, BATCH = (3000, 50) if FULL else (150, 25)
HIDDEN = 64 if FULL else 32

start = time.perf_counter()
traj_train = simulate_mcomplex(3, 3, 1, N_TRAIN, seed=43, stream=0)
traj_test = simulate_mcomplex(3, 3, 1, N_TEST, seed=43, stream=2)
print(f"simulated {len(traj_train)} + {len(traj_test)} trajectories of {traj_train.num_frames} frames "
      f"in {time.perf_counter() - start:.1f} s")


def datasets(target_frame):
    """Train and test datasets from frame 10 to ``target_frame`` (the paper: 25)."""
    return (MComplexDataset.from_trajectories(traj_train, split="train", target_frame=target_frame),
            MComplexDataset.from_trajectories(traj_test, split="test", target_frame=target_frame))


train, test = datasets(25)
g = train[0]
print(f"{g.num_nodes} particles, {g.num_edges} global edges (all pairs), "
      f"{g.local_edge_index.shape[1]} local edges (pairs inside one complex)")

# %%
# Training
# --------
# ``EGHN.single_level`` is the paper's model with one pooling level (3 interaction / 3 pooling /
# 1 decoder layers, width 64 -- 32 in the fast build) with :math:`K = 3` clusters, as in the
# paper's M-complex runs.
# The loss is Eq. 16: position MSE plus the connectivity regulariser ``aux["reg_loss"]``.


def fit(train, test, steps, batch_size=BATCH, record_every=20):
    """Train a fresh EGHN with Adam (lr 5e-4); returns the model and (step, train, test) MSEs."""
    torch.manual_seed(0)
    model = EGHN.single_level(train.node_dim, train.edge_dim, train.local_edge_dim, clusters=3, hidden=HIDDEN)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=1e-12)
    # batches are collated once: building graphs is slower than a training step on this scale
    order = torch.randperm(len(train)).tolist()
    batches = [train.collate(order[i:i + batch_size]) for i in range(0, len(order), batch_size)]
    test_batch = test.collate(range(len(test)))
    history = []
    for step in range(steps):
        batch = batches[step % len(batches)]
        out = model(batch)
        objective = training_objective(out, batch.target)  # Eq. 16
        opt.zero_grad()
        objective.loss.backward()
        opt.step()
        if step % record_every == 0 or step == steps - 1:
            with torch.no_grad():
                test_mse = float(((model(test_batch).pos - test_batch.target) ** 2).mean())
            history.append((step, objective.mse.item(), test_mse))
    return model, history


start = time.perf_counter()
model, history = fit(train, test, STEPS)
t_fit, linear_mse = linear_extrapolation_baseline(train, test)
print(f"{STEPS} steps in {time.perf_counter() - start:.1f} s; test MSE {history[-1][2]:.4f} "
      f"(linear extrapolation x + {t_fit:.3f} v: {linear_mse:.4f})")

steps, train_mse, test_mse = zip(*history)
fig, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
ax.plot(steps, train_mse, label="training batch")
ax.plot(steps, test_mse, label="test set")
ax.axhline(linear_mse, color="0.5", ls=":", label="linear extrapolation (test)")
# a learning curve spans orders of magnitude: logarithmic axis
ax.set(xlabel="optimisation step", ylabel="position MSE (simulation units²)", yscale="log")
ax.legend()
plt.show()

# %%
# Predictions against the ground truth
# ------------------------------------
# Three test systems projected on the (x, y) plane: the particles at frame 10 (grey), the
# true positions at frame 25 (green) and EGHN's prediction (red), with the rigid bonds of each
# complex drawn between its particles.

with torch.no_grad():
    test_batch = test.collate(range(len(test)))
    pred = model(test_batch).pos

fig, axs = plt.subplots(1, 3, figsize=(10, 4.2), layout="constrained")
for ax, sample in zip(axs, range(3)):
    mask = (test_batch.batch == sample).numpy()
    bonds = test[sample].local_edge_index.T.tolist()
    for x, colour, label, style in [(test_batch.pos[mask].numpy(), "0.6", "frame 10 (input)", "-"),
                                    (test_batch.target[mask].numpy(), "tab:green", "frame 25 (truth)", "-"),
                                    (pred[mask].numpy(), "tab:red", "frame 25 (EGHN)", "--")]:
        for a, b in bonds:
            ax.plot(x[[a, b], 0], x[[a, b], 1], color=colour, ls=style, lw=1.2)
        ax.scatter(x[:, 0], x[:, 1], color=colour, s=18, label=label, zorder=3)
    err = float(((pred[mask] - test_batch.target[mask]) ** 2).mean())
    ax.set_title(f"test system {sample}: MSE {err:.3f}", fontsize=10)
    ax.set(xlabel="x (simulation units)")
    ax.set_aspect("equal")
axs[0].set(ylabel="y (simulation units)")
fig.legend(*axs[0].get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=9)
plt.show()

# %%
# Every coordinate of every test particle: prediction against truth. Points on the diagonal
# are perfect predictions; the linear extrapolation is shown for comparison.

x0, v0 = test_batch.pos.numpy(), test_batch.vel.numpy()
truth = test_batch.target.numpy().ravel()
fig, ax = plt.subplots(figsize=(4.6, 4.6), layout="constrained")
ax.scatter(truth, (x0 + t_fit * v0).ravel(), s=4, color="0.6", label="linear extrapolation")
ax.scatter(truth, pred.numpy().ravel(), s=4, color="tab:red", label="EGHN")
lim = [truth.min(), truth.max()]
ax.plot(lim, lim, color="k", lw=0.8)
ax.set(xlabel="true coordinate, frame 25 (simulation units)", ylabel="predicted coordinate (simulation units)")
ax.legend(fontsize=8)
plt.show()

# %%
# Error against the prediction horizon
# ------------------------------------
# The further ahead the target frame, the more the complexes rotate and collide and the
# harder the task. We train one EGHN per horizon (same data, same number of steps) and compare
# with the linear extrapolation fitted for that horizon; the paper's setting is 15 frames.

horizons = (5, 10, 15) if not FULL else (2, 5, 10, 15, 20, 25)
eghn_mse, lin_mse = [], []
start = time.perf_counter()
for h in horizons:
    tr_h, te_h = datasets(10 + h)
    if h == 15 and len(test_mse):
        eghn_mse.append(test_mse[-1])  # the model trained above
    else:
        eghn_mse.append(fit(tr_h, te_h, STEPS)[1][-1][2])
    lin_mse.append(linear_extrapolation_baseline(tr_h, te_h)[1])
print(f"{len(horizons)} horizons in {time.perf_counter() - start:.1f} s")
for h, e, lin in zip(horizons, eghn_mse, lin_mse):
    print(f"horizon {h:2d} frames ({100 * h} steps): EGHN {e:.4f}, linear {lin:.4f}")

fig, ax = plt.subplots(figsize=(5.5, 3.4), layout="constrained")
ax.plot(100 * np.asarray(horizons), eghn_mse, "o-", color="tab:red", label="EGHN")
ax.plot(100 * np.asarray(horizons), lin_mse, "s:", color="0.5", label="linear extrapolation")
ax.set(xlabel="horizon (integration steps)", ylabel="test MSE (simulation units²)")
ax.set_ylim(bottom=0)  # a linear axis from zero: the two errors compare by their size
ax.legend()
plt.show()
