"""Training stack: configs, batching, the trainer, checkpoints/resume, evaluation, reproduce tables."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
import torch
from _train_toy import ToyDataset, toy_config

from eghn.data import LengthScaled, length_scale
from eghn.train import reproduce as rep
from eghn.train.callbacks import StopAfter
from eghn.train.checkpoint import load_checkpoint
from eghn.train.config import (
    TRAIN_DEFAULTS,
    ConfigError,
    apply_overrides,
    list_configs,
    load_config,
    parse_value,
    resolve,
)
from eghn.train.loader import GraphBank, concat_ranges, repeat_counts
from eghn.train.loop import build_model, evaluate_model, split_options, train


def _quiet(_msg: str) -> None:
    pass


# ---------------------------------------------------------------------------- config
def test_shipped_configs_all_resolve_with_paper_defaults():
    names = list_configs()
    assert "default" in names and "mocap/run_eghn" in names and "table1/eghn_multi_10x10" in names
    for name in names:
        for quick in (False, True):
            cfg = load_config(name, quick=quick)
            assert cfg["quick"] is quick
    cfg = load_config("mocap/walk_egnn")
    t = cfg["train"]
    assert (t["lr"], t["weight_decay"], t["batch_size"], t["eval_every"], t["patience"]) == (5e-4, 1e-12, 100, 5, 50)
    eghn = load_config("table1/eghn_multi_5x10")
    assert eghn["model"]["clusters"] == [3] and eghn["data"]["n_types"] == 5 and eghn["data"]["avg_size"] == 10
    assert load_config("mocap/run_eghn")["model"]["clusters"] == [5]
    assert load_config("protein/adk_eghn")["model"]["clusters"] == [20]


@pytest.mark.parametrize("protocol", ["released", "paper", "eghn"])
def test_every_ablation_builds_under_every_protocol_of_the_campaign(protocol):
    """Each Table 4 config builds its model under each protocol ``eghn reproduce table4`` runs:
    eghn's recipe drops the stabilisers of the layers an ablation replaces (the EMMP -> MPNN and
    EMMP -> EGNN rows), instead of failing when the run starts."""
    import eghn.models

    names = [n for n in list_configs() if n.startswith("table4/")]
    assert len(names) == 16
    for name in names:
        model = dict(load_config(name, [f"protocol={protocol}"])["model"])
        kind = model.pop("name")
        model.pop("batch_max_features", None)  # a data option the trainer applies, not the model's
        eghn.models.get(kind, node_dim=2, edge_dim=2, local_edge_dim=2, **model)


def test_a_model_option_that_a_protocol_sets_for_another_form_names_config_and_protocol():
    """``mocap/walk_eghn_released`` builds the authors' released layers; eghn's recipe bounds the
    paper-form layers' messages. The error says which config and protocol asked for that."""
    from types import SimpleNamespace

    from eghn.train.loop import build_model

    features = SimpleNamespace(node_dim=2, edge_dim=2, local_edge_dim=2)
    config = load_config("mocap/walk_eghn_released", ["protocol=eghn"])
    with pytest.raises(ValueError, match=r"coord_message='bounded'.*'mocap_walk_eghn_released' under protocol 'eghn'"):
        build_model(config, features)
    build_model(load_config("mocap/walk_eghn_released"), features)  # its own protocol builds


def test_overrides_types_and_unknown_keys():
    cfg = load_config("default", ["train.lr=1e-3", "train.epochs=7", "model.hidden=8", "seed=4",
                                  "device=cpu", "data.new_option=[1, 2]"])
    assert cfg["train"]["lr"] == 1e-3 and cfg["train"]["epochs"] == 7 and cfg["model"]["hidden"] == 8
    assert cfg["seed"] == 4 and cfg["device"] == "cpu" and cfg["data"]["new_option"] == [1, 2]
    assert load_config("default", ["train.lr=1"])["train"]["lr"] == 1.0  # int accepted for a float key
    with pytest.raises(ConfigError, match=r"did you mean train\.epochs"):
        load_config("default", ["train.epoch=3"])
    with pytest.raises(ConfigError, match="must be of type int"):
        load_config("default", ["train.epochs=3.5"])
    with pytest.raises(ConfigError, match="must be of type int"):
        load_config("default", ["model.hidden=wide"])
    with pytest.raises(ConfigError, match="must be one of"):
        load_config("default", ["train.amp=fp8"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["train.lr"])
    with pytest.raises(ConfigError, match="unknown config key 'sed'"):
        load_config("default", ["sed=3"])
    with pytest.raises(FileNotFoundError, match="did you mean"):
        load_config("defautl")
    assert parse_value("cuda:0") == "cuda:0" and parse_value('"x"') == "x" and parse_value("false") is False


def test_extends_quick_and_split_options(tmp_path):
    base = tmp_path / "base.toml"
    base.write_text('name = "b"\n[data]\nname = "_toy"\nsize = 10\n[model]\nname = "_toy"\n'
                    '[train]\nepochs = 9\n[quick]\ntrain = { epochs = 2 }\n')
    child = tmp_path / "child.toml"
    child.write_text('extends = "base.toml"\nname = "c"\n[data]\nsize = 20\n[data.val]\nsize = 5\n')
    cfg = load_config(child)
    assert (cfg["name"], cfg["data"]["size"], cfg["train"]["epochs"]) == ("c", 20, 9)
    assert load_config(child, quick=True)["train"]["epochs"] == 2
    assert split_options(cfg["data"], "val") == {"size": 5}
    assert split_options(cfg["data"], "train") == {"size": 20}
    loop = tmp_path / "loop.toml"
    loop.write_text('extends = "loop.toml"\n')
    with pytest.raises(ConfigError, match="circular"):
        load_config(loop)
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"needs a \[model\] table"):
        resolve({"data": {"name": "_toy"}})


