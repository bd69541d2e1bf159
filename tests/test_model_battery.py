"""One test battery for every registered model (NequIP-style): forward/backward on batches of
mixed graph sizes, E(n) and permutation equivariance in float64 and float32, determinism.

A model declares what it respects in the class attribute ``symmetries`` (default: all of
rotation, reflection, translation, permutation). Symmetries a model does *not* declare are
asserted to be broken, so the MPNN baseline is checked to be non-equivariant (the negative
control of the battery).
"""

from __future__ import annotations

import pytest
import torch

import eghn.models
from eghn.data import collate
from eghn.testing import TOLERANCES, equivariance_error, randomize_parameters
from eghn.testing.strategies import random_graph

ALL = ("rotation", "reflection", "translation", "permutation")

#: small configurations so that the battery stays fast; keys not listed use DEFAULT
CONFIGS: dict[str, dict] = {
    "eghn": dict(hidden=16, clusters=[4, 2], enc_layers=1, pool_layers=1, dec_layers=1),
    "tfn": dict(hidden=4, layers=2, lmax=1),
    "se3_transformer": dict(hidden=4, layers=2, lmax=1, heads=2),
}
DEFAULT = dict(hidden=16, layers=2)


def _model(name: str, dtype: torch.dtype, seed: int = 0):
    torch.manual_seed(seed)
    model = eghn.models.get(name, node_dim=2, edge_dim=2, local_edge_dim=1, **CONFIGS.get(name, DEFAULT))
    return randomize_parameters(model, gain=0.5, seed=seed).to(dtype)


def _batch(dtype: torch.dtype):
    gen = torch.Generator().manual_seed(11)
    parts = [random_graph(n, dim=3, node_dim=2, edge_dim=2, local_edge_dim=1, target=True, generator=gen)
             for n in (7, 12, 5)]
    return collate(parts).to(dtype=dtype)


# names starting with "_" are models that tests register for themselves, not part of the package
@pytest.fixture(params=[n for n in eghn.models.available() if not n.startswith("_")])
def name(request) -> str:
    return request.param


def test_forward_backward_mixed_sizes(name):
    g = _batch(torch.float32)
    model = _model(name, torch.float32)
    out = model(g)
    assert out.pos.shape == g.pos.shape and out.pos.dtype == torch.float32
    loss = ((out.pos - g.target) ** 2).mean() + out.aux.get("reg_loss", 0.0)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)


def test_equivariance(name, dtype):
    g = _batch(dtype)
    model = _model(name, dtype)
    declared = set(getattr(type(model), "symmetries", ALL))
    errors = equivariance_error(model, g, checks=ALL)
    tol = TOLERANCES[dtype]
    for check, err in errors.items():
        if check in declared:
            assert err <= tol, f"{name} should respect {check} ({dtype}): error {err:.3e} > {tol:.0e}"
        else:
            assert err > 1e3 * tol, f"{name} declares no {check} symmetry, yet its error is only {err:.3e}"


def test_deterministic(name):
    g = _batch(torch.float64)
    a = _model(name, torch.float64, seed=3)
    b = _model(name, torch.float64, seed=3)
    assert torch.equal(a(g).pos, b(g).pos)
    assert torch.equal(a(g).pos, a(g).pos)


def test_rejects_bad_input(name):
    g = _batch(torch.float64)
    model = _model(name, torch.float64)
    bad = g.pos.clone()
    bad[1, 2] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        model(g.replace(pos=bad))


def _degenerate(case: str, dtype: torch.dtype):
    """Geometric edge cases: a self-loop, two coincident bonded nodes (a zero-length bond,
    connected by a global edge too), every node of a graph at one point (with and without
    velocities)."""
    gen = torch.Generator().manual_seed(5)
    parts = [random_graph(n, dim=3, node_dim=2, edge_dim=2, local_edge_dim=1, target=True, generator=gen)
             for n in (7, 6)]
    g = parts[0]
    if case == "self_loop":
        g = g.replace(edge_index=torch.cat([g.edge_index, torch.tensor([[2], [2]])], 1),
                      edge_attr=torch.cat([g.edge_attr, g.edge_attr[:1]], 0))
    elif case == "coincident_pair":
        a, b = (int(x) for x in g.local_edge_index[:, 0])
        pos, vel = g.pos.clone(), g.vel.clone()
        pos[b], vel[b] = pos[a], vel[a]
        extra = torch.tensor([[a, b], [b, a]])
        g = g.replace(pos=pos, vel=vel, edge_index=torch.cat([g.edge_index, extra], 1),
                      edge_attr=torch.cat([g.edge_attr, g.edge_attr[:1].repeat(2, 1)], 0))
    elif case in ("all_coincident", "all_coincident_at_rest"):
        pos = torch.full_like(g.pos, 1.5)
        vel = torch.zeros_like(g.vel) if case == "all_coincident_at_rest" else g.vel
        g = g.replace(pos=pos, vel=vel)
    return collate([g, parts[1]]).to(dtype=dtype)


@pytest.mark.parametrize("case", ["self_loop", "coincident_pair", "all_coincident", "all_coincident_at_rest"])
def test_degenerate_geometry_gives_finite_values_and_gradients(name, dtype, case):
    g = _degenerate(case, dtype)
    model = _model(name, dtype)
    pos = g.pos.clone().requires_grad_(True)
    out = model(g.replace(pos=pos))
    assert torch.isfinite(out.pos).all(), f"{name}: non-finite output for {case}"
    loss = ((out.pos - g.target) ** 2).mean() + out.aux.get("reg_loss", 0.0)
    loss.backward()
    assert torch.isfinite(pos.grad).all(), f"{name}: non-finite gradient w.r.t. positions for {case}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"{name}: non-finite gradients of {len(bad)} parameters for {case}, e.g. {bad[:3]}"
