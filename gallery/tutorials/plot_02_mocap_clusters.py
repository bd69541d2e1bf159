"""
Motion capture: train EGHN and look at its clusters
===================================================

EGHN on the CMU motion-capture *run* data (Subject 9) of the paper's Section 4.2: from the
pose and velocity of the 31 joints at one frame, predict the pose 30 frames later. After a
short training run we compare predictions with the ground truth (an analogue of the paper's
Fig. 3) and colour the skeleton by the cluster each joint is pooled into (an analogue of
Fig. 4).

``EGHN_GALLERY=fast`` (the documentation build) trains for a few seconds on a subset;
``EGHN_GALLERY=full`` uses the paper's sample sizes and trains much longer. The data are
downloaded once with ``eghn data mocap --download`` (see :doc:`/user_guide/mocap`).
"""

# %%
# Data
# ----
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from eghn.data import MocapDataset
from eghn.models import EGHN
from eghn.testing import equivariance_error
from eghn.train.objective import training_objective

FULL = os.environ.get("EGHN_GALLERY", "fast") == "full"
torch.manual_seed(0)
torch.set_num_threads(1 if not FULL else torch.get_num_threads())  # predictable on a busy CPU

train = MocapDataset(split="train", subject="run", max_samples=None if FULL else 120)
test = MocapDataset(split="test", subject="run", max_samples=None if FULL else 40)
print(f"{len(train)} training and {len(test)} test samples, {train[0].num_nodes} joints, "
      f"{train[0].num_edges} interaction edges, {train[0].local_edge_index.shape[1]} bone edges")

# %%
# Model and training
# ------------------
# ``EGHN.single_level`` is the paper's model with one pooling level (3
# interaction / 3 pooling / 1 decoder layers, width 64), here with :math:`K = 5` clusters as
# in the paper's motion-capture experiments. The loss is Eq. 16: the position error plus
# :math:`\lambda` times the connectivity regulariser, which the model returns as
# ``aux["reg_loss"]``.

model = EGHN.single_level(train.node_dim, train.edge_dim, train.local_edge_dim, clusters=5)
opt = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=1e-12)
test_batch = test.collate(list(range(len(test))))
steps, batch_size = (3000, 100) if FULL else (40, 20)

history = []
start = time.perf_counter()
for step in range(steps):
    idx = torch.randint(len(train), (batch_size,)).tolist()
    batch = train.collate(idx)
    out = model(batch)
    objective = training_objective(out, batch.target)  # Eq. 16
    opt.zero_grad()
    objective.loss.backward()
    opt.step()
    if step % 10 == 0 or step == steps - 1:
        with torch.no_grad():
            test_mse = float(((model(test_batch).pos - test_batch.target) ** 2).mean())
        history.append((step, objective.mse.item(), test_mse))
print(f"{steps} steps in {time.perf_counter() - start:.1f} s; final test MSE {history[-1][2]:.4f}")

steps_, train_mse, test_mse = zip(*history)
fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
ax.plot(steps_, train_mse, label="training batch")
ax.plot(steps_, test_mse, label="test set")
ax.set_xlabel("optimisation step")
ax.set_ylabel("position MSE (ASF units²)")
ax.set_ylim(bottom=0)
ax.legend()
plt.show()

# %%
# Equivariance
# ------------
# The node feature of this dataset is the height of each joint, so the model is meant to be
# equivariant to rotations about the vertical (y) axis and to horizontal translations.

errors = equivariance_error(model.double(), test[0].to(dtype=torch.float64), rotation_axis=1)
model.float()
print({k: f"{v:.1e}" for k, v in errors.items()})

# %%
# Predictions against the ground truth
# ------------------------------------
# One test sample, seen from the front (x, y) and from the side (z, y): the input pose, the
# true pose 30 frames later and EGHN's prediction.

with torch.no_grad():
    out = model(test_batch)
sample = 0
mask = test_batch.batch == sample
bones = test[sample].local_edge_index
x_in, x_true, x_pred = (a[mask].numpy() for a in (test_batch.pos, test_batch.target, out.pos))


def draw_skeleton(ax, x, axes, colour, label, **kw):
    for a, b in bones.T.tolist():
        ax.plot(x[[a, b], axes[0]], x[[a, b], axes[1]], color=colour, lw=1.5, **kw)
    ax.plot([], [], color=colour, label=label, **kw)


fig, axs = plt.subplots(1, 2, figsize=(8, 5), layout="constrained")
for ax, axes, title in [(axs[0], (0, 1), "front (x, y)"), (axs[1], (2, 1), "side (z, y)")]:
    draw_skeleton(ax, x_in, axes, "0.7", "input frame")
    draw_skeleton(ax, x_true, axes, "tab:green", "ground truth +30 frames")
    draw_skeleton(ax, x_pred, axes, "tab:red", "EGHN prediction", ls="--")
    ax.set_title(title)
    ax.set(xlabel="xz"[axes[0] // 2] + " (ASF units)", ylabel="y, height (ASF units)")
    ax.set_aspect("equal")
# below the panels, so that no joint is hidden
fig.legend(*axs[0].get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=8)
plt.show()

# %%
# Learned clusters on the skeleton
# --------------------------------
# ``aux["scores"][0]`` is the score matrix :math:`S` of the first pooling level, one row of
# cluster probabilities per joint. Colouring every joint by its most likely cluster shows how
# the model splits the body; after a long training run the clusters follow limbs and trunk
# (paper Fig. 4), after the short run of the documentation build they are still forming.

S = out.aux["scores"][0][mask]
cluster = S.argmax(1).numpy()
confidence = S.max(1).values.numpy()
colours = plt.get_cmap("tab10")(np.arange(10))
fig, ax = plt.subplots(figsize=(6.2, 5), layout="constrained")
draw_skeleton(ax, x_in, (0, 1), "0.6", "bones")
ax.scatter(x_in[:, 0], x_in[:, 1], s=30 + 120 * confidence, c=colours[cluster], edgecolors="k", zorder=3)
for k in np.unique(cluster):
    ax.scatter([], [], c=[colours[k]], label=f"cluster {k} ({(cluster == k).sum()} joints)")
ax.set_title("joints coloured by cluster (size: confidence)")
ax.set(xlabel="x (ASF units)", ylabel="y, height (ASF units)")
ax.set_aspect("equal")
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)  # beside the skeleton
plt.show()