# ---------------------------------------------------------------------------- batching
def test_graph_bank_matches_collate_for_mixed_sizes():
    ds = ToyDataset(size=30, seed=1)
    bank = GraphBank(ds, "cpu", torch.float64, mode="device")
    lazy = GraphBank(ds, "cpu", torch.float64, mode="lazy")
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        idx = torch.randperm(30, generator=gen)[:7]
        ref = ds.collate(idx.tolist())
        for got in (bank.batch(idx), lazy.batch(idx)):
            for f in dataclasses.fields(ref):
                a, b = getattr(ref, f.name), getattr(got, f.name)
                assert (a is None and b is None) or (torch.equal(a, b) if torch.is_tensor(a) else a == b), f.name
        assert bank.num_nodes(idx) == ref.num_nodes
    assert concat_ranges(torch.tensor([4, 0, 9]), torch.tensor([1, 0, 2])).tolist() == [4, 9, 10]
    assert repeat_counts(torch.tensor([1, 2]), torch.tensor([0, 3])).tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match="empty"):
        GraphBank(ToyDataset(size=0), "cpu")


# ---------------------------------------------------------------------------- training
def test_train_learns_and_writes_run_files(tmp_path):
    cfg = toy_config(tmp_path, epochs=6, threads=1)
    res = train(cfg, tmp_path / "run", echo=_quiet)
    run = tmp_path / "run"
    for f in ("config.json", "metrics.csv", "train.log", "last.pt", "best.pt", "result.json"):
        assert (run / f).is_file(), f
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [2, 4, 6]
    assert float(rows[-1]["train_mse"]) < float(rows[0]["train_mse"])
    best = min(rows, key=lambda r: float(r["val_mse"]))
    assert res.best_epoch == int(best["epoch"]) and res.test == pytest.approx(float(best["test_mse"]))
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 6
    raw = torch.load(run / "last.pt", weights_only=True)  # safe loading works
    assert raw["format"] == 2 and len(raw["sha256"]) == 64
    state = load_checkpoint(run / "last.pt")
    assert state["epoch"] == 6 and isinstance(state["rng"]["shuffle"], torch.Tensor)
    with pytest.raises(FileExistsError, match="resume"):
        train(cfg, run, echo=_quiet)
    # the reported test MSE is the best.pt model's test MSE
    ck = load_checkpoint(run / "best.pt")
    model = build_model(cfg, ToyDataset(size=2)).double()
    model.load_state_dict(ck["model"])
    scale = json.loads((run / "config.json").read_text())["data"]["length_scale"]
    assert scale == pytest.approx(length_scale(ToyDataset(size=40, seed=0)), rel=1e-12)  # "auto": from train
    bank = GraphBank(LengthScaled(ToyDataset(size=40, seed=0, split="test"), scale), "cpu", torch.float64)
    assert evaluate_model(model, bank, 8) == pytest.approx(res.test, rel=1e-12)


def test_reg_loss_is_added_and_early_stopping(tmp_path):
    res = train(toy_config(tmp_path, epochs=4, threads=1) | {"model": {"name": "_toy", "reg": 5.0}},
                tmp_path / "reg", echo=_quiet)
    assert all(h["train_loss"] > h["train_mse"] for h in res.history)
    # lr so small that the weights never change: no val improvement after the first evaluation
    res = train(toy_config(tmp_path, epochs=40, lr=1e-300, patience=2, threads=1), tmp_path / "es", echo=_quiet)
    assert res.stopped_early and res.epochs == 6 and res.best_epoch == 2


