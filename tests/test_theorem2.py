"""Theorem 2: EMMP, E-Pool, E-UnPool, the connectivity loss and EGHN are E(n)- and
permutation-equivariant, per graph inside batches of mixed sizes.

Each test is cited by a lemma of ``proofs/theorem2.md``. float64 is checked to 1e-9 relative,
float32 to the budget ``eghn.testing.TOLERANCES[torch.float32]``.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from eghn.data import collate
from eghn.models import EGHN
from eghn.nn import EMMP, EPool, EUnPool, connectivity_loss, pool_adjacency
from eghn.nn.invariants import center, gram, position_mask
from eghn.testing import assert_equivariant, randomize_parameters
from eghn.testing.strategies import graphs, orthogonal_matrices, random_graph

ALL = ("rotation", "reflection", "translation", "permutation")
E_N = ("rotation", "reflection", "translation")


def _Z(g):
    return torch.stack([g.pos, g.vel], -1)


@given(g=graphs(dim=3, max_graphs=3), Q=orthogonal_matrices(3), t=st.tuples(*[st.floats(-50, 50)] * 3))
def test_centering_lemma(g, Q, t):
    """Lemma 2.1: centring removes translations of position channels and commutes with Q;
    non-position channels (velocity) are neither centred nor translated."""
    t = torch.tensor(t, dtype=torch.float64)
    mask = position_mask(2, (0,), g.pos)
    Zc = center(_Z(g), g.batch, g.num_graphs, mask)
    g2 = g.transform(Q, t)
    Zc2 = center(_Z(g2), g.batch, g.num_graphs, mask)
    assert torch.allclose(Zc2, torch.einsum("ij,njm->nim", Q, Zc), atol=1e-10)
    assert torch.equal(Zc[..., 1], g.vel)


@given(g=graphs(dim=5, max_graphs=2), Q=orthogonal_matrices(5), normalize=st.booleans())
def test_gram_invariant(g, Q, normalize):
    """Lemma 2.2: Zhat^T Zhat (and its Frobenius-normalised version) is O(n)-invariant."""
    i, j = g.edge_index
    Zhat = torch.cat([_Z(g)[i], _Z(g)[j]], -1)
    rotated = torch.einsum("ij,ejm->eim", Q, Zhat)
    assert torch.allclose(gram(rotated, normalize), gram(Zhat, normalize), atol=1e-10)


def _emmp(dtype, dim_edges=2, normalize=True, aggr="sum", seed=0):
    layer = EMMP(2, 3, 16, dim_edges, normalize=normalize, aggr=aggr).to(dtype)
    return randomize_parameters(layer, seed=seed)


@pytest.mark.parametrize("dim", [2, 3, 5])
@pytest.mark.parametrize("normalize", [True, False])
def test_emmp_equivariant(dim, normalize, dtype):
    """Lemma 2.3 (EMMP): Z' equivariant (positions translate, velocities do not), h' invariant."""
    gen = torch.Generator().manual_seed(dim)
    g = collate([random_graph(n, dim=dim, node_dim=3, edge_dim=2, generator=gen) for n in (5, 9, 3)]).to(dtype=dtype)
    layer = _emmp(dtype, normalize=normalize)

    def fn(graph):
        Z, h = layer(_Z(graph), graph.h, graph.edge_index, graph.batch, graph.num_graphs, graph.edge_attr)
        return {"x": Z[..., 0], "v": Z[..., 1], "h": h}

    assert_equivariant(fn, g, outputs={"x": "position", "v": "vector", "h": "invariant"}, checks=E_N)


@given(g=graphs(max_graphs=3, node_dim=3, edge_dim=2), aggr=st.sampled_from(["sum", "mean"]))
def test_emmp_permutation_equivariant(g, aggr):
    """Lemma 2.4 (EMMP, permutations): reordering nodes (edges remapped) reorders outputs."""
    layer = _emmp(torch.float64, aggr=aggr)

    def fn(graph):
        Z, h = layer(_Z(graph), graph.h, graph.edge_index, graph.batch, graph.num_graphs, graph.edge_attr)
        return {"Z": Z, "h": h}

    assert_equivariant(fn, g, outputs={"Z": "vector", "h": "invariant"}, checks=("permutation",))


def _pool(dtype, K=3, seed=1):
    return randomize_parameters(EPool(2, 3, 16, K, 1, layers=2).to(dtype), seed=seed)


def _pool_fn(pool):
    def fn(graph):
        out = pool(_Z(graph), graph.h, graph.local_edge_index, graph.batch, graph.num_graphs, graph.local_edge_attr)
        A = pool_adjacency(out.scores, graph.edge_index, graph.batch, graph.num_graphs)
        return {"S": out.scores, "x": out.Z[..., 0], "v": out.Z[..., 1], "h": out.h, "A": A}

    kinds = {"S": "invariant", "x": "position:fixed", "v": "vector:fixed", "h": "invariant:fixed",
             "A": "invariant:fixed"}
    return fn, kinds


@pytest.mark.parametrize("dim", [2, 3, 5])
def test_epool_equivariant(dim, dtype):
    """Lemmas 2.5-2.7 (E-Pool): scores S invariant, Z^high equivariant, h^high and
    A^high = S^T A S invariant."""
    gen = torch.Generator().manual_seed(10 + dim)
    g = collate([random_graph(n, dim=dim, node_dim=3, local_edge_dim=1, generator=gen)
                 for n in (6, 11, 4)]).to(dtype=dtype)
    fn, kinds = _pool_fn(_pool(dtype))
    assert_equivariant(fn, g, outputs=kinds, checks=E_N)


@given(g=graphs(min_nodes=3, max_graphs=3, node_dim=3, local_edge_dim=1))
def test_epool_permutation(g):
    """Lemmas 2.5 and 2.7 (permutations): permuting nodes permutes the rows of S and leaves
    every cluster quantity unchanged."""
    fn, kinds = _pool_fn(_pool(torch.float64))
    assert_equivariant(fn, g, outputs=kinds, checks=("permutation",))


def _unpool_fn(dtype):
    pool = _pool(dtype, seed=2)
    unpool = randomize_parameters(EUnPool(2, 3, 16).to(dtype), seed=3)

    def fn(graph):
        Z = _Z(graph)
        p = pool(Z, graph.h, graph.local_edge_index, graph.batch, graph.num_graphs, graph.local_edge_attr)
        # move the clusters (equivariantly) so that Z^high is not just a function of Z^low
        Zh = torch.stack([p.Z[..., 0] + 0.3 * p.Z[..., 1], 1.5 * p.Z[..., 1]], -1)
        Z_out, h_out = unpool(Z, graph.h, Zh, p.h, p.scores, graph.batch, graph.num_graphs)
        return {"x": Z_out[..., 0], "v": Z_out[..., 1], "h": h_out}

    return fn, {"x": "position", "v": "vector", "h": "invariant"}


@pytest.mark.parametrize("dim", [2, 3, 5])
def test_eunpool_equivariant(dim, dtype):
    """Lemma 2.8 (E-UnPool): Z^out equivariant, h^out invariant."""
    gen = torch.Generator().manual_seed(20 + dim)
    g = collate([random_graph(n, dim=dim, node_dim=3, local_edge_dim=1, generator=gen)
                 for n in (7, 4, 10)]).to(dtype=dtype)
    fn, kinds = _unpool_fn(dtype)
    assert_equivariant(fn, g, outputs=kinds, checks=E_N)


@given(g=graphs(min_nodes=3, max_graphs=3, node_dim=3, local_edge_dim=1))
def test_eunpool_permutation(g):
    """Lemma 2.8 (E-UnPool, permutations)."""
    fn, kinds = _unpool_fn(torch.float64)
    assert_equivariant(fn, g, outputs=kinds, checks=("permutation",))


@given(g=graphs(min_nodes=3, max_graphs=3, node_dim=3, local_edge_dim=1))
def test_connectivity_loss_invariant(g):
    """Lemma 2.9: the connectivity loss is E(n)- and permutation-invariant."""
    pool = _pool(torch.float64, seed=4)

    def fn(graph):
        S = pool.select(_Z(graph), graph.h, graph.local_edge_index, graph.batch, graph.num_graphs,
                        graph.local_edge_attr)[1]
        return {"L": connectivity_loss(S, graph.local_edge_index, graph.batch, graph.num_graphs, reduction="none")}

    assert_equivariant(fn, g, outputs={"L": "invariant:fixed"}, checks=ALL)


def _eghn(levels, dtype, dim_edges=2, seed=5):
    clusters = [4] if levels == 1 else [4, 2]
    model = EGHN(3, dim_edges, 1, hidden=16, clusters=clusters, enc_layers=2, pool_layers=1, dec_layers=1)
    return randomize_parameters(model.to(dtype), gain=0.8, seed=seed)


EGHN_OUT = {"pos": "position", "aux.connectivity_loss": "invariant:fixed"}


@pytest.mark.parametrize("levels", [1, 2])
@pytest.mark.parametrize("dim", [2, 3, 5])
def test_eghn_equivariant(levels, dim, dtype):
    """Theorem 2 (composition): EGHN with L = 1 and L = 2 is E(n)-equivariant on mixed-size batches."""
    gen = torch.Generator().manual_seed(30 + dim)
    g = collate([random_graph(n, dim=dim, node_dim=3, edge_dim=2, local_edge_dim=1, generator=gen)
                 for n in (8, 5, 13)]).to(dtype=dtype)
    model = _eghn(levels, dtype)
    assert_equivariant(model, g, outputs=EGHN_OUT, checks=E_N)


@given(g=graphs(min_nodes=4, max_graphs=3, node_dim=3, edge_dim=2, local_edge_dim=1), levels=st.sampled_from([1, 2]))
def test_eghn_permutation_equivariant(g, levels):
    """Theorem 2 (composition, permutations): reordering particles reorders EGHN's predictions."""
    assert_equivariant(_eghn(levels, torch.float64), g, outputs=EGHN_OUT, checks=ALL)


