"""docs/scripts/collect_runs.py: the summary the results pages render numbers from."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "scripts" / "collect_runs.py"
FIELDS = ["epoch", "wall_s", "train_loss", "train_mse", "val_mse", "test_mse"]


@pytest.fixture(scope="module")
def collect():
    spec = importlib.util.spec_from_file_location("collect_runs", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(tmp_path: Path, rows: list[tuple], log: str = "", result: dict | None = None) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FIELDS)
        w.writerows(rows)
    (run / "config.json").write_text(json.dumps({"name": "x", "seed": 1, "data": {"length_scale": 1.0}}))
    (run / "train.log").write_text(log)
    if result is not None:
        (run / "result.json").write_text(json.dumps(result))
    return run


def test_summary_of_a_diverged_run_with_a_spike_and_a_collapse(tmp_path, collect):
    rows = [  # epoch, wall, train loss, train MSE, val, test
        (5, 10.0, 1.0, 0.9, 0.8, 0.85),
        (10, 20.0, 0.6, 0.5, 0.4, 0.45),
        (15, 30.0, 0.45, 0.45, 1.0, 1.1),   # val more than doubles: a spike
        (20, 40.0, 2.3, 0.3, 0.35, 0.36),   # regulariser 0 -> 2: a jump
        (25, 50.0, 2.25, 0.25, 0.3, 0.31),
    ]
    log = ("run RUN: model eghn (252,943 parameters), data mcomplex\n"
           "eghn: error: training diverged: the training loss is inf (batch 3 of 10) at epoch 27; stopped\n")
    s = collect.summarise(_run(tmp_path, rows, log), [0.5, 0.1])
    assert (s["epochs"], s["best_epoch"], s["best_val"], s["test_mse"]) == (25, 25, 0.3, 0.31)
    assert s["train_mse_at_best"] == 0.25 and s["parameters"] == 252_943
    assert s["spikes"] == [{"epoch": 15, "before": 0.4, "after": 1.0}]
    assert s["regulariser_jump"]["epoch"] == 20 and s["last_regulariser"] == pytest.approx(2.0)
    assert s["diverged"] == {"epoch": 27, "why": "the training loss is inf (batch 3 of 10)"}
    assert s["finished"] is False
    assert s["reached"] == {"0_5": {"epoch": 10, "wall_s": 20.0}, "0_1": None}


def test_a_finished_run_takes_its_result(tmp_path, collect):
    rows = [(5, 1.0, 0.5, 0.5, 0.4, 0.41), (10, 2.0, 0.4, 0.4, 0.3, 0.32)]
    result = {"best_epoch": 10, "best_val": 0.3, "test": 0.32, "stopped_early": True}
    s = collect.summarise(_run(tmp_path, rows, result=result), [])
    assert s["finished"] is True and s["stopped_early"] is True and "diverged" not in s
    assert s["spikes"] == [] and s["regulariser_jump"] is None
    assert "machines" not in s  # a run trained before eghn recorded its machine


def test_a_finished_run_keeps_where_its_detectors_fired(tmp_path, collect):
    # the detector's spike (train loss, 3x its running best) is not the val jump of ``spikes``
    rows = [(5, 1.0, 0.5, 0.5, 0.4, 0.41), (10, 2.0, 0.4, 0.4, 0.3, 0.32), (15, 3.0, 0.4, 0.4, 0.7, 0.7)]
    event = {"epoch": 5, "kind": "spike", "series": "train loss", "value": 1.6, "running_best": 0.5}
    stability = {"spikes": 1, "train_loss_spikes": 1, "val_spikes": 0, "collapses": 0,
                 "events": [event | {"message": "spike in the train loss at epoch 5: 1.6 is 3.2x ..."}]}
    result = {"best_epoch": 10, "best_val": 0.3, "test": 0.32, "stopped_early": True, "stability": stability}
    s = collect.summarise(_run(tmp_path, rows, result=result), [])
    assert s["stability"] == {"spikes": 1, "train_loss_spikes": 1, "val_spikes": 0, "collapses": 0,
                              "events": [event]}
    assert [j["epoch"] for j in s["spikes"]] == [15]


def test_a_finished_run_names_the_machines_it_trained_on(tmp_path, collect):
    rows = [(5, 1.0, 0.5, 0.5, 0.4, 0.41), (10, 2.0, 0.4, 0.4, 0.3, 0.32)]
    machines = [{"after_epoch": 0, "cpu": "A", "cpu_capability": "AVX2", "threads": 1},
                {"after_epoch": 5, "cpu": "B", "cpu_capability": "AVX512", "threads": 1}]
    result = {"best_epoch": 10, "best_val": 0.3, "test": 0.32, "stopped_early": True, "machines": machines}
    assert collect.summarise(_run(tmp_path, rows, result=result), [])["machines"] == machines


def test_a_run_that_chose_its_start_says_which(tmp_path, collect):
    rows = [(5, 1.0, 0.5, 0.5, 0.4, 0.41), (10, 2.0, 0.4, 0.4, 0.3, 0.32)]
    init = {"requested_seed": 1, "chosen_seed": 2001, "passed": True, "epochs": 20, "max_regulariser": 0.1,
            "wall_s": 5.0, "trials": []}
    result = {"best_epoch": 10, "best_val": 0.3, "test": 0.32, "stopped_early": True, "init": init}
    s = collect.summarise(_run(tmp_path, rows, result=result), [])
    assert s["init"] == init and s["seed"] == 1
    (tmp_path / "b").mkdir()  # a run without train.init_tries records an empty choice
    assert "init" not in collect.summarise(_run(tmp_path / "b", rows, result={**result, "init": {}}), [])


def test_provenance_names_version_and_commit(collect):
    import eghn

    prov = collect.provenance()
    assert prov["eghn_version"] == eghn.__version__
    assert prov["commit"] == "unknown" or len(prov["commit"]) == 40


def test_a_run_whose_metrics_disagree_with_its_result_is_refused(tmp_path, collect):
    rows = [(5, 1.0, 0.5, 0.5, 0.4, 0.41), (10, 2.0, 0.4, 0.4, 0.3, 0.32)]
    history = [{"epoch": 5, "val_mse": 0.4, "test_mse": 0.41}, {"epoch": 10, "val_mse": 0.25, "test_mse": 0.32}]
    result = {"best_epoch": 10, "best_val": 0.25, "test": 0.32, "stopped_early": True, "history": history}
    with pytest.raises(SystemExit, match=r"metrics\.csv does not hold the evaluations of result\.json"):
        collect.summarise(_run(tmp_path, rows, result=result), [])


CONFIG = {"name": "table4_walk_k8", "seed": 2, "protocol": "eghn", "quick": False,
          "data": {"length_scale": 1.89}, "train": {"threads": 0, "epochs": 10000, "lr": 0.0005}}


@pytest.mark.parametrize(("command", "machines", "wrong"), [
    ("OMP_NUM_THREADS=1 eghn train table4/walk_k8 --set protocol=eghn --seed 2", [{"threads": 1}], []),
    ("eghn train table4/walk_k8 --set protocol=eghn --seed 2 --set train.threads=1", [{"threads": 1}],
     ["--set train.threads=1, the run's config holds 0"]),
    ("OMP_NUM_THREADS=2 eghn train table4/walk_k8 --seed 2", [{"threads": 1, "after_epoch": 0}],
     ["2 torch thread(s), the run trained with 1 after epoch 0"]),
    ("eghn train table4/walk_k8 --seed 3 --set protocol=paper", None,
     ["--seed 3, the run's seed is 2", "--set protocol=paper, the run's config holds 'eghn'"]),
    ("eghn train table4/walk_k3 --seed 2", None,
     ["the command trains table4/walk_k3, the run's config is named 'table4_walk_k8'"]),
    ("eghn train table4/walk_k8 --seed 2 --quick", None, ["--quick, the run's config was not reduced"]),
    # a chained resumption: the last setting of a key wins; "auto" resolves to a number
    ("eghn train table4/walk_k8 --seed 2 --set train.epochs=600 --set data.length_scale=auto, "
     "then eghn train --resume RUN_DIR --set train.epochs=10000", None, []),
    ("eghn train table4/walk_k8 --seed 2 --set train.epochs=600", None,
     ["--set train.epochs=600, the run's config holds 10000"]),
    # a setting newer than the run, pinned to the run's behaviour; another program's command
    ("eghn train table4/walk_k8 --seed 2 --set train.init_tries=1", None, []),
    ("python benchmarks/authors_run.py AUTHORS_DIR --seed 7", None, []),
    ("eghn train table4/walk_k8 --seed 2 --sed 3", None,
     ["eghn train does not accept 'eghn train table4/walk_k8 --seed 2 --sed 3'"]),
])
def test_a_command_is_checked_against_the_run_it_names(collect, command, machines, wrong):
    assert collect.command_disagreements(command, CONFIG, machines) == wrong


def test_a_run_collected_with_a_command_that_does_not_describe_it_is_refused(tmp_path, collect, monkeypatch):
    run = _run(tmp_path, [(5, 10.0, 1.0, 0.9, 0.8, 0.85)])  # config: name "x", seed 1
    monkeypatch.setattr(collect, "DOCS", tmp_path)
    (tmp_path / "results").mkdir()
    monkeypatch.setattr("sys.argv", ["collect_runs.py", "out", f"{run}=k;Walk;EGHN;eghn train x --seed 2"])
    with pytest.raises(SystemExit, match=r"the command given for k does not describe this run: --seed 2"):
        collect.main()
    assert not (tmp_path / "results" / "out.json").exists()


def test_every_collected_command_describes_its_run(collect):
    """The committed result files: each ``eghn train`` command agrees with the config and the
    machine records of the run files collected beside it."""
    results = SCRIPT.parents[1] / "results"
    checked, wrong = 0, {}
    for path in sorted(results.glob("*.json")):
        for key, run in (json.loads(path.read_text()).get("runs") or {}).items():
            files = results / "run_files" / key
            if not isinstance(run, dict) or not run.get("command") or not (files / "config.json").is_file():
                continue
            machines = (json.loads((files / "result.json").read_text()).get("machines")
                        if (files / "result.json").is_file() else None)
            found = collect.command_disagreements(run["command"], json.loads((files / "config.json").read_text()),
                                                  machines)
            checked += "eghn train" in run["command"]
            if found:
                wrong[f"{path.stem}:{key}"] = found
    assert checked >= 100 and not wrong


def test_a_threshold_read_from_a_result_file_is_recorded_with_its_source(tmp_path, collect, monkeypatch):
    rows = [(5, 10.0, 1.0, 0.9, 0.8, 0.85), (10, 20.0, 0.6, 0.5, 0.4, 0.45)]
    run = _run(tmp_path, rows)
    other = tmp_path / "authors.json"
    other.write_text(json.dumps({"runs": {"a": {"best_val": 0.5, "curve": [[1, 0.9], [6, 0.8]]}}}))
    s = collect.summarise(run, [], {"authors_best": 0.5})
    assert s["reached"] == {"authors_best": {"epoch": 10, "wall_s": 20.0}}
    monkeypatch.setattr(collect, "DOCS", tmp_path)
    (tmp_path / "results").mkdir()
    monkeypatch.setattr("sys.argv", ["collect_runs.py", "out", f"{run}=k,Run (Subject 9),EGHN,cmd",
                                     f"--threshold-from=authors_best={other}:runs.a.best_val",
                                     f"--threshold-from=authors_6={other}:runs.a.curve.1.1"])
    collect.main()
    written = json.loads((tmp_path / "results" / "out.json").read_text())
    assert written["thresholds"]["authors_best"] == {"value": 0.5, "source": "authors.json:runs.a.best_val"}
    assert written["runs"]["k"]["reached"]["authors_6"] == {"epoch": 5, "wall_s": 10.0}


def test_add_keeps_the_runs_already_collected(tmp_path, collect, monkeypatch):
    run = _run(tmp_path, [(5, 10.0, 1.0, 0.9, 0.8, 0.85)])
    monkeypatch.setattr(collect, "DOCS", tmp_path)
    (tmp_path / "results").mkdir()
    old = {"about": "text", "runs": {"gone": {"test_mse": 0.3, "seed": 1}, "k": {"test_mse": 9.0}}}
    (tmp_path / "results" / "out.json").write_text(json.dumps(old))
    monkeypatch.setattr("sys.argv", ["collect_runs.py", "out", f"{run}=k,Run (Subject 9),EGHN,cmd", "--add"])
    collect.main()
    written = json.loads((tmp_path / "results" / "out.json").read_text())
    assert written["about"] == "text" and written["runs"]["gone"] == {"test_mse": 0.3, "seed": 1}
    assert written["runs"]["k"]["test_mse"] == 0.85  # replaced by the run given
    monkeypatch.setattr("sys.argv", ["collect_runs.py", "out", f"{run}=k,Run (Subject 9),EGHN,cmd"])
    collect.main()  # without --add the file holds the runs given only
    assert set(json.loads((tmp_path / "results" / "out.json").read_text())["runs"]) == {"k"}


@pytest.mark.parametrize("config", ["protein/adk_eghn", "protein/adk_mpnn"])
def test_the_rotated_test_column_of_a_finished_run(tmp_path, collect, config, monkeypatch):
    pytest.importorskip("MDAnalysisTests")  # the embedded AdK frames of the quick config
    from eghn.cli import main as eghn_main

    monkeypatch.setenv("EGHN_CACHE_DIR", str(tmp_path / "cache"))
    run = tmp_path / "run"
    argv = ["train", config, "--quick", "--run-dir", str(run), "--no-progress", "--set", "train.epochs=2",
            "--set", "train.threads=1", "--set", "data.progress=false"]
    assert eghn_main(argv) == 0
    rotated = collect.rotated_test(run, seed=3)
    result = json.loads((run / "result.json").read_text())
    assert rotated["test_mse_plain"] == pytest.approx(result["test"], rel=1e-6)
    assert rotated["command"] == "eghn evaluate RUN --rotate --seed 3 --json"
    assert rotated == collect.rotated_test(run, seed=3)  # seeded: the same rotations
    if config.endswith("eghn"):  # E(n)-equivariant: the rotation changes nothing beyond float32 rounding
        assert rotated["test_mse"] == pytest.approx(rotated["test_mse_plain"], rel=1e-5)
    else:  # the negative control: an MPNN sees the rotation
        assert abs(rotated["test_mse"] / rotated["test_mse_plain"] - 1) > 1e-3


def test_references_on_every_split_of_a_protein_run(tmp_path, collect, monkeypatch):
    pytest.importorskip("MDAnalysisTests")  # the embedded AdK frames of the quick config
    from eghn.cli import main as eghn_main
    from eghn.train.references import reference_mses

    monkeypatch.setenv("EGHN_CACHE_DIR", str(tmp_path / "cache"))
    run = tmp_path / "run"
    assert eghn_main(["train", "protein/adk_mpnn", "--quick", "--run-dir", str(run), "--no-progress", "--set",
                      "train.epochs=1", "--set", "train.threads=1", "--set", "data.progress=false"]) == 0
    monkeypatch.setattr(collect, "DOCS", tmp_path)
    (tmp_path / "results").mkdir()
    monkeypatch.setattr("sys.argv", ["collect_runs.py", "out", f"{run}=k;AdK;MPNN;cmd", "--references"])
    collect.main()
    written = json.loads((tmp_path / "results" / "out.json").read_text())["runs"]["k"]
    config = json.loads((run / "config.json").read_text())
    assert written["references"]["hold_still"]["mse"] == reference_mses(config)[0].mse
    for split in ("train", "val"):
        assert written["split_references"][split] == {r.key: r.mse for r in reference_mses(config, split)}
    assert written["split_references"]["val"]["hold_still"] != written["references"]["hold_still"]["mse"]
