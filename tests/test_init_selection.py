"""``train.init_tries``: probing starts by their training regulariser (eghn.train.init_selection)."""

from __future__ import annotations

import csv
import json
import math
from types import SimpleNamespace

import pytest
from _train_toy import toy_config

from eghn.train import train
from eghn.train.checkpoint import load_checkpoint
from eghn.train.config import ConfigError
from eghn.train.init_selection import candidate_seeds, probe_start, selection_record

_VOLATILE = {"wall_s", "samples_per_s", "step_share"}


def _quiet(_msg: str) -> None:
    pass


def _config(tmp_path, **train_kw) -> dict:
    """The toy model with a regulariser ``a**2`` (``a`` starts at 0.1 and grows towards 0.3)."""
    cfg = toy_config(tmp_path, epochs=8, threads=1, **train_kw)
    cfg["model"]["reg"] = 1.0
    return cfg


def _rows(run) -> list[dict[str, str]]:
    return list(csv.DictReader(open(run / "metrics.csv")))


def _stable(rows):
    return [{k: v for k, v in r.items() if k not in _VOLATILE} for r in rows]


# ---------------------------------------------------------------------------- the pieces
def test_candidate_seeds_are_spaced_and_wrap():
    assert candidate_seeds(7, 3) == [7, 1007, 2007]
    assert candidate_seeds(2**63 - 1, 2) == [2**63 - 1, 999]
    assert len(set(s for seed in range(1, 6) for s in candidate_seeds(seed, 8))) == 40


def test_record_chooses_the_first_pass_else_the_smallest_last_value():
    fail = [{"seed": 1, "regulariser": {5: 1.2, 10: 0.9}, "passed": False, "diverged": False, "epochs": 10},
            {"seed": 1001, "regulariser": {5: math.inf}, "passed": False, "diverged": True, "epochs": 5},
            {"seed": 2001, "regulariser": {5: 1.1, 10: 0.5}, "passed": False, "diverged": False, "epochs": 10}]
    r = selection_record(1, fail, epochs=10, max_regulariser=0.1, wall_s=0.5)
    assert (r["chosen_seed"], r["passed"]) == (2001, False)
    assert r["trials"][1]["regulariser"] == {"5": None}  # JSON has no inf
    json.dumps(r, allow_nan=False)
    ok = [*fail, {"seed": 3001, "regulariser": {5: 0.05}, "passed": True, "diverged": False, "epochs": 5}]
    assert selection_record(1, ok, epochs=10, max_regulariser=0.1, wall_s=0.5)["chosen_seed"] == 3001
    with pytest.raises(ValueError, match="at least one"):
        selection_record(1, [], epochs=10, max_regulariser=0.1, wall_s=0.0)


def _fake_trainer(regs, fail_at=None):
    """A trainer whose window regulariser after epoch e is ``regs[e - 1]``."""
    t = SimpleNamespace(epoch=0)

    def train_epoch(epoch):
        if epoch == fail_at:
            raise FloatingPointError("non-finite output")
        t.epoch = epoch

    t.start_window = lambda: None
    t.train_epoch = train_epoch
    t.take_train_means = lambda: (1.0, 1.0 + regs[t.epoch - 1])
    return t


def test_probe_stops_at_the_first_value_under_the_bound():
    out = probe_start(_fake_trainer([3.0, 2.0, 0.0625, 0.0]), epochs=4, every=1, max_regulariser=0.1)
    assert out == {"regulariser": {1: 3.0, 2: 2.0, 3: 0.0625}, "passed": True, "diverged": False, "epochs": 3}
    out = probe_start(_fake_trainer([3.0, 2.0, 1.0, 0.5, 0.25]), epochs=5, every=2, max_regulariser=0.1)
    assert out == {"regulariser": {2: 2.0, 4: 0.5, 5: 0.25}, "passed": False, "diverged": False, "epochs": 5}


def test_probe_fails_a_start_that_goes_non_finite():
    out = probe_start(_fake_trainer([3.0, math.nan]), epochs=4, every=1, max_regulariser=0.1)
    assert out["diverged"] and not out["passed"] and out["epochs"] == 2
    out = probe_start(_fake_trainer([3.0] * 4, fail_at=3), epochs=4, every=1, max_regulariser=0.1)
    assert out["diverged"] and out["regulariser"] == {1: 3.0, 2: 3.0, 3: math.inf}


@pytest.mark.parametrize("key,value", [("init_tries", 0), ("init_epochs", 0), ("init_max_regulariser", -0.1),
                                       ("init_max_regulariser", math.inf)])
