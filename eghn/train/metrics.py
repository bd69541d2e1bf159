"""Losses and metrics: position MSE over nodes and coordinates, accumulated exactly over batches.

The paper reports the mean squared error per coordinate, averaged over all particles of the
test set. For batches that mix graph sizes every node counts once (a masked mean: padded
entries never exist here, since batches are not padded).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..data.graph import Graph

__all__ = ["MSEAccumulator", "position_sse", "random_rotations", "transformed_batch"]


def position_sse(pred: Tensor, target: Tensor) -> Tensor:
    """Sum of squared errors over all nodes and coordinates.

    Shapes:
        pred, target: ``(N, n)``; returns a scalar.

    Example:
        >>> import torch
        >>> from eghn.train.metrics import position_sse
        >>> float(position_sse(torch.zeros(2, 3), torch.ones(2, 3)))
        6.0
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} does not match target {tuple(target.shape)}")
    diff = pred - target
    if diff.dtype in (torch.float16, torch.bfloat16):
        diff = diff.float()
    return diff.pow(2).sum()


class MSEAccumulator:
    """Accumulates a sum of squared errors and an element count in float64; ``.value()`` is the MSE.

    Example:
        >>> import torch
        >>> from eghn.train.metrics import MSEAccumulator
        >>> acc = MSEAccumulator()
        >>> acc.add(torch.zeros(2, 3), torch.ones(2, 3))       # squared errors 1
        >>> acc.add(torch.zeros(1, 3), torch.full((1, 3), 2.0))  # squared errors 4
        >>> acc.value()  # (6 * 1 + 3 * 4) / 9
        2.0
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.sse = torch.zeros((), dtype=torch.float64, device=device)
        self.count = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, pred: Tensor, target: Tensor) -> None:
        self.sse += position_sse(pred, target).double()
        self.count += target.numel()

    def all_reduce(self) -> None:
        """Sum over the processes of a ``torch.distributed`` group (no-op when not initialised)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            buf = torch.stack([self.sse, self.count])
            dist.all_reduce(buf)
            self.sse, self.count = buf[0], buf[1]

    def value(self) -> float:
        if float(self.count) == 0:
            raise ValueError("no predictions were accumulated")
        return float(self.sse / self.count)


def random_rotations(num: int, dim: int, *, generator: torch.Generator | None = None,
                     dtype: torch.dtype = torch.float64) -> Tensor:
    """``num`` random rotation matrices (det = +1) of size ``dim``, Haar-distributed.

    Shapes:
        returns ``(num, dim, dim)``.

    Example:
        >>> import torch
        >>> from eghn.train.metrics import random_rotations
        >>> R = random_rotations(4, 3, generator=torch.Generator().manual_seed(0))
        >>> tuple(R.shape), torch.allclose(torch.linalg.det(R), torch.ones(4, dtype=R.dtype))
        ((4, 3, 3), True)
    """
    a = torch.randn(num, dim, dim, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    neg = torch.linalg.det(q) < 0
    q[neg, :, 0] = -q[neg, :, 0]
    return q.to(dtype)


def transformed_batch(g: Graph, rotate: bool, translate: float, generator: torch.Generator,
                      axis: int | None = None) -> Graph:
    """``g`` with a random rotation and/or translation per graph (see :func:`eghn.train.trainer.evaluate_model`).

    With ``axis`` the rotations fix that coordinate axis and the translations leave it alone
    (data whose features single out a direction, e.g. the height in motion capture).

    Example:
        >>> import torch
        >>> from eghn.data import Graph
        >>> from eghn.train.metrics import transformed_batch
        >>> g = Graph(pos=torch.randn(4, 3), edge_index=torch.tensor([[0, 1], [1, 0]]), target=torch.randn(4, 3))
        >>> moved = transformed_batch(g, True, 1.0, torch.Generator().manual_seed(0))
        >>> torch.allclose(torch.cdist(moved.pos, moved.target), torch.cdist(g.pos, g.target), atol=1e-5)
        True
        >>> flat = transformed_batch(g, True, 1.0, torch.Generator().manual_seed(0), axis=2)
        >>> torch.allclose(flat.pos[:, 2], g.pos[:, 2])  # the axis is left alone
        True
    """
    q = random_rotations(g.num_graphs, g.dim, generator=generator) if rotate else None
    if q is not None and axis is not None:
        others = [k for k in range(g.dim) if k != axis]
        sub = random_rotations(g.num_graphs, g.dim - 1, generator=generator)
        q = torch.eye(g.dim, dtype=torch.float64).repeat(g.num_graphs, 1, 1)
        q[:, torch.tensor(others)[:, None], torch.tensor(others)[None, :]] = sub
    t = torch.randn(g.num_graphs, g.dim, generator=generator, dtype=torch.float64) * translate if translate else None
    if t is not None and axis is not None:
        t[:, axis] = 0
    return g.transform(None if q is None else q.to(g.pos), None if t is None else t.to(g.pos))
