"""The GPU suite's smoke mode (``benchmarks/gpu_suite.py --smoke``): every part, tiny, on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"
PARTS = ("pytest_gpu", "scale", "side_by_side", "time_to_accuracy", "gallery_mcomplex")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    env.pop("EGHN_AUTHORS_DIR", None)
    proc = subprocess.run(["bash", str(SUITE), "--smoke", "--out", str(out)], capture_output=True, text=True,
                          env=env, timeout=120)
    return proc, out


def test_smoke_writes_one_file_per_part(smoke):
    proc, out = smoke
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for part in PARTS:
        rec = json.loads((out / f"{part}.json").read_text())
        assert rec["part"] == part
        assert rec["smoke"] is True
        for key in ("eghn", "commit", "torch", "device", "date"):
            assert rec[key], key
        assert rec["device"] == "cpu"
        assert rec["status"] in ("ok", "skipped"), rec
        if rec["status"] == "skipped":
            assert rec["reason"]
    suite = json.loads((out / "suite.json").read_text())
    assert set(suite["parts"]) == set(PARTS)
    assert not list((ROOT / "benchmarks" / "results" / "gpu").glob("*.json")) or all(
        not json.loads(p.read_text()).get("smoke") for p in (ROOT / "benchmarks" / "results" / "gpu").glob("*.json"))


def test_smoke_parts(smoke):
    _, out = smoke
    side = json.loads((out / "side_by_side.json").read_text())
    assert side["status"] == "skipped" and side["reason"] == "authors' code not available"
    scale = json.loads((out / "scale.json").read_text())
    assert [r["status"] for r in scale["runs"]] == ["ok", "ok"]
    assert all(r["ms_forward_backward"] > 0 for r in scale["runs"])
    tta = json.loads((out / "time_to_accuracy.json").read_text())
    if tta["status"] == "ok":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import gpu_suite

        assert tta["target_val_mse"] == gpu_suite.paper_run_target()
        assert set(tta["runs"]) == {"eghn", "released"}
        assert all(r["epochs_run"] == 1 for r in tta["runs"].values())
    else:
        assert "motion-capture data not available" in tta["reason"]
    tests = json.loads((out / "pytest_gpu.json").read_text())["tests"]
    assert tests["failed"] == tests["errors"] == 0


def test_budget_skips_parts(tmp_path):
    """A budget too small for a part records the part as skipped for the budget."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_suite

    gpu_suite.main(["--smoke", "--out", str(tmp_path), "--budget", "0", "--parts", "scale", "side_by_side"])
    rec = json.loads((tmp_path / "scale.json").read_text())
    assert rec["status"] == "skipped" and rec["reason"] == "budget"


def test_benchmarks_page_shows_smoke_files_as_not_measured(smoke, tmp_path):
    """The Benchmarks page renders a part from its file only when it was measured on a GPU."""
    pytest.importorskip("sphinx")
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    import eghn_bench

    _, out = smoke
    assert all(data is None for _, _, data in eghn_bench.gpu_suite_rows(out))
    assert all(data is None for _, _, data in eghn_bench.gpu_suite_rows(tmp_path))  # no files at all
    rec = json.loads((out / "scale.json").read_text())
    (tmp_path / "scale.json").write_text(json.dumps(dict(rec, smoke=False, device="NVIDIA H200")))
    rows = {part: data for part, _, data in eghn_bench.gpu_suite_rows(tmp_path)}
    assert rows["scale"] is not None and rows["pytest_gpu"] is None
    assert "nodes" in eghn_bench._gpu_result("scale", rows["scale"]).astext()


def test_gallery_fits_are_read_off_the_tutorial_output():
    """How far a tutorial that ran out of time got: its finished trainings, from what it printed."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_suite

    out = ("simulated 2000 + 500 trajectories in 9.7 s\n3000 steps in 147.0 s; test MSE 0.19\n"
           "horizon 2\n150 steps in 3.5 s\n")
    assert gpu_suite.gallery_fits(out) == [dict(steps=3000, wall_s=147.0), dict(steps=150, wall_s=3.5)]
    assert gpu_suite.gallery_fits("simulated 20 trajectories in 1.0 s\n") == []


def test_the_committed_gpu_results_render():
    """The suite's committed result files (a real GPU run) render on the Benchmarks page, every part."""
    pytest.importorskip("sphinx")
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    import eghn_bench

    folder = ROOT / "benchmarks" / "results" / "gpu"
    if not (folder / "suite.json").is_file():
        pytest.skip("no GPU results committed")
    for part, _, data in eghn_bench.gpu_suite_rows(folder):
        assert data is not None, part
        text = eghn_bench._gpu_result(part, data).astext()
        assert text and (data["status"] == "ok" or data["status"] in text), (part, text)
