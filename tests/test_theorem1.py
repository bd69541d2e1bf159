"""Theorem 1: EMMP contains EGNN and GMN as special cases of its message MLP.

Each test is cited by a step of ``proofs/theorem1.md``.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from eghn.nn import EGNNLayer, GMNLayer, emmp_from_egnn, emmp_from_gmn
from eghn.nn.invariants import center, gram, position_mask
from eghn.testing import randomize_parameters
from eghn.testing.strategies import graphs

TOL = 1e-10


@given(g=graphs(dim=3, max_graphs=3), dim=st.sampled_from([2, 3, 5]))
def test_gram_matrix_gives_distance(g, dim):
    """Lemma 1.1: ||x_i - x_j||^2 = G_11 + G_22 - 2 G_12 for G = Zhat^T Zhat, Zhat = [x_i - xbar, x_j - xbar]."""
    x = torch.randn(g.num_nodes, dim, dtype=torch.float64)
    Z = x.unsqueeze(-1)
    Zc = center(Z, g.batch, g.num_graphs, position_mask(1, (0,), Z))
    i, j = g.edge_index
    G = gram(torch.cat([Zc[i], Zc[j]], -1), normalize=False)
    d2 = ((x[i] - x[j]) ** 2).sum(-1)
    assert torch.allclose(G[:, 0, 0] + G[:, 1, 1] - 2 * G[:, 0, 1], d2, rtol=0, atol=1e-12)


@given(
    g=graphs(max_graphs=3, node_dim=4, edge_dim=2),
    dim=st.sampled_from([2, 3, 5]),
    use_edges=st.booleans(),
    coord_aggr=st.sampled_from(["sum", "mean"]),
    residual=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_emmp_reduces_to_egnn(g, dim, use_edges, coord_aggr, residual, seed):
    """Theorem 1 (EGNN): the converted EMMP reproduces the EGNN layer to 1e-10 (float64)."""
    x = torch.randn(g.num_nodes, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    h = torch.randn(g.num_nodes, 8, dtype=torch.float64)
    layer = EGNNLayer(8, 2 if use_edges else 0, coord_aggr=coord_aggr, residual=residual).double()
    randomize_parameters(layer, seed=seed)
    ea = g.edge_attr if use_edges else None
    x_ref, h_ref, _ = layer(x, h, g.edge_index, ea)
    emmp = emmp_from_egnn(layer)
    assert not emmp.normalize
    Z_out, h_out = emmp(x.unsqueeze(-1), h, g.edge_index, g.batch, g.num_graphs, ea)
    assert torch.allclose(Z_out[..., 0], x_ref, rtol=0, atol=TOL)
    assert torch.allclose(h_out, h_ref, rtol=0, atol=TOL)
    # the conversion shares parameters: it is the same function, not a copy
    assert {id(p) for p in emmp.parameters()} <= {id(p) for p in layer.parameters()}


@given(
    g=graphs(max_graphs=3, node_dim=4, edge_dim=3),
    dim=st.sampled_from([2, 3, 5]),
    channels=st.integers(1, 3),
    normalize=st.booleans(),
    aggr=st.sampled_from(["sum", "mean"]),
    seed=st.integers(0, 10_000),
)
def test_emmp_reduces_to_gmn(g, dim, channels, normalize, aggr, seed):
    """Theorem 1 (GMN): with Hhat = [H; -H], EMMP reproduces the multi-channel layer to 1e-10."""
    gen = torch.Generator().manual_seed(seed)
    Z = torch.randn(g.num_nodes, dim, channels, dtype=torch.float64, generator=gen)
    h = torch.randn(g.num_nodes, 8, dtype=torch.float64, generator=gen)
    layer = GMNLayer(channels, 8, 3, normalize=normalize, aggr=aggr).double()
    randomize_parameters(layer, seed=seed)
    Z_ref, h_ref = layer(Z, h, g.edge_index, g.edge_attr)
    Z_out, h_out = emmp_from_gmn(layer)(Z, h, g.edge_index, g.batch, g.num_graphs, g.edge_attr)
    assert torch.allclose(Z_out, Z_ref, rtol=0, atol=TOL)
    assert torch.allclose(h_out, h_ref, rtol=0, atol=TOL)


def test_conversion_rejects_non_emmp_layers():
    with pytest.raises(ValueError, match="velocity"):
        emmp_from_egnn(EGNNLayer(4, velocity=True))
    with pytest.raises(ValueError, match="clamp"):
        emmp_from_egnn(EGNNLayer(4, clamp=100.0))