def test_resume_after_kill_gives_identical_run(tmp_path):
    cfg = toy_config(tmp_path, epochs=8, eval_every=2, threads=1)
    full = train(cfg, tmp_path / "full", echo=_quiet)
    # killed during epoch 5: the last checkpoint is from the evaluation at epoch 4
    with pytest.raises(StopAfter.Interrupted):
        train(cfg, tmp_path / "killed", echo=_quiet, callbacks=[StopAfter(5)])
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["epoch"] == 4
    resumed = train(cfg, tmp_path / "killed", resume=True, echo=_quiet)
    timing = ("wall_s", "samples_per_s", "step_share")
    strip = [{k: v for k, v in h.items() if k not in timing} for h in full.history]
    assert [{k: v for k, v in h.items() if k not in timing} for h in resumed.history] == strip
    assert (resumed.best_epoch, resumed.best_val, resumed.test) == (full.best_epoch, full.best_val, full.test)
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert len(list(csv.DictReader(open(tmp_path / "killed" / "metrics.csv")))) == 4
    # each part of the run records the machine it trained on: the start, then the resume after epoch 4
    assert [m["after_epoch"] for m in full.machines] == [0]
    assert [m["after_epoch"] for m in resumed.machines] == [0, 4]
    saved = json.loads((tmp_path / "killed" / "result.json").read_text())["machines"]
    assert saved == resumed.machines and saved[1]["torch"] == torch.__version__ and saved[1]["threads"] == 1
    assert saved[1]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert "machine: " in (tmp_path / "killed" / "train.log").read_text()


def test_evaluation_under_rotation_and_translation(tmp_path):
    res = train(toy_config(tmp_path, epochs=2, threads=1), tmp_path / "r", echo=_quiet)
    ck = load_checkpoint(tmp_path / "r" / "best.pt")
    model = build_model(ck["config"], ToyDataset(size=2)).double()
    model.load_state_dict(ck["model"])
    scale = json.loads((tmp_path / "r" / "config.json").read_text())["data"]["length_scale"]
    bank = GraphBank(LengthScaled(ToyDataset(size=40, seed=0, split="test"), scale), "cpu", torch.float64)
    plain = evaluate_model(model, bank, 8)
    assert plain == pytest.approx(res.test, rel=1e-12)
    moved = evaluate_model(model, bank, 8, rotate=True, translate=10.0, generator=torch.Generator().manual_seed(1))
    assert moved == pytest.approx(plain, rel=1e-9)  # the toy model is E(3)-equivariant


# ---------------------------------------------------------------------------- reproduce
def test_reproduce_writes_tables_and_reports_failures(tmp_path, monkeypatch):
    good = tmp_path / "good.toml"
    good.write_text('name = "g"\ndevice = "cpu"\n[data]\nname = "_toy"\nsize = 16\n[model]\nname = "_toy"\n'
                    '[train]\nepochs = 50\nbatch_size = 8\neval_every = 1\nlr = 0.01\ndtype = "float64"\n'
                    'progress = false\nthreads = 1\n[quick]\ntrain = { epochs = 2 }\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "b"\n[data]\nname = "_toy"\n[model]\nname = "no_such_model"\n')
    spec = rep.TableSpec("table2", (rep.Cell("EGNN", "Walk (Subject 35)", str(good)),
                                    rep.Cell("EGNN", "Run (Subject 9)", str(good), {"rotate": True}),
                                    rep.Cell("GMN", "Walk (Subject 35)", str(bad))))
    monkeypatch.setitem(rep.TABLES, "table2", spec)
    lines: list[str] = []
    results = rep.reproduce("table2", seeds=2, quick=True, out=tmp_path / "out", echo=lines.append,
                            progress=False)
    assert [len(r.values) for r in results] == [2, 2, 0]
    assert results[1].values == pytest.approx(results[0].values, rel=1e-9)  # equivariant toy under rotation
    assert results[2].status.startswith("not run") and "no_such_model" in results[2].status
    md = (tmp_path / "out" / "table2-released-quick" / "table2.md").read_text()
    assert "Protocol: **released**" in md and "Quick mode" in md and "| EGNN | 28.7 | 50.9 |" in md and "not run" in md
    rows = list(csv.DictReader(open(tmp_path / "out" / "table2-released-quick" / "table2.csv")))
    # every MSE column in the paper's units (MSE / scale), no std for fewer than two seeds
    assert rows[0]["protocol"] == "released" and rows[0]["paper"] == "28.7" and rows[0]["scale"] == "0.01"
    assert float(rows[0]["mean"]) == pytest.approx(results[0].mean / 0.01, rel=1e-5)
    assert (tmp_path / "out" / "table2-released-quick" / "table2.png").is_file()
    assert any("NOT comparable" in line for line in lines)
    # finished runs are reused: a second call trains nothing and returns the same numbers
    again = rep.reproduce("table2", seeds=2, quick=True, out=tmp_path / "out", echo=_quiet, progress=False)
    assert again[0].values == results[0].values


