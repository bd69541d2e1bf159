"""The per-graph reductions give the same numbers on the fast path for batches of equally sized
graphs (reshapes and batched products) and on the scatter path (any batch), against a loop over
the graphs."""

from __future__ import annotations

import pytest
import torch

from eghn.nn.invariants import center
from eghn.nn.pool_ops import pool_adjacency, reduce_clusters, unpool
from eghn.nn.scatter import graph_mean, uniform_graph_size


def _case(batch):
    torch.manual_seed(0)
    n_nodes, k = batch.shape[0], 3
    S = torch.softmax(torch.randn(n_nodes, k, dtype=torch.float64), -1)
    Z = torch.randn(n_nodes, 3, 2, dtype=torch.float64)
    i, j = torch.randint(0, n_nodes, (2, 40))
    keep = batch[i] == batch[j]  # edges inside graphs
    return S, Z, torch.stack([i[keep], j[keep]]), torch.rand(int(keep.sum()), dtype=torch.float64)


def _reference(batch, G, S, Z, ei, w):
    mask = torch.tensor([1.0, 0.0], dtype=torch.float64)
    k = S.shape[1]
    centred, high, agg, adj = torch.empty_like(Z), [], torch.empty_like(Z), []
    for g in range(G):
        idx = torch.nonzero(batch == g).flatten()
        Zg, Sg = Z[idx], S[idx]
        centred[idx] = Zg - Zg.mean(0) * mask
        Hg = torch.einsum("nk,nab->kab", Sg, Zg) / Sg.sum(0).view(k, 1, 1)
        high.append(Hg)
        agg[idx] = torch.einsum("nk,kab->nab", Sg, Hg)
        A = torch.zeros(batch.shape[0], batch.shape[0], dtype=torch.float64)
        A.index_put_((ei[0], ei[1]), w, accumulate=True)  # repeated edges add up
        adj.append(Sg.T @ A[idx][:, idx] @ Sg)
    return centred, torch.cat(high), agg, torch.stack(adj)


@pytest.mark.parametrize("layout", ["uniform", "shuffled", "mixed"])
def test_fast_and_scatter_paths_match_reference(layout):
    G = 3
    if layout == "uniform":
        batch = torch.arange(G).repeat_interleave(4)
    elif layout == "shuffled":
        batch = torch.arange(G).repeat_interleave(4)[torch.randperm(12, generator=torch.Generator().manual_seed(1))]
    else:
        batch = torch.tensor([0] * 3 + [1] * 5 + [2] * 4)
    assert (uniform_graph_size(batch, G) is not None) == (layout == "uniform")
    S, Z, ei, w = _case(batch)
    mask = torch.tensor([1.0, 0.0], dtype=torch.float64)
    ref_c, ref_high, ref_agg, ref_adj = _reference(batch, G, S, Z, ei, w)
    torch.testing.assert_close(center(Z, batch, G, mask), ref_c, rtol=1e-12, atol=1e-12)
    high = reduce_clusters(S, Z, batch, G)
    torch.testing.assert_close(high, ref_high, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(unpool(S, high, batch), ref_agg, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pool_adjacency(S, ei, batch, G, w), ref_adj, rtol=1e-12, atol=1e-12)
    means = torch.stack([Z[batch == g].mean(0) for g in range(G)])
    torch.testing.assert_close(graph_mean(Z, batch, G), means, rtol=1e-12, atol=1e-12)
