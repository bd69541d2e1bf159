"""Scatter-style reductions over node or graph indices (no dense ``N x N`` matrices)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["aggregate", "graph_mean", "scatter_mean", "scatter_sum"]


def scatter_sum(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Sum the rows of ``src`` into ``dim_size`` buckets given by ``index``.

    Shapes:
        - src: :math:`(E, *)`, index: :math:`(E,)` -> :math:`(\\text{dim\\_size}, *)`
    """
    out = src.new_zeros((dim_size, *src.shape[1:]))
    return out.index_add_(0, index, src)


def scatter_mean(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Mean of the rows of ``src`` per bucket (empty buckets give zeros)."""
    total = scatter_sum(src, index, dim_size)
    count = torch.bincount(index, minlength=dim_size).clamp_min(1).to(src.dtype)
    return total / count.view(-1, *([1] * (src.dim() - 1)))


def graph_mean(x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Per-graph mean of node quantities: ``(N, *) -> (G, *)``."""
    return scatter_mean(x, batch, num_graphs)


def aggregate(src: Tensor, index: Tensor, dim_size: int, how: str) -> Tensor:
    """``"sum"`` or ``"mean"`` aggregation of messages at their receivers."""
    if how == "sum":
        return scatter_sum(src, index, dim_size)
    if how == "mean":
        return scatter_mean(src, index, dim_size)
    raise ValueError(f"aggregation must be 'sum' or 'mean', got {how!r}")
