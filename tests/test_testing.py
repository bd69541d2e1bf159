"""The equivariance checker itself: negative controls and deliberately broken layers.

A checker that cannot fail proves nothing; these tests show it catches each way a layer can
lose equivariance, including the two breakages named in the issue (translating the velocity
channel, dropping the normalisation of Eq. 9).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import eghn.nn.epool as epool_module
from eghn.data import collate
from eghn.models import EGHN
from eghn.nn import EMMP, EPool
from eghn.nn.scatter import scatter_sum
from eghn.testing import (
    TOLERANCES,
    assert_equivariant,
    equivariance_error,
    random_orthogonal,
    random_rotation_about_axis,
    randomize_parameters,
)
from eghn.testing.strategies import random_graph


def _batch(dtype=torch.float64, dim=3):
    gen = torch.Generator().manual_seed(0)
    return collate([random_graph(n, dim=dim, node_dim=3, local_edge_dim=1, generator=gen)
                    for n in (6, 9)]).to(dtype=dtype)


def _Z(g):
    return torch.stack([g.pos, g.vel], -1)


def test_orthogonal_matrices():
    for det in (1, -1):
        Q = random_orthogonal(4, det, generator=torch.Generator().manual_seed(det + 5))
        assert torch.allclose(Q @ Q.T, torch.eye(4, dtype=Q.dtype), atol=1e-12)
        assert round(float(torch.det(Q))) == det
    R = random_rotation_about_axis(3, 1, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(R[1], torch.tensor([0.0, 1.0, 0.0], dtype=R.dtype))


class NotEquivariant(nn.Module):
    """Negative control: an MLP on raw coordinates."""

    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 3)).double()

    def forward(self, g):
        return g.pos + self.mlp(g.pos)


def test_negative_control_is_caught():
    g = _batch()
    errors = equivariance_error(NotEquivariant(), g, checks=("rotation", "reflection", "translation"))
    assert min(errors.values()) > 1e-3
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(NotEquivariant(), g, checks=("rotation",))
    # ... while the identity map passes, with the same checker
    assert max(equivariance_error(lambda gr: gr.pos, g).values()) < TOLERANCES[torch.float64]


def test_wrong_kind_is_caught():
    """Declaring velocities as positions (i.e. translating the velocity channel) is reported."""
    g = _batch()
    with pytest.raises(AssertionError, match="translation"):
        assert_equivariant(lambda gr: gr.vel, g, outputs="position", checks=("translation",))
    with pytest.raises(AssertionError, match="permutation"):
        # depends on the storage order of the nodes
        assert_equivariant(lambda gr: gr.pos + torch.cumsum(gr.pos, 0), g, checks=("permutation",))


def test_translation_on_velocity_channel_breaks_emmp():
    """An EMMP that centres *and* the user translates the velocity channel (position_channels
    wrongly including it) versus one that never centres: both lose equivariance."""
    g = _batch()
    uncentred = randomize_parameters(EMMP(2, 3, 8, position_channels=()).double(), seed=1)

    def fn(layer):
        return lambda gr: layer(_Z(gr), gr.h, gr.edge_index, gr.batch, gr.num_graphs)[0][..., 0]

    with pytest.raises(AssertionError, match="translation"):
        assert_equivariant(fn(uncentred), g, checks=("translation",))

    class VelocityTranslated(EMMP):
        def forward(self, Z, h, *args, **kw):
            Z2, h2 = super().forward(Z, h, *args, **kw)
            return torch.stack([Z2[..., 0], Z2[..., 1] + Z[..., 0].mean(0)], -1), h2

    broken = randomize_parameters(VelocityTranslated(2, 3, 8).double(), seed=1)
    with pytest.raises(AssertionError, match="translation"):
        assert_equivariant(lambda gr: broken(_Z(gr), gr.h, gr.edge_index, gr.batch, gr.num_graphs)[0][..., 1],
                           g, outputs="vector", checks=("translation",))


def test_missing_normalisation_in_eq9_breaks_epool(monkeypatch):
    """Z^high without the division by sum_i s_ik (Eq. 9) is not translation-equivariant: the
    checker used by tests/test_theorem2.py::test_epool_equivariant fails on it."""
    g = _batch()
    pool = randomize_parameters(EPool(2, 3, 8, 3, 1).double(), seed=2)

    def fn(gr):
        out = pool(_Z(gr), gr.h, gr.local_edge_index, gr.batch, gr.num_graphs, gr.local_edge_attr)
        return out.Z[..., 0]

    assert_equivariant(fn, g, outputs="position:fixed", checks=("translation",))

    def unnormalised(S, x, batch, num_graphs, **_):
        n, k = S.shape
        total = scatter_sum(torch.einsum("nk,nf->nkf", S, x.reshape(n, -1)), batch, num_graphs)
        return total.reshape(num_graphs * k, *x.shape[1:])

    monkeypatch.setattr(epool_module, "reduce_clusters", unnormalised)
    with pytest.raises(AssertionError, match="translation"):
        assert_equivariant(fn, g, outputs="position:fixed", checks=("translation",))


def test_cross_graph_leakage_is_caught():
    """A centroid over the whole batch instead of per graph: invisible on one graph, caught by
    per-graph transformations of a batch."""
    g = _batch()

    def leaky(gr):
        return gr.pos - gr.pos.mean(0) + gr.pos[gr.batch == 0].mean(0)

    errors = equivariance_error(leaky, g, checks=("translation",))
    assert errors["translation"] < 1e-9  # a shared translation does not reveal it ...
    Qs = torch.stack([random_orthogonal(3, generator=torch.Generator().manual_seed(k)) for k in range(2)])
    out, out2 = leaky(g), leaky(g.transform(Qs))
    expected = torch.einsum("nij,nj->ni", Qs[g.batch], out)
    assert (out2 - expected).abs().max() > 1e-3  # ... per-graph rotations do


def test_float32_budget_for_eghn():
    """EGHN in float32 stays inside the documented float32 budget."""
    g = _batch(torch.float32)
    model = randomize_parameters(EGHN(3, 0, hidden=16, clusters=[4, 2]).float(), gain=0.8, seed=0)
    errors = assert_equivariant(model, g)
    assert max(errors.values()) < TOLERANCES[torch.float32]
