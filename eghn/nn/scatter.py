"""Scatter-style reductions over node or graph indices (no dense ``N x N`` matrices)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["aggregate", "bucket_sizes", "gather", "graph_mean", "scatter_mean", "scatter_sum", "uniform_graph_size"]


def gather(src: Tensor, index: Tensor) -> Tensor:
    """Rows ``src[index]`` as :func:`torch.index_select`, whose backward is an ``index_add``
    (advanced indexing ``src[index]`` backpropagates through a much slower accumulating
    ``index_put``).

    Shapes:
        - src: :math:`(N, *)`, index: :math:`(E,)` -> :math:`(E, *)`

    Example:
        >>> import torch
        >>> from eghn.nn.scatter import gather
        >>> gather(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([2, 0, 2])).flatten().tolist()
        [3.0, 1.0, 3.0]
    """
    return src.index_select(0, index)


class _ScatterSum(torch.autograd.Function):
    """``index_add`` into zeros whose backward keeps only the index (autograd's own
    ``index_add`` also keeps the summed tensor alive, which on edge messages is most of the
    memory of a layer)."""

    @staticmethod
    def forward(ctx, src: Tensor, index: Tensor, dim_size: int) -> Tensor:
        ctx.save_for_backward(index)
        return src.new_zeros((dim_size, *src.shape[1:])).index_add_(0, index, src)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (index,) = ctx.saved_tensors
        return grad.index_select(0, index), None, None


def scatter_sum(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Sum the rows of ``src`` into ``dim_size`` buckets given by ``index``.

    Shapes:
        - src: :math:`(E, *)`, index: :math:`(E,)` -> :math:`(\\text{dim\\_size}, *)`

    Example:
        >>> import torch
        >>> from eghn.nn.scatter import scatter_sum
        >>> scatter_sum(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 2, 0]), 3).tolist()
        [4.0, 0.0, 2.0]
    """
    return _ScatterSum.apply(src, index, dim_size)


def scatter_mean(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Mean of the rows of ``src`` per bucket (empty buckets give zeros).

    Example:
        >>> import torch
        >>> from eghn.nn.scatter import scatter_mean
        >>> scatter_mean(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 2, 0]), 3).tolist()
        [2.0, 0.0, 2.0]
    """
    total = scatter_sum(src, index, dim_size)
    count = bucket_sizes(index, dim_size, src).clamp_min(1).to(src.dtype)
    return total / count.view(-1, *([1] * (src.dim() - 1)))


def bucket_sizes(index: Tensor, dim_size: int, like: Tensor) -> Tensor:
    """How many entries of ``index`` fall in each of ``dim_size`` buckets: ``torch.bincount``
    (integers), or inside a region traced by ``torch.compile`` a sum of ones in ``like``'s dtype
    (the same counts; ``bincount``'s data-dependent output size breaks the graph).

    Example:
        >>> import torch
        >>> from eghn.nn.scatter import bucket_sizes
        >>> bucket_sizes(torch.tensor([0, 2, 2, 0, 2]), 4, torch.zeros(1)).tolist()
        [2, 0, 3, 0]
    """
    if torch.compiler.is_compiling():
        return like.new_zeros(dim_size).index_add_(0, index, like.new_ones(index.shape[0]))
    return torch.bincount(index, minlength=dim_size)


def uniform_graph_size(batch: Tensor, num_graphs: int) -> int | None:
    """``n`` if the batch is ``num_graphs`` consecutive graphs of ``n`` nodes each, else ``None``.

    Batches of equally sized graphs (every motion-capture or M-complex batch) let the per-graph
    reductions run as reshapes and small batched matrix products instead of scatters; the
    result is the same. Inside a region traced by ``torch.compile`` the answer would depend on
    the values of ``batch`` (a graph break): there it is ``None``, the scatter path.

    Example:
        >>> import torch
        >>> from eghn.nn.scatter import uniform_graph_size
        >>> uniform_graph_size(torch.tensor([0, 0, 1, 1]), 2), uniform_graph_size(torch.tensor([0, 1, 1]), 2)
        (2, None)
    """
    if torch.compiler.is_compiling():
        return None
    n_nodes = batch.shape[0]
    if num_graphs < 1 or n_nodes % num_graphs:
        return None
    n = n_nodes // num_graphs
    expected = torch.arange(num_graphs, device=batch.device).repeat_interleave(n)
    return n if torch.equal(batch, expected) else None


def graph_mean(x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Per-graph mean of node quantities: ``(N, *) -> (G, *)``.

    Example:
        >>> import torch
        >>> from eghn.nn.scatter import graph_mean
        >>> graph_mean(torch.tensor([[1.0], [3.0], [5.0]]), torch.tensor([0, 0, 1]), 2).flatten().tolist()
        [2.0, 5.0]
    """
    n = uniform_graph_size(batch, num_graphs)
    if n is not None:
        return x.reshape(num_graphs, n, *x.shape[1:]).mean(1)
    return scatter_mean(x, batch, num_graphs)


def aggregate(src: Tensor, index: Tensor, dim_size: int, how: str) -> Tensor:
    """``"sum"`` or ``"mean"`` aggregation of messages at their receivers.

    Example:
        >>> import torch
        >>> from eghn.nn.scatter import aggregate
        >>> src, index = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 0, 1])
        >>> aggregate(src, index, 2, "sum").tolist(), aggregate(src, index, 2, "mean").tolist()
        ([3.0, 3.0], [1.5, 3.0])
    """
    if how == "sum":
        return scatter_sum(src, index, dim_size)
    if how == "mean":
        return scatter_mean(src, index, dim_size)
    raise ValueError(f"aggregation must be 'sum' or 'mean', got {how!r}")
