r"""Detection of training instabilities: loss spikes and pooling collapse.

The trainer (:func:`eghn.train.train`) keeps one :class:`StabilityMonitor` per run, in every
protocol. It sees the auxiliary record of every training batch and the train loss and
validation MSE of every evaluation, and reports two kinds of event at the evaluation where
they happen (a log line starting ``stability:``, two columns of ``metrics.csv``, the
end-of-run summary and ``result.json["stability"]``):

* **spike** (:class:`SpikeDetector`): a value more than ``factor`` (3) times the running best
  (the smallest earlier value) of the train loss or of the validation MSE;
* **collapse** (:class:`CollapseDetector`): a pooling level whose clusters are not all
  occupied. Cluster :math:`k` of graph :math:`g` is occupied when its score mass
  :math:`\sum_{i \in g} s_{ik}` is at least ``min_mass`` (half a particle); a level's occupancy
  is the number of occupied clusters averaged over the graphs and training batches since the
  last evaluation, and the level collapses when it is below :math:`K - 1/2`, i.e. at least
  one cluster per graph holds (almost) nothing. Saturated scores that put every particle in
  the same cluster, the failure seen on the (3,3) systems (connectivity loss :math:`K - 1`),
  are the extreme case. Near-uniform scores (a fresh model: masses :math:`n/K`) are not a
  collapse. The share of particles whose largest score exceeds ``saturated`` (default ``0.999``) is
  recorded beside it (a saturated softmax passes almost no gradient back to the scores).

A collapse is counted once when a level enters that state; a level that stays collapsed is
not counted again until it has recovered. Every detector has ``state_dict`` and
``load_state_dict`` so that a resumed run continues the counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["CSV_FIELDS", "CollapseDetector", "SpikeDetector", "StabilityMonitor", "cluster_occupancy"]

#: columns the trainer appends to ``metrics.csv``: cumulative event counts, and the smallest
#: occupancy (occupied clusters / K, over levels) and largest saturation since the last evaluation
CSV_FIELDS = ["spikes", "collapses", "occupancy", "saturation"]


class SpikeDetector:
    r"""Counts jumps of a series above ``factor`` times its running best.

    ``update(x)`` is a spike when :math:`x > \text{factor} \cdot \min_{t' < t} x_{t'}` (and that
    minimum is positive); the running minimum then includes :math:`x`. A non-finite value is
    not judged (divergence is the trainer's business).

    Example:
        >>> d = SpikeDetector(3.0)
        >>> [d.update(x) for x in (1.0, 0.5, 1.4, 1.6, 0.4)]
        [False, False, False, True, False]
        >>> d.count, d.best
        (1, 0.4)
    """

    def __init__(self, factor: float = 3.0) -> None:
        if not factor > 1:
            raise ValueError(f"a spike factor must exceed 1, got {factor!r}")
        self.factor = float(factor)
        self.best = math.inf
        self.count = 0

    def update(self, value: float) -> bool:
        """Judge ``value`` against the running best; returns whether it is a spike."""
        value = float(value)
        if not math.isfinite(value):
            return False
        spike = math.isfinite(self.best) and self.best > 0 and value > self.factor * self.best
        self.count += int(spike)
        self.best = min(self.best, value)
        return spike

    def state_dict(self) -> dict[str, Any]:
        return {"factor": self.factor, "best": self.best, "count": self.count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.factor, self.best, self.count = float(state["factor"]), float(state["best"]), int(state["count"])


def cluster_occupancy(S: Tensor, num_graphs: int, batch: Tensor | None = None, *, min_mass: float = 0.5,
                      saturated: float = 0.999) -> tuple[Tensor, Tensor]:
    r"""Occupied clusters per graph (averaged over graphs) and the saturated share of one level.

    Args:
        S: scores :math:`(N, K)` of one pooling level, rows summing to 1.
        num_graphs: :math:`G`.
        batch: graph id of each row :math:`(N,)`; ``None`` for a level above the first, whose
            rows are ``N / G`` consecutive clusters per graph.
        min_mass: a cluster is occupied when :math:`\sum_{i \in g} s_{ik} \geq` ``min_mass``.
        saturated: a row is saturated when its largest score exceeds this.

    Returns:
        ``(occupancy, saturation)``: 0-dim tensors, the mean over graphs of the number of
        occupied clusters (between 1 and :math:`K` when rows sum to 1 and ``min_mass`` is at
        most :math:`n/K`) and the share of saturated rows.

    Example:
        >>> S = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.5, 0.5], [0.5, 0.5]])
        >>> occ, sat = cluster_occupancy(S, 2, torch.tensor([0, 0, 1, 1]))
        >>> float(occ), float(sat)
        (1.5, 0.5)
    """
    S = S.detach()
    k = S.shape[1]
    if batch is None:
        mass = S.reshape(num_graphs, -1, k).sum(1)
    else:
        mass = S.new_zeros(num_graphs, k).index_add_(0, batch, S)
    occupancy = (mass >= min_mass).sum(1).to(S.dtype).mean()
    saturation = (S.amax(1) > saturated).to(S.dtype).mean()
    return occupancy, saturation


class CollapseDetector:
    """Occupancy and saturation of every pooling level, accumulated over training batches.

    ``observe(scores, num_graphs, batch)`` after every training batch (no host-device
    synchronisation), ``check()`` at every evaluation: it returns the levels that have just
    collapsed (see the module docstring) and resets the accumulators.

    Args:
        min_mass: score mass of an occupied cluster.
        saturated: largest score of a saturated row.
        margin: a level collapses when its mean occupancy is below ``K - margin``.

    Example:
        >>> import torch
        >>> from eghn.train.stability import CollapseDetector
        >>> det = CollapseDetector()
        >>> everyone_in_one = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])  # K = 2, one graph
        >>> det.observe([everyone_in_one], 1, torch.zeros(3, dtype=torch.long))
        >>> det.check(), det.count, det.last[0]["occupancy"], det.last[0]["saturation"]
        ([0], 1, 1.0, 1.0)
        >>> det.observe([everyone_in_one], 1, torch.zeros(3, dtype=torch.long))
        >>> det.check(), det.count  # still collapsed: not counted again
        ([], 1)
    """

    def __init__(self, min_mass: float = 0.5, saturated: float = 0.999, margin: float = 0.5) -> None:
        self.min_mass, self.saturated, self.margin = float(min_mass), float(saturated), float(margin)
        self.count = 0
        self.collapsed: list[bool] = []
        self.clusters: list[int] = []
        self._sums: list[Tensor] = []
        self._batches = 0
        self.last: list[dict[str, float]] = []

    def observe(self, scores: Sequence[Tensor], num_graphs: int, batch: Tensor | None = None) -> None:
        """Add one training batch: ``scores`` of every level (level 0 indexed by ``batch``)."""
        stats = []
        for lv, S in enumerate(scores):
            occ, sat = cluster_occupancy(S, num_graphs, batch if lv == 0 else None, min_mass=self.min_mass,
                                         saturated=self.saturated)
            stats.append(torch.stack([occ, sat]).double())
        if not stats:
            return
        if len(self._sums) != len(stats) or self._batches == 0:
            self._sums = [torch.zeros_like(s) for s in stats]
            self._batches = 0
        for acc, s in zip(self._sums, stats):
            acc += s
        self.clusters = [int(S.shape[1]) for S in scores]
        self._batches += 1

    def check(self) -> list[int]:
        """Summarise the batches since the last call (``last``); returns the newly collapsed levels."""
        if self._batches == 0:
            return []
        means = [(acc / self._batches).tolist() for acc in self._sums]
        self._sums, self._batches = [], 0
        self.last = [{"occupancy": occ, "saturation": sat, "clusters": k}
                     for (occ, sat), k in zip(means, self.clusters)]
        if len(self.collapsed) != len(means):
            self.collapsed = [False] * len(means)
        new = []
        for lv, (occ, _sat) in enumerate(means):
            now = occ < self.clusters[lv] - self.margin
            if now and not self.collapsed[lv]:
                new.append(lv)
            self.collapsed[lv] = now
        self.count += len(new)
        return new

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "collapsed": list(self.collapsed), "min_mass": self.min_mass,
                "saturated": self.saturated, "margin": self.margin}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.count, self.collapsed = int(state["count"]), [bool(c) for c in state["collapsed"]]
        self.min_mass, self.saturated = float(state["min_mass"]), float(state["saturated"])
        self.margin = float(state["margin"])


class StabilityMonitor:
    """Spikes of the train loss and validation MSE, and pooling collapse, for one run.

    Example:
        >>> mon = StabilityMonitor()
        >>> lines = []
        >>> row = mon.evaluate(5, train_loss=1.0, val_mse=1.0, log=lines.append)
        >>> row = mon.evaluate(10, train_loss=0.2, val_mse=0.2, log=lines.append)
        >>> row = mon.evaluate(15, train_loss=0.3, val_mse=0.9, log=lines.append)
        >>> row["spikes"], mon.summary()["spikes"], lines[0].split(":")[0]
        (1, 1, 'stability')
    """

    def __init__(self, factor: float = 3.0, min_mass: float = 0.5, saturated: float = 0.999) -> None:
        self.train = SpikeDetector(factor)
        self.val = SpikeDetector(factor)
        self.collapse = CollapseDetector(min_mass, saturated)
        self.events: list[dict[str, Any]] = []

    def observe(self, aux: Any, num_graphs: int, batch: Tensor | None) -> None:
        """One training batch: reads ``aux["scores"]`` of a pooling model (anything else is ignored)."""
        scores = aux.get("scores") if isinstance(aux, Mapping) else None
        if scores:
            self.collapse.observe(list(scores), num_graphs, batch)

    def evaluate(self, epoch: int, train_loss: float, val_mse: float,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Judge one evaluation; logs every new event and returns the ``metrics.csv`` columns."""
        new = []
        for name, det, value in (("train loss", self.train, train_loss), ("val MSE", self.val, val_mse)):
            best = det.best
            if det.update(value):
                new.append({"epoch": epoch, "kind": "spike", "series": name, "value": float(value),
                            "running_best": best,
                            "message": f"spike in the {name} at epoch {epoch}: {value:.4g} is "
                                       f"{value / best:.1f}x its running best {best:.4g}"})
        for lv in self.collapse.check():
            st = self.collapse.last[lv]
            new.append({"epoch": epoch, "kind": "collapse", "level": lv + 1, "occupancy": st["occupancy"],
                        "clusters": st["clusters"], "saturation": st["saturation"],
                        "message": f"collapse of pooling level {lv + 1} at epoch {epoch}: "
                                   f"{st['occupancy']:.2f} of {st['clusters']} clusters occupied per graph, "
                                   f"{100 * st['saturation']:.0f}% of the score rows saturated"})
        for ev in new:
            if log is not None:
                log("stability: " + ev["message"])
            self.events.append(ev)
        last = self.collapse.last
        return {"spikes": self.train.count + self.val.count, "collapses": self.collapse.count,
                "occupancy": round(min(s["occupancy"] / s["clusters"] for s in last), 4) if last else None,
                "saturation": round(max(s["saturation"] for s in last), 4) if last else None}

    def summary(self) -> dict[str, Any]:
        """Counts and events of the run (``result.json["stability"]``)."""
        return {"spikes": self.train.count + self.val.count, "train_loss_spikes": self.train.count,
                "val_spikes": self.val.count, "collapses": self.collapse.count,
                "events": [{k: v for k, v in ev.items() if k != "message"} | {"message": ev["message"]}
                           for ev in self.events]}

    def state_dict(self) -> dict[str, Any]:
        return {"train": self.train.state_dict(), "val": self.val.state_dict(),
                "collapse": self.collapse.state_dict(), "events": [dict(e) for e in self.events]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.train.load_state_dict(state["train"])
        self.val.load_state_dict(state["val"])
        self.collapse.load_state_dict(state["collapse"])
        self.events = [dict(e) for e in state["events"]]
