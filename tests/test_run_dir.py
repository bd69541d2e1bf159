"""A run directory that cannot lie: every file checked against ``last.pt``, resume refuses or states
every difference, nothing written until it can be written whole, evaluate agrees with result.json,
messages that diagnose, strict validation at the API, signals."""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil

import pytest
import torch
from _train_toy import toy_config

from eghn.io import WriteGroup, append_text
from eghn.train.callbacks import StopAfter, kept_checkpoints
from eghn.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from eghn.train.config import ConfigError
from eghn.train.loop import train
from eghn.train.rundir import RESUME_ALLOWED, check_resume_config, config_differences, result_mismatch

_TOY_TOML = ('name = "t"\ndevice = "cpu"\n[data]\nname = "_toy"\nsize = 16\n[model]\nname = "_toy"\n'
             '[train]\nepochs = {epochs}\nbatch_size = 8\neval_every = 1\nlr = 0.01\ndtype = "float64"\n'
             'progress = false\nthreads = 1\npatience = {patience}\n')


def _toml(tmp_path, epochs=3, patience=50):
    path = tmp_path / "toy.toml"
    path.write_text(_TOY_TOML.format(epochs=epochs, patience=patience))
    return path


def _cli(argv, capsys):
    from eghn.cli import main

    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _quiet(_msg: str) -> None:
    pass


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != ".lock"}


def _finished(tmp_path, capsys, epochs=3, patience=50, name="run"):
    run = tmp_path / name
    rc, _, err = _cli(["train", _toml(tmp_path, epochs, patience), "--run-dir", run], capsys)
    assert rc == 0, err
    return run


def _interrupted(tmp_path, name="run", after=2, **train_opts):
    run = tmp_path / name
    with pytest.raises(StopAfter.Interrupted):
        train(toy_config(tmp_path, **train_opts), run, echo=_quiet, callbacks=[StopAfter(after)])
    return run


