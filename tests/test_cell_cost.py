"""``benchmarks/cell_cost.py``: the measured CPU cost of the paper's cells that have not run."""

from __future__ import annotations

import json

import pytest
from _scripts import load_script

from eghn.train.collected import results_dir


@pytest.fixture(scope="module")
def cost():
    return load_script("benchmarks/cell_cost.py")


def test_measure_times_every_epoch_and_extrapolates_to_the_cap(cost):
    timing = cost.measure("default", None, 3, quick=True)
    assert timing["measured_epochs"] == timing["epochs_trained"] == 3
    assert len(timing["load_avg"]) == 2 and all(x >= 0 for x in timing["load_avg"])
    assert len(timing["cpu_s_epochs"]) == len(timing["wall_s_epochs"]) == 3
    assert all(t > 0 for t in timing["cpu_s_epochs"])
    # the median training epoch after the warm-up one, and the evaluation on top of it
    assert timing["cpu_s_per_epoch"] == pytest.approx(timing["cpu_s_epochs"][1], abs=1e-3)
    assert timing["cpu_s_per_eval"] == pytest.approx(max(timing["cpu_s_epochs"][2] - timing["cpu_s_per_epoch"], 0),
                                                     abs=2e-3)
    # the cap is the shipped config's (the [quick] table's epochs are replaced by the measured ones)
    cap, every = timing["epoch_cap"], timing["eval_every"]
    expected = timing["cpu_s_setup"] + cap * timing["cpu_s_per_epoch"] + cap // every * timing["cpu_s_per_eval"]
    expected /= 3600
    assert timing["cpu_hours_per_seed"] == pytest.approx(expected, abs=1e-3)
    assert timing["cpu_hours_3_seeds"] == pytest.approx(3 * timing["cpu_hours_per_seed"], abs=2e-3)


def test_cpu_hours_counts_one_evaluation_per_eval_every(cost):
    timing = {"cpu_s_setup": 36.0, "cpu_s_per_epoch": 2.0, "cpu_s_per_eval": 10.0, "eval_every": 5}
    assert cost.cpu_hours(timing, 100) == pytest.approx((36 + 200 + 20 * 10) / 3600, abs=1e-3)
    assert cost.cpu_hours(timing, 0) == pytest.approx(0.01)


def test_not_run_cells_leave_out_the_configs_with_collected_runs(cost):
    cells = cost.not_run_cells(["table1", "table2"])
    configs = {cell.config for _, cell in cells}
    assert "mocap/run_eghn" not in configs and "table1/eghn_single_3x3" not in configs  # collected
    assert "table1/eghn_multi_10x10" in configs
    everything = cost.not_run_cells(["table1", "table2"], include_run=True)
    assert len(everything) > len(cells) and "mocap/run_eghn" in {c.config for _, c in everything}
    assert cost.typical_epochs("Run (Subject 9)")  # finished Run runs exist, with their epochs


def test_a_probing_protocol_is_timed_without_its_probe_and_charged_for_it(cost):
    # the recipe on M-complex probes up to init_tries x init_epochs epochs (6 x 20) before it trains,
    # each start at most the run's epoch cap (10 in the quick config)
    timing = cost.measure("table1/eghn_single_3x3", "eghn", 2, quick=True)
    assert timing["epochs_trained"] == 2 and len(timing["cpu_s_epochs"]) == 2  # no probe epochs timed
    cap, every = timing["epoch_cap"], timing["eval_every"]
    assert cap == 10 and timing["probe_epochs"] == 6 * 10
    expected = (timing["cpu_s_setup"] + (cap + 60) * timing["cpu_s_per_epoch"]
                + cap // every * timing["cpu_s_per_eval"]) / 3600
    assert timing["cpu_hours_per_seed"] == pytest.approx(expected, abs=1e-3)
    assert cost.measure("default", None, 2, quick=True)["probe_epochs"] == 0  # the default does not probe


def test_cpu_hours_adds_the_probe_epochs(cost):
    timing = {"cpu_s_setup": 0.0, "cpu_s_per_epoch": 2.0, "cpu_s_per_eval": 10.0, "eval_every": 5}
    assert cost.cpu_hours({**timing, "probe_epochs": 120}, 100) == pytest.approx(
        cost.cpu_hours(timing, 100) + 240 / 3600, abs=1e-3)


def test_every_cell_not_run_has_a_committed_cost(cost):
    # the Results page lists the cells without a run from docs/results/cell_costs.json: a cell
    # missing from that file would drop out of the list silently instead of saying what it costs
    costs = json.loads((results_dir() / "cell_costs.json").read_text())
    measured = {entry["config"] for entry in costs["cells"].values()}
    missing = sorted({cell.config for _, cell in cost.not_run_cells(["table1", "table2", "table3", "table4"])}
                     - measured)
    assert not missing, f"cells without a run and without a measured cost: {missing}"
