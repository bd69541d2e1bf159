"""``eghn reproduce`` as a campaign: seed specs, worker processes, stop reasons, resume, campaign.json, collect."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from _train_toy import ToyModel

from eghn.cli import main
from eghn.models import register
from eghn.models.registry import available
from eghn.train import loop
from eghn.train import reproduce as rep
from eghn.train.callbacks import Callback
from eghn.train.runs import parse_seeds


class SeedNaNToy(ToyModel):
    """The toy model whose ``nan_at``-th training forward pass gives NaN, in the run of seed ``nan_seed`` only."""

    def __init__(self, node_dim: int, edge_dim: int, local_edge_dim: int = 0, hidden: int = 8, nan_seed: int = 0,
                 nan_at: int = 3) -> None:
        super().__init__(node_dim, edge_dim, local_edge_dim, hidden)
        self.diverges = torch.initial_seed() == nan_seed  # the trainer seeds torch before building the model
        self.nan_at, self.calls = nan_at, 0

    def forward(self, g):
        out = super().forward(g)
        if self.training and self.diverges:
            self.calls += 1
            if self.calls >= self.nan_at:
                out.pos = out.pos * float("nan")
        return out


if "_seed_nan_toy" not in available():
    register("_seed_nan_toy")(SeedNaNToy)


class InterruptAfter(Callback):
    """Ctrl-C after epoch ``epoch`` (its evaluation and checkpoint written)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch: int) -> None:
        if epoch >= self.epoch:
            raise KeyboardInterrupt


def _toy_toml(tmp_path, *, model: str = 'name = "_toy"', epochs: int = 3):
    path = tmp_path / "toy.toml"
    path.write_text(f'name = "t"\ndevice = "cpu"\n[data]\nname = "_toy"\nsize = 16\n[model]\n{model}\n'
                    f'[train]\nepochs = {epochs}\nbatch_size = 8\neval_every = 1\nlr = 0.01\ndtype = "float64"\n'
                    'progress = false\nthreads = 1\n')
    return str(path)


def _arrays_toml(tmp_path):
    """A config of a built-in dataset and model: the worker processes know them without the test's registrations."""
    from eghn.data.arrays import write_example

    write_example(tmp_path / "toy.npz")
    path = tmp_path / "arrays.toml"
    path.write_text(f'name = "a"\ndevice = "cpu"\n[data]\nname = "arrays"\npath = "{tmp_path / "toy.npz"}"\n'
                    'split_sizes = [8, 2, 2]\n[model]\nname = "egnn"\nhidden = 8\nlayers = 1\n'
                    '[train]\nepochs = 3\nbatch_size = 4\neval_every = 1\nprogress = false\nthreads = 1\n')
    return str(path)


def _one_cell_table(monkeypatch, config: str, table: str = "table2") -> None:
    row = "EGHN (K=5)" if table == "table4" else "EGNN"
    monkeypatch.setitem(rep.TABLES, table, rep.TableSpec(table, (rep.Cell(row, "Walk (Subject 35)", config),)))


def _interrupt_seed(monkeypatch, seed: int, after: int) -> None:
    """Training of ``seed`` in this process is interrupted (KeyboardInterrupt) after epoch ``after``."""
    real = loop.train

    def train(config, run_dir=None, **kw):
        if config["seed"] == seed:
            kw["callbacks"] = [InterruptAfter(after)]
        return real(config, run_dir, **kw)

    monkeypatch.setattr(loop, "train", train)


def _no_training_here(monkeypatch) -> None:
    def train(*_args, **_kw):
        raise AssertionError("trained in the campaign's own process")

    monkeypatch.setattr(loop, "train", train)


def _campaign(folder):
    return json.loads((folder / "campaign.json").read_text())


def _run_dir(out, config: str, seed: int, table: str = "table2"):
    return out / f"{table}-released" / config.replace("/", "__") / f"seed{seed}"


# ---------------------------------------------------------------------------- seeds
@pytest.mark.parametrize(("spec", "seeds"), [
    (3, (1, 2, 3)), ("3", (1, 2, 3)), ("4,5", (4, 5)), ("2-4", (2, 3, 4)), ("1,3-5", (1, 3, 4, 5)),
    (" 5 , 1-2 ", (1, 2, 5)), ("3-3", (3,)), ([5, 4, 5], (4, 5)), ((7,), (7,)),
])
def test_seed_specs(spec, seeds):
    assert parse_seeds(spec) == seeds


