r"""The three steps of E-Pool as plain functions: *select* (scores), *reduce* (cluster
means) and *connect* (pooled adjacency), all computed per graph of a batch.

Cluster ``k`` of graph ``g`` is node ``g * K + k`` of the pooled system.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .scatter import gather, scatter_sum, uniform_graph_size

__all__ = ["cluster_batch", "dense_to_edges", "pool_adjacency", "reduce_clusters", "unpool"]


def cluster_batch(num_graphs: int, clusters: int, device: torch.device | None = None) -> Tensor:
    """Graph id of every cluster node of the pooled system, shape ``(G * K,)``."""
    return torch.arange(num_graphs, device=device).repeat_interleave(clusters)


def reduce_clusters(S: Tensor, x: Tensor, batch: Tensor, num_graphs: int, eps: float = 1e-12) -> Tensor:
    r"""Score-weighted cluster means (paper Eq. 9-10):
    :math:`x^{high}_k = \sum_i s_{ik} x_i / \sum_i s_{ik}` over the nodes of each graph.

    Shapes:
        - S: :math:`(N, K)`, x: :math:`(N, *)`, batch: :math:`(N,)` -> :math:`(G K, *)`
    """
    n_nodes, k = S.shape
    flat = x.reshape(n_nodes, -1)
    n = uniform_graph_size(batch, num_graphs)
    if n is not None:  # equal graph sizes: S_g^T x_g as one batched product
        Sg = S.reshape(num_graphs, n, k)
        total = torch.bmm(Sg.transpose(1, 2), flat.reshape(num_graphs, n, -1))
        mass = Sg.sum(1).clamp_min(eps)
        return (total / mass.unsqueeze(-1)).reshape(num_graphs * k, *x.shape[1:])
    weighted = S.unsqueeze(-1) * flat.unsqueeze(1)  # (N, K, F)
    total = scatter_sum(weighted, batch, num_graphs)  # (G, K, F)
    mass = scatter_sum(S, batch, num_graphs).clamp_min(eps)  # (G, K)
    return (total / mass.unsqueeze(-1)).reshape(num_graphs * k, *x.shape[1:])


def unpool(S: Tensor, x_high: Tensor, batch: Tensor) -> Tensor:
    r"""Map cluster quantities back to nodes (paper Eq. 12): :math:`x^{agg}_i = \sum_k s_{ik} x^{high}_k`.

    Shapes:
        - S: :math:`(N, K)`, x_high: :math:`(G K, *)`, batch: :math:`(N,)` -> :math:`(N, *)`
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
    """
    i, j = edge_index
    sj = gather(S, j) if edge_weight is None else gather(S, j) * edge_weight.view(-1, 1)
    AS = scatter_sum(sj, i, S.shape[0])  # (N, K)
    n = uniform_graph_size(batch, num_graphs)
    if n is not None:  # equal graph sizes: S_g^T (AS)_g as one batched product
        k = S.shape[1]
        return torch.bmm(S.reshape(num_graphs, n, k).transpose(1, 2), AS.reshape(num_graphs, n, k))
    return scatter_sum(S.unsqueeze(-1) * AS.unsqueeze(1), batch, num_graphs)


def dense_to_edges(A: Tensor, eps: float = 1e-12) -> tuple[Tensor, Tensor]:
    r"""Turn per-graph dense cluster adjacencies into a weighted edge list between clusters.

    Every ordered pair :math:`k \neq l` of clusters of a graph becomes an edge; its attribute
    is the row-normalised weight :math:`A_{kl} / \sum_{l'} A_{kl'}` (an invariant).

    Shapes:
        - A: :math:`(G, K, K)` -> edge_index :math:`(2, G K (K-1))`, edge_attr :math:`(G K (K-1), 1)`
    """
    g, k, _ = A.shape
    rows = A / A.sum(-1, keepdim=True).clamp_min(eps)
    off = ~torch.eye(k, dtype=torch.bool, device=A.device)
    kk, ll = torch.nonzero(off, as_tuple=True)
    base = (torch.arange(g, device=A.device) * k).view(-1, 1)
    edge_index = torch.stack([(base + kk).flatten(), (base + ll).flatten()])
    return edge_index, rows[:, kk, ll].reshape(-1, 1)