def test_mixed_batch_no_leakage():
    """Lemma 2.4 (batches): per-graph means and S^T A S stay inside each graph: a graph's prediction is the same alone
    or in a batch, and transforming one graph of a batch leaves the others' predictions unchanged."""
    gen = torch.Generator().manual_seed(7)
    parts = [random_graph(n, node_dim=3, edge_dim=2, local_edge_dim=1, generator=gen) for n in (6, 12, 9)]
    model = _eghn(2, torch.float64)
    batch = collate(parts)
    out = model(batch).pos
    for k, part in enumerate(parts):
        alone = model(part).pos
        assert torch.allclose(out[batch.batch == k], alone, atol=1e-10)
    # rotate + translate graph 1 only, per-graph transformations
    Qs = torch.stack([torch.eye(3, dtype=torch.float64)] * 3)
    from eghn.testing import random_orthogonal

    Qs[1] = random_orthogonal(3, generator=torch.Generator().manual_seed(1))
    ts = torch.zeros(3, 3, dtype=torch.float64)
    ts[1] = torch.tensor([5.0, -3.0, 2.0], dtype=torch.float64)
    out2 = model(batch.transform(Qs, ts)).pos
    m1 = batch.batch == 1
    assert torch.allclose(out2[~m1], out[~m1], atol=1e-10)
    assert torch.allclose(out2[m1], out[m1] @ Qs[1].T + ts[1], atol=1e-9)


