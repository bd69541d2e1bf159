"""Protein MD dataset (paper Section 4.3) on the AdK trajectory shipped with MDAnalysisTests."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import warnings

import numpy as np
import pytest
import torch

mda = pytest.importorskip("MDAnalysis")
datafiles = pytest.importorskip("MDAnalysisTests.datafiles")

from eghn.data import Graph, ProteinMDDataset  # noqa: E402
from eghn.data import protein as P  # noqa: E402

PSF, DCD = datafiles.PSF, datafiles.DCD
N_FRAMES, N_BACKBONE = 98, 855


@pytest.fixture(scope="module")
def universe():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mda.Universe(PSF, DCD)


@pytest.fixture(scope="module")
def raw_backbone(universe) -> np.ndarray:
    """Backbone positions of every frame, read directly with MDAnalysis, shape (98, 855, 3)."""
    bb = universe.select_atoms("backbone")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = np.stack([bb.positions.copy() for _ in universe.trajectory])
    universe.trajectory[0]
    return out


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("protein_cache")


@pytest.fixture(scope="module")
def datasets(cache_dir) -> dict[str, ProteinMDDataset]:
    return {s: ProteinMDDataset(split=s, cache_dir=cache_dir) for s in ("train", "val", "test")}


def test_default_split_counts_are_chronological(datasets):
    # 98 frames, delta 15 -> 83 pairs; paper fractions (2481, 827, 878)/4186 -> 49 / 16 / 18
    assert [len(datasets[s]) for s in ("train", "val", "test")] == [49, 16, 18]
    starts = [datasets[s].frame_index(i) for s in ("train", "val", "test") for i in range(len(datasets[s]))]
    assert starts == list(range(83))
    assert datasets["test"].frame_index(-1) == N_FRAMES - 15 - 1
    with pytest.raises(IndexError):
        datasets["val"][16]


def test_split_sizes_counts_fractions_and_gap():
    assert P.chronological_split(83, (10, 5, 3)) == {
        "train": range(0, 10), "val": range(10, 15), "test": range(15, 18)}
    gap = P.chronological_split(83, (0.6, 0.2, 0.2), gap=15)
    assert gap["val"].start - gap["train"].stop == 15 and gap["test"].stop == 83
    assert sum(len(r) for r in gap.values()) == 83 - 30
    # the paper's proportions on the full 4187-frame AdK trajectory with delta 15
    full = P.chronological_split(4187 - 15, P.PAPER_SPLIT_FRACTIONS)
    assert [len(r) for r in full.values()] == [2472, 824, 876]
    with pytest.raises(ValueError, match="asks for 84 samples"):
        P.chronological_split(83, (50, 20, 14))
    with pytest.raises(ValueError, match="all fractions"):
        P.chronological_split(83, (10, 0.5, 3))
    with pytest.raises(ValueError, match="sum to at most 1"):
        P.chronological_split(83, (0.6, 0.3, 0.3))


def test_shapes_and_interface(datasets):
    ds = datasets["train"]
    g = ds[3]
    assert isinstance(g, Graph)
    g.validate()
    assert tuple(g.pos.shape) == tuple(g.vel.shape) == tuple(g.target.shape) == (N_BACKBONE, 3)
    assert g.pos.dtype == torch.float32
    assert ds.feature_names == ["C", "CA", "N", "O"]
    assert (ds.node_dim, ds.edge_dim, ds.local_edge_dim) == (4, 1, 0)
    assert tuple(g.h.shape) == (N_BACKBONE, 4) and torch.equal(g.h.sum(1), torch.ones(N_BACKBONE))
    assert g.edge_attr.shape == (g.num_edges, 1)
    assert tuple(g.local_edge_index.shape) == (2, 2 * 854)
    batch = ds.collate([0, 5, 7])
    batch.validate()
    assert batch.num_graphs == 3 and batch.num_nodes == 3 * N_BACKBONE
    assert batch.num_edges == sum(ds[i].num_edges for i in (0, 5, 7))
    assert torch.equal(batch.target[N_BACKBONE:2 * N_BACKBONE], ds[5].target)


def test_no_hydrogens_ever(universe):
    heavy = P.select_heavy_atoms(universe, "protein")
    assert heavy.n_atoms == 3341 - 1685  # adk.psf has 1685 hydrogens
    assert not any(n.startswith("H") for n in heavy.names)
    assert (heavy.masses > 1.5).all()
    ds = ProteinMDDataset(universe=universe, selection="resid 1:3", split="val", split_sizes=(60, 10, 10))
    assert ds.num_atoms == universe.select_atoms("resid 1:3 and not name H*").n_atoms
    assert not any(n.startswith("H") for n in ds.frames.names)
    with pytest.raises(ValueError, match="all hydrogens"):
        P.select_heavy_atoms(universe, "name H*")


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_velocity_and_target_match_raw_positions(datasets, raw_backbone, split):
    ds = datasets[split]
    for i in (0, len(ds) // 2, len(ds) - 1):
        t = ds.frame_index(i)
        g = ds[i]
        np.testing.assert_array_equal(g.pos.numpy(), raw_backbone[t])
        np.testing.assert_allclose(g.vel.numpy(), raw_backbone[t + 1] - raw_backbone[t], atol=1e-5)
        np.testing.assert_array_equal(g.target.numpy(), raw_backbone[t + 15])


def test_cutoff_edges_match_brute_force(datasets, raw_backbone):
    ds = datasets["val"]
    i = 4
    x = raw_backbone[ds.frame_index(i)].astype(np.float64)
    sq = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    want = sq <= 10.0**2
    np.fill_diagonal(want, False)
    g = ds[i]
    recv, send = g.edge_index.numpy()
    got = np.zeros_like(want)
    got[recv, send] = True
    assert len(recv) == want.sum()  # no duplicates
    np.testing.assert_array_equal(got, want)  # every pair within the cutoff, nothing else
    assert (recv != send).all()
    assert (got == got.T).all()  # both directions
    np.testing.assert_allclose(g.edge_attr[:, 0].numpy(), sq[recv, send] / 100.0, rtol=1e-6)
    # a smaller cutoff is a strict subset and the distance feature is consistent
    small, d2 = P.cutoff_edges(x.astype(np.float32), 4.0)
    assert 0 < small.shape[1] < len(recv) and (d2 <= 16.0).all()


def test_bonds_are_backbone_bonds(datasets, universe):
    ds = datasets["train"]
    bonds = ds.frames.bonds
    assert bonds.shape == (854, 2)
    names = ds.frames.names
    kinds = {tuple(sorted((names[a], names[b]))) for a, b in bonds}
    assert kinds == {("CA", "N"), ("C", "CA"), ("C", "O"), ("C", "N")}
    want = {tuple(sorted(b)) for b in universe.select_atoms("backbone").intra_bonds.indices.tolist()}
    idx = ds.frames.atom_indices
    assert {tuple(sorted((int(idx[a]), int(idx[b])))) for a, b in bonds} == want
    x = ds[0].pos.numpy()
    assert (np.linalg.norm(x[bonds[:, 0]] - x[bonds[:, 1]], axis=1) < 1.7).all()
    li = ds[0].local_edge_index
    assert torch.equal(li[:, 854:], li[:, :854].flip(0))


def test_bonds_guessed_when_topology_has_none(datasets):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(datafiles.PDB_small, DCD)  # same AdK atoms, PDB without CONECT records
    with pytest.raises(Exception):  # noqa: B017 - MDAnalysis' NoDataError
        u.bonds  # noqa: B018
    frames = P.extract_frames(u, "backbone")
    assert frames.meta["bonds_guessed"]
    ref = datasets["train"].frames
    assert np.array_equal(frames.names, ref.names)
    assert {tuple(b) for b in frames.bonds.tolist()} == {tuple(b) for b in ref.bonds.tolist()}


def test_cache_roundtrip_needs_no_trajectory(tmp_path, monkeypatch, raw_backbone):
    top, trj = tmp_path / "adk.psf", tmp_path / "adk_dims.dcd"
    shutil.copy(PSF, top)
    shutil.copy(DCD, trj)
    first = ProteinMDDataset(top, trj, cache_dir=tmp_path / "cache", split="test")
    assert first.cache_path is not None and first.cache_path.is_file()
    meta = json.loads(first.cache_path.with_suffix(".json").read_text())
    got = (meta["n_frames"], meta["n_atoms"], meta["n_bonds"], meta["selection"])
    assert got == (98, 855, 854, "backbone")
    with np.load(first.cache_path, allow_pickle=False) as z:
        assert z["positions"].shape == (98, 855, 3)

    def no_reading(*args, **kwargs):
        raise AssertionError("the trajectory was read again")

    monkeypatch.setattr(mda, "Universe", no_reading)
    second = ProteinMDDataset(top, trj, cache_dir=tmp_path / "cache", split="test")
    assert second.cache_path == first.cache_path
    assert torch.equal(second[2].pos, first[2].pos) and torch.equal(second[2].target, first[2].target)
    # another selection is another cache entry (and would need the trajectory)
    with pytest.raises(ValueError, match="read again"):
        ProteinMDDataset(top, trj, cache_dir=tmp_path / "cache", selection="name CA")
    # without the trajectory files at all, the cache file alone is enough
    top.unlink()
    trj.unlink()
    third = ProteinMDDataset.from_cache(first.cache_path, split="train")
    np.testing.assert_array_equal(third[0].pos.numpy(), raw_backbone[0])
    with pytest.raises(FileNotFoundError, match=r"adk\.psf"):
        ProteinMDDataset(top, trj, cache_dir=tmp_path / "cache")


def test_corrupt_cache_is_rebuilt(tmp_path):
    ds = ProteinMDDataset(cache_dir=tmp_path, split="val")
    ds.cache_path.write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="unreadable protein cache"):
        again = ProteinMDDataset(cache_dir=tmp_path, split="val")
    assert torch.equal(again[0].pos, ds[0].pos)
    assert P.load_frames(ds.cache_path).n_frames == 98


def test_rotation_and_translation(datasets, cache_dir):
    plain = datasets["test"]
    rot = ProteinMDDataset(split="test", cache_dir=cache_dir, rotate=True, seed=3)
    g0, g1 = plain[5], rot[5]
    x0, x1 = g0.pos.double().numpy(), g1.pos.double().numpy()
    assert np.abs(x1 - x0).max() > 5.0  # it really moved
    # recover the linear map from the data: an orthogonal matrix with det +1, not the identity
    m, *_ = np.linalg.lstsq(x0, x1, rcond=None)
    np.testing.assert_allclose(m.T @ m, np.eye(3), atol=1e-5)
    assert np.linalg.det(m) == pytest.approx(1.0, abs=1e-5)
    assert np.abs(m - np.eye(3)).max() > 0.1
    q, t = rot.transform_for(5)
    assert t is None
    np.testing.assert_allclose(m, q.T, atol=1e-5)
    np.testing.assert_allclose(g1.vel.numpy(), g0.vel.numpy() @ q.T, atol=1e-4)
    np.testing.assert_allclose(g1.target.numpy(), g0.target.numpy() @ q.T, atol=1e-3)
    # invariants: pairwise distances, edges and edge features
    sub = slice(0, 855, 7)
    d0 = np.linalg.norm(x0[sub, None] - x0[None, sub], axis=-1)
    d1 = np.linalg.norm(x1[sub, None] - x1[None, sub], axis=-1)
    np.testing.assert_allclose(d1, d0, atol=1e-3)
    assert torch.equal(g1.edge_index, g0.edge_index) and torch.equal(g1.edge_attr, g0.edge_attr)
    # reproducible per (seed, index), different for another index or seed
    again = ProteinMDDataset(split="test", cache_dir=cache_dir, rotate=True, seed=3)
    assert torch.equal(again[5].pos, g1.pos)
    assert not np.allclose(rot.transform_for(6)[0], q)
    assert not np.allclose(
        ProteinMDDataset(split="test", cache_dir=cache_dir, rotate=True, seed=4).transform_for(5)[0], q)
    # translation only: positions and targets shift together, velocities do not change
    tr = ProteinMDDataset(split="test", cache_dir=cache_dir, translate=True, translate_scale=20.0)
    g2 = tr[5]
    shift = (g2.pos - g0.pos).double()
    assert shift.std(0).max() < 1e-4 and shift[0].norm() > 1.0
    np.testing.assert_allclose(shift[0].numpy(), tr.transform_for(5)[1], atol=1e-4)
    np.testing.assert_allclose((g2.target - g0.target).numpy(), (g2.pos - g0.pos).numpy(), atol=1e-4)
    np.testing.assert_allclose(g2.vel.numpy(), g0.vel.numpy(), atol=1e-5)


def test_options_universe_input_and_features(universe):
    ca = ProteinMDDataset(universe=universe, selection="name CA", split="train", split_sizes=(5, 1, 1),
                          node_features="mass", edge_features="none", delta=3, cutoff=8.0)
    g = ca[4]
    assert ca.num_atoms == 214 and len(ca) == 5 and ca.frame_index(4) == 4
    assert (ca.node_dim, ca.edge_dim) == (1, 0) and g.edge_attr is None
    np.testing.assert_allclose(g.h.numpy()[:, 0], 12.011 / 12, rtol=1e-5)
    assert g.local_edge_index.shape == (2, 0)  # no covalent bond joins two CA atoms
    universe.trajectory[4 + 3]
    np.testing.assert_array_equal(g.target.numpy(), universe.select_atoms("name CA").positions)
    universe.trajectory[0]
    el = ProteinMDDataset(universe=universe, split="train", node_features="element", edge_features="distance",
                          split_sizes=(2, 1, 1))
    assert el.feature_names == ["C", "N", "O"] and el.edge_dim == 1
    assert float(el[0].edge_attr.max()) <= 1.0


def test_released_inputs_match_the_released_definitions(cache_dir, universe, raw_backbone):
    """node [|v|, q / max q], global edges [d, d^2] in Å, local [first-frame bond length, d^2]."""
    ds = ProteinMDDataset(split="val", cache_dir=cache_dir, cutoff=8.0, node_features="released",
                          edge_features="released")
    assert (ds.node_dim, ds.edge_dim, ds.local_edge_dim) == (2, 2, 2)
    assert ds.feature_length_powers == {"h": (1, 0), "edge_attr": (1, 2), "local_edge_attr": (1, 2)}
    i = 3
    t = ds.frame_index(i)
    g = ds[i]
    x = raw_backbone[t].astype(np.float64)
    speed = np.linalg.norm(raw_backbone[t + 1] - raw_backbone[t], axis=1)
    np.testing.assert_allclose(g.h[:, 0].numpy(), speed, rtol=1e-5)
    q = universe.select_atoms("backbone").charges
    np.testing.assert_allclose(g.h[:, 1].numpy(), q / q.max(), rtol=1e-6)
    assert g.h[:, 1].max() == 1.0 and g.h[:, 1].min() < 0  # partial charges keep their sign
    r, c = g.edge_index.numpy()
    d = np.linalg.norm(x[r] - x[c], axis=1)
    assert d.max() <= 8.0 and len(d) > 30 * 855
    np.testing.assert_allclose(g.edge_attr.numpy(), np.stack([d, d * d], 1), rtol=1e-5)
    lr, lc = g.local_edge_index.numpy()
    first = raw_backbone[0].astype(np.float64)
    np.testing.assert_allclose(g.local_edge_attr[:, 0].numpy(), np.linalg.norm(first[lr] - first[lc], axis=1),
                               rtol=1e-5)
    np.testing.assert_allclose(g.local_edge_attr[:, 1].numpy(), ((x[lr] - x[lc]) ** 2).sum(1), rtol=1e-5)
    assert not np.allclose(g.local_edge_attr[:, 0].numpy() ** 2, g.local_edge_attr[:, 1].numpy())
    # every feature is invariant: a rotated and shifted sample carries the same ones
    moved = ProteinMDDataset(split="val", cache_dir=cache_dir, cutoff=8.0, node_features="released",
                             edge_features="released", rotate=True, translate=True)[i]
    for name in ("h", "edge_attr", "local_edge_attr"):
        np.testing.assert_allclose(getattr(moved, name).numpy(), getattr(g, name).numpy(), rtol=1e-4, atol=1e-4)
    batch = ds.collate([0, 1])
    assert batch.h.shape == (2 * 855, 2) and batch.local_edge_attr.shape == (4 * 854, 2)


def test_released_node_features_need_charges(tmp_path, cache_dir):
    """A version-1 cache (no charges) still loads; released node features then fail clearly."""
    path = ProteinMDDataset(split="train", cache_dir=cache_dir).cache_path
    frames = P.load_frames(path)
    assert frames.charges is not None and frames.charges.shape == (855,)
    frames.charges = None
    frames.meta = dict(frames.meta)
    old = tmp_path / "old.npz"
    frames.save(old)
    meta = json.loads(old.with_suffix(".json").read_text())
    meta["cache_version"] = 1
    old.with_suffix(".json").write_text(json.dumps(meta))
    legacy = ProteinMDDataset.from_cache(old, split="train", edge_features="released")
    assert legacy.frames.charges is None and legacy.edge_dim == 2
    with pytest.raises(ValueError, match="needs the topology's partial charges"):
        ProteinMDDataset.from_cache(old, split="train", node_features="released")
    meta["cache_version"] = 7
    old.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="cache of version 1 or 2"):
        P.load_frames(old)


def test_clear_errors(tmp_path, universe, cache_dir, monkeypatch):
    with pytest.raises(ValueError, match="98 frames, too short for a frame gap of delta=98"):
        ProteinMDDataset(cache_dir=cache_dir, delta=98)
    assert len(ProteinMDDataset(cache_dir=cache_dir, delta=97, split_sizes=(1, 0, 0))) == 1
    with pytest.raises(ValueError, match="matched no atoms"):
        ProteinMDDataset(universe=universe, selection="resname XYZ")
    with pytest.raises(ValueError, match="invalid atom selection"):
        ProteinMDDataset(universe=universe, selection="name CA and (")
    with pytest.raises(ValueError, match="asks for 90 samples"):
        ProteinMDDataset(cache_dir=cache_dir, split_sizes=(60, 20, 10))
    with pytest.raises(ValueError, match="split 'val' is empty"):
        ProteinMDDataset(cache_dir=cache_dir, split="val", split_sizes=(10, 0, 10))
    with pytest.raises(ValueError, match="split must be one of"):
        ProteinMDDataset(cache_dir=cache_dir, split="validation")
    missing = tmp_path / "nope.dcd"
    with pytest.raises(FileNotFoundError, match=r"nope\.dcd"):
        ProteinMDDataset(PSF, missing, cache_dir=tmp_path)
    garbage = tmp_path / "garbage.psf"
    garbage.write_text("this is not a topology\n")
    with pytest.raises(ValueError, match=r"garbage\.psf"):
        ProteinMDDataset(garbage, DCD, cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"absent\.npz"):
        ProteinMDDataset.from_cache(tmp_path / "absent.npz")
    monkeypatch.setitem(sys.modules, "MDAnalysisData", None)
    with pytest.raises(ImportError, match="pip install MDAnalysisData"):
        ProteinMDDataset(source="adk-equilibrium", cache_dir=tmp_path)


def test_cli_preprocesses_into_out(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="eghn data")
    sub = parser.add_subparsers()
    P.register_cli(sub)
    args = parser.parse_args(["protein", "--topology", PSF, "--trajectory", DCD, "--selection", "name CA",
                              "--out", str(tmp_path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "98 frames, 214 atoms" in out
    (npz,) = tmp_path.glob("*.npz")
    ds = ProteinMDDataset.from_cache(npz, split="test")
    assert ds.num_atoms == 214 and ds.selection == "name CA"
    assert ProteinMDDataset.from_cache(npz, selection="name CA").num_atoms == 214
    with pytest.raises(ValueError, match="holds selection 'name CA', not 'backbone'"):
        ProteinMDDataset.from_cache(npz, selection="backbone")


@pytest.mark.parametrize("model", ["eghn", "egnn", "mpnn"])
def test_offline_protocol_trains_on_the_embedded_frames(model):
    """``--set protocol=offline``: the offline analogue of Table 3, on the frames shipped with
    MDAnalysisTests, with the released data settings and a CPU-sized budget; its data build."""
    from eghn.train.config import load_config
    from eghn.train.loop import build_datasets

    cfg = load_config(f"protein/adk_{model}", protocol="offline")
    assert cfg["protocol"] == "offline"
    assert cfg["data"]["source"] == "adk-embedded" and cfg["data"]["cutoff"] == 8.0
    assert cfg["train"]["epochs"] == 300 and cfg["train"]["lr"] == 5e-4 and cfg["train"]["batch_size"] == 8
    if model == "eghn":
        assert cfg["model"]["hidden"] == 64 and cfg["data"]["node_features"] == "released"
    data = build_datasets(cfg)
    assert [len(data[s]) for s in ("train", "val", "test")] == [49, 16, 18]


@pytest.mark.parametrize("model", ["tfn", "se3_transformer"])
def test_offline_protocol_is_not_defined_for_the_models_that_ran_out_of_memory(model):
    from eghn.train.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="offline"):
        load_config(f"protein/adk_{model}", protocol="offline")
