"""Rendering of reproduced tables beside the paper's numbers."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

from eghn.train.report import ResultTable, plot_results, run_histories
from eghn.train.reproduce import Cell, CellResult


def test_table_and_figure(tmp_path):
    ok = CellResult(Cell("EGHN", "Run (Subject 9)", "mocap/run_eghn"), values=[0.30, 0.20])
    failed = CellResult(Cell("TFN", "Run (Subject 9)", "mocap/run_tfn"), status="out of memory")
    seed = tmp_path / "table2-released" / "mocap__run_eghn" / "seed1"  # <table>-<protocol>
    seed.mkdir(parents=True)
    history = [{"epoch": 5, "val_mse": 0.9}, {"epoch": 10, "val_mse": 0.4}]
    (seed / "result.json").write_text(json.dumps({"history": history, "test": 0.3}))

    table = ResultTable("table2", [ok, failed], "FULL mode")
    text = repr(table)
    # scale 1e-2: 0.25 +- 0.05 is shown as 25.00 +- 5.00, beside the published 25.9
    assert "EGHN | Run (Subject 9) | 25.9 | 25.00 ± 5.00 (2 seeds)" in text
    assert "TFN | Run (Subject 9) | 56.6 | out of memory" in text
    assert "<table" in table._repr_html_() and "FULL mode" in table._repr_html_()

    assert list(run_histories(tmp_path, "table2", ok, quick=False)) == [history]
    fig = plot_results("table2", [ok, failed], tmp_path, quick=False)
    curves = fig.axes[0].get_lines()
    assert len(curves) == 1 and list(curves[0].get_ydata()) == [90.0, 40.0]


def test_gallery_run_modes(tmp_path, monkeypatch):
    import torch

    from eghn.train.report import GalleryRun

    threads = torch.get_num_threads()
    monkeypatch.delenv("EGHN_GALLERY", raising=False)
    try:
        fast = GalleryRun.from_env("table1", fast_only=["table1/eghn_single_3x3"], fast_summary="one cell",
                                   overrides=["data.progress=false"], fast_overrides=["train.epochs=2"])
    finally:
        torch.set_num_threads(threads)
    assert not fast.full and fast.seeds == 1 and fast.only == ("table1/eghn_single_3x3",)
    assert fast.overrides == ["data.progress=false", "train.epochs=2"]
    assert fast.mode.startswith("FAST mode") and "one cell" in fast.mode and "NOT comparable" in fast.mode
    assert fast.out.is_dir()
    fast.finish()
    assert not fast.out.exists()

    monkeypatch.setenv("EGHN_GALLERY", "full")
    monkeypatch.setenv("EGHN_REPRODUCE_DIR", str(tmp_path / "runs"))
    full = GalleryRun.from_env("table1", fast_only=["x"], fast_summary="s", overrides=["data.progress=false"],
                               fast_overrides=["train.epochs=2"])
    assert full.full and full.seeds == 3 and full.only == () and full.overrides == ["data.progress=false"]
    assert full.out == tmp_path / "runs" and full.mode.startswith("FULL mode")
    (tmp_path / "runs").mkdir()
    full.finish()  # full runs are kept
    assert (tmp_path / "runs").is_dir()


def test_quick_run_is_never_drawn_beside_the_paper(tmp_path):
    quick = [CellResult(Cell("EGHN", "Run (Subject 9)", "mocap/run_eghn"), values=[108.9]),
             CellResult(Cell("EGHN", "MSE (test-time rotation)", "protein/adk_eghn", {"rotate": True}),
                        values=[0.5])]
    table = ResultTable("table2", quick[:1], "FAST mode", compare=False)
    assert "paper" not in table.header and "25.9" not in repr(table)
    fig = plot_results("table2", quick, tmp_path, quick=True)
    ax = fig.axes[1]
    assert [line.get_label() for line in ax.get_lines() if line.get_label() == "paper"] == []
    assert "not comparable" in ax.get_title() and ax.get_xscale() == "log"  # 1.089 and 0.005 span decades
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[1] == "EGHN, MSE (test-time rotation)"  # the column says it is rotated: said once


def test_show_collected_reads_the_result_files(tmp_path, capsys):
    from pathlib import Path

    from eghn.train.collected import results_dir
    from eghn.train.report import GalleryRun

    run = GalleryRun("table3", False, (), 1, [], Path(tmp_path), "FAST")
    assert run.show_collected(tmp_path / "missing")[0].startswith("no collected runs here")
    if results_dir() is not None:
        lines = GalleryRun("table1", False, (), 1, [], Path(tmp_path), "FAST").show_collected()
        assert lines[0].startswith("test MSE ×10⁻²") and all("paper" in line for line in lines[1:])
        assert any("; finished" in line for line in lines[1:])


def test_status_cells_carry_the_papers_std_and_a_verdict_per_protocol():
    from eghn.train.collected import WITHIN_SHARE, collect
    from eghn.train.reproduce import paper_results

    paper = paper_results()
    runs = {f"{p}_s{s}": {"data": "Run (Subject 9)", "model": "EGHN", "protocol": p, "seed": s,
                          "test_mse": v, "command": f"eghn train mocap/run_eghn --set protocol={p} --seed {s}"}
            for p, s, v in (("released", 1, 0.30), ("released", 2, 0.26), ("eghn", 1, 0.20))}
    cell = next(c for c in collect(paper, {"demo": {"runs": runs}}, tables=["table2"])["table2"]
                if c.row == "EGHN" and c.column == "Run (Subject 9)")
    assert cell.paper_std == paper["table2"]["std"]["EGHN"]["Run (Subject 9)"]
    assert cell.protocols() == ["released", "eghn"]
    released, ours = cell.best("released"), cell.best("eghn")
    assert len(released.runs) == 2 and len(ours.runs) == 1
    scale = paper["table2"]["scale"]
    assert cell.verdict(ours.mean / scale) == "reached"
    assert cell.verdict(released.mean / scale) == "missed"
    edge = cell.paper * (1 + WITHIN_SHARE)  # 5 % is wider than this cell's std
    assert cell.verdict(edge) == "within" and cell.verdict(edge * 1.001) == "missed"
    assert cell.best("paper") is None


def test_an_ablation_run_counts_for_table_4_only():
    """Table 4's ablations on Walk share the column ``Walk (Subject 35)`` with Table 2: a run of a
    ``table4/`` config lands in its Table 4 cell and never in Table 2's EGHN cell."""
    from eghn.train.collected import collect
    from eghn.train.reproduce import paper_results

    paper = paper_results()
    runs = {
        "ablation": {"data": "Walk (Subject 35)", "model": "EMMP -> MPNN (non-equivariant)", "protocol": "eghn",
                     "seed": 1, "test_mse": 0.075,
                     "command": "eghn train table4/walk_emmp_mpnn --set protocol=eghn --seed 1"},
        "k3": {"data": "Walk (Subject 35)", "model": "K=3", "protocol": "eghn", "seed": 1, "test_mse": 0.041,
               "command": "eghn train table4/walk_k3 --set protocol=eghn --seed 1"},
        "table2": {"data": "Walk (Subject 35)", "model": "EGHN", "protocol": "eghn", "seed": 1, "test_mse": 0.047,
                   "command": "eghn train mocap/walk_eghn --set protocol=eghn --seed 1"},
    }
    cells = collect(paper, {"demo": {"runs": runs}}, tables=["table2", "table4"])

    def keys(table, row):
        cell = next(c for c in cells[table] if c.row == row and c.column == "Walk (Subject 35)")
        return sorted(key for group in cell.groups for _, key, _ in group.runs)

    assert keys("table2", "EGHN") == ["table2"]
    assert keys("table4", "EMMP -> MPNN (non-equivariant)") == ["ablation"]
    assert all(key != "k3" for table in cells.values() for cell in table for group in cell.groups
               for _, key, _ in group.runs)  # K=3 has no published value in paper.json