@pytest.mark.parametrize("levels", [1, 2])
def test_eghn_cluster_labels_are_interchangeable(levels):
    """The coarse levels treat their clusters alike: renaming the clusters of every E-Pool (a
    permutation of its score head's outputs) leaves EGHN's prediction and connectivity loss
    unchanged. A change of the scores that is not a renaming changes the prediction (the
    negative control)."""
    gen = torch.Generator().manual_seed(8)
    g = collate([random_graph(n, node_dim=3, edge_dim=2, local_edge_dim=1, generator=gen) for n in (8, 5, 13)])
    g = g.to(dtype=torch.float64)
    model = _eghn(levels, torch.float64)
    before = model(g)
    heads = [pool.score[-1] for pool in model.pools]
    with torch.no_grad():
        for head in heads:
            perm = torch.roll(torch.arange(head.out_features), 1)
            head.weight.copy_(head.weight[perm])
            head.bias.copy_(head.bias[perm])
        after = model(g)
        assert not torch.equal(before.aux["scores"][0], after.aux["scores"][0])  # the labels did move
        torch.testing.assert_close(after.pos, before.pos, rtol=0, atol=1e-10)
        torch.testing.assert_close(after.aux["connectivity_loss"], before.aux["connectivity_loss"], rtol=0, atol=1e-10)
        heads[0].bias[0] += 1.0  # not a renaming: one cluster favoured
        assert (model(g).pos - before.pos).abs().max() > 1e-4
