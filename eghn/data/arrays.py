r"""Your own system from arrays: a ``.npz`` file of positions, velocities, targets and edges.

:class:`PointCloudDataset` turns one ``.npz`` file (``numpy.savez``) into train, validation and
test splits of :class:`~eghn.data.Graph` samples, for ``eghn train`` (``[data] name =
"arrays"``, ``path = "my_system.npz"``) or for :func:`eghn.train.train` with
``datasets=...``. Every system has the same ``N`` particles and the same edges; samples are
taken in the file's order, the first ``split_sizes[0]`` for training, the next for validation,
then the test samples.

The keys of the file are listed on :class:`PointCloudDataset`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .graph import Graph, collate

__all__ = ["ARRAY_KEYS", "PointCloudDataset", "write_example"]

#: the keys a ``.npz`` file may hold (``pos`` and ``target`` are required)
ARRAY_KEYS = ("pos", "target", "vel", "h", "edge_index", "edge_attr", "local_edge_index", "local_edge_attr")
_SPLITS = ("train", "val", "test")


def _finite(key: str, array: np.ndarray) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        where = np.argwhere(bad)[0].tolist()
        raise ValueError(f"{key} holds {int(bad.sum())} NaN or infinite value(s), the first at index {where}")


def _float(data, key: str, shape: tuple[int | None, ...]) -> np.ndarray:
    array = np.asarray(data[key])
    if array.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, array.shape, strict=True)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{key} has shape {array.shape}, expected {want}")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{key} must hold real numbers, got dtype {array.dtype}")
    array = array.astype(np.float32)
    _finite(key, array)
    return array


def _edges(data, key: str, n_nodes: int) -> np.ndarray:
    array = np.asarray(data[key])
    if array.ndim != 2 or array.shape[0] != 2:
        raise ValueError(f"{key} has shape {array.shape}, expected (2, E)")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{key} must hold integers, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= n_nodes):
        raise ValueError(f"{key} refers to particles outside [0, {n_nodes}): min {array.min()}, max {array.max()}")
    return array.astype(np.int64)


class PointCloudDataset:
    r"""One split of a system given as arrays in a ``.npz`` file.

    Keys of the file (``S`` samples, ``N`` particles, ``n`` dimensions):

    ====================== ====================== =============================================
    key                    shape                  meaning
    ====================== ====================== =============================================
    ``pos`` (required)     :math:`(S, N, n)`      input positions
    ``target`` (required)  :math:`(S, N, n)`      positions to predict
    ``vel``                :math:`(S, N, n)`      input velocities
    ``h``                  :math:`(S, N, c)`      invariant node features (or :math:`(N, c)`,
                           or :math:`(N, c)`      the same for every sample); default: ones
    ``edge_index``         :math:`(2, E)`         interaction edges :math:`\mathcal{A}_{global}`,
                                                  integers in ``[0, N)``; default: every
                                                  ordered pair of distinct particles
    ``edge_attr``          :math:`(E, d)`         invariant attributes of those edges
    ``local_edge_index``   :math:`(2, E_l)`       bonds :math:`\mathcal{A}_{local}` (E-Pool's
                                                  graph); default: ``edge_index``
    ``local_edge_attr``    :math:`(E_l, d_l)`     attributes of the local edges
    ====================== ====================== =============================================

    A missing required key, an unknown key, a shape that does not fit, an edge index outside
    ``[0, N)`` or a NaN or infinity raises a ``ValueError`` (``KeyError`` for a missing key)
    naming the key.

    Args:
        path: the ``.npz`` file (``numpy.savez(path, pos=..., target=..., ...)``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        split_sizes: samples in the training, validation and test splits, taken in the file's
            order; default: a tenth of the samples (rounded down) each for validation and test,
            the rest for training.
        max_samples: use at most this many samples of the split (its first ones).

    Attributes:
        node_dim, edge_dim, local_edge_dim: widths of ``h``, ``edge_attr`` and
            ``local_edge_attr`` (what :func:`eghn.train.train` builds the model with).

    Shapes:
        - each item: a :class:`~eghn.data.Graph` with ``pos``, ``target`` (and ``vel``) of shape
          :math:`(N, n)`, ``h`` :math:`(N, c)` and the edges of the file

    Example:
        >>> import tempfile, pathlib
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> pos = rng.normal(size=(10, 4, 3))
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "my_system.npz"
        >>> np.savez(path, pos=pos, vel=rng.normal(size=(10, 4, 3)), target=pos + 0.1,
        ...          edge_index=np.array([[0, 1, 2, 3], [1, 2, 3, 0]]))
        >>> train = PointCloudDataset(path, "train", split_sizes=[6, 2, 2])
        >>> len(train), train.node_dim, train.edge_dim
        (6, 1, 0)
        >>> g = train[0]
        >>> tuple(g.pos.shape), tuple(g.target.shape), tuple(g.edge_index.shape), g.pos.dtype
        ((4, 3), (4, 3), (2, 4), torch.float32)
        >>> np.savez(path, pos=pos, target=pos[:, :3])
        >>> PointCloudDataset(path)
        Traceback (most recent call last):
        ...
        ValueError: target has shape (10, 3, 3), expected (10, 4, 3)
    """

    def __init__(self, path: str | os.PathLike, split: str = "train", *,
                 split_sizes: Sequence[int] | None = None, max_samples: int | None = None) -> None:
        if split not in _SPLITS:
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no array file at {path} (write one with numpy.savez; keys: "
                                    f"{', '.join(ARRAY_KEYS)})")
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            unknown = sorted(keys - set(ARRAY_KEYS))
            if unknown:
                raise ValueError(f"{path.name}: unknown key(s) {unknown}; the keys are {', '.join(ARRAY_KEYS)}")
            missing = [k for k in ("pos", "target") if k not in keys]
            if missing:
                raise KeyError(f"{path.name} has no {' or '.join(missing)} (it holds {', '.join(sorted(keys))})")
            pos = np.asarray(data["pos"])
            if pos.ndim != 3:
                raise ValueError(f"pos has shape {pos.shape}, expected (S, N, n): samples, particles, dimensions")
            S, N, n = pos.shape
            if S == 0 or N == 0 or n == 0:
                raise ValueError(f"pos has shape {pos.shape}: no samples, particles or dimensions")
            arrays = {"pos": _float(data, "pos", (S, N, n)), "target": _float(data, "target", (S, N, n))}
            if "vel" in keys:
                arrays["vel"] = _float(data, "vel", (S, N, n))
            if "h" in keys:
                h = np.asarray(data["h"])
                arrays["h"] = _float(data, "h", (S, N, None) if h.ndim == 3 else (N, None))
            if "edge_index" in keys:
                edge_index = _edges(data, "edge_index", N)
            else:  # every ordered pair of distinct particles
                i, j = np.nonzero(~np.eye(N, dtype=bool))
                edge_index = np.stack([i, j]).astype(np.int64)
            local_edge_index = _edges(data, "local_edge_index", N) if "local_edge_index" in keys else edge_index
            edge_attr = local_edge_attr = None
            if "edge_attr" in keys:
                edge_attr = _float(data, "edge_attr", (edge_index.shape[1], None))
            if "local_edge_attr" in keys:
                if "local_edge_index" not in keys:
                    raise ValueError("local_edge_attr needs local_edge_index")
                local_edge_attr = _float(data, "local_edge_attr", (local_edge_index.shape[1], None))
        if split_sizes is None:
            n_val = n_test = S // 10
            split_sizes = (S - n_val - n_test, n_val, n_test)
        sizes = [int(s) for s in split_sizes]
        if len(sizes) != 3 or min(sizes) < 0 or sum(sizes) > S:
            raise ValueError(f"split_sizes must be three non-negative counts summing to at most {S} (the "
                             f"samples in {path.name}), got {list(split_sizes)}")
        start = sum(sizes[:_SPLITS.index(split)])
        stop = start + sizes[_SPLITS.index(split)]
        if max_samples is not None:
            stop = min(stop, start + int(max_samples))
        self.path, self.split = path, split
        self._arrays = {k: (torch.from_numpy(v[start:stop]) if v.ndim == 3 and v.shape[0] == S else torch.from_numpy(v))
                        for k, v in arrays.items()}
        self._per_sample_h = "h" in arrays and arrays["h"].ndim == 3
        self._edge_index = torch.from_numpy(edge_index)
        self._local_edge_index = torch.from_numpy(local_edge_index)
        self._edge_attr = None if edge_attr is None else torch.from_numpy(edge_attr)
        self._local_edge_attr = None if local_edge_attr is None else torch.from_numpy(local_edge_attr)
        self._len = stop - start
        self.node_dim = int(arrays["h"].shape[-1]) if "h" in arrays else 1
        self.edge_dim = 0 if edge_attr is None else int(edge_attr.shape[1])
        self.local_edge_dim = 0 if local_edge_attr is None else int(local_edge_attr.shape[1])

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> Graph:
        if not -self._len <= index < self._len:
            raise IndexError(f"sample {index} of a split with {self._len}")
        a = self._arrays
        h = a.get("h")
        return Graph(pos=a["pos"][index], target=a["target"][index],
                     vel=a["vel"][index] if "vel" in a else None,
                     h=(h[index] if self._per_sample_h else h) if h is not None else None,
                     edge_index=self._edge_index, edge_attr=self._edge_attr,
                     local_edge_index=self._local_edge_index, local_edge_attr=self._local_edge_attr)

    def collate(self, indices: Sequence[int]) -> Graph:
        """Batched :class:`~eghn.data.Graph` of the given samples (what the trainer loads)."""
        indices = list(indices)
        if not indices:
            raise ValueError("collate() needs at least one sample index")
        return collate([self[int(i)] for i in indices])

    def __repr__(self) -> str:
        return f"PointCloudDataset({str(self.path)!r}, {self.split!r}): {self._len} samples"


def write_example(path: str | Path, systems: int = 12, nodes: int = 4, seed: int = 0) -> Path:
    """Write a small random point-cloud file for examples and tests: ``systems`` systems of
    ``nodes`` particles, velocities ``0.1 x`` and targets ``1.1 x`` (a scaling any equivariant
    model can learn). Returns ``path``.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> path = write_example(Path(tempfile.mkdtemp()) / "toy.npz")
        >>> len(PointCloudDataset(path, "train", split_sizes=[8, 2, 2]))
        8
    """
    path = Path(path)
    pos = np.random.default_rng(seed).normal(size=(systems, nodes, 3))
    np.savez(path, pos=pos, vel=0.1 * pos, target=1.1 * pos)
    return path