def test_ablations_compare_with_the_full_model_under_the_same_protocol():
    """Table 4's ablations (with or without a value in paper.json) beside Table 2's EGHN runs of
    the same protocol, run as shipped; the verdict needs three seeds on each side."""
    from eghn.train.collected import ablations
    from eghn.train.reproduce import paper_results

    paper = paper_results()
    walk = "Walk (Subject 35)"

    def run(config, model, seed, mse, protocol="eghn", extra=""):
        return {"data": walk, "model": model, "protocol": protocol, "seed": seed, "test_mse": mse,
                "command": f"eghn train {config} --set protocol={protocol} --seed {seed}{extra}"}

    runs = {f"full{s}": run("mocap/walk_eghn", "EGHN", s, v) for s, v in ((1, 0.047), (2, 0.049), (3, 0.047))}
    runs["full_released"] = run("mocap/walk_eghn", "EGHN", 1, 0.030, "released")  # another protocol
    runs["full_changed"] = run("mocap/walk_eghn", "EGHN", 1, 0.020, extra=" --set train.lr=1e-3")  # not as shipped
    runs |= {f"k8_{s}": run("table4/walk_k8", "K=8", s, v) for s, v in ((1, 0.060), (2, 0.052), (3, 0.071))}
    runs |= {f"k3_{s}": run("table4/walk_k3", "K=3", s, v) for s, v in ((1, 0.041), (2, 0.048), (3, 0.046))}
    runs |= {f"mpnn_{s}": run("table4/walk_emmp_mpnn", "EMMP -> MPNN (non-equivariant)", s, v)
             for s, v in ((1, 0.075), (2, 0.065))}
    runs["egnn_released"] = run("table4/walk_emmp_egnn", "EMMP -> EGNN", 1, 0.09, "released")

    found = {a.cell.row: a for a in ablations(paper, {"demo": {"runs": runs}})}
    assert set(found) == {"K=8", "K=3", "EMMP -> MPNN (non-equivariant)"}  # no eghn-protocol run of EMMP -> EGNN
    assert all(a.cell.column == walk for a in found.values())
    reference = found["K=8"].reference
    assert sorted(key for _, key, _ in reference.runs) == ["full1", "full2", "full3"]
    assert found["K=8"].separation == "above" and found["K=3"].separation == "overlap"
    assert found["EMMP -> MPNN (non-equivariant)"].separation == "too few seeds"
    assert found["K=3"].cell.paper is None and found["EMMP -> MPNN (non-equivariant)"].cell.paper == 19.7
    assert abs(found["K=8"].difference - (0.061 - 0.047666666)) < 1e-6
    below = {f"k3b_{s}": run("table4/walk_k3", "K=3", s, v) for s, v in ((1, 0.041), (2, 0.043), (3, 0.044))}
    lower = {a.cell.row: a for a in ablations(paper, {"demo": {"runs": {k: v for k, v in runs.items()
                                                                         if not k.startswith("k3")} | below}})}
    assert lower["K=3"].separation == "below"
    assert ablations(paper, {"demo": {"runs": {k: v for k, v in runs.items() if k.startswith("k8")}}})[0].separation \
        == "no full model"


