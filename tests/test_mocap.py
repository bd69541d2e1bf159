"""ASF/AMC parsing, forward kinematics and the CMU motion-capture dataset.

The parser is always tested on a tiny skeleton written here; the real CMU files in
``../shared/data/mocap`` (or ``$EGHN_DATA_DIR/mocap``) are used when present.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from eghn.data import Graph, MocapDataset, collate, mocap, read_amc, read_asf
from eghn.data.asf_amc import AsfAmcError, forward_kinematics, load_trial
from eghn.data.paths import find_data

TINY_ASF = """\
# a three-bone skeleton whose poses can be worked out by hand
:version 1.10
:name tiny
:units
  mass 1.0
  length 0.45
  angle deg
:documentation
  test skeleton
:root
   order TX TY TZ RX RY RZ
   axis XYZ
   position 0 0 0
   orientation 0 0 0
:bonedata
  begin
     id 1
     name hip
     direction 2 0 0
     length 2
     axis 0 0 0  XYZ
  end
  begin
     id 2
     name thigh
     direction 0 -1 0
     length 3
     axis 0 0 90  XYZ
    dof rx rz
    limits (-180.0 180.0)
           (-180.0 180.0)
  end
  begin
     id 3
     name spine
     direction 0 1 0
     length 1.5
     axis 0 0 0  XYZ
    dof rx ry rz
  end
:hierarchy
  begin
    root hip spine
    hip thigh
  end
