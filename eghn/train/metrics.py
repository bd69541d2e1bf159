"""Losses and metrics: position MSE over nodes and coordinates, accumulated exactly over batches.

The paper reports the mean squared error per coordinate, averaged over all particles of the
test set. For batches that mix graph sizes every node counts once (a masked mean: padded
entries never exist here, since batches are not padded).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["MSEAccumulator", "position_sse", "random_rotations"]


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
