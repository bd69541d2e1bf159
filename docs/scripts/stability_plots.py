"""Figures of the Training stability page, drawn from ``docs/results/stability/*.json``.

* :func:`cascade`: the coordinate update of every layer of one forward, in the order the data
  flows through the U-Net, for a few steps of a trace (``benchmarks/stability_trace.py``);
* :func:`growth`: over the training steps of traces, the largest coordinate update of the
  layers of each level, the gradient norm and the loss;
* :func:`battery`: divergences and test MSE by depth and variant (``benchmarks/stability_battery.py``);
* :func:`occupancy`: the occupancy of the emptiest pooling level at every evaluation of the battery;
* :func:`spike`: around a spike of a long run, per training step, the loss, the pooling level's
  saturation and the change of every parameter group.

Used by ``.. plot:: scripts/stability_plots.py FUNCTION`` (``plot_basedir`` is ``docs/``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

try:
    _HERE = Path(__file__).resolve().parent
except NameError:  # the plot directive runs the script in its own folder, without __file__
    _HERE = Path.cwd()
RESULTS = _HERE.parent / "results" / "stability"
__all__ = ["battery", "cascade", "growth", "load", "occupancy", "spike", "twoscale"]


def load(name: str) -> dict[str, Any]:
    """``docs/results/stability/<name>.json``."""
    return json.loads((RESULTS / f"{name}.json").read_text())


def _order(layers: list[str]) -> list[str]:
    """Layers in the order of the forward pass, those with a coordinate update only."""
    return [n for n in layers if n.startswith(("encoders", "decoders")) or ".emmps." in n]


def _label(name: str) -> str:
    part = name.split(".")
    if part[0] == "encoders":
        return f"enc L{int(part[1]) + 1}.{part[2]}"
    if part[0] == "decoders":
        return f"dec L{int(part[1]) + 1}.{part[2]}"
    return f"pool L{int(part[1]) + 1}.{part[3]}"


def cascade(name: str = "trace_L3_paper", steps: tuple[int, ...] = (-6, -3, -1)) -> None:
    """The largest coordinate update and the largest squared distance read by every layer of a
    few forwards (negative steps count from the last, the one that overflowed)."""
    d = load(name)
    layers = _order(d["layers"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    for s in steps:
        step = d["steps"][s]
        k = s % len(d["steps"])
        dx = [step.get(n, {}).get("dx") for n in layers]
        d2 = [step.get(n, {}).get("d2") for n in layers]
        axes[0].semilogy(range(len(layers)), [v if v else float("nan") for v in dx], "o-", ms=3, label=f"step {k}")
        xs = [i for i, v in enumerate(d2) if v is not None]
        axes[1].semilogy(xs, [d2[i] or float("nan") for i in xs], "o-", ms=3, label=f"step {k}")
    axes[0].set_ylabel(r"largest coordinate update $\max_i\|x'_i - x_i\|$")
    axes[1].set_ylabel(r"largest $\|x_i - x_j\|^2$ read by an EGNN layer")
    for ax in axes:
        ax.set_xticks(range(len(layers)), [_label(n) for n in layers], rotation=90, fontsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{d['name']}: every layer of one forward, in data-flow order ({d['status']})", fontsize=10)
    fig.tight_layout()


def growth(names: tuple[str, ...] = ("trace_L3_paper", "trace_L3_bounded_egnn", "trace_L3_eghn")
           ) -> None:
    """Per training step: the largest coordinate update over the layers of each level, the
    gradient norm before clipping and the position MSE, for each trace."""
    fig, axes = plt.subplots(len(names), 3, figsize=(12, 3.2 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        d = load(name)
        layers = _order(d["layers"])
        levels = sorted({int(n.split(".")[1]) for n in layers})
        for lv in levels:
            mine = [n for n in layers if int(n.split(".")[1]) == lv]
            series = [max((st.get(n, {}).get("dx") or 0.0) for n in mine) for st in d["steps"]]
            row[0].semilogy(series, lw=1, label=f"level {lv + 1}")
        row[0].set_ylabel("largest coordinate update")
        row[1].semilogy(d["grad_norm"], lw=1, color="C3")
        row[1].set_ylabel("gradient norm (before clipping)")
        row[2].semilogy([st.get("loss", {}).get("mse") or float("nan") for st in d["steps"]], lw=1, color="C2")
        row[2].set_ylabel("position MSE of the batch")
        for ax in row:
            ax.set_xlabel("training step")
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=8)
        row[0].set_title(f"{d['name']} ({d['status']})", fontsize=9, loc="left")
    fig.tight_layout()


def battery(name: str = "battery", config: str = "default", group: str = "default") -> None:
    """Divergences and test MSE of the finished runs, by depth, for every variant of ``config``
    in the battery group ``group``."""
    d = load(name)["summary"][config]
    in_group = {r["variant"] for r in load(name)["runs"] if r["config"] == config and r.get("group", group) == group}
    variants = sorted(v for v in d if v in in_group)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    width = 0.8 / len(variants)
    for k, var in enumerate(variants):
        depths = sorted(d[var])
        xs = [int(L[1:]) + (k - (len(variants) - 1) / 2) * width for L in depths]
        axes[0].bar(xs, [d[var][L]["diverged"] for L in depths], width, label=var)
        axes[0].bar(xs, [d[var][L]["runs"] for L in depths], width, fill=False, edgecolor=f"C{k}")
        runs = [r for r in load(name)["runs"] if r["config"] == config and r["variant"] == var
                and r.get("test") is not None]
        axes[1].plot([r["depth"] + (k - (len(variants) - 1) / 2) * width for r in runs], [r["test"] for r in runs],
                     "o", color=f"C{k}", label=var)
    axes[0].set_ylabel("diverged runs (outline: all runs)")
    axes[1].set_ylabel("test MSE of finished runs")
    for ax in axes:
        ax.set_xlabel("levels L")
        ax.set_xticks([1, 2, 3])
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.tight_layout()


def occupancy(name: str = "battery", config: str = "default", group: str = "default") -> None:
    """Occupied clusters / K of the emptiest level at every evaluation of every run, one panel
    per variant (a collapse is counted where a level falls below K - 1/2)."""
    runs = [r for r in load(name)["runs"] if r["config"] == config and r.get("history")
            and r.get("group", group) == group]
    variants = sorted({r["variant"] for r in runs})
    fig, axes = plt.subplots(1, len(variants), figsize=(3.2 * len(variants), 3), sharey=True, squeeze=False)
    for ax, var in zip(axes[0], variants):
        for r in runs:
            if r["variant"] != var:
                continue
            pts = [(h["epoch"], h["occupancy"]) for h in r["history"] if h.get("occupancy") is not None]
            if pts:
                ax.plot(*zip(*pts), "-", color=f"C{r['depth'] - 1}", lw=1, alpha=0.8,
                        label=f"L = {r['depth']}" if r["seed"] == min(x["seed"] for x in runs) else None)
        ax.set_title(var, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("occupied clusters / K (emptiest level)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()


def twoscale(name: str = "battery") -> None:
    """Occupancy of the emptiest level in the two-scale group (M-complex (5,5), L = 1 and 2)."""
    occupancy(name, "default", "twoscale")


def spike(name: str = "trace_walk_recipe_s2") -> None:
    """Around a spike of a long run (a trace recorded with ``--detail-from``), per training step:
    the training MSE of the batch, the pooling level's saturated share and logit spread, and the
    change each optimiser step made to each parameter group (Adam's ``step``) with the gradient
    it received (``grad``)."""
    d = load(name)
    steps = d["steps"]
    first = next(i for i, st in enumerate(steps) if "update" in st)
    xs = list(range(first + 1, len(steps) + 1))  # training steps counted from 1
    window = steps[first:]
    pool = next(k for k in window[0] if k.startswith("pools.") and k.count(".") == 1)
    groups = list(window[0]["update"])
    fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    axes[0].semilogy(xs, [st["loss"]["mse"] for st in window], lw=0.8)
    axes[0].set_ylabel("batch training MSE")
    ax = axes[1]
    ax.plot(xs, [st.get(pool, {}).get("saturation") for st in window], lw=0.8, label="saturated rows")
    ax.set_ylabel("saturated share")
    twin = ax.twinx()
    twin.plot(xs, [st.get(pool, {}).get("logit_spread") for st in window], lw=0.8, color="tab:red",
              label="largest log score ratio")
    twin.set_ylabel("log score ratio", color="tab:red")
    ax.legend(loc="lower left", fontsize=8)
    for g in groups:
        axes[2].semilogy(xs, [max(st["update"][g]["step"] or 0.0, 1e-12) for st in window], lw=0.8, label=g)
        axes[3].semilogy(xs, [max(st["update"][g]["grad"] or 0.0, 1e-12) for st in window], lw=0.8, label=g)
    axes[2].set_ylabel("|weight change| of the step")
    axes[3].set_ylabel("|gradient| the step got")
    axes[3].set_xlabel("training step")
    axes[2].legend(fontsize=6, ncol=3)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
