"""The stability battery's bookkeeping (``benchmarks/stability_battery.py``): summary and export."""

from __future__ import annotations

import json

import pytest
from _scripts import load_script


@pytest.fixture(scope="module")
def battery():
    return load_script("benchmarks/stability_battery.py")


def _row(variant, seed, status="ok", test=0.2, occupancy=1.0, saturation=0.0, clusters="[4, 2]"):
    return {"group": "default", "config": "default", "variant": variant, "depth": 2, "seed": seed,
            "overrides": [f"model.clusters={clusters}"], "status": status, "test": test if status == "ok" else None,
            "spikes": 0, "collapses": int(occupancy < 1), "history": [
                {"epoch": 5.0, "val_mse": 0.3, "occupancy": 1.0, "saturation": 0.0},
                {"epoch": 10.0, "val_mse": 0.25, "occupancy": occupancy, "saturation": saturation}]}


def test_summary_counts_divergences_and_the_state_runs_end_in(battery):
    runs = [_row("x", 1, test=0.2), _row("x", 2, test=0.4, occupancy=0.5, saturation=1.0),
            _row("x", 3, status="diverged")]
    cell = battery.summarise(runs)["default"]["x"]["L2"]
    assert (cell["runs"], cell["diverged"], cell["finished"]) == (3, 1, 2)
    assert cell["test_mean"] == pytest.approx(0.3) and cell["test_std"] == pytest.approx(0.1414, abs=1e-4)
    # an occupancy of one half at K = 2 is one occupied cluster: below K - 1/2
    assert cell["collapsed_at_end"] == 1 and cell["saturated_at_end"] == 1
    near = battery.summarise([_row("x", 1, occupancy=0.8)])["default"]["x"]["L2"]
    assert near["collapsed_at_end"] == 0  # 1.6 of 2 clusters: above K - 1/2


def test_every_default_variant_names_its_stabilisers(battery):
    for name in ("paper_messages", "bounded_egnn", "bounded_pool", "bounded_both", "input_velocity", "occupancy",
                 "input_velocity_occupancy", "log_occupancy"):
        keys = {o.partition("=")[0] for o in battery.VARIANTS[name][1]}
        assert keys == {"model.coord_message", "model.pool_message", "model.velocity_update",
                        "model.occupancy_weight", "model.occupancy_form"}, name


def test_export_writes_one_run_keyed_by_epoch(battery, tmp_path):
    out = tmp_path / "battery.json"
    done = {"runs": [_row("x", 4, occupancy=0.5, saturation=1.0)]}
    assert battery.export(done, out, "default|x|L2|s4", "example") == 0
    record = json.loads((tmp_path / "example.json").read_text())
    assert record["epochs"]["10"]["occupancy"] == 0.5 and "history" not in record
    with pytest.raises(SystemExit, match="no run"):
        battery.export(done, out, "default|x|L2|s9", "example")


def test_configs_select_the_cells_of_one_task(battery):
    every = battery.cells(["mocap", "multi"], [1, 2], None, False)
    run = battery.cells(["mocap", "multi"], [1, 2], None, False, ["mocap/run_eghn"])
    assert len(every) == 12 and len(run) == 4
    assert {c["config"] for c in run} == {"mocap/run_eghn"}
    assert {c["variant"] for c in run} == {"eghn_protocol", "released"}


def test_merge_adds_the_missing_runs_of_split_batteries_once(battery, tmp_path):
    out, a, b = tmp_path / "battery.json", tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"runs": [_row("x", 1), _row("x", 2)], "provenance": [{"command": "a"}]}))
    b.write_text(json.dumps({"runs": [_row("x", 2), _row("x", 3, status="diverged")],
                             "provenance": [{"command": "b"}]}))
    done = {"runs": [_row("x", 1)]}
    assert battery.merge(done, out, [a, b]) == 0
    written = json.loads(out.read_text())
    assert sorted(r["seed"] for r in written["runs"]) == [1, 2, 3]
    cell = written["summary"]["default"]["x"]["L2"]
    assert (cell["runs"], cell["diverged"]) == (3, 1)
    assert [p["command"] for p in written["provenance"]] == ["a", "b"]


def test_the_two_scale_depths_have_about_the_same_parameter_count(battery):
    import types

    from eghn.train.config import load_config
    from eghn.train.loop import build_model

    cells = battery.cells(["twoscale"], [1], None, False)
    assert [c["depth"] for c in cells] == [1, 2]
    counts = []
    for c in cells:
        config = load_config("default", c["overrides"])
        model = build_model(config, types.SimpleNamespace(node_dim=1, edge_dim=3, local_edge_dim=3))
        counts.append(sum(p.numel() for p in model.parameters()))
    assert abs(counts[1] - counts[0]) / counts[0] < 0.02
