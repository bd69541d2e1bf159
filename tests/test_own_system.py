"""Training on your own trajectory: a shipped protein configuration pointed at other files.

The route of the guide: ``eghn train protein/adk_eghn --set data.source='""' --set
data.topology=... --set data.trajectory=...``; here with the embedded AdK files standing in for
the reader's own, and the datasets built as ``eghn train`` builds them (no training).
"""

from __future__ import annotations

import pytest

from eghn.data import ProteinMDDataset
from eghn.data.protein import embedded_adk_files
from eghn.train.config import load_config
from eghn.train.loop import build_datasets

pytestmark = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("MDAnalysisTests") is None, reason="needs MDAnalysisTests")


def _toml(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_a_named_source_and_files_are_one_too_many():
    top, traj = embedded_adk_files()
    with pytest.raises(ValueError, match=r"clear it with --set data.source="):
        ProteinMDDataset(top, traj, source="adk-embedded")


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
