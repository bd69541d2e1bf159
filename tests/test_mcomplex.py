"""M-complex simulator and dataset (paper Section 4.1)."""

from __future__ import annotations

import argparse
import functools
import json

import numpy as np
import pytest
import torch

from eghn.data import Graph, MComplexDataset, collate, simulate_mcomplex
from eghn.data.mcomplex import generate_mcomplex_dataset, linear_extrapolation_baseline, register_cli
from eghn.data.mcomplex_sim import complex_size_weights, draw_initial_state, sample_complex_sizes

STEPS = 1000  # short trajectories keep the suite fast; the physics is the same per step
try:
    import numba  # noqa: F401

    HAVE_NUMBA = True
except ImportError:
    HAVE_NUMBA = False
needs_numba = pytest.mark.skipif(not HAVE_NUMBA, reason="the compiled CPU backend needs numba")
# the "paper" integrator has two CPU paths: vectorised PyTorch and the compiled numba kernel
BACKEND_PARAMS = ["torch", pytest.param("compiled", marks=needs_numba)]


def _pairs(d):
    """Intra-complex distances of a trajectory, shape (F, n_pairs)."""
    x, c = d["pos"], d["complex_id"]
    iu = np.triu_indices(len(c), 1)
    same = c[iu[0]] == c[iu[1]]
    return np.linalg.norm(x[:, iu[0][same]] - x[:, iu[1][same]], axis=-1)


def _energy(d):
    x, v, q = d["pos"], d["vel"], d["charge"].astype(np.float64)
    iu = np.triu_indices(len(q), 1)
    r = np.linalg.norm(x[:, iu[0]] - x[:, iu[1]], axis=-1)
    return 0.5 * (v * v).sum((1, 2)) + (q[iu[0]] * q[iu[1]] / r).sum(-1)


@functools.cache
def _paper_traj(backend):
    return simulate_mcomplex(3, 3, 5, 4, seed=3, n_steps=STEPS, sample_every=50, backend=backend)


@pytest.fixture(scope="module")
def paper_traj():
    return _paper_traj("torch")


@pytest.fixture(scope="module")
def paper_traj_compiled():
    if not HAVE_NUMBA:
        pytest.skip("the compiled CPU backend needs numba")
    return _paper_traj("compiled")


@pytest.fixture(scope="module")
def exact_traj():
    # no clipping; |v| <= 5 (the paper's rejection bound) drops rare near-collisions that a
    # fixed dt cannot resolve for unregularised Coulomb forces
    return simulate_mcomplex(3, 3, 5, 4, seed=3, n_steps=STEPS, sample_every=50, integrator="exact",
                             force_clip=None, velocity_check="abs")


# ---------------------------------------------------------------------------- sizes
def test_size_weights_published_rule():
    sizes, p = complex_size_weights(5)
    assert sizes.tolist() == [2, 3, 4, 5, 6, 7, 8]
    np.testing.assert_allclose(p * 63, [11, 11, 11, 9, 8, 7, 6])
    sizes, p = complex_size_weights(3)
    assert sizes.tolist() == [2, 3, 4] and np.allclose(p, 1 / 3)
    assert complex_size_weights(2)[0].tolist() == [2]


def test_size_sampler_distribution():
    ts = sample_complex_sizes(10, 10, 400, seed=0)
    assert ts.shape == (400, 10)
    assert ts.min() >= 2 and ts.max() <= 18
    assert all(len(set(row)) == 10 for row in ts.tolist())  # without replacement
    # first draw of each type follows the weights
    _, p = complex_size_weights(10)
    freq = np.bincount(ts[:, 0], minlength=19)[2:] / len(ts)
    assert np.abs(freq - p).max() < 0.05
    # (3,3): every type is a permutation of {2, 3, 4}; N = 9 exactly
    ts = sample_complex_sizes(3, 3, 5, seed=1)
    assert (np.sort(ts, 1) == [2, 3, 4]).all()


def test_initial_state_geometry():
    rng = np.random.default_rng(0)
    ts = np.array([[2, 3, 4], [4, 3, 2]])
    for _ in range(20):
        s = draw_initial_state(rng, ts)
        n = 9
        assert s.pos.shape == (n, 3) and s.charge.shape == (n,)
        assert set(np.unique(s.charge)) <= {-1.0, 1.0}
        np.testing.assert_allclose(np.linalg.norm(s.vel, axis=1), 0.5)
        assert np.bincount(s.complex_id).tolist() == ts[s.system_type].tolist()


