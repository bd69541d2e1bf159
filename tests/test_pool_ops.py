"""The per-graph reductions give the same numbers on the fast path for batches of equally sized
graphs (reshapes and batched products) and on the scatter path (any batch), against a loop over
the graphs."""

from __future__ import annotations

import pytest
import torch

from eghn.nn.invariants import center
from eghn.nn.pool_ops import log_cluster_mass, pool_adjacency, reduce_clusters, unpool
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
    masses = torch.stack([S[batch == g].sum(0) for g in range(G)])
    torch.testing.assert_close(log_cluster_mass(S.log(), batch, G), masses.log(), rtol=1e-12, atol=1e-12)
    means = torch.stack([Z[batch == g].mean(0) for g in range(G)])
    torch.testing.assert_close(graph_mean(Z, batch, G), means, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", ["uniform", "mixed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_cluster_mass_stays_finite_where_the_mass_underflows(layout, dtype):
    batch = torch.arange(2).repeat_interleave(3) if layout == "uniform" else torch.tensor([0, 0, 1, 1, 1, 1])
    n = batch.numel()
    # cluster 1 holds e^-1000 per particle: 0 in float32 and float64, but its log is about -1000
    logits = torch.zeros(n, 2, dtype=dtype)
    logits[:, 1] = -1000.0
    logits.requires_grad_(True)
    log_S = torch.log_softmax(logits, -1)
    assert float(log_S[:, 1].exp().sum()) == 0.0
    out = log_cluster_mass(log_S, batch, 2)
    sizes = torch.bincount(batch).to(torch.float64)
    expected = torch.stack([torch.zeros(2, dtype=torch.float64), -1000.0 + torch.zeros(2, dtype=torch.float64)], 1)
    torch.testing.assert_close(out.double(), expected + sizes.log().unsqueeze(1), rtol=0, atol=1e-4)
    # the gradient on the underflowed column is the cluster weight (1 / size), not 0
    (grad,) = torch.autograd.grad(out[:, 1].sum(), logits)
    torch.testing.assert_close(grad[:, 1].double(), 1 / sizes[batch], rtol=1e-5, atol=0)
    # a column of -inf log-scores (an underflowed S taken to the log) is -inf, with no NaN in the gradient
    log_zero = torch.tensor([[0.0, -torch.inf]] * n, dtype=dtype, requires_grad=True)
    dead = log_cluster_mass(log_zero, batch, 2)
    assert torch.isneginf(dead[:, 1]).all() and torch.isfinite(dead[:, 0]).all()
    (grad,) = torch.autograd.grad(dead[:, 0].sum(), log_zero)
    assert torch.isfinite(grad).all()
