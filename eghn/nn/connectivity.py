r"""The connectivity loss of paper Eq. 16."""

from __future__ import annotations

import torch
from torch import Tensor

from .pool_ops import pool_adjacency, row_normalize

__all__ = ["connectivity_loss", "connectivity_loss_dense"]


def connectivity_loss_dense(A_high: Tensor, reduction: str = "mean") -> Tensor:
    r""":math:`\lVert \mathrm{rownorm}(A^{high}) - I\rVert_F^2` for pooled adjacencies ``(G, K, K)``.

    ``reduction`` is ``"mean"`` or ``"sum"`` over graphs, or ``"none"`` for a ``(G,)`` tensor.
    Rows are normalised by :func:`~eghn.nn.pool_ops.row_normalize` (an empty row stays zero).

    Example:
        >>> import torch
        >>> from eghn.nn import connectivity_loss_dense
        >>> A = torch.tensor([[[2.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]])
        >>> connectivity_loss_dense(A, reduction="none").tolist()
        [0.0, 1.0]
    """
    rows = row_normalize(A_high)
    eye = torch.eye(A_high.shape[-1], dtype=A_high.dtype, device=A_high.device)
    per_graph = ((rows - eye) ** 2).sum((-2, -1))
    if reduction == "mean":
        return per_graph.mean()
    if reduction == "sum":
        return per_graph.sum()
    if reduction == "none":
        return per_graph
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def connectivity_loss(S: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int,
                      edge_weight: Tensor | None = None, reduction: str = "mean") -> Tensor:
    r"""Connectivity regulariser of Eq. 16 for one pooling level.

    .. math:: \mathcal{L}_{conn} = \big\lVert \mathrm{rownorm}(S^\top A S) - I \big\rVert_F^2

    It is small when the edges of :math:`A` (physical connectivity) stay inside clusters and
    is E(n)-invariant because :math:`S` is. The total loss adds
    :math:`\lambda \sum_l \mathcal{L}_{conn}^{(l)}` to the position MSE.

    Shapes:
        - S: :math:`(N, K)`, edge_index: :math:`(2, E)`, batch: :math:`(N,)`
        - output: scalar (or :math:`(G,)` with ``reduction="none"``)

    Example:
        >>> import torch
        >>> from eghn.nn import connectivity_loss
        >>> S = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        >>> batch = torch.zeros(4, dtype=torch.long)
        >>> inside = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]])  # edges within the two clusters
        >>> across = torch.tensor([[1, 2], [2, 1]])  # one edge between them
        >>> float(connectivity_loss(S, inside, batch, 1)), float(connectivity_loss(S, across, batch, 1))
        (0.0, 4.0)
    """
    return connectivity_loss_dense(pool_adjacency(S, edge_index, batch, num_graphs, edge_weight), reduction)