def test_show_collected_lists_the_ablations_beside_the_full_model(tmp_path):
    """Table 4's gallery lines: runs of rows without a stored value ("not stored") and each
    ablation's difference from the full model under the same protocol."""
    import json
    from pathlib import Path

    import matplotlib.pyplot as plt

    from eghn.train.collected import STATUS_SOURCES
    from eghn.train.report import GalleryRun

    walk = "Walk (Subject 35)"

    def run(config, model, seed, mse):
        return {"data": walk, "model": model, "protocol": "eghn", "seed": seed, "test_mse": mse,
                "command": f"eghn train {config} --set protocol=eghn --seed {seed}"}

    runs = {f"full{s}": run("mocap/walk_eghn", "EGHN", s, v) for s, v in ((1, 0.047), (2, 0.049), (3, 0.047))}
    runs |= {f"k8_{s}": run("table4/walk_k8", "K=8", s, v) for s, v in ((1, 0.060), (2, 0.052), (3, 0.071))}
    for name in STATUS_SOURCES:
        (tmp_path / f"{name}.json").write_text(json.dumps({"runs": runs if name == "table4_runs" else {}}))
    lines = GalleryRun("table4", False, (), 1, [], Path(tmp_path), "FAST").show_collected(tmp_path)
    plt.close("all")
    assert "K=8 · Walk (Subject 35) (eghn): 6.10 ± 0.95 (paper not stored); seeds 1, 2, 3; finished" in lines
    assert ("K=8 · Walk (Subject 35) minus the full model (eghn, 3 seeds): +1.33; "
            "every seed above the full model's") in lines
    assert not any(line.startswith("EGHN ·") for line in lines)  # Table 2's cell, not one of Table 4's