# ---------------------------------------------------------------------------- physics
@pytest.mark.parametrize("which", ["paper_traj", "paper_traj_compiled", "exact_traj"])
def test_rigid_distances_constant(which, request):
    tr = request.getfixturevalue(which)
    assert tr.num_frames == STEPS // 50
    for t in range(len(tr)):
        d = _pairs(tr.trajectory(t))
        assert np.abs(d / d[0] - 1).max() <= 1e-6


def test_exact_integrator_conserves_momentum_and_energy(exact_traj):
    for t in range(len(exact_traj)):
        d = exact_traj.trajectory(t)
        p = d["vel"].sum(1)
        assert np.abs(p - p[0]).max() < 1e-10
        ang = np.cross(d["pos"], d["vel"]).sum(1)
        assert np.abs(ang - ang[0]).max() < 1e-6 * (1 + np.abs(ang[0]).max())
        e = _energy(d)
        ke = 0.5 * (d["vel"] ** 2).sum((1, 2)).mean()
        assert np.abs(e - e[0]).max() < 2e-3 * ke, (t, np.abs(e - e[0]).max() / ke)


def test_exact_energy_error_shrinks_with_dt():
    kw = dict(seed=5, n_steps=400, sample_every=400, integrator="exact", force_clip=None, max_velocity=None)
    errs = []
    for dt, steps in ((0.004, 400), (0.002, 800)):
        kw.update(dt=dt, n_steps=steps, sample_every=steps // 4)
        tr = simulate_mcomplex(3, 3, 1, 3, **kw)
        errs.append(max(np.abs(_energy(tr.trajectory(t)) - _energy(tr.trajectory(t))[0]).max()
                        for t in range(len(tr))))
    assert errs[1] < errs[0] / 2.5  # second-order scheme: error ~ dt^2


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_paper_velocity_quirk_and_rejection(backend):
    # stored velocities are v_c + w x r_i: rigid-body field (relative speeds orthogonal to bonds)
    d = _paper_traj(backend).trajectory(0)
    x, v, c = d["pos"][3], d["vel"][3], d["complex_id"]
    i, j = np.nonzero((c[:, None] == c[None]) & ~np.eye(len(c), dtype=bool))
    assert np.abs(((x[i] - x[j]) * (v[i] - v[j])).sum(-1)).max() < 1e-9
    # with a tiny velocity bound some trajectories are redrawn, and every kept one satisfies it
    tr = simulate_mcomplex(3, 3, 5, 4, seed=0, n_steps=200, sample_every=50, max_velocity=0.6,
                           velocity_check="abs", max_rounds=400, backend=backend)
    assert tr.draws.sum() > 4
    assert np.abs(tr.vel).max() <= 0.6
    # the published check: a velocity component of the final state above the bound
    tr = simulate_mcomplex(3, 3, 5, 6, seed=1, n_steps=200, sample_every=50, max_velocity=0.5,
                           max_rounds=400, backend=backend)
    assert tr.draws.sum() > 6


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_determinism_and_prefix(backend):
    kw = dict(n_steps=300, sample_every=100, backend=backend)
    a = simulate_mcomplex(3, 3, 5, 3, seed=11, **kw)
    b = simulate_mcomplex(3, 3, 5, 3, seed=11, **kw)
    c = simulate_mcomplex(3, 3, 5, 2, seed=11, **kw)
    d = simulate_mcomplex(3, 3, 5, 3, seed=12, **kw)
    np.testing.assert_array_equal(a.pos, b.pos)
    np.testing.assert_array_equal(a.vel, b.vel)
    n2 = c.node_ptr[-1]
    np.testing.assert_allclose(a.pos[:n2], c.pos, rtol=0, atol=1e-12)  # independent of the count
    assert not np.allclose(a.pos[: d.pos.shape[0]], d.pos[: a.pos.shape[0]])


@needs_numba
def test_compiled_backend_matches_torch():
    kw = dict(seed=4, n_steps=400, sample_every=100)
    ref = simulate_mcomplex(5, 5, 5, 3, backend="torch", **kw)
    fast = simulate_mcomplex(5, 5, 5, 3, backend="compiled", **kw)
    np.testing.assert_array_equal(fast.node_ptr, ref.node_ptr)
    np.testing.assert_array_equal(fast.charge, ref.charge)
    np.testing.assert_array_equal(fast.draws, ref.draws)
    np.testing.assert_allclose(fast.pos, ref.pos, rtol=0, atol=1e-11)  # same equations up to round-off
    np.testing.assert_allclose(fast.vel, ref.vel, rtol=0, atol=1e-10)
    # blocks in two threads give bit-identical trajectories (each one is integrated on its own)
    par = simulate_mcomplex(5, 5, 5, 3, backend="compiled", workers=2, chunk_size=1, **kw)
    np.testing.assert_array_equal(par.pos, fast.pos)
    np.testing.assert_array_equal(par.vel, fast.vel)


def test_backend_errors_and_fallback(monkeypatch):
    from eghn.data import mcomplex_cpu

    with pytest.raises(ValueError, match="backend must be"):
        simulate_mcomplex(3, 3, 1, 1, backend="fortran")
    with pytest.raises(ValueError, match="only integrator='paper'"):
        simulate_mcomplex(3, 3, 1, 1, integrator="exact", backend="compiled")
    kw = dict(seed=1, n_steps=30, sample_every=10)
    ref = simulate_mcomplex(3, 3, 1, 2, backend="torch", **kw)
    monkeypatch.setattr(mcomplex_cpu, "numba", None)  # as if numba were not installed
    with pytest.raises(ValueError, match="needs numba"):
        simulate_mcomplex(3, 3, 1, 1, backend="compiled")
    np.testing.assert_array_equal(simulate_mcomplex(3, 3, 1, 2, **kw).pos, ref.pos)  # "auto" -> torch


def test_index_offset_pieces_join():
    from eghn.data.mcomplex_sim import _concat

    full = simulate_mcomplex(5, 5, 5, 3, seed=8, n_steps=200, sample_every=100)
    a = simulate_mcomplex(5, 5, 5, 1, seed=8, n_steps=200, sample_every=100)
    b = simulate_mcomplex(5, 5, 5, 2, seed=8, n_steps=200, sample_every=100, index_offset=1)
    joined = _concat([a, b], full.config)
    np.testing.assert_array_equal(joined.node_ptr, full.node_ptr)
    np.testing.assert_array_equal(joined.system_type, full.system_type)
    np.testing.assert_array_equal(joined.complex_id, full.complex_id)
    np.testing.assert_allclose(joined.pos, full.pos, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("m", "s", "j"), [(3, 3, 1), (5, 5, 5), (5, 10, 1)])
def test_shapes_and_bookkeeping(m, s, j):
    tr = simulate_mcomplex(m, s, j, 3, seed=2, n_steps=10, sample_every=5)
    assert tr.type_sizes.shape == (j, m) and len(tr) == 3 and tr.num_frames == 2
    for t in range(3):
        d = tr.trajectory(t)
        sizes = tr.type_sizes[d["system_type"]]
        n = int(sizes.sum())
        assert d["pos"].shape == (2, n, 3) and d["vel"].shape == (2, n, 3)
        assert sorted(np.bincount(d["complex_id"], minlength=m).tolist()) == sorted(sizes.tolist())
    assert tr.config["n_complex"] == m and tr.config["avg_size"] == s and tr.config["n_types"] == j


@pytest.mark.parametrize(
    ("args", "match"),
    [((0, 3, 5), "n_complex"), ((3, 1, 5), "avg_size"), ((3, 3, 0), "n_types"), ((4, 3, 1), "distinct"),
     ((3.0, 3, 1), "integer")],
)
def test_bad_configs(args, match):
    with pytest.raises(ValueError, match=match):
        simulate_mcomplex(*args, 1)


def test_bad_options():
    with pytest.raises(ValueError, match="integrator"):
        simulate_mcomplex(3, 3, 1, 1, integrator="euler")
    with pytest.raises(ValueError, match="dt"):
        simulate_mcomplex(3, 3, 1, 1, dt=-1.0)
    with pytest.raises(ValueError, match="type_sizes"):
        simulate_mcomplex(3, 3, 1, 1, type_sizes=np.array([[2, 3]]))


# ---------------------------------------------------------------------------- dataset
@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mc")
    generate_mcomplex_dataset(root, 3, 3, 5, n_train=4, n_val=2, n_test=2, seed=7, n_steps=600,
                              sample_every=50, progress=False)
    return root


def test_graph_construction():
    ds = MComplexDataset.generate(3, 3, 5, 2, seed=1, n_steps=600, sample_every=50, input_frame=2, target_frame=8)
    g = ds[0]
    assert isinstance(g, Graph)
    g.validate()
    n = g.num_nodes
    assert n == 9 and g.num_edges == n * (n - 1)
    assert not bool((g.edge_index[0] == g.edge_index[1]).any())
    assert g.edge_attr.shape == (n * (n - 1), ds.edge_dim) and g.h.shape == (n, ds.node_dim)
    assert set(g.edge_attr[:, 0].tolist()) <= {-1.0, 1.0}
    i, j = g.edge_index
    torch.testing.assert_close(g.edge_attr[:, 2], ((g.pos[i] - g.pos[j]) ** 2).sum(-1))
    torch.testing.assert_close(g.h[:, 0], g.vel.norm(dim=-1))
    # local edges = same-complex pairs (sizes {2,3,4} -> 2 + 6 + 12 ordered pairs)
    assert g.local_edge_index.shape == (2, 20) and g.local_edge_attr.shape == (20, ds.local_edge_dim)
    same = g.edge_attr[:, 1] == 1
    assert int(same.sum()) == 20
    assert set(map(tuple, g.local_edge_index.T.tolist())) == set(map(tuple, g.edge_index[:, same].T.tolist()))
    assert g.target.shape == g.pos.shape and not torch.equal(g.target, g.pos)


def test_mixed_sizes_batch():
    ds = MComplexDataset.generate(5, 5, 5, 6, seed=4, n_steps=200, sample_every=50, input_frame=1, target_frame=3)
    sizes = {ds[i].num_nodes for i in range(len(ds))}
    assert len(sizes) > 1  # J = 5 types of different total size
    b = ds.collate(range(len(ds)))
    b.validate()
    assert b.num_graphs == 6 and b.num_nodes == sum(ds[i].num_nodes for i in range(6))
    ref = collate([ds[i] for i in range(6)])
    torch.testing.assert_close(b.edge_attr, ref.edge_attr)


def test_save_load_roundtrip(small_root):
    cfg = json.loads((small_root / "config.json").read_text())
    assert cfg["n_complex"] == 3 and cfg["n_train"] == 4 and len(cfg["type_sizes"]) == 5
    ds = MComplexDataset(small_root, "train", input_frame=3, target_frame=9)
    assert ds._arrays is None and len(ds) == 4  # lazy
    mem = MComplexDataset.generate(3, 3, 5, 4, split="train", seed=7, n_steps=600, sample_every=50,
                                   input_frame=3, target_frame=9)
    for i in range(4):
        a, b = ds[i], mem[i]
        torch.testing.assert_close(a.pos, b.pos)
        torch.testing.assert_close(a.target, b.target)
        torch.testing.assert_close(a.edge_attr, b.edge_attr, rtol=1e-5, atol=1e-5)
    val = MComplexDataset(small_root, "val", input_frame=3, target_frame=9)
    assert len(val) == 2 and not torch.equal(val[0].pos[:2], ds[0].pos[:2])
    t, mse = linear_extrapolation_baseline(ds, val)
    assert np.isfinite(t) and mse > 0


def test_dataset_errors(small_root, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        MComplexDataset(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="not found"):
        MComplexDataset(tmp_path / "nope", "train")
    with pytest.raises(ValueError, match="split"):
        MComplexDataset(small_root, "dev")
    with pytest.raises(ValueError, match="target_frame=25"):
        MComplexDataset(small_root, "train")  # only 12 frames recorded
    with pytest.raises(ValueError, match="max_samples"):
        MComplexDataset(small_root, "val", input_frame=1, target_frame=2, max_samples=5)
    with pytest.raises(IndexError):
        MComplexDataset(small_root, "val", input_frame=1, target_frame=2)[2]
    with pytest.raises(FileExistsError):
        generate_mcomplex_dataset(small_root, 3, 3, 5, n_train=1, n_val=1, n_test=1, progress=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((small_root / "config.json").read_text())
    np.savez(bad / "train.npz", pos=np.zeros((3, 12, 3)))
    ds = MComplexDataset(bad, "train", input_frame=1, target_frame=2)
    with pytest.raises(ValueError, match="not an M-complex file"):
        ds[0]
    (bad / "config.json").write_text("{ not json")
    with pytest.raises(ValueError, match="line 1"):
        MComplexDataset(bad, "train")


def test_cli_registration(tmp_path):
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["mcomplex", "--out", str(tmp_path / "d"), "-M", "3", "--avg-size", "3", "-J", "1",
                              "--n-train", "2", "--n-val", "1", "--n-test", "1", "--steps", "300", "--quiet"])
    assert args.func(args) == 0
    ds = MComplexDataset(tmp_path / "d", "test", input_frame=0, target_frame=2)
    assert len(ds) == 1 and ds[0].num_nodes == 9
