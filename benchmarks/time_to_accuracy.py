"""Time to accuracy: how long eghn and the authors' code take to reach the same accuracy.

Three trainings start together and run concurrently, one thread each, so that a shared
machine slows them alike:

* ``eghn_recipe``: ``eghn train mocap/run_eghn`` (task ``run``) or ``table1/eghn_single_3x3``
  (task ``single_3x3``) under eghn's recipe (``protocol = "eghn"``);
* ``eghn_released``: the authors' architecture (:meth:`eghn.models.EGHN.released`:
  ``mocap/run_eghn_released``, or the (3,3) config with the released forms) under the
  ``released`` protocol;
* ``authors``: the authors' own script, unmodified, through ``benchmarks/authors_run.py``
  (their checkout outside this repository).

Each runs to its early stop (or its epoch cap). ``analyse`` then reads the three run
directories and gives, per run, the wall time and epoch at which it first reaches:

* ``authors_best_val``: the best validation MSE of the authors' run;
* ``paper_test``: the paper's test MSE for the task (``eghn/results/paper.json``), measured on
  the test split at the best-validation checkpoint so far (the checkpoint a user would keep),

and the ratio of the authors' time to each eghn run's time. Wall times count from the start
of each run's training loop (``metrics.csv``'s ``wall_s``) plus, for a run that first probed
its starts (``train.init_tries``, the recipe on M-complex), the probe's wall time, which the
run spent before its first epoch (``probe``: that time and the probed epochs, from
``result.json["init"]``); they are the times of this concurrent run on the machine named in the
result file, not of a run alone.

Usage::

    python benchmarks/time_to_accuracy.py launch AUTHORS_DIR --work ../scratch/tta_run [--seed 1]
    python benchmarks/time_to_accuracy.py analyse ../scratch/tta_run \\
        --out benchmarks/results/time_to_accuracy_run.json

``launch`` refuses a work folder that already holds runs (the authors' script cannot resume);
the eghn runs of an interrupted launch can be continued with ``eghn train --resume``, the
authors' run must start over, so a whole launch starts over in a fresh folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: task -> (paper table, row, column; the eghn configs; the authors' harness task)
TASKS: dict[str, dict[str, Any]] = {
    "run": {"paper": ("table2", "EGHN", "Run (Subject 9)"),
            "eghn_recipe": ["mocap/run_eghn", "--set", 'protocol="eghn"'],
            "eghn_released": ["mocap/run_eghn_released", "--set", 'protocol="released"'],
            "authors": "run"},
    # M-complex (3,3) single: eghn's table1 config; the released architecture is that config with
    # the released forms (as the collected run eghn_released_single_3x3)
    "single_3x3": {"paper": ("table1", "EGHN", "single (3,3)"),
                   "eghn_recipe": ["table1/eghn_single_3x3", "--set", 'protocol="eghn"'],
                   "eghn_released": ["table1/eghn_single_3x3", "--set", 'protocol="released"',
                                     *[x for o in ("dec_layers=3", "egnn_form=released", "pool_form=released",
                                                   "cluster_graph=released", "unpool_form=released",
                                                   "conn_loss=released") for x in ("--set", f"model.{o}")]],
                   "authors": "single_3x3"},
}
RUNS = ("eghn_recipe", "eghn_released", "authors")


def commands(task: str, authors_dir: Path, work: Path, seed: int,
             epochs: int | None = None) -> dict[str, list[str]]:
    """The command line of each of the three runs (``epochs`` caps all three, for a smoke test)."""
    spec = TASKS[task]
    out = {}
    for name in ("eghn_recipe", "eghn_released"):
        out[name] = [sys.executable, "-m", "eghn.cli", "train", *spec[name], "--seed", str(seed),
                     "--set", "train.threads=1", "--run-dir", str(work / name), "--no-progress"]
        if epochs is not None:
            out[name] += ["--set", f"train.epochs={epochs}"]
    out["authors"] = [sys.executable, str(ROOT / "benchmarks" / "authors_run.py"), str(authors_dir),
                      "--task", spec["authors"], "--seed", str(seed), "--run-dir", str(work / "authors"),
                      "--threads", "1"]
    if epochs is not None:
        out["authors"] += ["--epochs", str(epochs)]
    return out


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _autogroup(pid: int) -> str | None:
    """The autogroup of a process and of the children it started (``/proc/PID/autogroup``)."""
    text = _read(f"/proc/{pid}/autogroup")
    return text.split()[0] if text else None


def launch(args: argparse.Namespace) -> int:
    work: Path = args.work
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"{work} is not empty: a launch starts in a fresh folder")
    work.mkdir(parents=True, exist_ok=True)
    cmds = commands(args.task, args.authors_dir.resolve(), work.resolve(), args.seed, args.epochs)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    sys.path.insert(0, str(ROOT))  # this checkout's eghn, as the launched runs use
    from eghn.train.runs import source_commit

    commit = source_commit()
    (work / "launch.json").write_text(json.dumps(
        {"task": args.task, "seed": args.seed, "epochs": args.epochs, "commit": commit,
         "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
         "commands": {k: " ".join(v) for k, v in cmds.items()}}, indent=2) + "\n")
    procs = {}
    for name, cmd in cmds.items():
        with open(work / f"{name}.out", "w") as log:
            procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    # the three share one scheduling group: with the kernel's autogroup scheduling, a process in a
    # session of its own would get a whole share of the CPU beside the others (recorded, and checked)
    time.sleep(5)
    groups = {name: _autogroup(p.pid) for name, p in procs.items()}
    info = json.loads((work / "launch.json").read_text())
    info.update(autogroup_enabled=_read("/proc/sys/kernel/sched_autogroup_enabled"), autogroups=groups)
    (work / "launch.json").write_text(json.dumps(info, indent=2) + "\n")
    if len({g for g in groups.values() if g is not None}) > 1:
        print(f"warning: the runs are in different scheduling groups {groups}; their times do not compare")
    codes = {name: p.wait() for name, p in procs.items()}
    print("exit codes:", codes)
    return 0 if all(c == 0 for c in codes.values()) else 1


def probe(run_dir: Path) -> dict[str, float] | None:
    """The start probe of a run that chose its initialisation (``train.init_tries``): its wall
    time and the epochs it trained over all probed starts, from ``result.json["init"]`` (or
    ``last.pt`` while the run is unfinished); ``None`` for a run that did not probe."""
    result = run_dir / "result.json"
    if result.is_file():
        init = json.loads(result.read_text()).get("init")
    elif (run_dir / "last.pt").is_file():
        from eghn.train.checkpoint import load_checkpoint

        init = load_checkpoint(run_dir / "last.pt").get("init")
    else:
        init = None
    if not init:
        return None
    return {"wall_s": float(init["wall_s"]), "epochs": sum(int(t["epochs"]) for t in init["trials"])}


def read_rows(run_dir: Path, start: dict[str, float] | None = None) -> list[dict[str, float]]:
    """The evaluations of ``metrics.csv``, with the probe's wall time added to every ``wall_s``:
    the time since the run started, not since its first epoch. ``start`` is the run's
    :func:`probe`, read from ``run_dir`` when not given."""
    before = (start or probe(run_dir) or {"wall_s": 0.0})["wall_s"]
    with open(run_dir / "metrics.csv") as f:
        rows = [{k: float(v) for k, v in r.items() if k in ("epoch", "wall_s", "val_mse", "test_mse")}
                for r in csv.DictReader(f)]
    for r in rows:
        r["wall_s"] += before
    return rows


def first_reaching(rows: list[dict[str, float]], *, val: float | None = None,
                   test: float | None = None) -> dict[str, float] | None:
    """The first evaluation whose validation MSE is at most ``val``, or at which the test MSE
    of the best-validation checkpoint so far is at most ``test``; ``None`` if none."""
    best: dict[str, float] | None = None
    for r in rows:
        if best is None or r["val_mse"] < best["val_mse"]:
            best = r
        if val is not None and r["val_mse"] <= val:
            return {"epoch": int(r["epoch"]), "wall_s": r["wall_s"], "val_mse": r["val_mse"]}
        if test is not None and best["test_mse"] <= test:
            return {"epoch": int(r["epoch"]), "wall_s": r["wall_s"], "test_mse_at_best_val": best["test_mse"],
                    "best_val_epoch": int(best["epoch"])}
    return None


def summarise_run(run_dir: Path) -> dict[str, Any]:
    start = probe(run_dir)
    rows = read_rows(run_dir, start)
    if not rows:
        raise SystemExit(f"{run_dir} has no evaluations")
    best = min(rows, key=lambda r: (r["val_mse"], r["epoch"]))
    finished = (run_dir / "result.json").is_file()
    out = {"run_dir": run_dir.name, "finished": finished, "epochs": int(rows[-1]["epoch"]),
           "wall_s": rows[-1]["wall_s"], "best_epoch": int(best["epoch"]), "best_val": best["val_mse"],
           "test_at_best_val": best["test_mse"], "s_per_epoch": rows[-1]["wall_s"] / rows[-1]["epoch"]}
    if start is not None:
        out["probe"] = start
    if finished:
        res = json.loads((run_dir / "result.json").read_text())
        out["stop_reason"] = res.get("stop_reason") or ("early stop" if res.get("stopped_early") else "epoch cap")
    return out


def analyse(args: argparse.Namespace) -> int:
    work: Path = args.work
    launch_info = json.loads((work / "launch.json").read_text())
    spec = TASKS[launch_info["task"]]
    paper = json.loads((ROOT / "eghn" / "results" / "paper.json").read_text())
    table, row, column = spec["paper"]
    paper_test = paper[table]["rows"][row][column] * paper[table].get("scale", 1.0)
    runs = {name: summarise_run(work / name) for name in RUNS if (work / name / "metrics.csv").is_file()}
    if "authors" not in runs:
        raise SystemExit(f"{work} has no authors' run")
    authors_best = runs["authors"]["best_val"]
    thresholds = {"authors_best_val": {"val": authors_best}, "paper_test": {"test": paper_test}}
    for name, summary in runs.items():
        rows = read_rows(work / name, summary.get("probe"))
        summary["reached"] = {key: first_reaching(rows, **kw) for key, kw in thresholds.items()}
    ratios: dict[str, dict[str, float | None]] = {}
    for name in ("eghn_recipe", "eghn_released"):
        if name not in runs:
            continue
        ratios[name] = {}
        for key in thresholds:
            a, e = runs["authors"]["reached"][key], runs[name]["reached"][key]
            ratios[name][key] = round(a["wall_s"] / e["wall_s"], 3) if a and e else None
    from side_by_side import machine

    result = {
        "about": "time to accuracy: three trainings started together, one thread each, to their early stop; "
                 "wall time and epoch at which each first reaches the authors' best validation MSE and the "
                 "paper's test MSE (test split, best-validation checkpoint so far)",
        "task": launch_info["task"], "seed": launch_info["seed"], "commands": launch_info["commands"],
        "commit": launch_info["commit"], "date": launch_info["started"][:10], "started": launch_info["started"],
        "command": f"python benchmarks/time_to_accuracy.py launch AUTHORS_DIR --work WORK --task "
                   f"{launch_info['task']} --seed {launch_info['seed']}"
                   + (f" --epochs {launch_info['epochs']}" if launch_info.get("epochs") else ""),
        "machine": {**machine(), "platform": platform.platform()},
        "scheduling": {"autogroup_enabled": launch_info.get("autogroup_enabled"),
                       "autogroups": launch_info.get("autogroups")},
        "paper_test": {"value": paper_test, "source": f"eghn/results/paper.json {table} {row} {column}"},
        "authors_best_val": authors_best,
        "runs": runs,
        "authors_time_over_eghn_time": ratios,
        "finished": all(r["finished"] for r in runs.values()),
        "smoke": bool(launch_info.get("epochs")),
    }
    out = args.out or work / "time_to_accuracy.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    for name, r in runs.items():
        print(f"{name:14s} finished={r['finished']} epochs={r['epochs']} wall={r['wall_s']:.0f} s "
              f"best val {r['best_val']:.4g} @ {r['best_epoch']}, test {r['test_at_best_val']:.4g}; "
              + "; ".join(f"{k}: {v['epoch']} ep / {v['wall_s']:.0f} s" if v else f"{k}: not reached"
                          for k, v in r["reached"].items()))
    print("authors' time / eghn's:", ratios)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("launch", help="start the three runs together and wait for them")
    a.add_argument("authors_dir", type=Path)
    a.add_argument("--work", type=Path, required=True)
    a.add_argument("--task", choices=sorted(TASKS), default="run")
    a.add_argument("--seed", type=int, default=1)
    a.add_argument("--epochs", type=int, default=None, help="cap every run at this many epochs (a smoke test)")
    b = sub.add_parser("analyse", help="read the runs of a launch and write the result file")
    b.add_argument("work", type=Path)
    b.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    return launch(args) if args.cmd == "launch" else analyse(args)


if __name__ == "__main__":
    raise SystemExit(main())