# ---------------------------------------------------------------------------- item 3: whole writes
def test_write_group_is_all_or_nothing(tmp_path, monkeypatch):
    import eghn.io

    (tmp_path / "a").write_text("old a")
    (tmp_path / "b").write_text("old b")
    real, calls = eghn.io.tempfile.mkstemp, []

    def second_fails(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **kw)

    monkeypatch.setattr(eghn.io.tempfile, "mkstemp", second_fails)
    with pytest.raises(OSError, match="No space left"), WriteGroup() as group:
        group.add(tmp_path / "a", "new a")
        group.add(tmp_path / "b", "new b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
    assert (tmp_path / "a").read_text() == "old a" and (tmp_path / "b").read_text() == "old b"


def test_append_text_is_cut_back_when_the_disk_fills(tmp_path, monkeypatch):
    import eghn.io

    log = tmp_path / "train.log"
    log.write_text("line 1\n")
    real = eghn.io.os.write

    def half(fd, data):
        real(fd, bytes(data[:3]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(eghn.io.os, "write", half)
    with pytest.raises(OSError) as e:
        append_text(log, "line 2\n")
    assert e.value.filename == str(log)
    monkeypatch.undo()
    assert log.read_text() == "line 1\n"


def _fail_nth_write(monkeypatch, n):
    """The ``n``-th write of the trainer (a staged file or a log append) fails with ENOSPC."""
    import eghn.io

    real_mkstemp, real_write, count = eghn.io.tempfile.mkstemp, eghn.io.os.write, [0]

    def tick():
        count[0] += 1
        if count[0] == n:
            raise OSError(errno.ENOSPC, "No space left on device")

    def mkstemp(*a, **kw):
        tick()
        return real_mkstemp(*a, **kw)

    def write(fd, data):
        if fd > 2:  # not stdout / stderr
            tick()
        return real_write(fd, data)

    monkeypatch.setattr(eghn.io.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(eghn.io.os, "write", write)
    return count


@pytest.mark.parametrize("prepared", ["interrupted", "never_checkpointed"])
def test_a_failed_resume_leaves_every_file_byte_identical_at_each_write_point(tmp_path, monkeypatch, prepared):
    if prepared == "interrupted":
        run = _interrupted(tmp_path)
    else:  # the row of the issue: no last.pt could ever be written (disk full), metrics.csv has rows
        run = _interrupted(tmp_path)
        (run / "last.pt").unlink()
        (run / "best.pt").unlink()
    before = _snapshot(run)
    work = tmp_path / "work"
    n, identical = 1, 0
    while True:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(run, work)
        count = _fail_nth_write(monkeypatch, n)
        try:
            train(toy_config(tmp_path), work, resume=True, echo=_quiet)
        except OSError as e:
            monkeypatch.undo()
            assert e.errno == errno.ENOSPC
            assert not [p for p in work.iterdir() if p.name.startswith(".eghn-tmp")]
            after = _snapshot(work)
            if after == before:  # the failure came before the resume's first whole write
                identical += 1
            else:  # a later write failed: what was written agrees with last.pt
                assert identical
                last = load_checkpoint(work / "last.pt")
                rows = [int(r["epoch"]) for r in csv.DictReader(open(work / "metrics.csv"))]
                assert rows == [h["epoch"] for h in last["history"]], f"write point {n}"
                assert load_checkpoint(work / "best.pt")["epoch"] == last["best"]["epoch"]
                if "result.json" in after:
                    assert result_mismatch(json.loads(after["result.json"]), last) == ""
            n += 1
            continue
        monkeypatch.undo()
        break
    # every write of the first evaluation (metrics.csv, config.json, the checkpoints, train.log)
    # was a failure point that left the directory byte-identical
    assert identical >= 4 and count[0] < n
    rows = list(csv.DictReader(open(work / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [2, 4, 6]


def test_a_fresh_run_that_cannot_write_its_first_checkpoint_keeps_metrics_and_checkpoint_together(
        tmp_path, monkeypatch):
    import eghn.io

    real = eghn.io.tempfile.mkstemp

    def no_checkpoints(*a, **kw):
        if kw.get("prefix", "").startswith(".eghn-tmp-last.pt"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **kw)

    monkeypatch.setattr(eghn.io.tempfile, "mkstemp", no_checkpoints)
    run = tmp_path / "run"
    with pytest.raises(OSError):
        train(toy_config(tmp_path), run, echo=_quiet)
    monkeypatch.undo()
    assert not (run / "last.pt").exists() and not (run / "best.pt").exists()
    assert list(csv.DictReader(open(run / "metrics.csv"))) == []  # no row without its checkpoint
    res = train(toy_config(tmp_path), run, resume=True, echo=_quiet)
    assert res.epochs == 6 and len(list(csv.DictReader(open(run / "metrics.csv")))) == 3


# ---------------------------------------------------------------------------- item 2: resume config
def test_config_differences_and_the_allowed_set():
    saved = {"seed": 1, "data": {"name": "x", "length_scale": 1.7}, "train": {"lr": 1e-3, "epochs": 5}}
    same = {"seed": 1, "data": {"name": "x", "length_scale": "auto"}, "train": {"lr": 1e-3, "epochs": 5}}
    assert config_differences(saved, same) == {}
    assert check_resume_config(saved, {**same, "train": {"lr": 1e-4, "epochs": 9}}) == {
        "train.epochs": [5, 9], "train.lr": [1e-3, 1e-4]}
    with pytest.raises(ConfigError, match=r"data.name: 'x' in last.pt, 'y' now; seed: 1 in last.pt, 7 now"):
        check_resume_config(saved, {**same, "seed": 7, "data": {"name": "y"}})
    assert "train.lr" in RESUME_ALLOWED and "seed" not in RESUME_ALLOWED
    assert not any(k.startswith(("data.", "model.")) for k in RESUME_ALLOWED)


def test_a_run_saved_before_a_train_key_existed_resumes(tmp_path):
    run = _interrupted(tmp_path)
    state = load_checkpoint(run / "last.pt")
    del state["config"]["train"]["compile"], state["config"]["paper_reference"]  # as an older eghn wrote it
    state["config"] = json.dumps(state["config"])
    save_checkpoint(run / "last.pt", state)
    assert train(toy_config(tmp_path), run, resume=True, echo=_quiet).epochs == 6


def test_resume_refuses_an_edited_config_json_listing_the_keys(tmp_path, capsys):
    run = tmp_path / "run"
    assert _cli(["train", _toml(tmp_path, epochs=6), "--run-dir", run], capsys)[0] == 0
    (run / "result.json").unlink()  # as if interrupted
    cfg = json.loads((run / "config.json").read_text())
    cfg["data"]["size"], cfg["seed"] = 12, 7
    (run / "config.json").write_text(json.dumps(cfg))
    before = _snapshot(run)
    rc, _, err = _cli(["train", "--resume", run], capsys)
    assert rc == 2 and "cannot resume" in err and "data.size: 16" in err and "seed: 1" in err
    assert _snapshot(run) == before
    # another key: the batch size is part of the experiment too
    cfg = json.loads((run / "config.json").read_text())
    cfg["data"]["size"], cfg["seed"], cfg["train"]["batch_size"] = 16, 1, 4
    (run / "config.json").write_text(json.dumps(cfg))
    rc, _, err = _cli(["train", "--resume", run], capsys)
    assert rc == 2 and "train.batch_size: 8" in err


def test_resume_with_another_model_option_is_refused_before_loading_weights(tmp_path, capsys):
    run = _finished(tmp_path, capsys)
    (run / "result.json").unlink()
    rc, _, err = _cli(["train", "--resume", run, "--set", "model.hidden=32"], capsys)
    assert rc == 2 and "model.hidden: null in" in err and "32 now" in err and "state_dict" not in err
    rc, _, err = _cli(["train", "--resume", run, "--seed", "5"], capsys)
    assert rc == 2 and "seed: 1 in" in err


def test_an_allowed_change_is_logged_and_recorded(tmp_path, capsys):
    run = _interrupted(tmp_path)
    lines = []
    train(toy_config(tmp_path, clip_grad=2.0), run, resume=True, echo=lines.append)
    assert any("changed on resume: train.clip_grad 0 -> 2" in m for m in lines)
    assert load_checkpoint(run / "last.pt")["resumes"][-1]["changed"] == {"train.clip_grad": [0.0, 2.0]}
    assert "changed on resume" in (run / "train.log").read_text()


def test_an_unreadable_or_missing_config_json_is_rebuilt_from_last_pt(tmp_path, capsys):
    run = tmp_path / "run"
    assert _cli(["train", _toml(tmp_path, epochs=4), "--run-dir", run], capsys)[0] == 0
    truth = load_checkpoint(run / "last.pt")["config"]
    (run / "result.json").unlink()
    (run / "config.json").write_text('{"name": "t", "seed"')  # truncated
    rc, out, _ = _cli(["train", "--resume", run, "--set", "train.epochs=5"], capsys)
    assert rc == 0 and "config stored in" in out
    assert json.loads((run / "config.json").read_text()) == {**truth, "train": {**truth["train"], "epochs": 5}}
    (run / "config.json").unlink()  # a variant: the file is gone
    rc, out, _ = _cli(["train", "--resume", run, "--set", "train.epochs=6"], capsys)
    assert rc == 0 and "config.json is missing" in out and load_checkpoint(run / "last.pt")["epoch"] == 6


def test_a_finished_run_is_extended_by_more_epochs(tmp_path, capsys):
    run = _finished(tmp_path, capsys)
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    original = _snapshot(run)
    rc, out, _ = _cli(["train", "--resume", copy, "--set", "train.epochs=5"], capsys)
    assert rc == 0 and "extending the finished run" in out
    assert f"run directory: {copy}" in out and f"run directory: {run}\n" not in out
    result = json.loads((copy / "result.json").read_text())
    assert result["epochs"] == 5 and "run_dir" not in result and str(tmp_path) not in json.dumps(result)
    assert [int(r["epoch"]) for r in csv.DictReader(open(copy / "metrics.csv"))] == [1, 2, 3, 4, 5]
    assert _snapshot(run) == original  # the original is untouched
    rc, out, _ = _cli(["train", "--resume", copy, "--set", "train.epochs=5"], capsys)
    assert rc == 0 and "already finished at epoch 5" in out and "nothing to resume" in out


def test_an_early_stopped_run_needs_more_patience_to_go_on(tmp_path, capsys):
    run = tmp_path / "run"
    toml = tmp_path / "flat.toml"  # lr 1e-20 moves no weight: no improvement after the first evaluation
    toml.write_text(_TOY_TOML.format(epochs=20, patience=2).replace("lr = 0.01", "lr = 1e-20"))
    assert _cli(["train", toml, "--run-dir", run], capsys)[0] == 0
    result = json.loads((run / "result.json").read_text())
    assert result["stopped_early"] and result["epochs"] < 20
    rc, out, _ = _cli(["train", "--resume", run, "--set", "train.epochs=30"], capsys)
    assert rc == 0 and "raise train.patience" in out and "nothing to resume" in out
    rc, out, _ = _cli(["train", "--resume", run, "--set", "train.epochs=30", "--set", "train.patience=4"],
                      capsys)
    assert rc == 0 and "extending the finished run" in out
    assert json.loads((run / "result.json").read_text())["epochs"] == result["epochs"] + 2


def test_a_stale_result_json_is_not_believed(tmp_path, capsys):
    run = _finished(tmp_path, capsys, epochs=4)
    result = json.loads((run / "result.json").read_text())
    result["epochs"], result["best_epoch"] = 2, 1
    (run / "result.json").write_text(json.dumps(result))
    rc, out, _ = _cli(["train", "--resume", run], capsys)
    assert rc == 0 and "does not describe last.pt" in out
    assert json.loads((run / "result.json").read_text())["epochs"] == 4


# ---------------------------------------------------------------------------- items 1 and 4: best.pt
def test_evaluate_never_falls_back_to_last_pt(tmp_path, capsys):
    run = _finished(tmp_path, capsys)
    result = json.loads((run / "result.json").read_text())
    (run / "best.pt").unlink()
    rc, out, err = _cli(["evaluate", run], capsys)
    assert rc == 2 and f"{run / 'best.pt'} does not exist" in err and "--checkpoint last" in err and not out
    rc, out, _ = _cli(["evaluate", run, "--checkpoint", "last", "--json"], capsys)
    assert rc == 0 and json.loads(out)["epoch"] == result["epochs"]


def test_evaluate_refuses_a_best_pt_that_is_not_the_reported_one(tmp_path, capsys):
    run = _finished(tmp_path, capsys, epochs=4)
    shutil.copy(run / "last.pt", run / "best.pt")  # a valid checkpoint, but not the reported one
    rc, out, err = _cli(["evaluate", run], capsys)
    assert rc == 1 and "is not the checkpoint its run reports" in err and "MSE" not in out
    from eghn.train.trained import read_run

    with pytest.raises(CheckpointError, match="SHA-256"):
        read_run(run)


def test_resume_of_a_finished_run_rebuilds_a_corrupt_best_pt(tmp_path, capsys):
    run = _finished(tmp_path, capsys, epochs=4)
    result = json.loads((run / "result.json").read_text())
    data = bytearray((run / "best.pt").read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
    (run / "best.pt").write_bytes(bytes(data))
    rc, out, _ = _cli(["train", "--resume", run], capsys)
    assert rc == 0 and "rebuilt from the copy of the best weights in last.pt" in out
    assert "equivariance check skipped" not in out
    assert load_checkpoint(run / "best.pt")["epoch"] == result["best_epoch"]
    rc, out, _ = _cli(["evaluate", run, "--json"], capsys)
    assert rc == 0 and json.loads(out)["mse"] == pytest.approx(result["test"], rel=1e-12)


def test_resume_of_an_unfinished_run_rebuilds_a_missing_best_pt(tmp_path):
    run = _interrupted(tmp_path, after=4)
    best_epoch = load_checkpoint(run / "best.pt")["epoch"]
    (run / "best.pt").unlink()
    lines = []
    train(toy_config(tmp_path, lr=1e-20), run, resume=True, echo=lines.append)  # no more improvement
    assert any("best.pt is missing: rebuilt" in m for m in lines)
    assert load_checkpoint(run / "best.pt")["epoch"] == best_epoch


def test_divergence_message_reads_the_checkpoints_it_names(tmp_path):
    run = _interrupted(tmp_path)
    assert kept_checkpoints(run / "last.pt", run / "best.pt") == "last.pt holds epoch 2; best.pt holds epoch 2"
    (run / "best.pt").write_bytes(b"not a checkpoint")
    assert kept_checkpoints(run / "last.pt", run / "best.pt") == "last.pt holds epoch 2; best.pt is unreadable"


# ---------------------------------------------------------------------------- item 5: messages
class Payload:
    """Any class: a pickle that holds it would run code on an unsafe load."""

def test_a_state_dict_mismatch_lists_the_keys_and_the_config_behind_them(tmp_path, capsys):
    run = _interrupted(tmp_path)
    state = load_checkpoint(run / "last.pt")
    state["model"] = {k: torch.cat([v, v]) if v.dim() else v for k, v in state["model"].items()}
    state["model"]["extra.weight"] = torch.zeros(2)
    state["config"] = json.dumps(state["config"])
    save_checkpoint(run / "last.pt", state)
    with pytest.raises(ConfigError) as e:
        train(toy_config(tmp_path), run, resume=True, echo=_quiet)
    msg = str(e.value)
    assert "do not fit the model" in msg and "1 unexpected (extra.weight)" in msg and "misshapen (phi.0.weight" in msg
    assert "no model config key differs" in msg


def test_an_unsafe_checkpoint_is_refused_without_advice_to_load_it_unsafely(tmp_path, capsys):
    from collections import OrderedDict

    path = tmp_path / "evil.pt"
    torch.save({"model": OrderedDict(), "x": Payload()}, path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert "weights_only" not in str(e.value) and "likely succeed" not in str(e.value)
    assert "could run code" in str(e.value)
    rc, _, err = _cli(["evaluate", path], capsys)  # the same through the command line
    assert rc == 1 and "weights_only" not in err and "refusing checkpoint" in err


def test_divergence_names_the_first_non_finite_module_and_blames_units_only_when_they_are_the_cause():
    from eghn.data import Graph
    from eghn.models import EGHN
    from eghn.train.diagnose import first_nonfinite

    torch.manual_seed(0)
    n = 8
    src, dst = torch.combinations(torch.arange(n)).T
    ei = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], 1)
    g = Graph(pos=torch.randn(n, 3), vel=torch.randn(n, 3), h=torch.ones(n, 1), edge_index=ei, local_edge_index=ei)
    model = EGHN(node_dim=1, hidden=8, clusters=[4, 2], layers=1)
    with torch.no_grad():  # an activation that overflows at the second level's encoder
        model.encoders[1][0].phi_x[0].weight.mul_(1e38)
    d = first_nonfinite(model, g)
    assert d.level == 2 and d.largest_module.startswith("encoders.1.0.phi_x")
    msg = d.message()
    assert "level 2" in msg and "largest activation before it" in msg and "RMS extent" not in msg
    assert "lower train.lr" in msg
    # units blamed only when the extent is far from 1; huge translations named as such
    model = EGHN(node_dim=1, hidden=8, clusters=[4, 2], layers=1)
    far = Graph(pos=g.pos * 1e12, vel=g.vel, h=g.h, edge_index=ei, local_edge_index=ei)
    assert "far from unit scale" in first_nonfinite(model, far).message()
    moved = Graph(pos=g.pos + 1e30, vel=g.vel, h=g.h, edge_index=ei, local_edge_index=ei)
    text = first_nonfinite(model, moved).message()
    assert "reach 1e+30" in text and "RMS extent" not in text
    with pytest.raises(FloatingPointError) as e:
        model(moved)
    assert "RMS extent" not in str(e.value) and "near the origin" in str(e.value)


def test_a_divergence_in_training_names_the_module(tmp_path):
    from eghn.train.loop import TrainingDiverged

    cfg = toy_config(tmp_path, lr=1e30, epochs=30, dtype="float32")
    with pytest.raises(TrainingDiverged) as e:
        train(cfg, tmp_path / "run", echo=_quiet)
    msg = str(e.value)
    assert "first non-finite tensor" in msg and "Standardise" not in msg and "RMS extent" not in msg


# ---------------------------------------------------------------------------- item 6: validation
@pytest.mark.parametrize("kwargs, match", [
    ({"clusters": [2.5]}, "clusters must be a sequence of positive integers"),
    ({"clusters": [True]}, "clusters must be a sequence of positive integers"),
    ({"clusters": "3"}, "clusters must be a sequence of positive integers"),
    ({"clusters": "12"}, "clusters must be a sequence of positive integers"),
    ({"clusters": []}, "clusters must be a sequence of positive integers"),
    ({"hidden": 0}, "hidden must be an integer >= 1, got 0"),
    ({"hidden": 16.0}, "hidden must be an integer >= 1"),
    ({"enc_layers": True}, "enc_layers must be an integer >= 1"),
    ({"lam": -1e6}, "lam must be a finite number >= 0"),
    ({"lam": float("nan")}, "lam must be a finite number >= 0"),
])
def test_eghn_constructor_refuses_what_it_used_to_coerce(kwargs, match):
    from eghn.models import EGHN

    with pytest.raises(ValueError, match=match):
        EGHN(node_dim=1, **kwargs)


def test_negative_lam_in_a_config_is_a_config_error(tmp_path, capsys):
    toml = tmp_path / "e.toml"
    toml.write_text('name = "e"\ndevice = "cpu"\n[data]\nname = "_toy"\nsize = 16\n[model]\nname = "eghn"\n'
                    'hidden = 8\nclusters = [2]\n[train]\nepochs = 1\n')
    rc, _, err = _cli(["train", toml, "--set", "model.lam=-1e6", "--run-dir", tmp_path / "r"], capsys)
    assert rc == 2 and "'model.lam' must be >= 0" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("seed", ["99999999999999999999999", "-1", "1.5"])
def test_seed_is_range_checked_by_the_command_line(tmp_path, capsys, seed):
    with pytest.raises(SystemExit) as e:
        _cli(["train", _toml(tmp_path), "--seed", seed], capsys)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "seed" in err and "Overflow" not in err


def test_seed_in_a_config_is_range_checked(tmp_path, capsys):
    rc, _, err = _cli(["train", _toml(tmp_path), "--set", "seed=18446744073709551616"], capsys)
    assert rc == 2 and "'seed' must be an integer from 0 to" in err


def test_the_dataset_cache_names_a_damaged_file_and_regenerates_a_missing_split(tmp_path, monkeypatch):
    from eghn.data.registry import mcomplex_on_demand

    monkeypatch.setenv("EGHN_CACHE_DIR", str(tmp_path / "cache"))
    opts = dict(n_train=4, n_val=3, n_test=3, n_steps=400, input_frame=1, target_frame=3, progress=False)
    ds = mcomplex_on_demand("test", **opts)
    root = ds.root
    first = ds[0].target.clone()
    (root / "test.npz").unlink()
    with pytest.warns(UserWarning, match="lacks test.npz; generating it again"):
        again = mcomplex_on_demand("test", **opts)
    assert torch.equal(again[0].target, first)  # the simulation is seeded: the same data
    (root / "val.npz").unlink()  # another split
    with pytest.warns(UserWarning, match="lacks val.npz"):
        assert len(mcomplex_on_demand("val", **opts)) == 3
    cfg = (root / "config.json").read_bytes()
    (root / "config.json").write_bytes(cfg[:5] + b"\xff" + cfg[6:])
    with pytest.raises(ValueError, match=r"config.json is not valid JSON: byte 5 is not UTF-8"):
        mcomplex_on_demand("test", **opts)
    (root / "config.json").write_bytes(cfg)
    # a folder the user gave is not the cache: a missing split is an error naming it
    shutil.copytree(root, tmp_path / "mine")
    (tmp_path / "mine" / "test.npz").unlink()
    with pytest.raises(FileNotFoundError, match=r"test\.npz"):
        mcomplex_on_demand("test", root=tmp_path / "mine", input_frame=1, target_frame=3)


# ---------------------------------------------------------------------------- item 7: signals
def _popen_train(tmp_path, run):
    import subprocess
    import sys
    import time
    from pathlib import Path

    here = Path(__file__).parent
    toml = _toml(tmp_path, epochs=100000)
    code = (f"import sys; sys.path.insert(0, {str(here)!r}); import _train_toy; from eghn.cli import main; "
            f"sys.exit(main(['train', {str(toml)!r}, '--run-dir', {str(run)!r}]))")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.time() + 60
    while not (run / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("first, second, gap, code", [
    ("SIGINT", "SIGINT", 0.01, 130), ("SIGINT", "SIGINT", 0.2, 130), ("SIGTERM", "SIGINT", 0.05, 143)])
def test_a_second_signal_during_shutdown_is_ignored(tmp_path, first, second, gap, code):
    import signal
    import time

    run = tmp_path / "run"
    proc = _popen_train(tmp_path, run)
    proc.send_signal(getattr(signal, first))
    time.sleep(gap)
    if proc.poll() is None:
        proc.send_signal(getattr(signal, second))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and err.count("\n") == 1
    state = load_checkpoint(run / "last.pt")
    rows = [int(r["epoch"]) for r in csv.DictReader(open(run / "metrics.csv"))]
    assert rows[:len(state["history"])] == [h["epoch"] for h in state["history"]]
