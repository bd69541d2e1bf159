"""Training state under faults: divergence, corrupt checkpoints, resume overrides, locks, bad config."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from _train_toy import ToyModel, toy_config

from eghn.io import DirLock, LockedError
from eghn.models import register
from eghn.models.registry import available
from eghn.train.callbacks import StopAfter
from eghn.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from eghn.train.config import ConfigError, resolve
from eghn.train.loop import TrainingDiverged, train, validate_config


class NaNToy(ToyModel):
    """The toy model whose ``nan_at``-th training forward pass (and every later one) gives NaN."""

    #: set to False to stand for a fixed cause (a resume may not change the model's config)
    enabled = True

    def __init__(self, node_dim: int, edge_dim: int, local_edge_dim: int = 0, hidden: int = 8,
                 nan_at: int = 0) -> None:
        super().__init__(node_dim, edge_dim, local_edge_dim, hidden)
        self.nan_at, self.calls = nan_at, 0

    def forward(self, g):
        out = super().forward(g)
        if self.training:
            self.calls += 1
            if self.enabled and self.nan_at and self.calls >= self.nan_at:
                out.pos = out.pos * float("nan")
        return out


if "_nan_toy" not in available():
    register("_nan_toy")(NaNToy)


def _quiet(_msg: str) -> None:
    pass


def _nan_config(tmp_path, nan_at: int, **train_opts):
    cfg = toy_config(tmp_path, **train_opts)
    cfg["model"] = {"name": "_nan_toy", "hidden": 8, "nan_at": nan_at}
    return cfg


def test_nan_loss_mid_epoch_stops_and_keeps_last_finite_checkpoints(tmp_path, monkeypatch):
    # 40 samples, batches of 8: 5 batches per epoch; the 18th forward pass is batch 3 of epoch 4
    cfg = _nan_config(tmp_path, nan_at=18)
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"training loss is nan \(batch 3 of 5\) at epoch 4"):
        train(cfg, run, echo=_quiet)
    last, best = load_checkpoint(run / "last.pt"), load_checkpoint(run / "best.pt")
    assert last["epoch"] == 2 and best["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in last["model"].values())
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [2]
    assert "training diverged" in (run / "train.log").read_text()
    # resumable: the same run continues from epoch 2 once the cause is gone
    monkeypatch.setattr(NaNToy, "enabled", False)
    res = train(cfg, run, resume=True, echo=_quiet)
    assert res.epochs == 6 and math.isfinite(res.test)


@pytest.mark.gpu
def test_nan_loss_on_cuda_stops_at_the_end_of_its_epoch(tmp_path):
    # on CUDA the per-batch flags are read once an epoch (no device sync per batch)
    cfg = _nan_config(tmp_path, nan_at=18)
    cfg["device"] = "cuda"
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="training loss is not finite at epoch 4"):
        train(cfg, run, echo=_quiet)
    last = load_checkpoint(run / "last.pt")
    assert last["epoch"] == 2 and all(torch.isfinite(v).all() for v in last["model"].values())


def test_nan_before_first_evaluation_writes_no_checkpoint(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="no checkpoint was written yet"):
        train(_nan_config(tmp_path, nan_at=3), run, echo=_quiet)
    assert not (run / "last.pt").exists() and not (run / "best.pt").exists()


def test_non_finite_weights_are_never_saved(tmp_path, monkeypatch):
    # a finite loss but an optimizer step that makes a weight infinite (as a huge lr does)
    cfg = toy_config(tmp_path)
    run = tmp_path / "run"
    real_step = torch.optim.Adam.step
    calls = [0]

    def step(self, *a, **kw):
        out = real_step(self, *a, **kw)
        calls[0] += 1
        if calls[0] == 20:  # the last step of epoch 4, just before its evaluation
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("inf"))
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    with pytest.raises(TrainingDiverged, match="some weights are NaN or infinite at epoch 4"):
        train(cfg, run, echo=_quiet)
    assert load_checkpoint(run / "last.pt")["epoch"] == 2


def test_resume_applies_a_new_learning_rate_and_records_it(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(StopAfter.Interrupted):
        train(toy_config(tmp_path, lr=1e-2), run, echo=_quiet, callbacks=[StopAfter(2)])
    lines = []
    res = train(toy_config(tmp_path, lr=1e-3, weight_decay=1e-4, adam_eps=1e-4, epochs=4), run, resume=True,
                echo=lines.append)
    assert res.epochs == 4
    state = load_checkpoint(run / "last.pt")
    groups = state["optimizer"]["param_groups"]
    assert all(g["lr"] == 1e-3 and g["weight_decay"] == 1e-4 and g["eps"] == 1e-4 for g in groups)
    assert state["resumes"] == [{"after_epoch": 2, "changed": {"train.epochs": [6, 4], "train.lr": [1e-2, 1e-3],
                                                               "train.weight_decay": [1e-12, 1e-4],
                                                               "train.adam_eps": [1e-8, 1e-4]}}]
    assert any("train.lr 0.01 -> 0.001" in m for m in lines)
    assert json.loads((run / "config.json").read_text())["train"]["lr"] == 1e-3


def test_checkpoint_checksum_detects_corruption(tmp_path):
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"model": {"w": torch.arange(4000, dtype=torch.float64)}, "epoch": 3})
    assert load_checkpoint(path)["epoch"] == 3
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(range(64))
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)
    path.write_bytes(bytes(data[:len(data) // 3]))  # truncated
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


def test_checkpoint_write_leaves_no_temporary_files(tmp_path):
    save_checkpoint(tmp_path / "a.pt", {"model": {}})
    save_checkpoint(tmp_path / "a.pt", {"model": {}, "epoch": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]


def test_run_directory_is_locked_while_training(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with DirLock(run, "run directory"), pytest.raises(LockedError, match="in use by another eghn process"):
        train(toy_config(tmp_path), run, echo=_quiet)
    assert not (run / "last.pt").exists()
    train(toy_config(tmp_path, epochs=2), run, echo=_quiet)  # free again


def test_failed_start_leaves_no_run_directory(tmp_path):
    cfg = toy_config(tmp_path)
    cfg["model"]["hidden"] = 0
    run = tmp_path / "runs" / "r1"
    with pytest.raises(ConfigError, match=r"'model.hidden' must be >= 1"):
        train(cfg, run, echo=_quiet)
    assert not (tmp_path / "runs").exists()
    cfg["model"]["hidden"] = 8
    cfg["device"] = "cuda:7" if not torch.cuda.is_available() else "cuda:99"
    with pytest.raises(ConfigError):
        train(cfg, run, echo=_quiet)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("key, value, match", [
    ("lr", float("nan"), "train.lr' must be a finite number > 0"),
    ("lr", float("inf"), "train.lr' must be a finite number > 0"),
    ("lr", -1.0, "train.lr' must be a finite number > 0"),
    ("weight_decay", -1e-3, "train.weight_decay' must be a finite number >= 0"),
    ("clip_grad", float("nan"), "train.clip_grad"),
])
def test_train_values_are_range_checked(tmp_path, key, value, match):
    raw = {"data": {"name": "_toy"}, "model": {"name": "_toy"}, "train": {key: value}}
    with pytest.raises(ConfigError, match=match):
        resolve(raw)


@pytest.mark.parametrize("section, key, value, match", [
    ("model", "hidden", 0, "'model.hidden' must be >= 1"),
    ("model", "hidden", "big", "'model.hidden' must be an integer"),
    ("data", "size", -5, "'data.size' must be >= 1"),
    ("data", "size", 2.5, "'data.size' must be an integer"),
])
def test_model_and_data_values_are_checked(tmp_path, section, key, value, match):
    cfg = toy_config(tmp_path)
    cfg[section][key] = value
    with pytest.raises(ConfigError, match=match):
        validate_config(cfg)


def test_eghn_clusters_larger_than_the_smallest_system(tmp_path):
    cfg = toy_config(tmp_path)
    cfg["model"] = {"name": "eghn", "hidden": 8, "clusters": [20], "enc_layers": 1, "pool_layers": 1,
                    "dec_layers": 1}
    with pytest.raises(ConfigError, match=r"smallest system of the train split has 3 nodes"):
        train(cfg, tmp_path / "run", echo=_quiet)


def test_graph_dtype_must_match_the_model(tmp_path):
    from _train_toy import ToyDataset

    import eghn.models

    g = ToyDataset(4).collate([0, 1]).to(dtype=torch.float16)
    model = eghn.models.get("egnn", node_dim=1, edge_dim=1, hidden=8, layers=1).double()
    with pytest.raises(ValueError, match="the graph is float16 but the model is float64"):
        model(g)


def _toy_table(tmp_path, monkeypatch):
    from eghn.train import reproduce as rep

    cfg = tmp_path / "toy.toml"
    cfg.write_text('name = "t"\ndevice = "cpu"\n[data]\nname = "_toy"\nsize = 16\n[model]\nname = "_toy"\n'
                   '[train]\nepochs = 2\nbatch_size = 8\neval_every = 1\nlr = 0.01\ndtype = "float64"\n'
                   'progress = false\nthreads = 1\n')
    monkeypatch.setitem(rep.TABLES, "table2", rep.TableSpec("table2", (rep.Cell("EGNN", "Walk (Subject 35)",
                                                                                 str(cfg)),)))
    return rep


def test_reproduce_reuses_a_run_only_with_the_same_config_and_version(tmp_path, monkeypatch):
    rep = _toy_table(tmp_path, monkeypatch)
    out = tmp_path / "out"
    seed_dir = out / "table2-released" / str(tmp_path / "toy.toml").replace("/", "__") / "seed1"

    def run(*overrides):
        lines: list[str] = []
        res = rep.reproduce("table2", seeds=1, out=out, overrides=list(overrides), echo=lines.append,
                            progress=False)
        return res[0].values[0], json.loads((seed_dir / "result.json").read_text()), "\n".join(lines)

    v1, r1, _ = run()
    assert r1["epochs"] == 2
    v2, _, log2 = run()  # same options: reused
    assert v2 == v1 and "reusing the finished run" in log2
    v3, r3, log3 = run("train.epochs=3")  # another option: trained again, the old run kept aside
    assert r3["epochs"] == 3 and v3 != v1
    assert "train.epochs 2 -> 3" in log3 and len(list(seed_dir.parent.glob("seed1.replaced-*"))) == 1
    v4, _, _ = run("train.epochs=3", "train.lr=0.02")
    assert v4 != v3
    # a run written by another eghn version is not reused either
    r = json.loads((seed_dir / "result.json").read_text())
    r["version"] = "0.0.1"
    (seed_dir / "result.json").write_text(json.dumps(r))
    _, _, log5 = run("train.epochs=3", "train.lr=0.02")
    assert "trained by eghn 0.0.1" in log5


# ---------------------------------------------------------------------------- generated datasets
def _gen(root, seed, **kw):
    from eghn.data.mcomplex import generate_mcomplex_dataset

    return generate_mcomplex_dataset(root, 3, 3, 2, n_train=3, n_val=2, n_test=2, seed=seed, n_steps=300,
                                     sample_every=100, progress=False, **kw)


def _seeds(root):
    """The seed recorded by config.json and the draws of each split (a fingerprint of the seed)."""
    import numpy as np

    cfg = json.loads((root / "config.json").read_text())
    return cfg["seed"], {s: np.load(root / f"{s}.npz")["pos"].tobytes() for s in ("train", "val", "test")}


def test_mcomplex_overwrite_killed_midway_keeps_the_old_dataset(tmp_path, monkeypatch):
    import eghn.data.mcomplex as mc

    root = tmp_path / "ds"
    _gen(root, seed=1)
    before = _seeds(root)
    real = mc.simulate_mcomplex
    calls = [0]

    def dying(*a, **kw):
        calls[0] += 1
        if calls[0] == 2:  # after train.npz of the new seed has been written
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(mc, "simulate_mcomplex", dying)
    with pytest.raises(KeyboardInterrupt):
        _gen(root, seed=2, overwrite=True)
    assert _seeds(root) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary folder left
    monkeypatch.setattr(mc, "simulate_mcomplex", real)
    _gen(root, seed=2, overwrite=True)
    assert _seeds(root)[0] == 2 and _seeds(root)[1]["train"] != before[1]["train"]


def test_mcomplex_swap_interrupted_between_renames_is_recovered(tmp_path):
    import os

    from eghn.data.mcomplex import MComplexDataset
    from eghn.io import OLD_PREFIX

    root = tmp_path / "ds"
    _gen(root, seed=1)
    before = _seeds(root)
    os.rename(root, tmp_path / f"{OLD_PREFIX}ds.123.456")  # the first rename of a swap, then a kill
    ds = MComplexDataset(root, "val", input_frame=0, target_frame=2)
    assert len(ds) == 2 and _seeds(root) == before


def test_truncated_mcomplex_split_gives_a_clear_error(tmp_path):
    from eghn.data.mcomplex import MComplexDataset

    root = tmp_path / "ds"
    _gen(root, seed=1)
    data = (root / "train.npz").read_bytes()
    (root / "train.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"train\.npz: it is truncated or corrupt"):
        MComplexDataset(root, "train", input_frame=0, target_frame=2)[0]


@pytest.mark.slow
def test_mcomplex_overwrite_under_kill_9_is_wholly_old_or_new(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "ds"
    _gen(root, seed=1)
    old = _seeds(root)
    cmd = [sys.executable, "-m", "eghn.cli", "data", "mcomplex", "--out", str(root), "-M", "3", "-J", "2",
           "--n-train", "200", "--n-val", "100", "--n-test", "100", "--steps", "300", "--seed", "2",
           "--overwrite", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    seen = set()
    for delay in (0.8, 1.6, 2.4, 3.2, 4.5):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        from eghn.io import recover_dir

        recover_dir(root)
        seed, splits = _seeds(root)
        if seed == 1:
            assert (seed, splits) == old
        else:
            assert seed == 2 and all(len(v) for v in splits.values())
            assert splits["train"] != old[1]["train"]
        seen.add(seed)
        if seed == 2:
            _gen(root, seed=1, overwrite=True)


# ---------------------------------------------------------------------------- command line
_TOY_TOML = ('name = "t"\ndevice = "cpu"\n[data]\nname = "_toy"\nsize = 16\n[model]\nname = "_toy"\n'
             '[train]\nepochs = {epochs}\nbatch_size = 8\neval_every = 1\nlr = 0.01\ndtype = "float64"\n'
             'progress = false\nthreads = 1\n')


def _cli(argv, capsys):
    from eghn.cli import main

    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _toy_toml(tmp_path, epochs=2):
    path = tmp_path / "toy.toml"
    path.write_text(_TOY_TOML.format(epochs=epochs))
    return path


@pytest.mark.parametrize("option, match", [
    ("train.lr=nan", "'train.lr' must be a finite number > 0, got nan"),
    ("train.adam_eps=0", "'train.adam_eps' must be a finite number > 0, got 0"),
    ("train.lr=0", "'train.lr' must be a finite number > 0"),
    ("train.batch_size=-5", "'train.batch_size' must be >= 1"),
    ("model.hidden=0", "'model.hidden' must be >= 1"),
    ('model.hidden="big"', "'model.hidden' must be an integer, got 'big'"),
    ("data.size=-5", "'data.size' must be >= 1"),
])
def test_cli_config_errors_are_one_line_exit_2(tmp_path, capsys, option, match):
    run = tmp_path / "runs" / "r"
    rc, _, err = _cli(["train", _toy_toml(tmp_path), "--set", option, "--run-dir", run], capsys)
    assert rc == 2 and err.startswith("eghn: error: ") and match in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # a failed start leaves no run directory


def test_cli_default_config_value_errors(tmp_path, capsys):
    for option, match in (("data.n_train=-5", "'data.n_train' must be >= 1"),
                          ("model.clusters=[0]", "'model.clusters' must be >= 1")):
        rc, _, err = _cli(["train", "default", "--set", option, "--run-dir", tmp_path / "r"], capsys)
        assert rc == 2 and match in err and err.count("\n") == 1
        assert not (tmp_path / "r").exists()


def test_cli_clusters_larger_than_the_systems(tmp_path, capsys):
    toml = _toy_toml(tmp_path)
    toml.write_text(toml.read_text().replace('name = "_toy"\n[train]', 'name = "eghn"\nhidden = 8\n'
                                             'clusters = [20]\n[train]'))
    rc, _, err = _cli(["train", toml, "--run-dir", tmp_path / "r"], capsys)
    assert rc == 2 and "smallest system of the train split has 3 nodes" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_cli_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _cli(["evaluate", tmp_path, "--batch-size", "-5"], capsys)
    assert e.value.code == 2
    assert "expected a positive integer, got -5" in capsys.readouterr().err
    rc, _, err = _cli(["train"], capsys)
    assert rc == 2 and err.startswith("eghn: error: eghn train: give a CONFIG")


def test_cli_corrupt_run_files(tmp_path, capsys):
    run = tmp_path / "run"
    assert _cli(["train", _toy_toml(tmp_path), "--run-dir", run], capsys)[0] == 0
    (run / "config.json").write_text("{ not json")
    rc, out, err = _cli(["train", "--resume", run], capsys)  # last.pt holds the truth: it is used
    assert rc == 0 and f"{run / 'config.json'} is unreadable" in out and "config stored in" in out
    assert json.loads((run / "config.json").read_text()) == load_checkpoint(run / "last.pt")["config"]
    (run / "config.json").unlink()
    rc, _, err = _cli(["train", _toy_toml(tmp_path), "--resume", run], capsys)  # config given again
    (run / "result.json").write_text("[1, 2")
    rc, _, err = _cli(["train", _toy_toml(tmp_path), "--resume", run], capsys)
    assert rc == 1 and "result.json is unreadable" in err and err.count("\n") == 1
    best = run / "best.pt"
    data = bytearray(best.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
    best.write_bytes(bytes(data))
    rc, out, err = _cli(["evaluate", run], capsys)
    assert rc == 1 and f"checkpoint {best}" in err and "corrupt" in err and "MSE" not in out


def test_cli_disk_full_and_read_only(tmp_path, capsys, monkeypatch):
    import errno
    import os

    import eghn.io

    real = eghn.io.tempfile.mkstemp

    def full(*a, **kw):
        fd, name = real(*a, **kw)
        if name.endswith(".pt") or ".pt." in name:
            os.close(fd)
            os.unlink(name)
            raise OSError(errno.ENOSPC, "No space left on device", name)
        return fd, name

    monkeypatch.setattr(eghn.io.tempfile, "mkstemp", full)
    rc, _, err = _cli(["train", _toy_toml(tmp_path), "--run-dir", tmp_path / "r"], capsys)
    assert rc == 1 and "eghn: error: no space left on device while writing" in err and "Traceback" not in err
    monkeypatch.undo()

    def denied(*a, **kw):
        raise PermissionError(errno.EACCES, "Permission denied", str(kw.get("dir", "")))

    monkeypatch.setattr(eghn.io.tempfile, "mkstemp", denied)
    rc, _, err = _cli(["train", _toy_toml(tmp_path), "--run-dir", tmp_path / "r2"], capsys)
    assert rc == 1 and f"permission denied ({tmp_path / 'r2'})" in err and "Traceback" not in err
    monkeypatch.undo()
    if os.geteuid() == 0:
        pytest.skip("root can write into read-only folders")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        rc, _, err = _cli(["train", _toy_toml(tmp_path), "--run-dir", ro / "r"], capsys)
    finally:
        ro.chmod(0o700)
    assert rc == 1 and "permission denied" in err and "Traceback" not in err


def test_cli_debug_shows_the_traceback(tmp_path, capsys):
    with pytest.raises(Exception, match=r"train\.lr"):
        _cli(["--debug", "train", _toy_toml(tmp_path), "--set", "train.lr=nan"], capsys)


def test_cli_second_process_on_a_locked_run_directory(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    with DirLock(run, "run directory"):
        rc, _, err = _cli(["train", _toy_toml(tmp_path), "--run-dir", run], capsys)
    assert rc == 1 and "is in use by another eghn process" in err and err.count("\n") == 1


def _cli_subprocess(args, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    code = (f"import sys; sys.path.insert(0, {str(here)!r}); import _train_toy; from eghn.cli import main; "
            f"sys.exit(main({[str(a) for a in args]!r}))")
    return subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)


def _long_run_with_a_checkpoint(tmp_path, run):
    """A long ``eghn train`` in a subprocess, returned once it has written ``last.pt`` (or after 60 s)."""
    import time

    proc = _cli_subprocess(["train", _toy_toml(tmp_path, epochs=100000), "--run-dir", run], tmp_path)
    deadline = time.time() + 60
    while not (run / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.1)
    return proc


@pytest.mark.slow
def test_cli_sigterm_exits_with_a_message_and_the_run_resumes(tmp_path):
    import signal

    run = tmp_path / "run"
    proc = _long_run_with_a_checkpoint(tmp_path, run)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "eghn: terminated (SIGTERM)" in err and "Traceback" not in err
    assert load_checkpoint(run / "last.pt")["epoch"] >= 1


@pytest.mark.slow
def test_two_processes_on_one_run_directory(tmp_path):
    run = tmp_path / "run"
    first = _long_run_with_a_checkpoint(tmp_path, run)
    second = _cli_subprocess(["train", _toy_toml(tmp_path, epochs=3), "--run-dir", run, "--seed", "9"], tmp_path)
    _, err = second.communicate(timeout=60)
    first.terminate()
    first.communicate(timeout=60)
    assert second.returncode == 1 and "in use by another eghn process (pid" in err
    assert json.loads((run / "config.json").read_text())["seed"] == 1
    rows = [int(r["epoch"]) for r in csv.DictReader(open(run / "metrics.csv"))]
    hist = [h["epoch"] for h in load_checkpoint(run / "last.pt")["history"]]
    # the second process wrote nothing; the first may have been stopped between its two writes
    assert rows[:len(hist)] == hist and len(rows) - len(hist) in (0, 1) and rows == list(range(1, len(rows) + 1))


def test_cli_evaluate_refuses_non_finite_weights(tmp_path, capsys):
    run = tmp_path / "run"
    assert _cli(["train", _toy_toml(tmp_path), "--run-dir", run], capsys)[0] == 0
    state = load_checkpoint(run / "best.pt")
    name = next(iter(state["model"]))
    state["model"][name] = state["model"][name] * float("nan")
    state["config"] = json.dumps(state["config"])
    save_checkpoint(run / "best.pt", state)
    rc, out, err = _cli(["evaluate", run / "best.pt"], capsys)  # the file itself: no run checks
    assert rc == 1 and "holds NaN or infinite weights" in err and "MSE" not in out
    rc, out, err = _cli(["evaluate", run], capsys)  # the run: best.pt is not what result.json reports
    assert rc == 1 and "is not the checkpoint its run reports" in err and "MSE" not in out


def test_disk_full_during_a_write_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    import errno
    import os

    from eghn.io import atomic_write_bytes

    target = tmp_path / "last.pt"
    atomic_write_bytes(target, b"old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as e:
        atomic_write_bytes(target, b"new")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
