"""Training on your own system, each route of the guide from a fresh folder.

* A trajectory: ``eghn train protein/adk_eghn --set data.source='""' --set
  data.topology=... --set data.trajectory=...``, with the embedded AdK files standing in for the
  reader's own, and the datasets built as ``eghn train`` builds them (no training).
* Arrays: a ``.npz`` file of positions, velocities, targets and edges, read by
  :class:`eghn.data.PointCloudDataset` -- through a config file (``[data] name = "arrays"``) and
  through :func:`eghn.train.train` with ``datasets=...``; two epochs of a small EGNN each.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from eghn.data import PointCloudDataset, ProteinMDDataset
from eghn.data.protein import embedded_adk_files
from eghn.train import train
from eghn.train.config import load_config, resolve
from eghn.train.loop import build_datasets

needs_mdanalysis_tests = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("MDAnalysisTests") is None, reason="needs MDAnalysisTests")


def _toml(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@needs_mdanalysis_tests
def test_a_named_source_and_files_are_one_too_many():
    top, traj = embedded_adk_files()
    with pytest.raises(ValueError, match=r"clear it with --set data.source="):
        ProteinMDDataset(top, traj, source="adk-embedded")


@needs_mdanalysis_tests
def test_shipped_config_on_other_files(tmp_path, monkeypatch):
    monkeypatch.setenv("EGHN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # a fresh folder, as a reader's
    top, traj = embedded_adk_files()
    config = load_config("protein/adk_eghn", [
        "data.source=\"\"", f"data.topology={_toml(str(top))}", f"data.trajectory={_toml(str(traj))}",
        "data.selection=\"name CA\"", "data.split_sizes=[20, 8, 8]", "data.progress=false",
    ])
    assert config["data"]["source"] == ""
    datasets = build_datasets(config)
    assert [len(datasets[s]) for s in ("train", "val", "test")] == [20, 8, 8]
    graph = datasets["train"][0]
    assert graph.pos.shape == graph.vel.shape == (214, 3)  # the 214 alpha carbons of AdK


@needs_mdanalysis_tests
def test_own_config_file_extends_the_shipped_one(tmp_path, monkeypatch):
    monkeypatch.setenv("EGHN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    top, traj = embedded_adk_files()
    (tmp_path / "my_system.toml").write_text(
        'extends = "protein/adk_eghn"\nname = "my_system"\n\n[data]\nsource = ""\n'
        f"topology = {_toml(str(top))}\ntrajectory = {_toml(str(traj))}\n"
        'selection = "name CA"\nprogress = false\n\n'
        # a key that the protocol sets too goes into the protocol's table, which is merged last
        "[protocols.released.data]\nsplit_sizes = [20, 8, 8]\n")
    config = load_config("my_system.toml")
    assert config["name"] == "my_system" and config["model"]["clusters"] == [20]
    assert len(build_datasets(config, splits=("val",))["val"]) == 8


def _write_system(path, samples=24, particles=5, **replace):
    """A chain of particles moving at constant velocity: target = pos + vel."""
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(samples, particles, 3))
    vel = 0.1 * rng.normal(size=(samples, particles, 3))
    chain = np.array([[i, i + 1] for i in range(particles - 1)]).T
    arrays = {"pos": pos, "vel": vel, "target": pos + vel, "h": np.ones((particles, 1)),
              "edge_index": np.concatenate([chain, chain[::-1]], 1)}
    arrays.update(replace)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


_TRAIN = {"epochs": 2, "batch_size": 4, "eval_every": 1, "threads": 1, "progress": False}


def test_arrays_through_a_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a fresh folder, as a reader's
    _write_system(tmp_path / "my_system.npz")
    (tmp_path / "my_system.toml").write_text(
        'name = "my_system"\ndevice = "cpu"\nout_dir = "runs"\n\n'
        '[data]\nname = "arrays"\npath = "my_system.npz"\nsplit_sizes = [16, 4, 4]\n\n'
        '[model]\nname = "egnn"\nhidden = 8\nlayers = 1\n\n'
        "[train]\n" + "".join(f"{k} = {str(v).lower()}\n" for k, v in _TRAIN.items()))
    config = load_config("my_system.toml")
    datasets = build_datasets(config)
    assert [len(datasets[s]) for s in ("train", "val", "test")] == [16, 4, 4]
    result = train(config)
    assert math.isfinite(result.test) and result.epochs == 2
    assert (tmp_path / "runs").is_dir()


def test_arrays_through_python(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write_system(tmp_path / "my_system.npz")
    datasets = {s: PointCloudDataset(path, s, split_sizes=[16, 4, 4]) for s in ("train", "val", "test")}
    config = resolve({"name": "my_system", "device": "cpu", "out_dir": str(tmp_path / "runs"),
                      "data": {"name": "arrays"}, "model": {"name": "egnn", "hidden": 8, "layers": 1},
                      "train": dict(_TRAIN)})
    result = train(config, datasets=datasets)
    assert math.isfinite(result.test) and result.epochs == 2


@pytest.mark.parametrize(("replace", "error", "match"), [
    ({"target": None}, KeyError, "no target"),
    ({"velocity": np.zeros((24, 5, 3))}, ValueError, r"unknown key\(s\) \['velocity'\]"),
    ({"vel": np.zeros((24, 4, 3))}, ValueError, r"vel has shape \(24, 4, 3\), expected \(24, 5, 3\)"),
    ({"pos": np.full((24, 5, 3), np.nan)}, ValueError, "pos holds 360 NaN or infinite"),
    ({"edge_index": np.array([[0, 5], [1, 0]])}, ValueError, r"outside \[0, 5\)"),
    ({"edge_index": np.array([[0.0, 1.0], [1.0, 0.0]])}, ValueError, "edge_index must hold integers"),
])
def test_arrays_bad_files_say_what_is_wrong(tmp_path, replace, error, match):
    path = _write_system(tmp_path / "bad.npz", **replace)
    with pytest.raises(error, match=match):
        PointCloudDataset(path)


def test_arrays_split_sizes_and_missing_file(tmp_path):
    path = _write_system(tmp_path / "s.npz")
    assert [len(PointCloudDataset(path, s)) for s in ("train", "val", "test")] == [20, 2, 2]
    with pytest.raises(ValueError, match="summing to at most 24"):
        PointCloudDataset(path, split_sizes=[20, 4, 4])
    with pytest.raises(FileNotFoundError, match=r"numpy\.savez"):
        PointCloudDataset(tmp_path / "none.npz")
