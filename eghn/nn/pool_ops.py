r"""The three steps of E-Pool as plain functions: *select* (scores), *reduce* (cluster
means) and *connect* (pooled adjacency), all computed per graph of a batch.

Cluster ``k`` of graph ``g`` is node ``g * K + k`` of the pooled system.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .scatter import bucket_sizes, gather, scatter_sum, uniform_graph_size

__all__ = ["cluster_batch", "cluster_weights", "dense_to_edges", "log_cluster_mass", "pool_adjacency",
           "reduce_clusters", "row_normalize", "unpool"]


def cluster_batch(num_graphs: int, clusters: int, device: torch.device | None = None) -> Tensor:
    """Graph id of every cluster node of the pooled system, shape ``(G * K,)``.

    Example:
        >>> from eghn.nn.pool_ops import cluster_batch
        >>> cluster_batch(2, 3).tolist()
        [0, 0, 0, 1, 1, 1]
    """
    return torch.arange(num_graphs, device=device).repeat_interleave(clusters)


def _shifted_exp(log_scores: Tensor, batch: Tensor, num_graphs: int) -> tuple[Tensor, Tensor, Tensor, int | None]:
    r"""``(e, c, total, n)``: :math:`e_{ik} = \exp(\log s_{ik} - c_{g(i)k})` :math:`(N, K)` with
    :math:`c_{gk} = \max_{i \in g} \log s_{ik}` (0 for a column of :math:`-\infty`; no gradient
    flows through it) :math:`(G, K)`, the column sums of :math:`e` over each graph's nodes
    :math:`(G, K)`, and the common graph size (``None`` for mixed sizes). The largest term of every
    sum is :math:`\exp(0) = 1`, so a column's total underflows only when all its scores are 0."""
    if not log_scores.is_floating_point():
        raise TypeError(f"log_scores must be floating point, got {log_scores.dtype}")
    n_nodes, k = log_scores.shape
    n = uniform_graph_size(batch, num_graphs)
    if n is not None:  # equal graph sizes: reductions over dim 1 of (G, n, K)
        shifted = log_scores.reshape(num_graphs, n, k)
        top = shifted.detach().amax(1)
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
        e = torch.exp(shifted - top.unsqueeze(1))
        return e.reshape(n_nodes, k), top, e.sum(1), n
    index = batch.view(-1, 1).expand(-1, k)
    top = log_scores.new_full((num_graphs, k), -torch.inf)
    top = top.scatter_reduce(0, index, log_scores.detach(), reduce="amax", include_self=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    e = torch.exp(log_scores - gather(top, batch))
    return e, top, scatter_sum(e, batch, num_graphs), None


def log_cluster_mass(log_scores: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    r"""Log of every cluster's score mass in every graph, a log-sum-exp over each graph's nodes.

    .. math:: \log m_{gk} = \log \sum_{i \in g} s_{ik}
              = c_{gk} + \log \sum_{i \in g} \exp(\log s_{ik} - c_{gk}),
              \qquad c_{gk} = \max_{i \in g} \log s_{ik}

    The shift by the column maximum makes the largest term :math:`\exp(0) = 1`, so the sum
    never underflows: the result is finite whenever one score of the column is, even when
    :math:`m_{gk}` itself is a denormal or 0 in floating point. A column whose log-scores are
    all :math:`-\infty` gets :math:`-\infty` (and no NaN in the gradient).

    Shapes:
        - log_scores: :math:`(N, K)`, batch: :math:`(N,)` -> :math:`(G, K)`

    Example:
        >>> import torch
        >>> from eghn.nn.pool_ops import log_cluster_mass
        >>> log_S = torch.tensor([[0.0, -1000.0], [0.0, -1001.0]])  # s = 1 and e^-1000: 0 in float32
        >>> [round(v, 3) for v in log_cluster_mass(log_S, torch.zeros(2, dtype=torch.long), 1)[0].tolist()]
        [0.693, -999.687]
    """
    _, top, total, _ = _shifted_exp(log_scores, batch, num_graphs)
    held = total > 0
    return torch.where(held, top + torch.log(torch.where(held, total, torch.ones_like(total))), -torch.inf)


def cluster_weights(log_scores: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    r"""Normalised cluster weights of Eq. 9-10, computed in log space.

    .. math:: w_{ik} = \frac{s_{ik}}{\sum_{j \in g(i)} s_{jk}}
              = \frac{\exp(\log s_{ik} - c_{gk})}{\sum_{j \in g(i)} \exp(\log s_{jk} - c_{gk})},
              \qquad c_{gk} = \max_{j \in g} \log s_{jk}

    i.e. a softmax over the nodes of each graph of every column of :math:`\log S`, with the
    shifted sums of :func:`log_cluster_mass`. The largest term of each sum is
    :math:`\exp(0) = 1`, so the denominator is at least 1: it never underflows, even when the
    total score :math:`\sum_j s_{jk}` of a cluster is a denormal or 0 in floating point, and every
    column of :math:`W` sums to 1 over each graph's nodes up to rounding. Cluster quantities
    :math:`W^\top x` are therefore always affine combinations of the particles' quantities, the
    property Lemma 2.6 of ``proofs/theorem2.md`` relies on.

    A column of a graph whose log-scores are all :math:`-\infty` (:math:`s_{jk} = 0` for every
    node, possible only when ``log_scores`` is taken from an underflowed ``S``) gets uniform weights
    (the centroid).

    Shapes:
        - log_scores: :math:`(N, K)`, batch: :math:`(N,)` -> :math:`(N, K)`

    Example:
        >>> import torch
        >>> from eghn.nn.pool_ops import cluster_weights
        >>> S = torch.tensor([[0.9, 0.1], [0.3, 0.7]])
        >>> cluster_weights(S.log(), torch.zeros(2, dtype=torch.long), 1).sum(0).tolist()  # columns sum to 1
        [1.0, 1.0]
    """
    e, _, total, n = _shifted_exp(log_scores, batch, num_graphs)
    held = total > 0
    total = torch.where(held, total, torch.ones_like(total))
    if n is not None:  # equal graph sizes: broadcast over (G, n, K)
        n_nodes, k = e.shape
        W = torch.where(held.unsqueeze(1), e.reshape(num_graphs, n, k) / total.unsqueeze(1), 1.0 / n)
        return W.reshape(n_nodes, k)
    size = gather(bucket_sizes(batch, num_graphs, log_scores).to(log_scores.dtype), batch).unsqueeze(-1)
    return torch.where(gather(held, batch), e / gather(total, batch), 1.0 / size)


def reduce_clusters(S: Tensor, x: Tensor, batch: Tensor, num_graphs: int, *,
                    log_scores: Tensor | None = None) -> Tensor:
    r"""Score-weighted cluster means (paper Eq. 9-10):
    :math:`x^{high}_k = \sum_i s_{ik} x_i / \sum_i s_{ik} = \sum_i w_{ik} x_i` over the nodes of each graph.

    The weights :math:`w_{ik}` are computed by :func:`cluster_weights` from ``log_scores``
    (:math:`\log S`, e.g. the ``log_softmax`` of the score logits; pass it whenever it is
    available) or else from ``S.log()``. No division by a possibly underflowed cluster mass
    takes place, so :math:`x^{high}` is an affine combination of the :math:`x_i` for any scores.

    Shapes:
        - S: :math:`(N, K)`, x: :math:`(N, *)`, batch: :math:`(N,)`, log_scores: :math:`(N, K)`
          -> :math:`(G K, *)`

    Example:
        >>> import torch
        >>> from eghn.nn import reduce_clusters
        >>> S = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> x = torch.tensor([[0.0], [2.0], [5.0]])
        >>> reduce_clusters(S, x, torch.zeros(3, dtype=torch.long), 1).flatten().tolist()
        [1.0, 5.0]
    """
    n_nodes, k = S.shape
    W = cluster_weights(S.log() if log_scores is None else log_scores, batch, num_graphs)
    flat = x.reshape(n_nodes, -1)
    n = uniform_graph_size(batch, num_graphs)
    if n is not None:  # equal graph sizes: W_g^T x_g as one batched product
        total = torch.bmm(W.reshape(num_graphs, n, k).transpose(1, 2), flat.reshape(num_graphs, n, -1))
        return total.reshape(num_graphs * k, *x.shape[1:])
    total = scatter_sum(W.unsqueeze(-1) * flat.unsqueeze(1), batch, num_graphs)  # (G, K, F)
    return total.reshape(num_graphs * k, *x.shape[1:])


def unpool(S: Tensor, x_high: Tensor, batch: Tensor) -> Tensor:
    r"""Map cluster quantities back to nodes (paper Eq. 12): :math:`x^{agg}_i = \sum_k s_{ik} x^{high}_k`.

    Shapes:
        - S: :math:`(N, K)`, x_high: :math:`(G K, *)`, batch: :math:`(N,)` -> :math:`(N, *)`

    Example:
        >>> import torch
        >>> from eghn.nn import unpool
        >>> S = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
        >>> unpool(S, torch.tensor([[2.0], [4.0]]), torch.zeros(2, dtype=torch.long)).flatten().tolist()
        [2.0, 3.0]
    """
    n_nodes, k = S.shape
    high = x_high.reshape(-1, k, x_high[0].numel())  # (G, K, F)
    n = uniform_graph_size(batch, high.shape[0])
    if n is not None:  # equal graph sizes: S_g x^high_g as one batched product
        return torch.bmm(S.reshape(-1, n, k), high).reshape(n_nodes, *x_high.shape[1:])
    out = (S.unsqueeze(-1) * gather(high, batch)).sum(1)
    return out.reshape(n_nodes, *x_high.shape[1:])


def pool_adjacency(S: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int,
                   edge_weight: Tensor | None = None) -> Tensor:
    r"""Pooled adjacency :math:`A^{high} = S^\top A S` of every graph (paper Eq. 11).

    Computed from the edge list as :math:`(AS)_i = \sum_j a_{ij} s_j`, then
    :math:`S^\top (AS)` summed per graph: :math:`O(EK + NK^2)` work, no :math:`N \times N` matrix.

    Shapes:
        - S: :math:`(N, K)`, edge_index: :math:`(2, E)`, edge_weight: :math:`(E,)`
        - output: :math:`(G, K, K)`

    Example:
        >>> import torch
        >>> from eghn.nn import pool_adjacency
        >>> S = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> path = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])  # 0 - 1 - 2
        >>> pool_adjacency(S, path, torch.zeros(3, dtype=torch.long), 1).tolist()
        [[[2.0, 1.0], [1.0, 0.0]]]
    """
    i, j = edge_index
    sj = gather(S, j) if edge_weight is None else gather(S, j) * edge_weight.view(-1, 1)
    AS = scatter_sum(sj, i, S.shape[0])  # (N, K)
    n = uniform_graph_size(batch, num_graphs)
    if n is not None:  # equal graph sizes: S_g^T (AS)_g as one batched product
        k = S.shape[1]
        return torch.bmm(S.reshape(num_graphs, n, k).transpose(1, 2), AS.reshape(num_graphs, n, k))
    return scatter_sum(S.unsqueeze(-1) * AS.unsqueeze(1), batch, num_graphs)


def row_normalize(A: Tensor, eps: float = 1e-12) -> Tensor:
    r"""Rows of the pooled adjacencies divided by their sums, :math:`A_{kl} / \max(\sum_{l'} A_{kl'}, \epsilon)`.

    Rows whose sum is below :math:`\epsilon` (a cluster without edges, or whose score mass
    underflowed) are divided by :math:`\epsilon` instead: they shrink continuously to zero with
    the row, and value and gradient stay finite (the gradient is bounded by :math:`1/\epsilon`)
    even for a zero or denormal row sum, where a plain division would give NaN or infinity.
    The result is an invariant whatever :math:`\epsilon`, since row sums are.

    Shapes:
        - A: :math:`(G, K, K)` -> :math:`(G, K, K)`

    Example:
        >>> import torch
        >>> from eghn.nn.pool_ops import row_normalize
        >>> row_normalize(torch.tensor([[[1.0, 3.0], [0.0, 0.0]]])).tolist()
        [[[0.25, 0.75], [0.0, 0.0]]]
    """
    return A / A.sum(-1, keepdim=True).clamp_min(eps)


def _off_diagonal(k: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Rows and columns of the off-diagonal entries of a ``k x k`` matrix in row-major order (as
    ``torch.nonzero(~torch.eye(k))``, whose data-dependent size breaks a ``torch.compile`` graph)."""
    if not torch.compiler.is_compiling():
        return torch.nonzero(~torch.eye(k, dtype=torch.bool, device=device), as_tuple=True)
    j = torch.arange(k - 1, device=device).repeat(k)
    kk = torch.arange(k, device=device).repeat_interleave(k - 1)
    return kk, j + (j >= kk).long()


def dense_to_edges(A: Tensor) -> tuple[Tensor, Tensor]:
    r"""Turn per-graph dense cluster adjacencies into a weighted edge list between clusters.

    Every ordered pair :math:`k \neq l` of clusters of a graph becomes an edge; its attribute
    is the row-normalised weight :math:`A_{kl} / \sum_{l'} A_{kl'}` (an invariant; see
    :func:`row_normalize`).

    Shapes:
        - A: :math:`(G, K, K)` -> edge_index :math:`(2, G K (K-1))`, edge_attr :math:`(G K (K-1), 1)`

    Example:
        >>> import torch
        >>> from eghn.nn import dense_to_edges
        >>> edge_index, edge_attr = dense_to_edges(torch.tensor([[[2.0, 1.0], [1.0, 3.0]]]))
        >>> edge_index.tolist(), [round(w, 4) for w in edge_attr.flatten().tolist()]
        ([[0, 1], [1, 0]], [0.3333, 0.25])
    """
    g, k, _ = A.shape
    rows = row_normalize(A)
    kk, ll = _off_diagonal(k, A.device)
    base = (torch.arange(g, device=A.device) * k).view(-1, 1)
    edge_index = torch.stack([(base + kk).flatten(), (base + ll).flatten()])
    return edge_index, rows[:, kk, ll].reshape(-1, 1)
