"""Fast batching: a whole split collated once, batches cut from it with vectorised gathers.

The published code spends about half of a motion-capture epoch in a ``DataLoader``. Here a
split is collated once into one batched :class:`~eghn.data.Graph` (``ds.collate(all indices)``),
kept on the training device when it fits, and every mini-batch is cut out of it by index
arithmetic (no per-sample Python, no worker processes). Graphs of different sizes are handled
through per-graph node and edge offsets, so mixed-size batches need no padding.

When a split is too large to hold (``preload="lazy"``, or ``"auto"`` above ``max_gb``), each
batch is built by ``ds.collate(indices)`` instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from ..data.graph import Graph

__all__ = ["GraphBank", "concat_ranges", "estimate_bytes", "repeat_counts"]

_NODE_FIELDS = ("pos", "h", "vel", "target")


def concat_ranges(starts: Tensor, counts: Tensor, total: int | None = None) -> Tensor:
    """Concatenation of ``arange(s, s + c)`` for every pair, without a Python loop.

    >>> concat_ranges(torch.tensor([5, 0]), torch.tensor([2, 3])).tolist()
    [5, 6, 0, 1, 2]
    """
    if total is None:
        total = int(counts.sum())
    out_start = torch.cumsum(counts, 0) - counts
    shift = repeat_counts(starts - out_start, counts)
    return torch.arange(total, device=starts.device) + shift


def repeat_counts(values: Tensor, counts: Tensor) -> Tensor:
    """``values[k]`` repeated ``counts[k]`` times (``torch.repeat_interleave``, via a binary search).

    ``torch.repeat_interleave`` starts a thread pool even for tiny inputs, which costs
    milliseconds on a busy machine; this stays single-threaded for small batches.

    >>> repeat_counts(torch.tensor([7, 8, 9]), torch.tensor([2, 0, 1])).tolist()
    [7, 7, 9]
    """
    ends = torch.cumsum(counts, 0)
    total = int(ends[-1]) if ends.numel() else 0
    pos = torch.searchsorted(ends, torch.arange(total, device=counts.device), right=True)
    return values[pos]


def estimate_bytes(g: Graph) -> int:
    """Bytes held by the tensors of a graph.

    Example:
        >>> import torch
        >>> from eghn.data import Graph
        >>> from eghn.train.loader import estimate_bytes
        >>> g = Graph(pos=torch.zeros(10, 3), edge_index=torch.zeros(2, 20, dtype=torch.long))
        >>> estimate_bytes(g) >= 10 * 3 * 4 + 2 * 20 * 8
        True
    """
    return sum(v.numel() * v.element_size() for v in dataclasses.astuple(g) if isinstance(v, Tensor))


def _edge_layout(ei: Tensor | None, ea: Tensor | None, batch: Tensor, num_graphs: int):
    """Sort edges by graph (stable) and return (ei, ea, start, count) per graph."""
    if ei is None:
        return None, None, None, None
    g = batch[ei[0]] if ei.numel() else ei.new_empty(0)
    if g.numel() > 1 and bool((g[1:] < g[:-1]).any()):
        order = torch.argsort(g, stable=True)
        ei, g = ei[:, order], g[order]
        ea = None if ea is None else ea[order]
    count = torch.bincount(g, minlength=num_graphs)
    start = torch.cumsum(count, 0) - count
    return ei, ea, start, count


class GraphBank:
    """All graphs of a split as one batched graph, from which mini-batches are gathered.

    Args:
        dataset: any dataset of the common interface (``len``, ``collate(indices)``).
        device: where to keep the bank and return batches.
        dtype: floating-point dtype of the returned batches.
        mode: ``"device"`` (bank on ``device``), ``"cpu"`` (bank on CPU, batches moved),
            ``"lazy"`` (no bank: ``ds.collate`` per batch) or ``"auto"`` (``"device"`` when the
            split is under ``max_gb``, else ``"lazy"``).
        max_gb: size limit of ``"auto"``.

    Shapes:
        ``batch(idx)`` for ``idx`` of shape ``(B,)`` returns a Graph with ``num_graphs = B``
        whose nodes are those of the selected graphs in the order of ``idx``.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> tmp = Path(tempfile.mkdtemp())
        >>> from eghn.data.arrays import write_example
        >>> _ = write_example(tmp / "toy.npz")  # 12 systems of 4 particles
        >>> import torch
        >>> from eghn.data import PointCloudDataset
        >>> from eghn.train.loader import GraphBank
        >>> bank = GraphBank(PointCloudDataset(tmp / "toy.npz", "train", split_sizes=[8, 2, 2]))
        >>> bank.mode, bank.size, bank.node_count.tolist()
        ('device', 8, [4, 4, 4, 4, 4, 4, 4, 4])
        >>> g = bank.batch(torch.tensor([3, 0]))
        >>> g.num_graphs, g.num_nodes, torch.equal(g.pos[:4], bank.dataset[3].pos)
        (2, 8, True)
    """

    def __init__(self, dataset, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 mode: str = "auto", max_gb: float = 4.0) -> None:
        if len(dataset) == 0:
            raise ValueError("cannot train or evaluate on an empty dataset split")
        self.dataset = dataset
        self.device = torch.device(device)
        self.dtype = dtype
        self.size = len(dataset)
        if mode == "auto":
            probe = dataset.collate([0])
            est = estimate_bytes(probe) * self.size / 1e9
            mode = "device" if est <= max_gb else "lazy"
        if mode not in ("device", "cpu", "lazy"):
            raise ValueError(f"unknown preload mode {mode!r}")
        self.mode = mode
        if mode == "lazy":
            return
        full = dataset.collate(list(range(self.size)))
        full.validate()
        if full.num_graphs != self.size:
            raise ValueError(f"dataset.collate returned {full.num_graphs} graphs for {self.size} indices")
        where = self.device if mode == "device" else torch.device("cpu")
        full = full.to(where, dtype=dtype)
        ng = full.num_graphs
        if bool((full.batch[1:] < full.batch[:-1]).any()):
            raise ValueError("dataset.collate must return the nodes of each graph contiguously")
        # bookkeeping stays on the CPU so that cutting a batch never waits for the device
        self.node_count = torch.bincount(full.batch, minlength=ng).cpu()
        self.node_start = torch.cumsum(self.node_count, 0) - self.node_count
        self.nodes = {f: getattr(full, f) for f in _NODE_FIELDS}
        self.edges = {}
        for name in ("edge_index", "local_edge_index"):
            attr = name.replace("index", "attr")
            ei, ea, start, count = _edge_layout(getattr(full, name), getattr(full, attr), full.batch, ng)
            if ei is not None:
                start, count = start.cpu(), count.cpu()
            self.edges[name] = (ei, ea, start, count)
        self._where = where

    # ------------------------------------------------------------------ batching
    def num_nodes(self, idx: Tensor) -> int:
        """Total node count of the graphs ``idx`` (for exact loss normalisation under DDP)."""
        if self.mode == "lazy":
            return int(self.dataset.collate(idx.tolist()).num_nodes)
        return int(self.node_count[idx.cpu()].sum())

    def batch(self, idx: Tensor | Sequence[int]) -> Graph:
        """The batched graph of the samples ``idx`` (on :attr:`device`, dtype :attr:`dtype`)."""
        if not isinstance(idx, Tensor):
            idx = torch.as_tensor(list(idx), dtype=torch.long)
        idx = idx.cpu()
        if self.mode == "lazy":
            return self.dataset.collate(idx.tolist()).to(self.device, dtype=self.dtype)
        where = self._where
        b = idx.numel()
        counts = self.node_count[idx]
        starts = self.node_start[idx]
        total = int(counts.sum())
        nodes = concat_ranges(starts, counts, total).to(where, non_blocking=True)
        shift_of_graph = torch.cumsum(counts, 0) - counts - starts
        out: dict[str, object] = {f: (None if v is None else v[nodes]) for f, v in self.nodes.items()}
        out["batch"] = repeat_counts(torch.arange(b), counts).to(where)
        out["num_graphs"] = b
        for name, (ei, ea, estart, ecount) in self.edges.items():
            attr = name.replace("index", "attr")
            if ei is None:
                out[name], out[attr] = None, None
                continue
            ec = ecount[idx]
            etotal = int(ec.sum())
            sel = concat_ranges(estart[idx], ec, etotal).to(where, non_blocking=True)
            shift = repeat_counts(shift_of_graph, ec).to(where)
            out[name] = ei[:, sel] + shift
            out[attr] = None if ea is None else ea[sel]
        g = Graph(**out)
        if self.mode == "cpu":
            g = g.to(self.device)
        return g

    def batches(self, batch_size: int, order: Tensor | None = None) -> Iterator[Graph]:
        """Consecutive batches over ``order`` (default: ``0 .. len-1``); the last may be smaller."""
        if order is None:
            order = torch.arange(self.size)
        for s in range(0, order.numel(), batch_size):
            yield self.batch(order[s:s + batch_size])
