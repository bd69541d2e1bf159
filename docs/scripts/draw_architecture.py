"""Draw the EGHN equivariant U-Net (paper Section 3.4) with matplotlib.

Run by the ``plot`` directive at docs build time (``.. plot:: scripts/draw_architecture.py``);
``python docs/scripts/draw_architecture.py out.png`` writes the figure to a file.

Left column: the encoder, one block per level (external EMMPs over the global graph, then
E-Pool with its internal EMMP over the local graph). Right column: the decoder (external
EMMPs, then E-UnPool). E-UnPool of level l receives the score matrix S_l of the matching
E-Pool and, through the skip connection, the system of encoder level l - 1. Far left: a
toy system and its clusters at each level.
"""

from __future__ import annotations

import sys

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

ENC = "#dbe9f6"
POOL = "#fde2c8"
DEC = "#e3f1dc"
UNPOOL = "#f3dcef"
EDGE = "#444444"
CLUSTER_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]


def _box(ax, x, y, w, h, text, colour):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                fc=colour, ec=EDGE, lw=1.1))
    ax.text(x, y, text, ha="center", va="center", fontsize=9.5)


def _arrow(ax, p, q, style="-|>", ls="-", colour=EDGE, conn="arc3", label=None, lpos=0.5, loff=(0, 0.12)):
    ax.add_patch(FancyArrowPatch(p, q, arrowstyle=style, mutation_scale=12, lw=1.2, ls=ls, color=colour,
                                 connectionstyle=conn, shrinkA=0, shrinkB=0))
    if label:
        x = p[0] + lpos * (q[0] - p[0]) + loff[0]
        y = p[1] + lpos * (q[1] - p[1]) + loff[1]
        ax.text(x, y, label, ha="center", va="bottom", fontsize=8.5, color=colour)


def _toy_levels(levels: int, rng: np.random.Generator):
    """Positions and cluster labels of a toy system and of its pooled versions."""
    centres = np.array([[0.0, 0.0], [1.3, 0.45], [0.35, 1.25]])
    pts, labels = [], []
    for k, c in enumerate(centres):
        pts.append(c + 0.16 * rng.standard_normal((5, 2)))
        labels += [k] * 5
    systems = [(np.concatenate(pts), np.array(labels))]
    pos = centres
    for lv in range(1, levels + 1):
        lab = np.arange(len(pos)) if lv == levels else np.array([0, 0, 1])[: len(pos)]
        systems.append((pos, lab))
        if lv < levels:
            pos = np.array([pos[lab == k].mean(0) for k in np.unique(lab)])
    return systems


def _draw_system(ax, pos, labels, cx, cy, scale, sizes):
    p = (pos - pos.mean(0)) * scale + np.array([cx, cy])
    d = np.linalg.norm(p[:, None] - p[None], axis=-1)
    cut = np.sort(d, 1)[:, min(2, len(p) - 1)] + 1e-9
    for i in range(len(p)):
        for j in range(i + 1, len(p)):
            if d[i, j] <= max(cut[i], cut[j]):
                ax.plot(*p[[i, j]].T, color="#999999", lw=0.7, zorder=1)
    ax.scatter(p[:, 0], p[:, 1], s=sizes, c=[CLUSTER_COLOURS[k % 5] for k in labels], ec="k", lw=0.5, zorder=2)


