r"""Coordinate units: standardise a dataset by one length scale, so that any unit works.

EGHN's external EMMPs (the radial EGNN form) feed raw squared distances into their edge MLPs,
so a network meant for coordinates of order 1 overflows on coordinates of order 100 (NaN in
float32) and returns garbage long before that (see :doc:`/user_guide/units`). Users' data come
in Å, nm, cm or arbitrary simulation units, so the trainer divides every length of a dataset
by one **length scale** :math:`L` computed from the training split (:func:`length_scale`),
trains and predicts in these standardised units, and reports positions and MSEs in the
user's own units again (positions times :math:`L`, MSEs times :math:`L^2`).

Scaling commutes with every E(n) transformation (:math:`(Qx + t)/L = Q(x/L) + t/L`), so
standardising leaves equivariance untouched, and with the same :math:`L` computed from the
same data in any unit the model sees the same numbers: training is unit-invariant up to
floating-point rounding.

What is a length: positions, velocities and targets always; node and edge features according
to the dataset's ``feature_length_powers`` (``{"h": (1,), "edge_attr": (0, 0, 2), ...}``: the
power of length of each column, e.g. 1 for a speed, 2 for a squared distance, 0 for a charge
or a bond type). A dataset without that attribute has dimensionless features.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .graph import Graph

__all__ = ["FEATURE_FIELDS", "UNIT_EXTENT_RANGE", "LengthScaled", "feature_length_powers", "length_scale",
           "rms_extent", "scale_advice", "standardize_graph"]

#: RMS extents of input systems inside this range count as unit scale (no advice about units)
UNIT_EXTENT_RANGE: tuple[float, float] = (1e-2, 1e2)

#: Graph fields that may hold features with a length dimension.
FEATURE_FIELDS = ("h", "edge_attr", "local_edge_attr")


def feature_length_powers(dataset: Any) -> dict[str, tuple[int, ...]]:
    """The dataset's declared power of length of every feature column (empty: all dimensionless).

    Example:
        >>> from eghn.data import MComplexDataset, PointCloudDataset
        >>> from eghn.data.units import feature_length_powers
        >>> feature_length_powers(MComplexDataset)["edge_attr"], feature_length_powers(object())
        ((0, 0, 2), {})
    """
    powers = getattr(dataset, "feature_length_powers", None) or {}
    if not isinstance(powers, Mapping):
        raise TypeError(f"{type(dataset).__name__}.feature_length_powers must be a mapping, got {powers!r}")
    unknown = sorted(set(powers) - set(FEATURE_FIELDS))
    if unknown:
        raise ValueError(f"feature_length_powers names unknown graph fields {unknown}; use {FEATURE_FIELDS}")
    return {k: tuple(int(p) for p in v) for k, v in powers.items()}


def length_scale(dataset: Any, max_graphs: int = 1000) -> float:
    r"""Root-mean-square distance of particles from their graph's centroid (the systems' extent).

    .. math:: L = \Big(\frac{1}{\sum_g N_g} \sum_g \sum_{i \in g} \lVert x_i - \bar x_g\rVert^2\Big)^{1/2}

    over the input positions of the first ``max_graphs`` graphs of ``dataset`` (the training
    split), computed in float64. :math:`L` is E(n)-invariant and proportional to the unit of
    the data.

    Raises:
        ValueError: the dataset is empty, or its positions are not finite or all coincide
            (no length to standardise by).

    Example:
        >>> from eghn.data import LengthScaled, MComplexDataset, length_scale
        >>> ds = MComplexDataset.generate(2, 3, n_samples=4, seed=0, n_steps=300, sample_every=100,
        ...                               input_frame=0, target_frame=2)
        >>> L = length_scale(ds)
        >>> round(length_scale(LengthScaled(ds, L)), 6)  # standardised systems have unit extent
        1.0
    """
    n = min(len(dataset), int(max_graphs))
    if n < 1:
        raise ValueError("cannot compute a length scale from an empty dataset")
    g = dataset.collate(list(range(n)))
    if not bool(torch.isfinite(g.pos).all()):
        raise ValueError("cannot compute a length scale: the training positions hold NaN or inf")
    value = rms_extent(g)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"cannot compute a length scale: the training systems have extent {value} "
                         "(all particles coincide); set data.length_scale to a positive number")
    return value


def rms_extent(g: Graph) -> float:
    """Root-mean-square distance of the nodes of ``g`` from their graph's centroid (float64).

    Example:
        >>> import torch
        >>> from eghn.data import Graph
        >>> from eghn.data.units import rms_extent
        >>> pos = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
        >>> rms_extent(Graph(pos=pos, edge_index=torch.tensor([[0, 1], [1, 0]])))
        1.0
    """
    pos = g.pos.double()
    count = torch.bincount(g.batch, minlength=g.num_graphs).clamp_min(1).double()
    centroid = torch.zeros(g.num_graphs, pos.shape[1], dtype=torch.float64, device=pos.device)
    centroid = centroid.index_add_(0, g.batch, pos) / count[:, None]
    return math.sqrt(float(((pos - centroid[g.batch]) ** 2).sum(-1).mean()))


def scale_advice(g: Graph) -> str:
    """What about the scale of ``g``'s coordinates can make a model overflow, or ``""`` if nothing.

    Two causes are told apart: coordinates so large in absolute value that their squares
    overflow the dtype (a translation far from the origin: centring fixes it), and systems whose
    RMS extent is far from 1 (outside :data:`UNIT_EXTENT_RANGE`: the data's unit; standardising
    fixes it). A system at unit scale near the origin gets ``""``: its units are not the cause.

    >>> import torch
    >>> g = Graph(pos=torch.randn(4, 3), edge_index=torch.tensor([[0, 1], [1, 0]]))
    >>> scale_advice(g)
    ''
    >>> "far from unit scale" in scale_advice(Graph(pos=g.pos * 1e4, edge_index=g.edge_index))
    True
    >>> "overflow float32" in scale_advice(Graph(pos=g.pos + 1e30, edge_index=g.edge_index))
    True
    """
    with torch.no_grad():
        if g.pos.numel() == 0:
            return ""
        biggest = float(g.pos.detach().double().abs().max())
        extent = rms_extent(g)
    finfo = torch.finfo(g.pos.dtype) if g.pos.is_floating_point() else torch.finfo(torch.float32)
    dtype = str(g.pos.dtype).removeprefix("torch.")
    if math.isfinite(biggest) and biggest > math.sqrt(finfo.max) / 1e3:
        return (f"the input coordinates reach {biggest:.3g}, whose squares overflow {dtype}: move the "
                "systems near the origin (the model is translation-equivariant, so centring changes "
                "nothing) or use float64")
    lo, hi = UNIT_EXTENT_RANGE
    if math.isfinite(extent) and not lo <= extent <= hi:
        return (f"the input systems have an RMS extent of {extent:.3g}, far from unit scale: standardise "
                "lengths with eghn.data.LengthScaled(dataset, eghn.data.length_scale(train_dataset)) "
                "(what `eghn train` does with data.length_scale = 'auto') and multiply predictions by "
                "that scale")
    return ""


def _scale_columns(x: Tensor | None, scale: float, powers: Sequence[int] | None, field: str) -> Tensor | None:
    if x is None or not powers or not any(powers):
        return x
    if x.shape[-1] != len(powers):
        raise ValueError(f"feature_length_powers[{field!r}] has {len(powers)} entries but the graph's {field} "
                         f"has {x.shape[-1]} columns")
    factor = torch.tensor([scale ** -p for p in powers], dtype=torch.float64).to(x)
    return x * factor


def standardize_graph(g: Graph, scale: float, powers: Mapping[str, Sequence[int]] | None = None) -> Graph:
    """``g`` with every length divided by ``scale`` (positions, velocities, targets, and the
    feature columns with a length power; see the module doc). ``scale = 1`` returns ``g``.

    Example:
        >>> import torch
        >>> from eghn.data import Graph, standardize_graph
        >>> g = Graph(pos=torch.ones(2, 3), edge_index=torch.tensor([[0, 1], [1, 0]]),
        ...           edge_attr=torch.tensor([[1.0, 4.0], [1.0, 4.0]]))
        >>> s = standardize_graph(g, 2.0, {"edge_attr": (0, 2)})  # a charge and a squared distance
        >>> s.pos[0].tolist(), s.edge_attr[0].tolist()
        ([0.5, 0.5, 0.5], [1.0, 1.0])
    """
    if scale == 1.0:
        return g
    powers = powers or {}
    changes: dict[str, Tensor | None] = {
        "pos": g.pos / scale,
        "vel": None if g.vel is None else g.vel / scale,
        "target": None if g.target is None else g.target / scale,
    }
    for f in FEATURE_FIELDS:
        changes[f] = _scale_columns(getattr(g, f), scale, powers.get(f), f)
    return dataclasses.replace(g, **changes)


class LengthScaled:
    """A dataset whose lengths are divided by ``scale`` (see the module doc).

    It has the interface of the wrapped dataset (``len``, indexing, ``collate``, ``node_dim``,
    ``edge_dim``, ``local_edge_dim`` and any other attribute) and exposes :attr:`length_scale`.

    Example:
        >>> from eghn.data import MComplexDataset
        >>> ds = MComplexDataset.generate(2, 3, n_samples=4, seed=0)
        >>> scaled = LengthScaled(ds, 2.0)
        >>> bool((scaled[0].pos * 2.0 - ds[0].pos).abs().max() < 1e-6), scaled.length_scale
        (True, 2.0)
    """

    def __init__(self, dataset: Any, scale: float) -> None:
        scale = float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"length scale must be a finite positive number, got {scale}")
        self.dataset = dataset
        self.length_scale = scale
        self.powers = feature_length_powers(dataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Graph:
        return standardize_graph(self.dataset[i], self.length_scale, self.powers)

    def collate(self, indices: Sequence[int]) -> Graph:
        return standardize_graph(self.dataset.collate(indices), self.length_scale, self.powers)

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (e.g. during unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        return f"LengthScaled({self.dataset!r}, length_scale={self.length_scale:.6g})"