def test_settings_are_checked(tmp_path, key, value):
    with pytest.raises(ConfigError, match=f"train.{key}"):
        train(_config(tmp_path, **{key: value}), tmp_path / "run", echo=_quiet)


# ---------------------------------------------------------------------------- through the trainer
def test_chosen_start_trains_exactly_as_it_was_probed(tmp_path):
    """No start passes a bound of 0: the smallest last value is chosen, and the run's training
    regulariser repeats that start's probed values bit for bit."""
    lines = []
    res = train(_config(tmp_path, init_tries=3, init_epochs=4, init_max_regulariser=0.0), tmp_path / "run",
                echo=lines.append)
    init = res.init
    assert init["requested_seed"] == 3 and [t["seed"] for t in init["trials"]] == [3, 1003, 2003]
    assert not init["passed"] and init["chosen_seed"] in (3, 1003, 2003)
    last = {t["seed"]: t["regulariser"]["4"] for t in init["trials"]}
    assert init["chosen_seed"] == min(last, key=last.get)
    chosen = next(t for t in init["trials"] if t["seed"] == init["chosen_seed"])
    rows = {int(r["epoch"]): float(r["train_loss"]) - float(r["train_mse"]) for r in _rows(tmp_path / "run")}
    assert {e: rows[int(e)] for e in chosen["regulariser"]} == chosen["regulariser"]
    assert sum("init selection: start" in ln for ln in lines) == 3
    assert any("WARNING no start of 3" in ln for ln in lines)
    # the run directory says the same everywhere; the config keeps the requested seed
    run = tmp_path / "run"
    assert json.loads((run / "result.json").read_text())["init"] == init
    assert load_checkpoint(run / "last.pt")["init"] == init
    assert json.loads((run / "config.json").read_text())["seed"] == 3
    assert "init selection: start 1 of 3" in (run / "train.log").read_text()


def test_a_first_start_that_passes_is_the_plain_run(tmp_path):
    plain = train(_config(tmp_path), tmp_path / "plain", echo=_quiet)
    chosen = train(_config(tmp_path, init_tries=4, init_max_regulariser=1.0), tmp_path / "sel", echo=_quiet)
    assert chosen.init["chosen_seed"] == 3 and chosen.init["passed"] and len(chosen.init["trials"]) == 1
    assert chosen.init["trials"][0]["epochs"] == 2  # passes at the first window (eval_every = 2)
    assert _stable(_rows(tmp_path / "sel")) == _stable(_rows(tmp_path / "plain"))
    assert plain.init == {} and "init" in json.loads((tmp_path / "plain" / "result.json").read_text())


def test_a_start_is_chosen_once_resume_keeps_it(tmp_path):
    from eghn.train.callbacks import StopAfter

    cfg = _config(tmp_path, init_tries=2, init_epochs=2, init_max_regulariser=0.0)
    first = []
    with pytest.raises(Exception, match="test hook"):
        train(cfg, tmp_path / "run", echo=first.append, callbacks=[StopAfter(4)])
    assert sum("init selection: start" in ln for ln in first) == 2
    again = []
    res = train(cfg, tmp_path / "run", resume=True, echo=again.append)
    assert not any("init selection" in ln for ln in again)
    whole = train(cfg, tmp_path / "whole", echo=_quiet)
    assert res.init["chosen_seed"] == whole.init["chosen_seed"]
    assert {k: v for k, v in res.init.items() if k != "wall_s"} == {k: v for k, v in whole.init.items()
                                                                      if k != "wall_s"}
    assert _stable(_rows(tmp_path / "run")) == _stable(_rows(tmp_path / "whole"))


def test_eghn_probe_reads_the_pooling_regulariser(tmp_path):
    """On EGHN the probed value is the connectivity and occupancy terms, and the run repeats it."""
    cfg = toy_config(tmp_path, epochs=4, batch_size=8, eval_every=2, lr=2e-3, threads=1, init_tries=2,
                     init_epochs=2, init_max_regulariser=0.0)
    cfg["model"] = {"name": "eghn", "hidden": 16, "clusters": [3], "enc_layers": 1, "pool_layers": 1,
                    "dec_layers": 1, "occupancy_weight": 1.0}
    res = train(cfg, tmp_path / "run", echo=_quiet)
    chosen = next(t for t in res.init["trials"] if t["seed"] == res.init["chosen_seed"])
    assert all(v > 0 for t in res.init["trials"] for v in t["regulariser"].values())
    row = _rows(tmp_path / "run")[0]
    assert float(row["train_loss"]) - float(row["train_mse"]) == chosen["regulariser"]["2"]