"""

TINY_AMC = """\
#!OML:ASF tiny.asf
:FULLY-SPECIFIED
:DEGREES
1
root 1 2 3 0 0 0
spine 0 0 0
thigh 0 0
2
root 0 0 0 0 90 0
thigh 90 0
spine 0 0 90
3
root 0 0 0 0 0 0
thigh 0 90
spine 90 90 0
"""

# hand-worked node positions (root, hip, thigh, spine) of the three frames above
TINY_EXPECTED = np.array([
    [[1, 2, 3], [3, 2, 3], [3, -1, 3], [1, 3.5, 3]],
    # root turned 90 deg about y (x -> -z); the thigh's rx acts about its local x = global y,
    # which leaves its downward direction alone; spine rz turns +y to -x, then the root to +z
    [[0, 0, 0], [0, 0, -2], [0, -3, -2], [0, 0, 1.5]],
    # thigh rz (local z = global z) turns -y to +x; spine: rx first (+y -> +z), then ry (+z -> +x)
    [[0, 0, 0], [2, 0, 0], [5, 0, 0], [1.5, 0, 0]],
], dtype=np.float64)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def tiny(tmp_path):
    return _write(tmp_path / "tiny.asf", TINY_ASF), _write(tmp_path / "tiny.amc", TINY_AMC)


def _shared(rel: str) -> Path:
    path = find_data(Path("mocap") / rel)
    if path is None:
        pytest.skip(f"shared CMU mocap data not found (mocap/{rel} under $EGHN_DATA_DIR or ../shared/data)")
    return path


# ---------------------------------------------------------------------------- parser on a tiny skeleton
def test_tiny_skeleton_layout(tiny):
    skel = read_asf(tiny[0])
    assert skel.node_names == ["root", "hip", "thigh", "spine"]
    assert skel.edges.tolist() == [[1, 0], [2, 1], [3, 0]]
    assert skel.length_unit == 0.45 and skel.angle_unit == "deg"
    assert skel.bones["thigh"].dof == ("rx", "rz")
    np.testing.assert_allclose(skel.bones["hip"].direction, [1, 0, 0])  # normalised
    np.testing.assert_allclose(skel.bones["thigh"].axis, [0, 0, math.pi / 2])
    free = read_amc(tiny[1])  # without a skeleton the first frame fixes the layout
    shapes = {k: v.shape for k, v in free.channels.items()}
    assert shapes == {"root": (3, 6), "spine": (3, 3), "thigh": (3, 2)}
    assert free.frames.tolist() == [1, 2, 3] and free.degrees


def test_tiny_forward_kinematics_by_hand(tiny):
    x = load_trial(*tiny)
    assert x.shape == (3, 4, 3)
    np.testing.assert_allclose(x, TINY_EXPECTED, atol=1e-12)


def test_radians_flag_gives_same_pose(tiny, tmp_path):
    def to_rad(line: str) -> str:
        name, *vals = line.split()
        if name == "root":
            vals = vals[:3] + [repr(math.radians(float(v))) for v in vals[3:]]
        else:
            vals = [repr(math.radians(float(v))) for v in vals]
        return " ".join([name, *vals])

    lines = [ln.replace(":DEGREES", ":RADIANS") if ln[0] in ":#" else
             (to_rad(ln) if len(ln.split()) > 1 else ln) for ln in TINY_AMC.splitlines()]
    amc = _write(tmp_path / "rad.amc", "\n".join(lines) + "\n")
    motion = read_amc(amc, read_asf(tiny[0]))
    assert not motion.degrees and motion.fully_specified
    np.testing.assert_allclose(forward_kinematics(read_asf(tiny[0]), motion), TINY_EXPECTED, atol=1e-12)


@pytest.mark.parametrize("old,new,match", [
    ("     direction 2 0 0\n", "     direction 2 0\n", "needs 3 numbers"),
    ("     length 3\n", "     length three\n", "must be numbers"),
    ("    hip thigh\n", "    hip knee\n", "unknown bone 'knee'"),
    ("    dof rx rz\n", "    dof rx tx\n", "unsupported bone dof"),
    ("     axis 0 0 90  XYZ\n", "     axis 0 0 90  XXZ\n", "permutation of XYZ"),
])
def test_asf_errors_name_file_and_line(tmp_path, old, new, match):
    assert TINY_ASF.count(old) == 1
    line = TINY_ASF[: TINY_ASF.index(old)].count("\n") + 1
    path = _write(tmp_path / "bad.asf", TINY_ASF.replace(old, new))
    with pytest.raises(AsfAmcError, match=match) as excinfo:
        read_asf(path)
    assert str(excinfo.value).startswith(f"{path}:{line}:")
    assert excinfo.value.line == line


@pytest.mark.parametrize("old,new,line,match", [
    ("thigh 90 0\n", "thigh 90\n", 10, "needs 2 values"),
    ("spine 0 0 90\n", "spine 0 zero 90\n", 11, "must be numbers"),
    ("3\nroot", "4\nroot", 12, "consecutive"),
    ("spine 0 0 0\n", "", 4, "no values for"),
    ("spine 0 0 0\n", "spine 0 0 0\nknee 1\n", 7, "unknown bone"),
    ("thigh 0 0\n", "thigh 0 0\nthigh 0 0\n", 8, "twice"),
])
def test_amc_errors_name_file_and_line(tiny, tmp_path, old, new, line, match):
    assert old in TINY_AMC
    path = _write(tmp_path / "bad.amc", TINY_AMC.replace(old, new, 1))
    with pytest.raises(AsfAmcError, match=match) as excinfo:
        read_amc(path, read_asf(tiny[0]))
    assert str(excinfo.value).startswith(f"{path}:{line}:")


def test_bad_data_dir_env_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("EGHN_DATA_DIR", str(tmp_path / "absent"))
    with pytest.raises(NotADirectoryError, match="EGHN_DATA_DIR"):
        MocapDataset("train", "run")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.asf"):
        read_asf(tmp_path / "nope.asf")


# ---------------------------------------------------------------------------- graphs and splits
def test_skeleton_graph_two_hops():
    ei, ea, local = mocap.skeleton_graph(mocap.SKELETON_EDGES, 31)
    # 30 bones -> 60 directed one-hop pairs; two-hop pairs: sum over nodes of deg*(deg-1)
    deg = np.bincount(mocap.SKELETON_EDGES.ravel(), minlength=31)
    assert ei.shape == (2, 60 + int((deg * (deg - 1)).sum())) == (2, 130)
    assert local.shape == (2, 60)
    assert ea.shape == (130, 2) and torch.equal(ea.sum(1), torch.ones(130))
    assert int(ea[:, 0].sum()) == 60 and bool((ei[0] != ei[1]).all())
    pairs = set(map(tuple, ei.T.tolist()))
    assert all((j, i) in pairs for i, j in pairs)
    assert (2, 0) in pairs and (17, 24) in pairs and (3, 0) not in pairs  # hop 2, hop 2, hop 3
    hop2 = {tuple(p) for p, a in zip(ei.T.tolist(), ea.tolist()) if a[1] == 1}
    assert (17, 24) in hop2 and (24, 12) in hop2


@pytest.mark.parametrize("subject,name", [("walk", "cmu35_walk_split.json"), ("run", "cmu09_run_split.json")])
def test_split_regenerates_shipped_json(subject, name):
    split = mocap.make_split(subject)
    spec = mocap.SUBJECTS[subject]
    for part, trials in split.items():
        assert list(trials) == list(spec.split_trials[part])
        assert all(len(set(s)) == spec.per_trial and max(s) < spec.interval for s in trials.values())
    shipped = json.loads(_shared(name).read_text())
    assert {p: {str(k): v for k, v in d.items()} for p, d in split.items()} == shipped


def _fake_npz(folder: Path, name: str, lengths: list[int]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    trials = [rng.normal(size=(t, 31, 3)).cumsum(0) for t in lengths]
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / name, edges=mocap.SKELETON_EDGES, **{f"trial_{k:02d}": x for k, x in enumerate(trials)})
    return trials


@pytest.mark.parametrize("subject,lengths,counts", [
    ("walk", [340] * 23, {"train": 198, "val": 600, "test": 600}),
    ("run", [125] * 11, {"train": 200, "val": 240, "test": 240}),
])
def test_dataset_protocol_on_synthetic_npz(tmp_path, subject, lengths, counts):
    spec = mocap.SUBJECTS[subject]
    trials = _fake_npz(tmp_path, spec.npz_name, lengths)
    for split, n in counts.items():
        ds = MocapDataset(split, subject, data_dir=tmp_path, cache_dir=tmp_path / "cache")
        assert len(ds) == n
    assert (ds.node_dim, ds.edge_dim, ds.local_edge_dim) == (1, 2, 0)
    split = mocap.make_split(subject)["test"]
    per = spec.max_samples["test"] // len(split)
    k = len(ds) - 1  # last sample: last listed test trial, its per-th start frame
    tid, t = list(split)[-1], split[list(split)[-1]][per - 1]
    assert ds.samples[k].tolist() == [tid, t]
    g = ds[k].validate()
    x = trials[tid]
    np.testing.assert_allclose(g.pos.numpy(), x[t], rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(g.vel.numpy(), x[t + 1] - x[t], rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(g.target.numpy(), x[t + 30], rtol=1e-6, atol=1e-5)
    assert torch.equal(g.h, g.pos[:, 1:2] / 10)
    assert g.edge_index.shape == (2, 130) and g.edge_attr.shape == (130, 2)
    assert g.local_edge_index.shape == (2, 60)
    # fast collate == generic collate of the single graphs
    idx = [3, 0, k, 7]
    fast, slow = ds.collate(idx).validate(), collate([ds[i] for i in idx])
    for name in ("pos", "h", "vel", "target", "edge_index", "edge_attr", "local_edge_index", "batch"):
        assert torch.equal(getattr(fast, name), getattr(slow, name)), name
    assert fast.num_graphs == 4 and isinstance(fast, Graph)
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_dataset_errors(tmp_path):
    _fake_npz(tmp_path, "cmu09_run.npz", [125] * 11)
    with pytest.raises(ValueError, match="start frames per trial"):
        MocapDataset("val", "run", data_dir=tmp_path, max_samples=241 * 3)
    with pytest.raises(ValueError, match="split must be"):
        MocapDataset("dev", "run", data_dir=tmp_path)
    short = tmp_path / "short"
    _fake_npz(short, "cmu09_run.npz", [125] * 3 + [100] + [125] * 7)  # trial 3 is a test trial
    MocapDataset("train", "run", data_dir=short)
    with pytest.raises(ValueError, match="too short"):
        MocapDataset("test", "run", data_dir=short)
    with pytest.raises(FileNotFoundError, match=r"cmu35_walk\.npz"):
        MocapDataset("train", "walk", data_dir=tmp_path / "short", cache_dir=tmp_path / "cache")


# ---------------------------------------------------------------------------- download (never the network)
def test_download_verifies_checksums(tiny, tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(tiny[0], src / "77.asf")
    shutil.copy(tiny[1], src / "77_01.amc")
    sums = {n: hashlib.sha256((src / n).read_bytes()).hexdigest() for n in ("77.asf", "77_01.amc")}
    spec = mocap.MocapSubject(key="tiny", subject="77", trials=("77_01",), npz_name="tiny.npz",
                              raw_name="tiny", split_trials={}, interval=1, per_trial=1, max_samples={},
                              sha256=sums)
    monkeypatch.setitem(mocap.SUBJECTS, "tiny", spec)
    urls = []

    def fetch(url, dest):
        urls.append(url)
        shutil.copy(src / url.rsplit("/", 1)[1], dest)

    out = mocap.download("tiny", tmp_path / "cache", fetch=fetch, progress=False)
    assert urls == ["https://mocap.cs.cmu.edu/subjects/77/77.asf", "https://mocap.cs.cmu.edu/subjects/77/77_01.amc"]
    assert sorted(p.name for p in out.iterdir()) == ["77.asf", "77_01.amc"]
    mocap.download("tiny", tmp_path / "cache", fetch=fetch, progress=False)
    assert len(urls) == 2  # verified files are not fetched again

    (out / "77_01.amc").write_text("corrupted")  # a bad cached file is re-fetched

    def bad_fetch(url, dest):
        Path(dest).write_text("not the CMU file")

    with pytest.raises(mocap.ChecksumError, match=r"77_01\.amc"):
        mocap.download("tiny", tmp_path / "cache", fetch=bad_fetch, progress=False)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".part")]


def test_download_run_needs_explicit_opt_in(tmp_path):
    with pytest.raises(ValueError, match="allow_unverified"):
        mocap.download("run", tmp_path, fetch=lambda url, dest: None, progress=False)


# ---------------------------------------------------------------------------- the real CMU files
@pytest.fixture(scope="module")
def walk_cli(tmp_path_factory):
    """``eghn data mocap --download`` with the fetch served from the shared raw files."""
    raw = _shared("cmu35_walk/35.asf").parent
    cache = tmp_path_factory.mktemp("mocap_cache")
    mp = pytest.MonkeyPatch()
    mp.setattr(mocap, "_fetch_url", lambda url, dest: shutil.copy(raw / url.rsplit("/", 1)[1], dest))
    parser = argparse.ArgumentParser()
    mocap.register_cli(parser.add_subparsers())
    args = parser.parse_args(["mocap", "--download", "--out", str(cache / "mocap")])
    try:
        assert args.func(args) == 0
    finally:
        mp.undo()
    return raw, cache


def test_walk_preprocessing_matches_readme(walk_cli):
    raw, cache = walk_cli
    trials, edges = mocap.load_npz(cache / "mocap" / "cmu35_walk.npz")
    frames = {"01": 358, "02": 406, "03": 427, "04": 433, "05": 427, "06": 438, "07": 360, "08": 455,
              "09": 384, "10": 432, "11": 385, "12": 397, "13": 454, "14": 411, "15": 406, "16": 443,
              "28": 417, "29": 497, "30": 412, "31": 421, "32": 392, "33": 421, "34": 415}
    assert [len(x) for x in trials] == [n - 6 * (k == "10") for k, n in frames.items()]
    run_edges = np.load(_shared("cmu09_run.npz"))["edges"]
    assert edges.dtype == run_edges.dtype and np.array_equal(edges, run_edges)
    skel = read_asf(raw / "35.asf")
    lengths = np.array([skel.bones[n].length for n in skel.node_names[1:]])
    for x in trials:
        bone = np.linalg.norm(x[:, edges[:, 0]] - x[:, edges[:, 1]], axis=-1)
        np.testing.assert_allclose(bone, np.broadcast_to(lengths, bone.shape), rtol=0, atol=1e-9)
    # raw ASF units, y up: the root (pelvis) stays near 18 units (~40 inch) above the floor
    first = load_trial(skel, raw / "35_01.amc")
    np.testing.assert_allclose(first[0, 0], [4.40047, 17.8934, -21.0986])  # root = AMC translation
    np.testing.assert_array_equal(first, trials[0])
    assert 15 < np.concatenate(trials)[:, 0, 1].mean() < 21


def test_walk_dataset_from_raw_and_cache(walk_cli, monkeypatch):
    raw, cache = walk_cli
    counts = {}
    for split in ("train", "val", "test"):
        # raw files in data_dir; the preprocessed npz already in the cache is reused (stamp matches)
        ds = MocapDataset(split, "walk", data_dir=raw.parent, cache_dir=cache)
        assert ds.path == cache / "mocap" / "cmu35_walk.npz"
        counts[split] = len(ds)
    assert counts == {"train": 198, "val": 600, "test": 600}
    batch = ds.collate(range(8)).validate()
    assert batch.pos.shape == (248, 3) and batch.edge_index.shape == (2, 1040)
    bones = batch.target[batch.local_edge_index[0]] - batch.target[batch.local_edge_index[1]]
    assert float(bones.norm(dim=1).max()) < 8.0  # longest Subject 35 bone: 7.99 units


def test_run_dataset_from_shared_npz(monkeypatch, tmp_path):
    root = _shared("cmu09_run.npz").parents[1]
    monkeypatch.setenv("EGHN_DATA_DIR", str(root))
    monkeypatch.setenv("EGHN_CACHE_DIR", str(tmp_path))
    sizes = {s: len(MocapDataset(s, "run")) for s in ("train", "val", "test")}
    assert sizes == {"train": 200, "val": 240, "test": 240}
    ds = MocapDataset("test", "run")
    g = ds[5].validate()
    bones = (g.pos[g.local_edge_index[0]] - g.pos[g.local_edge_index[1]]).norm(dim=1)
    tgt = (g.target[g.local_edge_index[0]] - g.target[g.local_edge_index[1]]).norm(dim=1)
    # bones are rigid over the 30-frame gap
    np.testing.assert_allclose(bones.numpy(), tgt.numpy(), rtol=0, atol=1e-4)


def test_walk_npz_has_normal_permissions(walk_cli):
    import os

    _, cache = walk_cli
    mask = os.umask(0)
    os.umask(mask)
    npz = cache / "mocap" / "cmu35_walk.npz"
    assert npz.stat().st_mode & 0o777 == 0o666 & ~mask
    assert not [p.name for p in npz.parent.iterdir() if p.name.startswith((".eghn-tmp-", "tmp"))]


def test_unshipped_subject_checksums_recorded_at_download_are_verified(tiny, tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(tiny[0], src / "77.asf")
    shutil.copy(tiny[1], src / "77_01.amc")
    spec = mocap.MocapSubject(key="tiny9", subject="77", trials=("77_01",), npz_name="tiny9.npz",
                              raw_name="tiny9", split_trials={}, interval=1, per_trial=1, max_samples={})
    monkeypatch.setitem(mocap.SUBJECTS, "tiny9", spec)
    urls = []

    def fetch(url, dest):
        urls.append(url)
        shutil.copy(src / url.rsplit("/", 1)[1], dest)

    out = mocap.download("tiny9", tmp_path / "cache", fetch=fetch, allow_unverified=True, progress=False)
    record = (out / "tiny9.sha256").read_text()
    assert hashlib.sha256((src / "77.asf").read_bytes()).hexdigest() + "  77.asf" in record
    (out / "77_01.amc").write_text("changed after the download")
    with pytest.raises(mocap.ChecksumError, match=r"77_01\.amc: sha256 does not match the recorded"):
        mocap.preprocess(out, "tiny9", tmp_path / "x.npz")
    mocap.download("tiny9", tmp_path / "cache", fetch=fetch, allow_unverified=True, progress=False)
    assert urls[-1].endswith("77_01.amc") and len(urls) == 3  # the changed file is fetched again
    assert (out / "77_01.amc").read_bytes() == (src / "77_01.amc").read_bytes()


def test_downloads_use_https_only(tmp_path):
    with pytest.raises(OSError, match="unencrypted"):
        mocap._fetch_url("http://mocap.cs.cmu.edu/subjects/9/9.asf", tmp_path / "x")
    assert mocap.CMU_URL.startswith("https://")


def test_orphaned_temporary_files_are_removed(tmp_path):
    import os
    import time

    from eghn.io import clean_orphans

    old = time.time() - 7200
    ours, fresh, keep = (tmp_path / ".eghn-tmp-cmu35_walk.npz.x1", tmp_path / ".eghn-tmp-other.y2",
                         tmp_path / "tmp_notes.npz")
    for p in (ours, fresh, keep):
        p.write_bytes(b"x")
    (tmp_path / ".eghn-tmp-M3_S3-dir").mkdir()
    for p in (ours, keep, tmp_path / ".eghn-tmp-M3_S3-dir"):
        os.utime(p, (old, old))
    clean_orphans(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".eghn-tmp-other.y2", "tmp_notes.npz"]