def test_paper_numbers_shipped():
    paper = rep.paper_results()
    assert paper["table1"]["rows"]["EGHN"]["multiple (10,10)"] == 13.11
    assert paper["table2"]["rows"]["EGHN"] == {"Walk (Subject 35)": 8.5, "Run (Subject 9)": 25.9}
    assert paper["table3"]["rows"]["MPNN"]["MSE (test-time rotation)"] == 605.7
    assert paper["table4"]["rows"]["EMMP -> MPNN (non-equivariant)"]["Walk (Subject 35)"] == 19.7
    for key, spec in rep.TABLES.items():
        cols = paper[key]["columns"]
        assert all(c.column in cols and c.row in paper[key]["rows"] for c in spec.cells), key
    assert set(TRAIN_DEFAULTS) >= {"lr", "weight_decay", "batch_size", "eval_every", "patience"}


# ---------------------------------------------------------------------------- dataset registry
def test_dataset_registry_and_mcomplex_generated_once(tmp_path, monkeypatch):
    from eghn.data.registry import available_datasets, dataset_modules, get_dataset_class

    assert {"mcomplex", "mocap", "protein", "_toy"} <= set(available_datasets())
    with pytest.raises(KeyError, match="unknown dataset"):
        get_dataset_class("nope")
    assert {name for name, _ in dataset_modules()} >= {"mocap"}
    pytest.importorskip("eghn.data.mcomplex")
    monkeypatch.setenv("EGHN_CACHE_DIR", str(tmp_path))
    factory = get_dataset_class("mcomplex")
    opts = dict(n_complex=3, avg_size=3, n_types=1, n_train=3, n_val=2, n_test=2, seed=5, progress=False,
                n_steps=600, input_frame=1, target_frame=4)
    train_ds = factory("train", **opts)
    assert len(train_ds) == 3 and len(factory("test", **opts)) == 2
    (root,) = (tmp_path / "mcomplex").iterdir()
    stamp = (root / "train.npz").stat().st_mtime_ns
    bank = GraphBank(factory("train", **opts), "cpu", torch.float32)
    assert (root / "train.npz").stat().st_mtime_ns == stamp  # reused, not regenerated
    assert bank.batch([2, 0]).num_graphs == 2


def test_recompute_edges_applies_during_training_only(tmp_path, monkeypatch):
    from _train_toy import ToyModel

    from eghn.nn import edge_mlp as lean

    seen = []
    original = ToyModel.forward

    def spy(self, g):
        seen.append(lean._EDGE_RECOMPUTE)
        return original(self, g)

    monkeypatch.setattr(ToyModel, "forward", spy)
    cfg = toy_config(tmp_path, epochs=2, threads=1)
    cfg["train"]["recompute_edges"] = "always"
    train(cfg, tmp_path / "rc", echo=_quiet)
    assert seen and set(seen) == {True}
    assert lean._EDGE_RECOMPUTE == "auto"  # restored
    with pytest.raises(ConfigError, match="recompute_edges"):
        resolve({"train": {"recompute_edges": "sometimes"}})


def test_metrics_report_the_share_of_time_in_training_steps(tmp_path, monkeypatch):
    """``step_share``: the fraction of the wall time between evaluations spent in training steps.
    Slowing down the evaluation (and nothing else) lowers it."""
    import time as _time

    from eghn.train import trainer as loop  # where the trainer looks up evaluate_model

    cfg = toy_config(tmp_path, epochs=4, eval_every=2, threads=1)
    fast = train(cfg, tmp_path / "fast", echo=_quiet)
    shares = [h["step_share"] for h in fast.history]
    assert len(shares) == 2 and all(0.0 < s <= 1.0 for s in shares)
    with open(tmp_path / "fast" / "metrics.csv") as f:
        assert [float(r["step_share"]) for r in csv.DictReader(f)] == shares
    original = loop.evaluate_model

    def slow_eval(*args, **kwargs):
        _time.sleep(0.5)
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate_model", slow_eval)
    slow = train(cfg, tmp_path / "slow", echo=_quiet)
    assert max(h["step_share"] for h in slow.history) < min(shares)
