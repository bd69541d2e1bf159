"""The stability battery: divergences, spikes and pooling collapses over seeds, depths and tasks.

Every cell is one ``eghn train`` run (one thread, one run at a time) whose outcome is read
back from its run directory:

* ``status``: ``ok``, or ``diverged`` with the epoch (the trainer's ``TrainingDiverged``);
* ``test``: the test MSE at the best validation epoch (finished runs);
* ``spikes`` and ``collapses``: the counts of ``result.json["stability"]``
  (:mod:`eghn.train.stability`); for a diverged run, the events logged before it stopped.

Groups (``--groups``, default all):

* ``default``: the default task (``eghn train default``, M-complex (3,3), 60 epochs) at
  L = 1, 2, 3 (``model.clusters`` = [3], [4, 2], [6, 3, 2]), seeds 1-5, with every stabiliser
  named (:data:`VARIANTS`): the paper's messages (``paper_messages``), bounded EGNN and E-Pool
  messages (``bounded_both``, eghn 0.2.0's recipe), plus the input velocity
  (``input_velocity``), the occupancy term (``occupancy``) or both (``input_velocity_occupancy``,
  the recipe since 0.3.0), ``log_occupancy`` (that recipe with the occupancy hinge taken on
  the log of the score mass, ``model.occupancy_form = "log"``), and single stabilisers
  (``bounded_egnn``, ``bounded_pool``);
  ``eghn_log_occupancy`` is eghn's protocol with the log-space occupancy hinge;
  ``eghn_adam_eps`` is eghn's protocol with Adam's epsilon raised to 1e-6 (the candidate against
  the spike traced on the Stability page), ``shipped_adam_eps`` the default config with it;
  ``shipped`` is the default config as it ships;
* ``mocap``: Run and Walk (``mocap/run_eghn``, ``mocap/walk_eghn``), 200 epochs, seeds 1-5,
  protocols ``eghn`` and ``released``;
* ``multi``: M-complex (3,3) multiple systems (``table1/eghn_multi_3x3``), 200 epochs, seeds
  1-5, protocols ``eghn`` and ``released``;
* ``twoscale``: does depth pay on a system with structure at two scales? The default task on
  M-complex (5,5) (five complexes of about five particles, ``data.n_complex = 5``,
  ``data.avg_size = 5``), eghn's recipe, at L = 1 (``clusters = [5]``, width 64) and L = 2
  (``clusters = [5, 2]``, width 45): the two have about the same parameter count
  (:data:`TWO_SCALE`).

Results are appended to a JSON file (default ``docs/results/stability/battery.json``) as
each run ends, so an interrupted battery continues where it stopped; cells already recorded
are skipped. ``--quick`` runs one seed of the default task for 3 epochs into a scratch file.
Needs ``EGHN_DATA_DIR`` for the motion-capture groups::

    OMP_NUM_THREADS=1 python benchmarks/stability_battery.py [--groups default] [--seeds 1 2 3]
        [--variants eghn paper_messages] [--configs mocap/run_eghn] [--out FILE] [--work DIR] [--quick]

The full battery is about 30 default-task runs of a minute and 30 runs of 200 epochs on
motion capture and M-complex (hours on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "results" / "stability" / "battery.json"

#: L -> model.clusters of the default task
DEPTHS = {1: "[3]", 2: "[4, 2]", 3: "[6, 3, 2]"}

#: L -> (model.clusters, model.hidden) of the two-scale group: 253,073 and 254,236 parameters
TWO_SCALE = {1: ("[5]", 64), 2: ("[5, 2]", 45)}

#: the metrics.csv columns kept in the result file, per evaluation
HISTORY_KEYS = ("epoch", "train_loss", "train_mse", "val_mse", "spikes", "collapses", "occupancy", "saturation")

#: the default task's settings that every variant states explicitly, so that a variant means the
#: same runs whatever the shipped recipe is at the time
_PAPER_FORM = ["model.velocity_update=true", "model.occupancy_weight=0.0", "model.occupancy_form=mass"]

#: variant -> (protocol or None, overrides). The default task's variants name every stabiliser
#: (bounded EGNN messages, bounded E-Pool messages, input velocity, occupancy term);
#: ``bounded_both`` is the recipe of eghn 0.2.0, ``input_velocity_occupancy`` that of 0.3.0 and 0.4.0,
#: ``log_occupancy`` that of the default config since 0.5.0.
#: Rows recorded before a variant was made explicit keep the overrides they ran with (the
#: shipped default config supplied the rest: both bounded messages, the paper's velocity
#: channel, no occupancy term).
VARIANTS: dict[str, tuple[str | None, list[str]]] = {
    "paper_messages": (None, ["model.coord_message=paper", "model.pool_message=paper", *_PAPER_FORM]),
    "bounded_egnn": (None, ["model.coord_message=bounded", "model.pool_message=paper", *_PAPER_FORM]),
    "bounded_pool": (None, ["model.coord_message=paper", "model.pool_message=bounded", *_PAPER_FORM]),
    "bounded_both": (None, ["model.coord_message=bounded", "model.pool_message=bounded", *_PAPER_FORM]),
    "input_velocity": (None, ["model.coord_message=bounded", "model.pool_message=bounded",
                              "model.velocity_update=false", "model.occupancy_weight=0.0",
                              "model.occupancy_form=mass"]),
    "occupancy": (None, ["model.coord_message=bounded", "model.pool_message=bounded",
                         "model.velocity_update=true", "model.occupancy_weight=1.0", "model.occupancy_form=mass"]),
    "input_velocity_occupancy": (None, ["model.coord_message=bounded", "model.pool_message=bounded",
                                        "model.velocity_update=false", "model.occupancy_weight=1.0",
                                        "model.occupancy_form=mass"]),
    "log_occupancy": (None, ["model.coord_message=bounded", "model.pool_message=bounded",
                             "model.velocity_update=false", "model.occupancy_weight=1.0",
                             "model.occupancy_form=log"]),
    "shipped": (None, []),
    "shipped_adam_eps": (None, ["train.adam_eps=1e-6"]),
    "two_scale_5x5": (None, ["model.coord_message=bounded", "model.pool_message=bounded",
                             "model.velocity_update=false", "model.occupancy_weight=1.0",
                             "model.occupancy_form=mass", "data.n_complex=5", "data.avg_size=5"]),
    "eghn_protocol": ("eghn", []),
    "eghn_adam_eps": ("eghn", ["train.adam_eps=1e-6"]),
    "eghn_log_occupancy": ("eghn", ["model.occupancy_form=log"]),
    "released": ("released", []),
}


def cells(groups: list[str], seeds: list[int], variants: list[str] | None, quick: bool,
          configs: list[str] | None = None) -> list[dict[str, Any]]:
    """Every run of the battery, as ``{group, config, variant, depth, seed, overrides}``
    (only those of ``configs`` when given)."""
    out = []
    if "default" in groups:
        for var in variants or ["paper_messages", "bounded_both", "input_velocity", "occupancy",
                                "input_velocity_occupancy"]:
            for depth, clusters in DEPTHS.items():
                for seed in seeds:
                    extra = ["train.epochs=3"] if quick else []
                    out.append(dict(group="default", config="default", variant=var, depth=depth, seed=seed,
                                    overrides=[f"model.clusters={clusters}", *VARIANTS[var][1], *extra]))
    if "twoscale" in groups:
        for depth, (clusters, hidden) in TWO_SCALE.items():
            for seed in seeds:
                out.append(dict(group="twoscale", config="default", variant="two_scale_5x5", depth=depth, seed=seed,
                                overrides=[f"model.clusters={clusters}", f"model.hidden={hidden}",
                                           *VARIANTS["two_scale_5x5"][1]]))
    for group, group_configs in (("mocap", ["mocap/run_eghn", "mocap/walk_eghn"]),
                                 ("multi", ["table1/eghn_multi_3x3"])):
        if group not in groups:
            continue
        for config in group_configs:
            if configs is not None and config not in configs:
                continue
            for var in variants or ["eghn_protocol", "released"]:
                for seed in seeds:
                    out.append(dict(group=group, config=config, variant=var, depth=1, seed=seed,
                                    overrides=["train.epochs=200", *VARIANTS[var][1]]))
    return out


def key(cell: dict[str, Any]) -> str:
    return f"{cell['config']}|{cell['variant']}|L{cell['depth']}|s{cell['seed']}"


def run_cell(cell: dict[str, Any], work: Path) -> dict[str, Any]:
    """Train one cell in a fresh run directory under ``work`` and read its outcome."""
    run_dir = work / key(cell).replace("/", "_").replace("|", "-")
    if run_dir.exists():
        for f in run_dir.iterdir():
            if f.is_file():
                f.unlink()
    protocol = VARIANTS[cell["variant"]][0]
    cmd = [sys.executable, "-c", "from eghn.cli import main; raise SystemExit(main())", "train", cell["config"],
           "--seed", str(cell["seed"]), "--run-dir", str(run_dir), "--no-progress",
           "--set", "train.threads=1"]
    if protocol is not None:
        cmd += ["--set", f"protocol={protocol}"]
    for o in cell["overrides"]:
        cmd += ["--set", o]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    row: dict[str, Any] = {k: cell[k] for k in ("group", "config", "variant", "depth", "seed", "overrides")}
    result = run_dir / "result.json"
    log = (run_dir / "train.log").read_text() if (run_dir / "train.log").exists() else proc.stdout
    if result.exists():
        res = json.loads(result.read_text())
        stab = res.get("stability", {})
        row.update(status="ok", test=res["test"], best_epoch=res["best_epoch"], epochs=res["epochs"],
                   wall_s=res["wall_s"],
                   spikes=stab.get("spikes"), collapses=stab.get("collapses"))
    elif "training diverged" in log:
        line = next(ln for ln in log.splitlines() if "training diverged" in ln)
        epoch = int(line.split(" at epoch ")[-1].split(";")[0].split()[0])
        row.update(status="diverged", epoch=epoch, test=None)
        row["spikes"] = log.count("stability: spike")
        row["collapses"] = log.count("stability: collapse")
    else:
        row.update(status="error", error=(proc.stderr or proc.stdout)[-500:])
    metrics = run_dir / "metrics.csv"
    if metrics.exists():
        with open(metrics) as f:
            row["history"] = [{k: float(v) if v not in ("", None) else None for k, v in r.items()
                               if k in HISTORY_KEYS}
                              for r in csv.DictReader(f)]
    return row


def _clusters(row: dict[str, Any]) -> list[int]:
    """The cluster counts of a battery row (from its ``model.clusters`` override, else the
    shipped configs' single level)."""
    for o in row.get("overrides", []):
        if o.startswith("model.clusters="):
            return [int(k) for k in json.loads(o.partition("=")[2])]
    return [3] if row.get("config") == "default" else [5]


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """``summary[config][variant]["L<depth>"]``: runs, divergences, spikes, collapses, the runs
    that ended with saturated scores or a collapsed level, and the mean, standard deviation,
    min and max test MSE of the finished runs."""
    out: dict[str, Any] = {}
    for r in runs:
        cell = out.setdefault(r["config"], {}).setdefault(r["variant"], {}).setdefault(
            f"L{r['depth']}", {"runs": 0, "diverged": 0, "spikes": 0, "collapses": 0, "tests": [], "seeds": [],
                               "saturated_at_end": 0, "collapsed_at_end": 0})
        cell["runs"] += 1
        last = (r.get("history") or [{}])[-1]
        # the state the run ended in: scores saturated (largest score above 0.999 in almost every
        # row) and a level left with fewer occupied clusters than K - 1/2 (occupancy is per K)
        cell["saturated_at_end"] += int((last.get("saturation") or 0.0) >= 0.99)
        k = min(_clusters(r))
        cell["collapsed_at_end"] += int(last.get("occupancy") is not None and last["occupancy"] * k < k - 0.5)
        cell["seeds"].append(r["seed"])
        cell["diverged"] += int(r["status"] == "diverged")
        cell["spikes"] += int(r.get("spikes") or 0)
        cell["collapses"] += int(r.get("collapses") or 0)
        if r.get("test") is not None:
            cell["tests"].append(r["test"])
    for variants in out.values():
        for depths in variants.values():
            for cell in depths.values():
                t = cell.pop("tests")
                cell["finished"] = len(t)
                cell["test_mean"] = sum(t) / len(t) if t else None
                cell["test_std"] = statistics.stdev(t) if len(t) > 1 else None
                cell["test_min"], cell["test_max"] = (min(t), max(t)) if t else (None, None)
    return out


def export(done: dict[str, Any], out: Path, run_key: str, name: str) -> int:
    """Write one recorded run of ``done`` (``out``'s content) to ``<out's folder>/<name>.json``:
    its row, and its evaluations under ``"epochs"`` keyed by epoch (so that a page can cite
    ``name:epochs.15.occupancy``)."""
    row = next((r for r in done["runs"] if key(r) == run_key), None)
    if row is None:
        raise SystemExit(f"no run {run_key!r} in {out}")
    record = {k: v for k, v in row.items() if k != "history"}
    record["epochs"] = {str(int(h["epoch"])): h for h in row.get("history", [])}
    record["source"] = f"{out.name}, run {run_key} (python benchmarks/stability_battery.py --export)"
    target = out.parent / f"{name}.json"
    target.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {target}")
    return 0


def merge(done: dict[str, Any], out: Path, files: list[Path]) -> int:
    """Add to ``done`` (``out``'s content) the runs of ``files`` it lacks, with their provenance
    entries, and rewrite ``out`` with the summary recomputed."""
    have = {key(r) for r in done["runs"]}
    added = 0
    for f in files:
        other = json.loads(f.read_text())
        new = [r for r in other["runs"] if key(r) not in have]
        if new:
            done["runs"].extend(new)
            have.update(key(r) for r in new)
            done.setdefault("provenance", []).extend(other.get("provenance", []))
            added += len(new)
    done["summary"] = summarise(done["runs"])
    out.write_text(json.dumps(done, indent=1) + "\n")
    print(f"merged {added} runs into {out}")
    return 0


def provenance(argv: list[str] | None) -> dict[str, Any]:
    """The commit, the machine (a seed repeats bit for bit only on the same kind: see
    :mod:`eghn.train.machine`) and the command of a battery invocation."""
    import platform

    import torch

    from eghn.train.machine import machine_record
    from eghn.train.runs import source_commit

    commit = source_commit()
    record = machine_record()
    return {"commit": commit, "torch": torch.__version__, "machine": platform.machine(),
            "cpu": record["cpu"], "cpu_capability": record["cpu_capability"],
            "threads": 1, "command": "python benchmarks/stability_battery.py "
            + " ".join(sys.argv[1:] if argv is None else argv)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--groups", nargs="+", default=["default", "mocap", "multi"],
                   choices=["default", "mocap", "multi", "twoscale"])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=None)
    p.add_argument("--configs", nargs="+", default=None,
                   help="only the cells of these configs (e.g. mocap/run_eghn), to split a battery over processes")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--work", type=Path, default=Path("stability_runs"), help="folder of the run directories")
    p.add_argument("--quick", action="store_true", help="one seed of the default task, 3 epochs")
    p.add_argument("--export", nargs=2, metavar=("KEY", "NAME"), default=None,
                   help="write the recorded run KEY (config|variant|L<depth>|s<seed>) of the result file to "
                        "NAME.json beside it, with its evaluations keyed by epoch, and exit")
    p.add_argument("--merge", nargs="+", type=Path, default=None, metavar="FILE",
                   help="add the runs of these result files (batteries split over processes with --out) "
                        "that the output lacks, re-summarise, and exit")
    args = p.parse_args(argv)
    if args.quick:
        args.groups, args.seeds = ["default"], args.seeds[:1]
    out = args.out or (Path(args.work) / "battery_quick.json" if args.quick else DEFAULT_OUT)
    done = json.loads(out.read_text()) if out.exists() else {"runs": []}
    if args.export:
        return export(done, out, *args.export)
    if args.merge:
        return merge(done, out, args.merge)
    have = {key(r) for r in done["runs"]}
    todo = [c for c in cells(args.groups, args.seeds, args.variants, args.quick, args.configs) if key(c) not in have]
    args.work.mkdir(parents=True, exist_ok=True)
    for n, cell in enumerate(todo, 1):
        t = time.perf_counter()
        row = run_cell(cell, args.work)
        done["runs"].append(row)
        done["summary"] = summarise(done["runs"])
        if n == 1:  # one entry per invocation of the script
            done.setdefault("provenance", []).append(provenance(argv))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(done, indent=1) + "\n")
        print(f"[{n}/{len(todo)}] {key(cell)}: {row['status']} test={row.get('test')} "
              f"epoch={row.get('epoch', '')} spikes={row.get('spikes')} collapses={row.get('collapses')} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
