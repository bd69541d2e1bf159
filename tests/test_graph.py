"""The Graph type: batching without padding, validation, transformations."""

from __future__ import annotations

import pytest
import torch

from eghn.data import Graph, collate
from eghn.testing import random_orthogonal
from eghn.testing.strategies import random_graph


@pytest.mark.parametrize("dim", [2, 3, 5])
def test_collate_unbatch_roundtrip(dim):
    gen = torch.Generator().manual_seed(dim)
    parts = [random_graph(n, dim=dim, edge_dim=2, local_edge_dim=1, target=True, generator=gen) for n in (3, 7, 1)]
    batch = collate(parts).validate()
    assert batch.num_graphs == 3 and batch.num_nodes == 11 and batch.dim == dim
    assert batch.nodes_per_graph().tolist() == [3, 7, 1]
    for a, b in zip(parts, batch.unbatch()):
        for name in ("pos", "h", "vel", "target", "edge_index", "edge_attr", "local_edge_index", "local_edge_attr"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_collate_offsets_edges():
    a = Graph(pos=torch.zeros(2, 3), edge_index=torch.tensor([[0], [1]]))
    b = Graph(pos=torch.ones(3, 3), edge_index=torch.tensor([[2], [0]]))
    out = collate([a, b])
    assert out.edge_index.tolist() == [[0, 4], [1, 2]]
    assert out.batch.tolist() == [0, 0, 1, 1, 1]


def _g(**kw):
    base = dict(pos=torch.randn(4, 3), vel=torch.randn(4, 3), edge_index=torch.tensor([[0, 1], [1, 0]]))
    base.update(kw)
    return Graph(**base)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(pos=torch.randn(0, 3), vel=None, edge_index=torch.empty(2, 0, dtype=torch.long)), "empty"),
        (dict(vel=torch.randn(4, 2)), "vel must have the shape"),
        (dict(pos=torch.tensor([[0.0, 0, 0], [1, 1, 1], [float("nan"), 0, 0], [0, 0, 1]])), "NaN or inf"),
        (dict(vel=torch.full((4, 3), float("inf"))), "NaN or inf"),
        (dict(edge_index=torch.tensor([[0, 4], [1, 0]])), "refers to node 4"),
        (dict(edge_index=torch.tensor([[0, -1], [1, 0]])), "negative"),
        (dict(edge_index=torch.tensor([0, 1])), r"shape \(2, E\)"),
        (dict(edge_index=torch.tensor([[0.0], [1.0]])), "int64"),
        (dict(edge_attr=torch.randn(3, 2)), "edge_attr must have shape"),
        (dict(h=torch.randn(3, 2)), "Graph.h must have shape"),
        (dict(batch=torch.tensor([0, 0, 2, 2]), num_graphs=3), "have no nodes"),
        (dict(batch=torch.tensor([0, 1, 1, 1]), num_graphs=2), "two different graphs"),
    ],
)
def test_validation_errors(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        _g(**kw).validate()


def test_pos_must_be_matrix():
    with pytest.raises(ValueError, match=r"shape \(N, n\)"):
        Graph(pos=torch.randn(5))


def test_collate_rejects_mixed_fields_and_dims():
    with pytest.raises(ValueError, match="spatial dimensions"):
        collate([Graph(pos=torch.zeros(2, 3)), Graph(pos=torch.zeros(2, 2))])
    with pytest.raises(ValueError, match="vel is set in some graphs"):
        collate([Graph(pos=torch.zeros(2, 3), vel=torch.zeros(2, 3)), Graph(pos=torch.zeros(2, 3))])
    with pytest.raises(ValueError, match="at least one graph"):
        collate([])


def test_transform_and_permute():
    g = random_graph(6, target=True, generator=torch.Generator().manual_seed(0))
    Q = random_orthogonal(3, det=-1)
    t = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    g2 = g.transform(Q, t)
    assert torch.allclose(g2.pos, g.pos @ Q.T + t)
    assert torch.allclose(g2.vel, g.vel @ Q.T)
    assert torch.allclose(g2.target, g.target @ Q.T + t)
    assert torch.equal(g2.h, g.h)
    perm = torch.tensor([5, 3, 1, 0, 2, 4])
    gp = g.permute(perm)
    assert torch.equal(gp.pos, g.pos[perm])
    # the same undirected edges, expressed in the new numbering
    old = {tuple(e) for e in g.edge_index.T.tolist()}
    new = {(int(perm[i]), int(perm[j])) for i, j in gp.edge_index.T.tolist()}
    assert old == new


def test_to_casts_only_floats():
    g = random_graph(4, generator=torch.Generator().manual_seed(0)).to(dtype=torch.float32)
    assert g.pos.dtype == torch.float32 and g.edge_index.dtype == torch.long and g.batch.dtype == torch.long


def test_to_accepts_a_dtype_positionally():
    g = random_graph(4, generator=torch.Generator().manual_seed(0))
    g64 = g.to(torch.float64)
    assert g64.pos.dtype == torch.float64 and g64.edge_index.dtype == torch.long
    assert g64.pos.device == g.pos.device
