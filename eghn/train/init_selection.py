r"""Selection of a run's initialisation by how its pooling settles: ``train.init_tries``.

On M-complex, an EGHN run reaches the paper's value when its first E-Pool assigns each rigid
complex to one cluster and names the clusters by complex (the "How E-Pool names its clusters"
section of the Stability page). A run shows on training data alone, in its first 10-20 epochs,
whether it does: its training regulariser (the connectivity loss of Eq. (12) plus the occupancy
term, read as ``train_loss - train_mse`` of an evaluation window, unitless) falls to about zero,
while on the other starts it stays near one. Which starts do is decided by the initialisation and
the batch order, not by the regulariser's weight.

With ``train.init_tries = n > 1`` a new run first *probes* up to ``n`` starts, in memory (no run
file is written):

1. start ``k = 0, 1, ...`` uses the seed :math:`s_k = s + 1000 k` (``s``: the run's ``seed``)
   for the weights and for the batch order, and trains for at most ``train.init_epochs`` epochs
   with the run's own settings (learning rate and its schedule included);
2. after every ``train.eval_every`` epochs (and at the last probe epoch) it reads the mean
   training regulariser of that window; the start *passes* as soon as it is at most
   ``train.init_max_regulariser``;
3. the first start that passes is chosen; when none does, the one with the smallest last value
   (a warning says so). A start whose loss goes non-finite fails.

The run then trains from epoch 1 with the chosen seed: it is the same run, bit for bit, as one
started with that seed for its weights and batch order. The data never change (they are built
with the run's ``seed`` before the probe). The choice is logged, kept in ``last.pt`` (a resume
does not probe again) and written to ``result.json["init"]`` with every probed start's values
(:func:`selection_record`); the probe's wall time is there, not in the run's ``wall_s``.

A model without a pooling regulariser has a regulariser of zero: its first start always passes,
so the option only costs ``train.eval_every`` epochs there.

Example:
    >>> from eghn.train.init_selection import candidate_seeds
    >>> candidate_seeds(3, 4)
    [3, 1003, 2003, 3003]
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from .config import SEED_MAX

__all__ = ["SEED_STRIDE", "candidate_seeds", "max_probe_epochs", "probe_start", "select_init", "selection_record"]

#: the distance between two probed seeds (seeds 1-999 of a campaign never share a start)
SEED_STRIDE = 1000


def candidate_seeds(seed: int, tries: int) -> list[int]:
    """The seeds of the starts probed for a run of ``seed``: ``seed + 1000 k``, ``k < tries``
    (wrapped to the seed range)."""
    return [(seed + SEED_STRIDE * k) % (SEED_MAX + 1) for k in range(tries)]


def max_probe_epochs(train: Mapping[str, Any]) -> int:
    """The most epochs a new run of the ``train`` config table probes before its epoch 1:
    ``init_tries`` x ``min(init_epochs, epochs)`` when ``init_tries > 1`` (every start fails),
    else 0.

    Example:
        >>> from eghn.train.init_selection import max_probe_epochs
        >>> max_probe_epochs({"init_tries": 4, "init_epochs": 30, "epochs": 600}), max_probe_epochs({"epochs": 600})
        (120, 0)
    """
    tries = int(train.get("init_tries", 1))
    return tries * min(int(train.get("init_epochs", 0)), int(train["epochs"])) if tries > 1 else 0


def probe_start(trainer: Any, epochs: int, every: int, max_regulariser: float) -> dict[str, Any]:
    """Train ``trainer`` (a fresh :class:`~eghn.train.trainer.Trainer`) for at most ``epochs``
    epochs and read its training regulariser every ``every`` epochs.

    Returns:
        ``{"regulariser": {epoch: value}, "passed": bool, "diverged": bool, "epochs": n}``: the
        probe stops at the first value at most ``max_regulariser`` (``passed``) or at a non-finite
        loss (``diverged``; a model that refuses to return NaN raises ``FloatingPointError``).
    """
    values: dict[int, float] = {}
    epoch = 0
    try:
        trainer.start_window()
        for epoch in range(1, epochs + 1):
            trainer.train_epoch(epoch)
            if epoch % every and epoch != epochs:
                continue
            train_mse, train_loss = trainer.take_train_means()
            reg = train_loss - train_mse if math.isfinite(train_loss) and math.isfinite(train_mse) else math.inf
            values[epoch] = reg
            if not math.isfinite(reg):
                return {"regulariser": values, "passed": False, "diverged": True, "epochs": epoch}
            if reg <= max_regulariser:
                return {"regulariser": values, "passed": True, "diverged": False, "epochs": epoch}
    except FloatingPointError:
        values[epoch] = math.inf
        return {"regulariser": values, "passed": False, "diverged": True, "epochs": epoch}
    return {"regulariser": values, "passed": False, "diverged": False, "epochs": epochs}


def select_init(make_trainer: Callable[[int], Any], seed: int, *, tries: int, epochs: int, every: int,
                max_regulariser: float, log: Callable[[str], None]) -> dict[str, Any]:
    """Probe the starts of :func:`candidate_seeds` and choose one (the module's steps 1-3).

    Args:
        make_trainer: ``seed -> Trainer`` whose model and batch order are seeded with ``seed``.
        seed: the run's seed.
        tries, epochs, every, max_regulariser: ``train.init_tries``, ``train.init_epochs``,
            ``train.eval_every`` and ``train.init_max_regulariser``.
        log: receives one line per probed start and one for the choice.

    Returns:
        the record of :func:`selection_record`.
    """
    t0 = time.perf_counter()
    trials = []
    for k, s in enumerate(candidate_seeds(seed, tries)):
        trial = {"seed": s, **probe_start(make_trainer(s), epochs, every, max_regulariser)}
        trials.append(trial)
        shown = ", ".join(f"{v:.3g} (epoch {e})" for e, v in trial["regulariser"].items())
        verdict = ("passes" if trial["passed"] else "diverged" if trial["diverged"]
                   else f"stays above {max_regulariser:g}")
        log(f"init selection: start {k + 1} of {tries}, seed {s}: training regulariser {shown}: {verdict}")
        if trial["passed"]:
            break
    record = selection_record(seed, trials, epochs=epochs, max_regulariser=max_regulariser,
                              wall_s=time.perf_counter() - t0)
    if record["passed"]:
        log(f"init selection: seed {record['chosen_seed']} chosen; training starts from epoch 1 with it "
            f"(probe {record['wall_s']:.1f} s)")
    else:
        log(f"init selection: WARNING no start of {tries} reached a training regulariser of "
            f"{max_regulariser:g} within {epochs} epochs; seed {record['chosen_seed']} (the smallest last "
            f"value) is used")
    return record


def selection_record(seed: int, trials: list[dict[str, Any]], *, epochs: int, max_regulariser: float,
                     wall_s: float) -> dict[str, Any]:
    """``result.json["init"]``: the requested and chosen seeds, whether the chosen start passed,
    the settings and every probed start (regulariser by epoch; JSON keys are strings).

    Example:
        >>> from eghn.train.init_selection import selection_record
        >>> trials = [{"seed": 1, "regulariser": {20: 1.05}, "passed": False, "diverged": False, "epochs": 20},
        ...           {"seed": 1001, "regulariser": {10: 0.0}, "passed": True, "diverged": False, "epochs": 10}]
        >>> r = selection_record(1, trials, epochs=20, max_regulariser=0.1, wall_s=1.0)
        >>> r["requested_seed"], r["chosen_seed"], r["passed"], r["trials"][1]["regulariser"]
        (1, 1001, True, {'10': 0.0})
    """
    if not trials:
        raise ValueError("init selection needs at least one probed start")
    passed = [t for t in trials if t["passed"]]

    def last(t: dict[str, Any]) -> float:
        v = list(t["regulariser"].values())
        return v[-1] if v and math.isfinite(v[-1]) else math.inf

    chosen = passed[0] if passed else min(trials, key=last)
    return {"requested_seed": int(seed), "chosen_seed": int(chosen["seed"]), "passed": bool(passed),
            "epochs": int(epochs), "max_regulariser": float(max_regulariser), "wall_s": round(float(wall_s), 3),
            "trials": [{"seed": int(t["seed"]), "epochs": int(t["epochs"]), "passed": bool(t["passed"]),
                        "diverged": bool(t["diverged"]),
                        "regulariser": {str(e): (float(v) if math.isfinite(v) else None)
                                        for e, v in t["regulariser"].items()}}
                       for t in trials]}
