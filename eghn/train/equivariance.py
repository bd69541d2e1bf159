"""Equivariance of a *trained* model, checked on a whole data split in float64.

Fresh models of the test-suite being equivariant proves little about the weights a training
run ends with (e.g. score heads saturated until a cluster's total score underflows). The
trainer's end-of-run report and ``tests/test_trained_equivariance.py`` run this check on the
model as trained, on every graph of a split (up to ``max_graphs``), with translations of at
least 100 times the largest extent of the systems.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..testing.equivariance import TOLERANCES, equivariance_error
from .loader import GraphBank

__all__ = ["EquivarianceReport", "model_equivariance_error", "trained_equivariance_error"]

_ALL = ("rotation", "reflection", "translation", "permutation")


@dataclass
class EquivarianceReport:
    """Result of :func:`model_equivariance_error`.

    Attributes:
        errors: largest relative error per check (``nan`` where an output was not finite).
        graphs: number of graphs checked.
        translation_scale: standard deviation of the translations, in the data's units.
        extent: largest distance of a particle from its graph's centroid, in the data's units.
        dtype: dtype of the check.
        nonfinite: ``{check: message}`` for checks whose output held NaN or inf.

    Example:
        >>> from eghn.train.equivariance import EquivarianceReport
        >>> report = EquivarianceReport(errors={"rotation": 1e-15, "translation": 3e-14}, graphs=10,
        ...                             translation_scale=1000.0, extent=2.0, dtype="float64")
        >>> report.worst, report.passed(), report.passed(tolerance=1e-14)
        (3e-14, True, False)
        >>> report.summary().split(" (")[0]
        'rotation 1.00e-15, translation 3.00e-14'
    """

    errors: dict[str, float]
    graphs: int
    translation_scale: float
    extent: float
    dtype: str
    nonfinite: dict[str, str] = field(default_factory=dict)

    @property
    def worst(self) -> float:
        vals = list(self.errors.values())
        return math.nan if any(math.isnan(v) for v in vals) else max(vals, default=0.0)

    def passed(self, tolerance: float | None = None) -> bool:
        """Every error within ``tolerance`` (default :data:`~eghn.testing.TOLERANCES` of the dtype)."""
        tol = TOLERANCES[getattr(torch, self.dtype)] if tolerance is None else tolerance
        return not self.nonfinite and self.worst <= tol

    def summary(self) -> str:
        errs = ", ".join(f"{k} {v:.2e}" for k, v in self.errors.items())
        return (f"{errs} ({self.dtype}, {self.graphs} graphs, translations of {self.translation_scale:.3g} "
                f"= {self.translation_scale / max(self.extent, 1e-300):.3g} x the largest system extent)")


def model_equivariance_error(model: nn.Module, dataset: Any, *, max_graphs: int = 1000, batch_size: int = 100,
                             dtype: torch.dtype = torch.float64, extent_factor: float = 100.0,
                             min_translation: float = 1000.0, trials: int = 1, seed: int = 0) -> EquivarianceReport:
    """Equivariance error of ``model`` on the first ``max_graphs`` graphs of ``dataset``.

    The model is evaluated in ``dtype`` (a copy is not made: cast it first). Checks are the
    model's ``symmetries`` (default: rotations, reflections, translations, permutations);
    rotations are restricted to those about the dataset's ``rotation_axis`` when it declares one
    (e.g. motion capture, whose node feature is the height). Translations have a standard
    deviation of ``max(min_translation, extent_factor * extent)`` in the dataset's units, where
    ``extent`` is the largest distance of a particle from its graph's centroid.

    Example:
        A fresh EGNN, in float64, on four systems of a ``.npz`` file.

        >>> import tempfile
        >>> from pathlib import Path
        >>> import numpy as np
        >>> import torch
        >>> from eghn.data import PointCloudDataset
        >>> from eghn.train.equivariance import model_equivariance_error
        >>> from eghn.train.loop import build_model
        >>> path = Path(tempfile.mkdtemp()) / "toy.npz"
        >>> pos = np.random.default_rng(0).normal(size=(4, 5, 3))
        >>> np.savez(path, pos=pos, vel=0.1 * pos, target=pos)
        >>> ds = PointCloudDataset(path, "test", split_sizes=[2, 0, 2])
        >>> model = build_model({"model": {"name": "egnn", "hidden": 8, "layers": 1}}, ds).double()
        >>> report = model_equivariance_error(model, ds)
        >>> sorted(report.errors), report.graphs, report.passed()
        (['permutation', 'reflection', 'rotation', 'translation'], 2, True)
    """
    n = min(len(dataset), int(max_graphs))
    if n < 1:
        raise ValueError("cannot check equivariance on an empty split")
    bank = GraphBank(dataset, "cpu", dtype, mode="lazy")
    checks = tuple(c for c in _ALL if c in getattr(model, "symmetries", _ALL))
    axis = getattr(dataset, "rotation_axis", None)
    unit = float(getattr(dataset, "length_scale", 1.0))
    batches = [bank.batch(torch.arange(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
    extent = 0.0
    for g in batches:
        count = torch.bincount(g.batch, minlength=g.num_graphs).clamp_min(1).to(g.pos)
        centroid = torch.zeros(g.num_graphs, g.dim, dtype=g.pos.dtype).index_add_(0, g.batch, g.pos) / count[:, None]
        extent = max(extent, float((g.pos - centroid[g.batch]).norm(dim=-1).max()))
    extent_user = extent * unit
    t_user = max(min_translation, extent_factor * extent_user)
    t_scale = t_user / unit  # in the model's (standardised) units
    errors = dict.fromkeys(checks, 0.0)
    notes: dict[str, str] = {}
    was_training = model.training
    model.eval()
    try:
        for k, g in enumerate(batches):
            err = equivariance_error(model, g, checks=checks, trials=trials, rotation_axis=axis, seed=seed + k,
                                     translation_scale=t_scale, report=notes)
            for c, v in err.items():
                errors[c] = math.nan if math.isnan(v) or math.isnan(errors[c]) else max(errors[c], v)
    finally:
        model.train(was_training)
    return EquivarianceReport(errors=errors, graphs=n, translation_scale=t_user, extent=extent_user,
                              dtype=str(dtype).removeprefix("torch."), nonfinite=notes)


def trained_equivariance_error(config: Mapping[str, Any], state_dict: Mapping[str, Any], *, split: str = "test",
                               max_graphs: int = 1000, batch_size: int = 100,
                               dtype: torch.dtype = torch.float64) -> EquivarianceReport:
    """:func:`model_equivariance_error` of the model a run's ``config`` describes, with the
    weights ``state_dict``, on ``split`` of the run's (standardised) data, in ``dtype``.

    Example:
        The weights of a fresh model stand in for a run's ``best.pt``.

        >>> import tempfile
        >>> from pathlib import Path
        >>> import numpy as np
        >>> from eghn.train.config import resolve
        >>> from eghn.train.equivariance import trained_equivariance_error
        >>> from eghn.train.loop import build_datasets, build_model
        >>> path = Path(tempfile.mkdtemp()) / "toy.npz"
        >>> pos = np.random.default_rng(0).normal(size=(4, 5, 3))
        >>> np.savez(path, pos=pos, vel=0.1 * pos, target=pos)
        >>> config = resolve({"data": {"name": "arrays", "path": str(path), "split_sizes": [2, 0, 2]},
        ...                   "model": {"name": "egnn", "hidden": 8, "layers": 1}})
        >>> weights = build_model(config, build_datasets(config, ("train",))["train"]).state_dict()
        >>> report = trained_equivariance_error(config, weights)
        >>> report.graphs, report.dtype, report.passed()
        (2, 'float64', True)
    """
    from .loop import build_datasets, build_model

    ds = build_datasets(config, splits=(split,))[split]
    model = build_model(config, ds).to(dtype=dtype)
    model.load_state_dict(state_dict)
    return model_equivariance_error(model, ds, max_graphs=max_graphs, batch_size=batch_size, dtype=dtype)
