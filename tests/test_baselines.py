"""Model-specific tests of the baselines (the shared equivariance battery lives elsewhere).

Which baselines respect reflections: ``linear``, ``rf``, ``egnn``, ``gmn`` (E(n), any n) and
``tfn``, ``se3_transformer`` (E(3): parity is tracked in their irreps) are equivariant under
rotations *and* reflections; ``mpnn`` is equivariant under neither (negative control).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import eghn.models.egnn
import eghn.models.gmn
import eghn.models.linear
import eghn.models.mpnn
import eghn.models.radial_field
import eghn.models.se3_transformer
import eghn.models.tfn  # noqa: F401  (registers the models)
from eghn.data import Graph, collate
from eghn.models import get
from eghn.models._common import ModelOutOfMemoryError, scatter_softmax
from eghn.models.gmn import sticks_from_local_edges

TINY = {
    "linear": {},
    "mpnn": {"hidden": 8, "layers": 2},
    "rf": {"hidden": 8, "layers": 2},
    "egnn": {"hidden": 8, "layers": 2},
    "gmn": {"hidden": 8, "layers": 2},
    "tfn": {"hidden": 4, "layers": 2, "lmax": 1, "radial_hidden": 8, "num_basis": 4},
    "se3_transformer": {"hidden": 4, "layers": 2, "lmax": 1, "heads": 2, "radial_hidden": 8, "num_basis": 4},
}


def full_graph(n: int, dim: int = 3, node_dim: int = 2, edge_dim: int = 1, seed: int = 0,
               dtype: torch.dtype = torch.float64) -> Graph:
    gen = torch.Generator().manual_seed(seed)
    ei = torch.tensor([[i, j] for i in range(n) for j in range(n) if i != j], dtype=torch.long).t()
    chain = torch.tensor([[k, k + 1] for k in range(n - 1)] + [[k + 1, k] for k in range(n - 1)]).t()
    return Graph(pos=torch.randn(n, dim, generator=gen, dtype=dtype),
                 vel=torch.randn(n, dim, generator=gen, dtype=dtype),
                 h=torch.randn(n, node_dim, generator=gen, dtype=dtype), edge_index=ei,
                 edge_attr=torch.randn(ei.shape[1], edge_dim, generator=gen, dtype=dtype),
                 local_edge_index=chain)


def orthogonal(dim: int, det: float, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.linalg.det(q) * det < 0:
        q[:, 0] = -q[:, 0]
    return q


_CACHE: dict[tuple, torch.nn.Module] = {}


def build(name: str, **extra) -> torch.nn.Module:
    """A seeded float64 model; e3nn models (slow to build) are shared between tests.

    Tests that change a shared model do so only through ``monkeypatch`` (undone afterwards).
    """
    key = (name, tuple(sorted(extra.items())))
    if name in ("tfn", "se3_transformer") and key in _CACHE:
        return _CACHE[key]
    torch.manual_seed(0)
    model = get(name, node_dim=2, edge_dim=1, local_edge_dim=0, **{**TINY[name], **extra}).double()
    if name in ("tfn", "se3_transformer"):
        _CACHE[key] = model
    return model


# ----------------------------------------------------------------------------------- EGNN
def egnn_by_hand(model, g: Graph) -> torch.Tensor:
    """The EGNN-vel equations evaluated edge by edge in plain Python (no scatter, no batching)."""

    def lin(layer, z):
        return layer.weight @ z + layer.bias if layer.bias is not None else layer.weight @ z

    def phi_e(layer, z):
        return F.silu(lin(layer.phi_e[2], F.silu(lin(layer.phi_e[0], z))))

    n = g.num_nodes
    x = [g.pos[i].clone() for i in range(n)]
    h = [lin(model.embed, g.h[i]) for i in range(n)]
    edges = g.edge_index.t().tolist()
    for layer in model.layers:
        new_x, new_h = [], []
        for i in range(n):
            nbrs = [(e, j) for e, (r, j) in enumerate(edges) if r == i]
            shift = torch.zeros_like(x[i])
            msum = torch.zeros_like(h[i])
            for e, j in nbrs:
                d2 = ((x[i] - x[j]) ** 2).sum().reshape(1)
                m = phi_e(layer, torch.cat([h[i], h[j], d2, g.edge_attr[e]]))
                coef = lin(layer.phi_x[2], F.silu(lin(layer.phi_x[0], m)))
                shift = shift + ((x[i] - x[j]) * coef).clamp(-100, 100)
                msum = msum + m
            shift = shift / max(len(nbrs), 1)  # C = 1 / deg(i)
            gain = lin(layer.phi_v[2], F.silu(lin(layer.phi_v[0], h[i])))
            new_x.append(x[i] + shift + gain * g.vel[i])  # the *input* velocity in every layer
            new_h.append(h[i] + lin(layer.phi_h[2], F.silu(lin(layer.phi_h[0], torch.cat([h[i], msum])))))
        x, h = new_x, new_h
    return torch.stack(x)


def set_weights_by_hand(model) -> None:
    """Deterministic, non-random weights: a smooth pattern scaled per layer."""
    with torch.no_grad():
        for k, (_, p) in enumerate(sorted(model.named_parameters())):
            vals = torch.arange(p.numel(), dtype=p.dtype)
            p.copy_((torch.sin(0.7 * vals + k) * 0.5).view_as(p))


def test_egnn_matches_equations_for_hand_set_weights():
    g = collate([full_graph(4, seed=1), full_graph(3, seed=2)])
    model = build("egnn", hidden=3)
    set_weights_by_hand(model)
    got = model(g).pos
    torch.testing.assert_close(got, egnn_by_hand(model, g), rtol=1e-12, atol=1e-12)


def test_egnn_clamps_coordinate_messages_at_100():
    g = full_graph(3, seed=3)
    g = g.replace(pos=g.pos * 1e4)  # huge distances: every per-edge term saturates
    model = build("egnn", hidden=3, layers=1)
    set_weights_by_hand(model)
    torch.testing.assert_close(model(g).pos, egnn_by_hand(model, g), rtol=1e-12, atol=1e-9)
    unclamped = build("egnn", hidden=3, layers=1, clamp=None)
    set_weights_by_hand(unclamped)
    assert not torch.allclose(unclamped(g).pos, model(g).pos)


def test_theorem1_conversion_agrees_with_baseline_egnn():
    """Every layer of the baseline = EMMP from Theorem 1 (velocity term phi_v(h) v added; the
    clamp is inactive for these inputs). Uses eghn.nn.emmp_from_egnn on a velocity-free copy."""
    from eghn.nn import EGNNLayer, emmp_from_egnn

    g = collate([full_graph(4, seed=21), full_graph(5, seed=22)])
    model = build("egnn", hidden=6, layers=3)
    x, h = g.pos, model.embed(g.h)
    for layer in model.layers:
        plain = EGNNLayer(6, 1, velocity=False, clamp=None, coord_aggr="mean").double()
        plain.load_state_dict({k: v for k, v in layer.state_dict().items() if not k.startswith("phi_v")})
        emmp = emmp_from_egnn(plain)
        Z, h_emmp = emmp(x.unsqueeze(-1), h, g.edge_index, g.batch, g.num_graphs, g.edge_attr)
        x_new, h_new, _ = layer(x, h, g.edge_index, g.edge_attr, vel=g.vel)
        torch.testing.assert_close(x_new, Z[..., 0] + layer.phi_v(h) * g.vel, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(h_new, h_emmp, rtol=1e-10, atol=1e-10)
        x, h = x_new, h_new
    torch.testing.assert_close(x, model(g).pos, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------- others
def test_linear_is_x_plus_t_v():
    g = full_graph(5)
    model = build("linear")
    with torch.no_grad():
        model.t.fill_(0.25)
    torch.testing.assert_close(model(g).pos, g.pos + 0.25 * g.vel)
    assert sum(p.numel() for p in model.parameters()) == 1


def test_rf_ignores_node_features():
    g = full_graph(5)
    model = build("rf")
    torch.testing.assert_close(model(g).pos, model(g.replace(h=torch.randn_like(g.h))).pos)


def test_mpnn_is_not_equivariant():
    g = full_graph(6)
    model = build("mpnn")
    q = orthogonal(3, det=1.0)
    out, out_rot = model(g).pos, model(g.transform(q)).pos
    assert (out_rot - out @ q.T).abs().max() > 1e-3
    t = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    assert (model(g.transform(None, t)).pos - (out + t)).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["tfn", "se3_transformer", "gmn", "egnn", "rf"])
@pytest.mark.parametrize("det", [1.0, -1.0])
def test_equivariant_models_respect_rotations_and_reflections(name, det):
    g = collate([full_graph(5, seed=4), full_graph(3, seed=5)])
    model = build(name)
    q = orthogonal(3, det=det, seed=7)
    t = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    out = model(g).pos
    torch.testing.assert_close(model(g.transform(q, t)).pos, out @ q.T + t, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["tfn", "se3_transformer"])
@pytest.mark.parametrize("dim", [2, 4])
def test_e3nn_models_reject_other_dimensions(name, dim):
    model = build(name)
    with pytest.raises(ValueError, match="3-dimensional"):
        model(full_graph(4, dim=dim))


@pytest.mark.parametrize("name", list(TINY))
def test_batch_equals_graphs_run_alone(name):
    graphs = [full_graph(5, seed=8), full_graph(2, seed=9), full_graph(4, seed=10)]
    model = build(name)
    batched = model(collate(graphs)).pos
    alone = torch.cat([model(g).pos for g in graphs])
    torch.testing.assert_close(batched, alone, rtol=1e-10, atol=1e-10)


def test_e3nn_models_exact_in_float64_after_cast():
    """Casting to float64 refills the Wigner-3j constants: equivariance to ~1e-15, not ~1e-8."""
    g = full_graph(5, seed=11)
    model = build("tfn", lmax=2)
    q = orthogonal(3, det=1.0, seed=12)
    err = (model(g.transform(q)).pos - model(g).pos @ q.T).abs().max()
    assert err < 1e-12


# ----------------------------------------------------------------------------------- GMN
def test_gmn_sticks_keep_their_length():
    g = full_graph(6, seed=13)
    model = build("gmn", layers=3)
    out = model(g)
    sticks = out.aux["sticks"]
    assert sticks.tolist() == [[0, 1], [2, 3], [4, 5]]
    before = (g.pos[sticks[:, 0]] - g.pos[sticks[:, 1]]).norm(dim=-1)
    after = (out.pos[sticks[:, 0]] - out.pos[sticks[:, 1]]).norm(dim=-1)
    torch.testing.assert_close(after, before, rtol=1e-10, atol=1e-10)
    # without objects the lengths change
    free = build("gmn", layers=3, objects="none")
    free.load_state_dict(model.state_dict())
    pf = free(g).pos
    assert not torch.allclose((pf[sticks[:, 0]] - pf[sticks[:, 1]]).norm(dim=-1), before)


def test_gmn_stick_decomposition_is_greedy_in_edge_order():
    ei = torch.tensor([[1, 2, 0, 3, 4], [2, 1, 1, 4, 3]])
    assert sticks_from_local_edges(ei, 5).tolist() == [[1, 2], [3, 4]]
    assert sticks_from_local_edges(None, 5).shape == (0, 2)


def test_gmn_permutation_equivariant_with_sticks():
    g = full_graph(6, seed=14)
    model = build("gmn")
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    torch.testing.assert_close(model(g.permute(perm)).pos, model(g).pos[perm], rtol=1e-10, atol=1e-10)


def test_gmn_hinges_keep_arm_lengths_and_equivariance():
    g = collate([full_graph(7, seed=17), full_graph(4, seed=18)])  # chains: hinges (1,0,2), (4,3,5), ...
    model = build("gmn", objects="hinges")
    out = model(g)
    hinges, sticks = out.aux["hinges"], out.aux["sticks"]
    assert hinges.tolist() == [[1, 0, 2], [4, 3, 5], [8, 7, 9]] and sticks.tolist() == []
    for arm in (1, 2):
        before = (g.pos[hinges[:, arm]] - g.pos[hinges[:, 0]]).norm(dim=-1)
        after = (out.pos[hinges[:, arm]] - out.pos[hinges[:, 0]]).norm(dim=-1)
        torch.testing.assert_close(after, before, rtol=1e-10, atol=1e-10)
    q = orthogonal(3, det=-1.0, seed=19)
    t = torch.tensor([1.0, 2.0, -3.0], dtype=torch.float64)
    torch.testing.assert_close(model(g.transform(q, t)).pos, out.pos @ q.T + t, rtol=1e-9, atol=1e-9)
    perm = torch.randperm(g.num_nodes, generator=torch.Generator().manual_seed(20))
    torch.testing.assert_close(model(g.permute(perm)).pos, out.pos[perm], rtol=1e-10, atol=1e-10)


def test_gmn_object_decomposition_with_hinges():
    from eghn.models.gmn import objects_from_local_edges

    ei = torch.tensor([[1, 0, 2, 3, 4, 5], [0, 2, 0, 4, 5, 6]])  # 1-0-2 and 3-4-5-6
    hinges, sticks = objects_from_local_edges(ei, 7, hinges=True)
    assert hinges.tolist() == [[0, 1, 2], [4, 3, 5]] and sticks.tolist() == []
    hinges, sticks = objects_from_local_edges(ei, 7, hinges=False)
    assert hinges.shape == (0, 3) and sticks.tolist() == [[1, 0], [3, 4], [5, 6]]


def test_gmn_works_in_other_dimensions():
    for dim in (2, 5):
        g = full_graph(5, dim=dim, seed=15)
        model = build("gmn")
        q = orthogonal(dim, det=-1.0, seed=16)
        torch.testing.assert_close(model(g.transform(q)).pos, model(g).pos @ q.T, rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------------- memory
@pytest.mark.parametrize("name", ["tfn", "se3_transformer"])
@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
])
def test_out_of_memory_becomes_clear_error(monkeypatch, name, error):
    model = build(name)
    real = model._forward_impl

    def boom(graph):  # fail on the 4-node input only; estimate_memory()'s probes still run
        if graph.num_nodes == 4:
            raise error
        return real(graph)

    monkeypatch.setattr(model, "_forward_impl", boom)
    expected = model.estimate_memory(4, 12, torch.float64) / 2**30
    with pytest.raises(ModelOutOfMemoryError, match=rf"ran out of memory .*N = 4 nodes, E = 12 edges.*"
                                                     rf"needs about {expected:.2f} GiB"):
        model(full_graph(4))
    assert issubclass(ModelOutOfMemoryError, MemoryError)


def test_other_runtime_errors_pass_through(monkeypatch):
    model = build("tfn")

    def boom(graph):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(model, "_forward_impl", boom)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        model(full_graph(4))


def test_memory_limit_refuses_before_allocating(monkeypatch):
    model = build("se3_transformer", memory_limit=1024)
    assert model.estimate_memory(4, 12, torch.float64) > 1024  # probes run (and are cached) here

    def never(graph):  # pragma: no cover - must not run
        raise AssertionError("forward ran despite the memory limit")

    monkeypatch.setattr(model, "_forward_impl", never)
    with pytest.raises(ModelOutOfMemoryError, match="memory_limit"):
        model(full_graph(4))


def test_memory_estimate_grows_with_edges_and_width():
    small, wide = build("tfn"), build("tfn", hidden=8)
    e1, e2 = small.estimate_memory(100, 1_000), small.estimate_memory(100, 10_000)
    assert 0 < e1 < e2
    assert wide.estimate_memory(100, 10_000) > e2
    # the per-edge cost is linear: 10x the edges is ~10x the edge part
    e3 = small.estimate_memory(100, 100_000)
    assert math.isclose((e3 - e1) / (e2 - e1), 11.0, rel_tol=1e-6)


# ----------------------------------------------------------------------------------- misc
def test_parameter_counts_are_sane():
    counts = {name: sum(p.numel() for p in get(name, node_dim=1, edge_dim=1).parameters())
              for name in ["linear", "rf", "mpnn", "egnn", "gmn"]}
    assert counts["linear"] == 1
    assert 1_000 < counts["rf"] < counts["egnn"]
    for name in ("mpnn", "egnn", "gmn"):  # width 64, 4 layers: 10^4 .. 10^6 parameters
        assert 10_000 < counts[name] < 1_000_000, (name, counts[name])
    assert counts["gmn"] > counts["egnn"]  # GMN adds object MLPs on top of its message layers


def test_scatter_softmax_sums_to_one_per_receiver():
    scores = torch.randn(7, 2, dtype=torch.float64)
    index = torch.tensor([0, 0, 1, 2, 2, 2, 0])
    p = scatter_softmax(scores, index, 4)
    sums = torch.zeros(4, 2, dtype=torch.float64).index_add_(0, index, p)
    torch.testing.assert_close(sums[:3], torch.ones(3, 2, dtype=torch.float64))
    torch.testing.assert_close(p[3:6], torch.softmax(scores[3:6], 0))


@pytest.mark.parametrize("name", list(TINY))
def test_bad_input_is_rejected(name):
    model = build(name)
    g = full_graph(4)
    with pytest.raises(ValueError):
        model(g.replace(vel=None))
    with pytest.raises(ValueError):
        model(g.replace(pos=g.pos.clone().fill_(float("nan"))))