@pytest.mark.parametrize(("spec", "message"), [
    (0, "seeds must be >= 1, got 0"), ("0", "seeds must be >= 1, got 0"), ("0-2", "seeds must be >= 1"),
    ([0, 1], "seeds must be >= 1"), ("5-3", "first seed is larger"), ("a", "bad seed spec"), ("", "bad seed spec"),
    ("1,,2", "bad seed spec"), ("-1", "bad seed spec"), ("2-", "bad seed spec"), ("1.5", "bad seed spec"),
    (True, "a count or a list"), ([], "no seeds"), (["1"], "must be integers"), ("1-20000", "more than 10,000"),
    (2**63, "at most 10,000"), ([2**63], "at most 2\\*\\*63 - 1"),
])
def test_bad_seed_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_seeds(spec)


@pytest.mark.parametrize("argv", [["--seeds", "2-1"], ["--seeds", "0"], ["--jobs", "0"], ["--protocol", "authors"],
                                  ["table9"]])
def test_cli_refuses_bad_arguments_with_status_2(argv, capsys):
    with pytest.raises(SystemExit) as done:
        main(["reproduce", "table2", *argv])
    assert done.value.code == 2 and "eghn reproduce: error:" in capsys.readouterr().err


def test_campaign_checks_its_arguments_before_training(tmp_path):
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        rep.campaign("table2", jobs=0, out=tmp_path)
    with pytest.raises(ValueError, match="unknown protocol 'authors'"):
        rep.campaign(["table2"], protocols=["released", "authors"], out=tmp_path)
    with pytest.raises(KeyError, match="unknown table 'table9'"):
        rep.campaign(["table2", "table9"], out=tmp_path)
    with pytest.raises(ValueError, match=r"--only \['mocap/run_eghm'\] matches no config of table2, table4"):
        rep.campaign(["table2", "table4"], only=["mocap/run_eghn", "mocap/run_eghm"], out=tmp_path)
    with pytest.raises(ValueError, match="one table and one protocol"):
        rep.reproduce(["table2"], out=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written


# ---------------------------------------------------------------------------- stop reasons
def test_a_diverged_seed_leaves_the_others_running_and_is_collected(tmp_path, monkeypatch):
    config = _toy_toml(tmp_path, model='name = "_seed_nan_toy"\nnan_seed = 2', epochs=3)
    _one_cell_table(monkeypatch, config)
    out, results_dir = tmp_path / "out", tmp_path / "results"
    lines: list[str] = []
    res = rep.reproduce("table2", seeds=3, out=out, echo=lines.append, progress=False,
                        overrides=["train.weight_decay=0.0"])[0]
    assert len(res.values) == 2 and res.status == "2 of 3 seeds; 1 diverged"
    assert any(line.startswith("[end]") and "seed 2): diverged at epoch 2" in line for line in lines)
    folder = out / "table2-released"
    row = next(csv.DictReader(open(folder / "table2.csv")))
    assert row["n_seeds"] == "2" and row["status"] == "2 of 3 seeds; 1 diverged"
    assert "(2 of 3 seeds; 1 diverged)" in (folder / "table2.md").read_text()

    data = _campaign(folder)
    assert data["table"] == "table2" and data["protocol"] == "released" and data["seeds"] == [1, 2, 3]
    assert data["eghn_version"] and "commit" in data and data["command"].startswith("eghn reproduce table2 ")
    runs = data["runs"]
    assert [r["stop_reason"] for r in runs] == ["epoch cap", "diverged", "epoch cap"]
    diverged = runs[1]
    assert diverged["diverged_at"] == 2 and diverged["message"].startswith("training diverged: the training loss is")
    assert diverged["learning_curve"][0][0] == 1 and len(diverged["learning_curve"]) == 1  # epoch 1 only
    first = runs[0]
    assert first["overrides"] == ["train.weight_decay=0.0"] and first["run_dir"] == f"{config.replace('/', '__')}/seed1"
    assert first["command"] == f"eghn train {config} --set protocol=released --seed 1 --set train.weight_decay=0.0"
    assert [p[0] for p in first["learning_curve"]] == [1, 2, 3] and first["epochs"] == 3
    assert first["test"] == pytest.approx(res.values[0]) and first["eghn_version"] == data["eghn_version"]
    assert all(r["action"] == "trained" for r in runs)

    # collect: the finished runs are reused; the diverged one is reported as diverged, not trained again
    result1 = _run_dir(out, config, 1) / "result.json"
    marker = _run_dir(out, config, 2) / "diverged.json"
    assert json.loads(marker.read_text())["diverged_at"] == 2
    stamps = [result1.stat().st_mtime_ns, (_run_dir(out, config, 2) / "metrics.csv").stat().st_mtime_ns]
    lines.clear()
    rep.reproduce("table2", seeds=3, out=out, echo=lines.append, progress=False,
                  overrides=["train.weight_decay=0.0"], collect=results_dir)
    assert [result1.stat().st_mtime_ns, (_run_dir(out, config, 2) / "metrics.csv").stat().st_mtime_ns] == stamps
    assert sum("reusing the finished run" in line for line in lines) == 2
    assert sum("diverged before with this config (epoch 2)" in line for line in lines) == 1
    assert not any(line.startswith("[start]") for line in lines)
    collected = json.loads((results_dir / "campaign_table2_released.json").read_text())
    key = config.replace("/", "__") + "-released-s{}"
    assert [r["run_dir"] for r in collected["runs"]] == [f"run_files/{key.format(s)}" for s in (1, 2, 3)]
    assert [r["stop_reason"] for r in collected["runs"]] == ["epoch cap", "diverged", "epoch cap"]
    assert sorted(p.name for p in (results_dir / "run_files" / key.format(1)).iterdir()) == [
        "config.json", "metrics.csv", "result.json"]
    assert sorted(p.name for p in (results_dir / "run_files" / key.format(2)).iterdir()) == [
        "config.json", "metrics.csv"]
    assert not list(results_dir.rglob("*.pt"))


def test_a_failing_config_is_reported_and_its_other_seeds_are_not_run(tmp_path):
    from eghn.train.runs import RunSpec, run_all

    bad = tmp_path / "bad.toml"
    bad.write_text('name = "b"\ndevice = "cpu"\n[data]\nname = "_toy"\nsize = 16\n[model]\nname = "no_such_model"\n')
    specs = [RunSpec(str(bad), "released", s, tmp_path / "out" / f"seed{s}", progress=False) for s in (1, 2)]
    lines: list[str] = []
    records = run_all(specs, echo=lines.append)
    first, second = (records[s] for s in specs)
    assert first.stop_reason == "failed" and "no_such_model" in first.message
    assert second.stop_reason == "failed" and second.message.startswith("not run: not run (")
    assert sum(line.startswith("[end]") for line in lines) == 1


# ---------------------------------------------------------------------------- resume, never rerun
def test_an_interrupted_campaign_resumes_and_does_not_retrain(tmp_path, monkeypatch):
    from eghn.io import DirLock

    config = _toy_toml(tmp_path, epochs=4)
    _one_cell_table(monkeypatch, config)
    out, results_dir = tmp_path / "out", tmp_path / "results"
    folder = out / "table2-released"
    seed1, seed2 = _run_dir(out, config, 1), _run_dir(out, config, 2)
    _interrupt_seed(monkeypatch, seed=2, after=2)
    with pytest.raises(KeyboardInterrupt):
        rep.reproduce("table2", seeds=2, out=out, echo=lambda _line: None, progress=False)
    monkeypatch.undo()
    _one_cell_table(monkeypatch, config)
    runs = _campaign(folder)["runs"]  # written although the campaign was interrupted
    assert [r["stop_reason"] for r in runs] == ["epoch cap", "interrupted"]
    assert runs[1]["epochs"] == 2 and [p[0] for p in runs[1]["learning_curve"]] == [1, 2]
    assert (seed2 / "last.pt").is_file() and not (seed2 / "result.json").exists()
    stamp = (seed1 / "result.json").stat().st_mtime_ns

    # while another process trains seed 2, it is listed as running and not collected
    with DirLock(seed2, "run directory"):
        res = rep.reproduce("table2", seeds=2, out=out, echo=lambda _line: None, progress=False,
                            collect=results_dir)[0]
    assert res.status == "1 of 2 seeds; 1 running"
    collected = json.loads((results_dir / "campaign_table2_released.json").read_text())
    assert [(r["stop_reason"], r["run_dir"] is None) for r in collected["runs"]] == [("epoch cap", False),
                                                                                  ("running", True)]
    assert [p.name for p in (results_dir / "run_files").iterdir()] == [config.replace("/", "__") + "-released-s1"]

    lines: list[str] = []
    res = rep.reproduce("table2", seeds=2, out=out, echo=lines.append, progress=False)[0]
    assert (seed1 / "result.json").stat().st_mtime_ns == stamp  # the finished run was not trained again
    assert any("seed 1): reusing the finished run" in line for line in lines)
    assert any("seed 2): resuming it from last.pt" in line for line in lines)
    result2 = json.loads((seed2 / "result.json").read_text())
    assert result2["epochs"] == 4 and [h["epoch"] for h in result2["history"]] == [1, 2, 3, 4]
    assert len(res.values) == 2 and res.status == "ok"
    assert [(r["action"], r["stop_reason"]) for r in _campaign(folder)["runs"]] == [("reused", "epoch cap"),
                                                                                 ("resumed", "epoch cap")]


# ---------------------------------------------------------------------------- worker processes
def test_jobs_train_in_worker_processes_with_the_same_results(tmp_path, monkeypatch):
    config = _arrays_toml(tmp_path)
    _one_cell_table(monkeypatch, config)
    alone = rep.reproduce("table2", seeds=2, out=tmp_path / "one", echo=lambda _line: None, progress=False)[0].values

    # seed 2 interrupted after epoch 1, then a campaign with two workers: seed 1 trained, seed 2 resumed
    out = tmp_path / "two"
    _interrupt_seed(monkeypatch, seed=2, after=1)
    with pytest.raises(KeyboardInterrupt):
        rep.reproduce("table2", seeds="2-2", out=out, echo=lambda _line: None, progress=False)
    _no_training_here(monkeypatch)  # the campaign's own process trains nothing
    lines: list[str] = []
    parallel = rep.reproduce("table2", seeds=2, jobs=2, out=out, echo=lines.append, progress=False)
    assert parallel[0].values == alone  # the same numbers, bit for bit (a resumed run included)
    starts = [line for line in lines if line.startswith("[start]")]
    assert len(starts) == 2 and all(line.endswith("(worker process)") for line in starts)
    assert "seed 1): training in" in starts[0] and "seed 2): resuming it from last.pt in" in starts[1]
    assert sum(line.startswith("[end]") and "finished (epoch cap), test MSE" in line for line in lines) == 2
    config_json = json.loads((_run_dir(out, config, 1) / "config.json").read_text())
    assert config_json["train"]["threads"] == 1 and config_json["train"]["progress"] is False
    assert json.loads((_run_dir(out, config, 2) / "result.json").read_text())["epochs"] == 3


# ---------------------------------------------------------------------------- the command line
def test_cli_campaign_over_two_tables_trains_a_shared_run_once(tmp_path, monkeypatch, capsys):
    config = _toy_toml(tmp_path, epochs=2)
    _one_cell_table(monkeypatch, config, "table2")
    _one_cell_table(monkeypatch, config, "table4")
    out, results_dir = tmp_path / "out", tmp_path / "results"
    argv = ["reproduce", "table2", "table4", "--seeds", "2-3", "--out", str(out), "--no-progress",
            "--collect", str(results_dir)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert text.count("[start]") == 2 and "2 runs for 2 tables, at most 1 at a time" in text
    t2, t4 = _campaign(out / "table2-released"), _campaign(out / "table4-released")
    assert t2["command"] == "eghn " + " ".join(argv) and t2["seeds"] == [2, 3]
    assert [r["run_dir"] for r in t4["runs"]] == [
        f"../table2-released/{config.replace('/', '__')}/seed{s}" for s in (2, 3)]
    assert not (out / "table4-released" / config.replace("/", "__")).exists()
    assert (out / "table4-released" / "table4.md").is_file()
    c2 = json.loads((results_dir / "campaign_table2_released.json").read_text())
    c4 = json.loads((results_dir / "campaign_table4_released.json").read_text())
    assert [r["run_dir"] for r in c2["runs"]] == [r["run_dir"] for r in c4["runs"]]
    assert [r["test"] for r in c2["runs"]] == [r["test"] for r in t4["runs"]]


# ---------------------------------------------------------------------------- test-time transformations
def test_a_rotated_cell_evaluates_the_same_runs_under_rotation(tmp_path, monkeypatch):
    from eghn.train.trained import evaluate_run

    config = _arrays_toml(tmp_path)
    monkeypatch.setitem(rep.TABLES, "table3", rep.TableSpec("table3", (
        rep.Cell("EGNN", "MSE", config), rep.Cell("EGNN, rotated", "MSE", config, transform={"rotate": True}))))
    out = tmp_path / "out"
    plain, rotated = rep.reproduce("table3", seeds=2, out=out, echo=lambda _line: None, progress=False)
    assert len(plain.values) == len(rotated.values) == 2
    for seed, p, r in zip((1, 2), plain.values, rotated.values):
        run_dir = out / "table3-released" / config.replace("/", "__") / f"seed{seed}"
        assert r == evaluate_run(run_dir, rotate=True, seed=1000 + seed)["mse_transformed"]  # drawn from 1000 + seed
        assert r == pytest.approx(p, rel=1e-4) and r != p  # an equivariant model, moved: equal up to float32 rounding