def draw(levels: int = 2):
    """Return a matplotlib figure of EGHN with ``levels`` pooling levels."""
    rng = np.random.default_rng(3)
    dy = 2.3
    xe, xd, w, h = 2.2, 7.2, 2.6, 0.78
    fig, ax = plt.subplots(figsize=(9.6, 1.9 + 2.05 * levels))
    ys = [-lv * dy for lv in range(levels + 1)]

    systems = _toy_levels(levels, rng)
    for lv, (pos, lab) in enumerate(systems):
        _draw_system(ax, pos, lab, -0.6, ys[lv], 0.55 if lv == 0 else 0.5, 26 if lv == 0 else 70)
        name = "input system, $N$ nodes" if lv == 0 else f"level {lv}: $K_{lv}$ clusters"
        ax.text(-0.6, ys[lv] - 0.78, name, ha="center", va="top", fontsize=8.5)

    for lv in range(levels):
        y, y_pool = ys[lv], ys[lv] - dy / 2
        adj = r"$\mathcal{A}_{global}$" if lv == 0 else rf"$S_{lv}^\top \mathcal{{A}} S_{lv}$"
        _box(ax, xe, y, w, h, f"external EMMP × $L_{{enc}}$\nover {adj}", ENC)
        _box(ax, xe, y_pool, w, h, f"E-Pool → $S_{{{lv + 1}}}$\n" + r"(EMMP over $\mathcal{A}_{local}$)", POOL)
        _arrow(ax, (xe, y - h / 2), (xe, y_pool + h / 2))
        if lv + 1 < levels:
            _arrow(ax, (xe, y_pool - h / 2), (xe, ys[lv + 1] + h / 2))
        # decoder side of the same level pair
        _box(ax, xd, y_pool, w, h, f"E-UnPool with $S_{{{lv + 1}}}$\n(Eq. 12-15)", UNPOOL)
        _arrow(ax, (xe + w / 2, y_pool), (xd - w / 2, y_pool), ls=(0, (4, 2)), colour="#8c3b7c",
               label=f"scores $S_{{{lv + 1}}}$", loff=(0, 0.05))
        # skip connection: the encoder system of level lv enters E-UnPool of level lv + 1
        _arrow(ax, (xe + w / 2, y + 0.12), (xd - 0.7, y_pool + h / 2), ls=(0, (1.5, 1.5)), colour="#2b6a99",
               conn="angle,angleA=0,angleB=90,rad=0", label=f"skip: $Z^{{({lv})}}, h^{{({lv})}}$",
               lpos=0.45, loff=(0, 0.05))
        if lv == 0:
            _box(ax, xd, y, w, h, r"output $Z^{out}$" + "\n" + r"prediction $\hat x_i$", "#eeeeee")
        else:
            _box(ax, xd, y, w, h, f"external EMMP × $L_{{dec}}$\nlevel {lv}", DEC)
        _arrow(ax, (xd, y_pool + h / 2), (xd, y - h / 2))
    # bottleneck: decoder EMMP at the deepest level
    yb = ys[levels]
    xb, wb = (xe + xd) / 2, w + 0.2
    _box(ax, xb, yb, wb, h, f"external EMMP × $L_{{dec}}$\nlevel {levels}", DEC)
    _arrow(ax, (xe, ys[levels - 1] - dy / 2 - h / 2), (xb - wb / 2, yb), conn="angle,angleA=90,angleB=0,rad=0")
    _arrow(ax, (xb + wb / 2, yb), (xd, ys[levels - 1] - dy / 2 - h / 2), conn="angle,angleA=0,angleB=90,rad=0")
    ax.text(xe, ys[0] + 0.75, "encoder", ha="center", fontsize=11, weight="bold")
    ax.text(xd, ys[0] + 0.75, "decoder", ha="center", fontsize=11, weight="bold")
    ax.text((xe + xd) / 2, yb - 0.85,
            r"loss (Eq. 16): $\sum_i \Vert Z_i^{out} - Z_i^{gt}\Vert_F^2"
            r" + \lambda \sum_l \Vert \mathrm{rownorm}(S_l^\top A_{l-1} S_l) - I\Vert_F^2$",
            ha="center", va="top", fontsize=9.5)
    ax.set_xlim(-1.9, 8.8)
    ax.set_ylim(yb - 1.3, ys[0] + 1.1)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.tight_layout()
    return fig


if __name__ == "__main__" and len(sys.argv) > 1:
    draw().savefig(sys.argv[1], dpi=120)
else:
    draw()
