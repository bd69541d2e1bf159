"""``benchmarks/stability_trace.py``: the per-layer and per-parameter-group record of a training run."""

from __future__ import annotations

import json

import pytest
import torch
import torch.optim.optimizer as optimizer_module
from _scripts import load_script

from eghn.train.config import load_config


@pytest.fixture(scope="module")
def trace():
    return load_script("benchmarks/stability_trace.py")


def test_the_optimiser_steps_are_recorded_per_parameter_group_from_the_detail_step(trace, tmp_path):
    out = tmp_path / "t.json"
    assert trace.main(["t", "default", "--set", "train.epochs=2", "--detail-from", "3", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    steps = doc["steps"]
    assert doc["status"] == "ok" and len(steps) == len(doc["grad_norm"]) > 4
    assert all("update" not in st for st in steps[:3])  # before the detail step: losses only
    detailed = steps[3:]
    assert all("update" in st for st in detailed)
    groups = set(detailed[0]["update"])
    assert {"pools.0.score", "encoders.0.0", "decoders.0.0"} <= groups
    for st in detailed:
        for rec in st["update"].values():
            assert rec["step"] >= 0 and rec["grad"] >= 0
            if rec["grad"] > 0:  # Adam's step over the gradient it was given
                assert rec["gain"] == pytest.approx(rec["step"] / rec["grad"], rel=1e-3)
    # the groups' gradients together are the global gradient, as clipping left it
    clip = load_config("default")["train"]["clip_grad"]
    total = sum(rec["grad"] ** 2 for rec in detailed[0]["update"].values()) ** 0.5
    assert total == pytest.approx(min(doc["grad_norm"][3], clip if clip > 0 else float("inf")), rel=1e-2)


def test_the_trace_leaves_no_hook_behind(trace, tmp_path):
    trace.main(["t", "default", "--set", "train.epochs=1", "--detail-from", "0", "--out", str(tmp_path / "t.json")])
    assert not optimizer_module._global_optimizer_pre_hooks
    assert not optimizer_module._global_optimizer_post_hooks
    assert torch.nn.utils.clip_grad_norm_.__name__ == "clip_grad_norm_"  # not the recording wrapper


def test_spike_summary_names_the_group_that_moved_first(trace):
    def step(mse, score_step, emmp_step, sat=1.0):
        return {"loss": {"mse": mse, "conn": 0.5 if mse < 1 else 1.5},
                "pools.0": {"saturation": sat, "logit_spread": 100.0},
                "update": {"pools.0.score": {"grad": 1e-5, "step": score_step, "gain": None},
                           "pools.0.emmps": {"grad": 0.5, "step": emmp_step, "gain": None}}}

    steps = [{"loss": {"mse": 5.0, "conn": 2.0}}] * 3  # before the detail step: losses only
    steps += [step(0.1, 1e-4, 0.01) for _ in range(30)]
    steps += [step(0.1, 5e-3, 0.01, sat=0.9)]  # the scores move 50x: step 34
    steps += [step(0.1, 1e-3, 0.2)]  # then the pooled EMMP 20x: step 35
    steps += [step(2.0, 1e-3, 0.2)] + [step(0.5, 1e-4, 0.01)] * 5  # the spike: step 36
    summary = trace.spike_summary(steps)
    assert summary["spike_step"] == 36 and summary["mse_at_spike"] == 2.0 and summary["mse_before"] == 0.1
    assert summary["moved_first"] == "pools.0.score"
    first, second = summary["groups"]
    assert (first["group"], first["first_jump"], first["jump_ratio"]) == ("pools.0.score", 34, 50.0)
    assert (second["group"], second["first_jump"]) == ("pools.0.emmps", 35)
    assert summary["saturation_lowest"] == 0.9 and summary["conn_before"] == 0.5 and summary["conn_after"] == 0.5
    assert trace.spike_summary(steps[:34]) is None  # no spike yet
