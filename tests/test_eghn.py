"""EGHN's public entry point: shapes, presets, auxiliary record, training signal, input errors."""

from __future__ import annotations

import pytest
import torch

from eghn.data import Graph, collate
from eghn.models import EGHN, get
from eghn.testing.strategies import random_graph


def _batch(sizes=(7, 10), dim=3, **kw):
    gen = torch.Generator().manual_seed(0)
    return collate([random_graph(n, dim=dim, node_dim=2, edge_dim=1, local_edge_dim=0, generator=gen, **kw)
                    for n in sizes]).to(dtype=torch.float32)


@pytest.mark.parametrize("dim", [2, 3, 5])
def test_forward_shapes_and_aux(dim):
    g = _batch(dim=dim)
    model = EGHN(2, 1, hidden=16, clusters=[5, 2])
    out = model(g)
    assert out.pos.shape == g.pos.shape
    S1, S2 = out.aux["scores"]
    assert S1.shape == (g.num_nodes, 5) and S2.shape == (g.num_graphs * 5, 2)
    assert torch.allclose(S1.sum(-1), torch.ones(g.num_nodes), atol=1e-6)
    assert out.aux["reg_loss"].shape == () and float(out.aux["reg_loss"].detach()) >= 0


def test_single_level_preset():
    m = EGHN.single_level(2, 1, clusters=5)
    assert m.clusters == [5] and len(m.encoders[0]) == 3 and len(m.pools[0].emmps) == 3
    assert len(m.decoders[0]) == 1 and m.embed.out_features == 64


def test_registry_builds_eghn():
    m = get("eghn", node_dim=2, edge_dim=1, hidden=8, clusters=[3])
    assert isinstance(m, EGHN)
    with pytest.raises(KeyError, match="unknown model"):
        get("no-such-model")


def test_learns_on_a_toy_problem():
    """The training signal reaches every block: 60 Adam steps cut the loss of a toy target."""
    torch.manual_seed(0)
    g = _batch(sizes=(8, 8, 8), target=False)
    g = g.replace(target=g.pos + 0.5 * g.vel)
    model = EGHN(2, 1, hidden=16, clusters=[3], enc_layers=1, pool_layers=1, dec_layers=1)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)

    def loss_fn():
        out = model(g)
        return ((out.pos - g.target) ** 2).mean() + out.aux["reg_loss"] * 0.01

    first = loss_fn().item()
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    # every parameter gets a gradient, except the node-feature head of the last E-UnPool,
    # whose h^out (Eq. 14) has no consumer at the output level
    no_grad = {n for n, p in model.named_parameters() if p.grad is None}
    assert no_grad == {"unpools.0.to_h.weight", "unpools.0.to_h.bias"}
    assert loss_fn().item() < 0.5 * first


def test_deterministic():
    g = _batch()
    torch.manual_seed(3)
    a = EGHN(2, 1, hidden=8, clusters=[3])(g).pos
    torch.manual_seed(3)
    b = EGHN(2, 1, hidden=8, clusters=[3])(g).pos
    assert torch.equal(a, b)


def test_input_errors():
    model = EGHN(2, 1, hidden=8, clusters=[4])
    g = _batch(sizes=(6, 3))
    with pytest.raises(ValueError, match="at least 4 nodes"):
        model(g)
    good = _batch()
    with pytest.raises(ValueError, match="NaN"):
        bad = good.pos.clone()
        bad[0, 0] = float("nan")
        model(good.replace(pos=bad))
    with pytest.raises(ValueError, match="velocities"):
        model(good.replace(vel=None))
    with pytest.raises(ValueError, match="node features"):
        model(good.replace(h=torch.ones(good.num_nodes, 5)))
    with pytest.raises(ValueError, match="edge features"):
        model(good.replace(edge_attr=None))
    with pytest.raises(ValueError, match="refers to node"):
        ei = good.edge_index.clone()
        ei[0, 0] = 999
        model(good.replace(edge_index=ei))
    with pytest.raises(ValueError, match="empty"):
        model(Graph(pos=torch.zeros(0, 3), vel=torch.zeros(0, 3), h=torch.zeros(0, 2)))
    with pytest.raises(TypeError, match="Graph"):
        model(good.pos)


def test_bad_configuration():
    with pytest.raises(ValueError, match="must not increase"):
        EGHN(2, 1, clusters=[2, 4])
    with pytest.raises(ValueError, match="positive"):
        EGHN(2, 1, clusters=[])


@pytest.mark.parametrize(
    "options",
    [dict(emmp="egnn"), dict(adjacency="global"), dict(adjacency="local"), dict(hierarchy=False),
     dict(clusters=[4, 2], adjacency="local")],
    ids=["emmp-egnn", "global-only", "local-only", "no-hierarchy", "two-level-local"],
)
def test_equivariant_ablations_stay_equivariant(options):
    """Table 4's ablations that keep equivariant layers are still E(n)-equivariant."""
    from eghn.testing import assert_equivariant, randomize_parameters

    g = _batch().to(dtype=torch.float64)
    options = dict(options)
    model = EGHN(2, 1, hidden=8, clusters=options.pop("clusters", [3]), **options).double()
    assert_equivariant(randomize_parameters(model, gain=0.8), g)
    if options.get("hierarchy") is False:
        assert model.clusters == [1]


def test_mpnn_ablation_is_not_equivariant():
    """'EMMP replaced by MPNN' (Table 4) loses rotation and translation equivariance; the
    battery's checker sees it."""
    from eghn.testing import equivariance_error, randomize_parameters

    g = _batch().to(dtype=torch.float64)
    model = randomize_parameters(EGHN(2, 1, hidden=8, clusters=[3], emmp="mpnn").double(), gain=0.8)
    errors = equivariance_error(model, g)
    assert errors["rotation"] > 1e-3 and errors["translation"] > 1e-3 and errors["permutation"] < 1e-9
    with pytest.raises(ValueError, match="emmp must be"):
        EGHN(2, 1, emmp="dense")
    with pytest.raises(ValueError, match="adjacency must be"):
        EGHN(2, 1, adjacency="both")


def test_fresh_model_starts_near_the_identity():
    """Every block starts near the identity (small coordinate heads, E-UnPool's H = [I; -I]):
    with zero velocities an untrained EGHN returns the input positions, not cluster centres."""
    g = _batch(sizes=(9, 12)).to(dtype=torch.float64)
    g = g.replace(vel=torch.zeros_like(g.vel))
    torch.manual_seed(0)
    model = EGHN(2, 1, hidden=16, clusters=[4, 2]).double()
    pred = model(g).pos
    spread = (g.pos - g.pos.mean(0)).norm(dim=-1).mean()
    assert (pred - g.pos).norm(dim=-1).mean() < 1e-2 * spread


@pytest.mark.parametrize("emmp", ["egnn", "mpnn"])
def test_weights_saved_with_the_old_ablation_layer_names_load(emmp):
    """E-Pool's ablation layers were ``pools.L.emmps.K.layer.*`` before they became one-layer blocks."""
    from eghn.models import EGHN

    torch.manual_seed(0)
    model = EGHN(node_dim=1, hidden=8, clusters=[3, 2], layers=1, emmp=emmp)
    old = {k.replace(".emmps.0.0.", ".emmps.0.layer."): v.clone() for k, v in model.state_dict().items()}
    assert any(".emmps.0.layer." in k for k in old)
    fresh = EGHN(node_dim=1, hidden=8, clusters=[3, 2], layers=1, emmp=emmp)
    fresh.load_state_dict(old)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True))
