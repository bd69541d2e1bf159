"""The harnesses beside the authors' code (``benchmarks/authors_run.py``,
``benchmarks/time_to_accuracy.py``): reading their script's output and timing accuracy.

The authors' code itself is not needed: their script's printed lines are fed in as text."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def harness():
    return _load("authors_run")


@pytest.fixture(scope="module")
def tta():
    return _load("time_to_accuracy")


TRANSCRIPT = """Namespace(batch_size=100, case='run')
Got Split!
EGHN(
  (embedding): Linear(in_features=2, out_features=64, bias=True)
)
Pooling plan: [0.2 0.2 0.2 0.2 0.2]
train epoch 0 avg loss: 103.21996 avg lploss: 2.33765
Pooling plan: [0.2 0.2 0.2 0.2 0.2]
==> val epoch 0 avg loss: 102.23838 avg lploss: 2.30000
==> test epoch 0 avg loss: 98.35175 avg lploss: 2.30000
*** Best Val Loss: 102.23838 \t Best Test Loss: 98.35175 \t Best epoch 0
train epoch 1 avg loss: 50.00000 avg lploss: 1.00000
train epoch 5 avg loss: 24.44948 avg lploss: 2.81881
==> val epoch 5 avg loss: 16.95201 avg lploss: 2.0
==> test epoch 5 avg loss: 16.33150 avg lploss: 2.0
train epoch 10 avg loss: 13.05918 avg lploss: 2.82842
==> val epoch 10 avg loss: 17.00000 avg lploss: 2.0
==> test epoch 10 avg loss: 15.00000 avg lploss: 2.0
Early Stopping.
"""


def test_recorder_turns_their_lines_into_eghn_metrics_rows(harness, tmp_path):
    rec = harness.Recorder(tmp_path, lam=2.0, t_launch=100.0)
    for k, line in enumerate(TRANSCRIPT.splitlines(keepends=True)):
        rec.feed(line, now=100.0 + k)
    rec.close()
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    # epochs trained, not their 0-based index; one row per evaluation (val and test printed)
    assert [int(r["epoch"]) for r in rows] == [1, 6, 11]
    assert float(rows[0]["train_mse"]) == pytest.approx(103.21996)
    assert float(rows[0]["train_loss"]) == pytest.approx(103.21996 + 2.0 * 2.33765)
    assert float(rows[1]["val_mse"]) == pytest.approx(16.95201)
    # the best epoch stays at the lower validation MSE; the clock starts at the end of print(model)
    assert [int(r["best_epoch"]) for r in rows] == [1, 6, 6]
    assert float(rows[0]["wall_s"]) == pytest.approx(9 - 4)
    assert rec.early_stop and rec.last_epoch == 11


def test_recorder_ignores_lines_it_does_not_know(harness, tmp_path):
    rec = harness.Recorder(tmp_path, lam=1.0, t_launch=0.0)
    for line in ("avg", "==> val epoch x avg loss: y", "train epoch 3 avg loss: nan? avg", "Validation loss decreased"):
        rec.feed(line, now=1.0)
    rec.close()
    assert rec.rows == [] and not rec.early_stop


def _rows(*vals):
    return [{"epoch": 5.0 * (k + 1), "wall_s": 10.0 * (k + 1), "val_mse": v, "test_mse": t}
            for k, (v, t) in enumerate(vals)]


def test_first_reaching_a_validation_value(tta):
    rows = _rows((3.0, 3.1), (2.0, 2.2), (1.0, 1.1))
    assert tta.first_reaching(rows, val=2.0) == {"epoch": 10, "wall_s": 20.0, "val_mse": 2.0}
    assert tta.first_reaching(rows, val=0.5) is None


def test_the_paper_test_is_read_at_the_best_validation_checkpoint(tta):
    # the test MSE dips below 1.5 at an evaluation that is not the best on validation: not reached there
    rows = _rows((2.0, 2.0), (2.5, 1.4), (1.9, 1.6), (1.8, 1.45))
    hit = tta.first_reaching(rows, test=1.5)
    assert hit["epoch"] == 20 and hit["best_val_epoch"] == 20 and hit["test_mse_at_best_val"] == 1.45
    assert tta.first_reaching(rows, test=1.0) is None


def test_the_tasks_name_the_same_settings_on_both_sides(harness, tta):
    for task in tta.TASKS.values():
        assert task["authors"] in harness.TASKS
    run = harness.TASKS["run"]
    assert run["model"]["clusters"] == [5] and run["train"]["lr"] == 5e-4


def test_a_run_that_probed_its_start_is_timed_from_its_start(tta, tmp_path):
    run = tmp_path / "eghn_recipe"
    run.mkdir()
    (run / "metrics.csv").write_text("epoch,wall_s,train_loss,train_mse,val_mse,test_mse\n"
                                     "5,10.0,1,1,2.0,2.1\n10,20.0,1,1,1.0,1.1\n")
    assert tta.probe(run) is None and tta.read_rows(run)[0]["wall_s"] == 10.0  # no probe: as written
    trials = [{"seed": 1, "epochs": 20, "passed": False}, {"seed": 1001, "epochs": 5, "passed": True}]
    (run / "result.json").write_text(json.dumps({"init": {"wall_s": 30.0, "trials": trials}}))
    assert tta.probe(run) == {"wall_s": 30.0, "epochs": 25}
    rows = tta.read_rows(run)
    assert [r["wall_s"] for r in rows] == [40.0, 50.0]  # the probe's time comes before epoch 1
    assert tta.first_reaching(rows, val=1.0)["wall_s"] == 50.0
    assert tta.summarise_run(run)["probe"] == {"wall_s": 30.0, "epochs": 25}
