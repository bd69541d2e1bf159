"""Train the authors' released EGHN with their own script, recorded as an eghn run directory.

The authors' code (github ``hanjq17/EGHN``) is *not* part of eghn: pass the path of a checkout
of it, kept outside this repository. Their training script runs unmodified, in its own
process, from their checkout; this harness only launches it, reads what it prints and writes
what it reads in the files of an ``eghn train`` run directory, so that
``docs/scripts/collect_runs.py`` collects it like any of eghn's runs and the site renders its
learning curve instead of typing its numbers.

Two stand-ins let their script run on a current stack, without touching a line of it:

* ``torch_sparse.spmm`` (their model imports it) where the ``torch_sparse`` package is not
  installed: the same arithmetic as ``torch_sparse.spmm`` (gather the dense rows, scale,
  scatter-add): ``benchmarks/side_by_side.py``'s stand-in, imported in their process;
* ``numpy.Inf``, removed in NumPy 2.0 (their early stopping reads it): an alias of
  ``numpy.inf``.

Tasks (``--task``):

``run``
    ``main_mocap.py --case run --n_cluster 5`` on their preprocessed CMU Subject 9 running data
    (``motion/dataset/motion_run.pkl`` and ``split_run.pkl`` of their checkout), every other
    setting their script's default: width 64, 3 EGNN layers per block and 3 pooling layers,
    1 decoder layer, batch 100 with the last smaller batch dropped, Adam at 5e-4 with weight
    decay 1e-12, lambda 1, evaluation every 5 epochs, early stopping after 50 evaluations
    without improvement, up to 10,000 epochs, 8 data-loader workers. These are the settings of
    eghn's ``released`` protocol of ``mocap/run_eghn`` (400 training samples, 240 / 240).
``single_3x3`` (``single_5x5``, ``single_10x10``)
    ``main_simulation.py --n_complex M --average_complex_size S --system_types 1 --n_cluster K``
    on eghn's own M-complex data: the trajectories of eghn's ``table1/eghn_single_MxS`` config
    (the first 1,000 training trajectories, 2,000 / 2,000), written by this harness into the
    pickle files their dataset class reads (``loc``, ``vel``, ``charges``, ``edges`` =
    :math:`c_i c_j`, ``cfg`` = the complexes' node indices), in the run directory. Their script
    takes frames 10 and 25, as eghn's config; every other setting is their script's default
    (width 64, 3 / 3 / 1 layers, batch 100 with ``drop_last``, Adam at 5e-4 with weight decay
    1e-12, lambda 1, up to 10,000 epochs, patience 50 evaluations), the settings of eghn's
    ``released`` protocol of that config.

For ``run``, before training, the harness checks that the authors' arrays are eghn's: the trials and the
split of their files against eghn's ``cmu09_run.npz`` and ``cmu09_run_split.json``
(found as ``eghn train`` finds them, e.g. under ``EGHN_DATA_DIR``). The outcome, with the
SHA-256 of their files, goes into ``config.json`` (``authors.same_arrays_as_eghn``).

The run directory holds:

* ``config.json``: ``name``, ``protocol = "authors"``, ``seed``, ``data``, ``model``,
  ``train`` as far as they map onto eghn's keys, and ``authors``: their repository and commit,
  the script and its arguments, the stand-ins used and the data check;
* ``metrics.csv``: one row per evaluation, eghn's columns (``epoch``, ``wall_s``,
  ``train_loss``, ``train_mse``, ``val_mse``, ``test_mse``, ``best_epoch``, ``best_val``).
  ``epoch`` counts the epochs trained: their script prints a 0-based index, one less.
  ``wall_s`` runs from the start of their training loop (the line that ends their
  ``print(model)``), as eghn's trainer counts from the start of training; the start-up before
  it (imports, data, model) is ``startup_s`` in ``result.json``. ``train_loss`` is their
  training MSE plus lambda times their cut loss, ``train_mse`` the MSE alone, both as their
  script averages them over the epoch;
* ``result.json`` once their script ends: best epoch and validation MSE, the test MSE there,
  epochs, wall time, ``stopped_early``, ``stop_reason`` (``early stop``, ``epoch cap``,
  ``time cap`` or ``failed``) and the history; a run cut by ``--max-minutes`` or by an
  interruption writes none, and is collected as unfinished;
* ``stdout.log``: everything their script printed; ``authors_out/``: their own output folder
  (their ``loss.json`` and saved model).

Their script has no resume: an interrupted run starts over in a fresh directory.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/authors_run.py AUTHORS_DIR --task run --seed 1 \\
        --run-dir ../scratch/authors_run_s1 [--threads 1] [--epochs 10000] [--max-minutes M]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from eghn.train.checkpoint import file_sha256

ROOT = Path(__file__).resolve().parents[1]

#: task -> (script, arguments fixed by the task, eghn config the settings correspond to,
#: lambda of the connectivity loss, data files of their checkout)
TASKS: dict[str, dict[str, Any]] = {
    "run": {
        "script": "main_mocap.py",
        "args": ["--case", "run", "--n_cluster", "5", "--data_dir", "motion/dataset"],
        "config": "mocap/run_eghn",
        "name": "authors_mocap_run",
        "lambda": 1.0,
        "files": ["motion/dataset/motion_run.pkl", "motion/dataset/split_run.pkl"],
        "data": {"name": "mocap", "subject": "run", "length_scale": 1.0, "train": {"max_samples": 400},
                 "features": "released"},
        "model": {"name": "authors_eghn", "hidden": 64, "enc_layers": 3, "pool_layers": 3, "dec_layers": 1,
                  "clusters": [5], "lam": 1.0},
        "train": {"batch_size": 100, "lr": 5e-4, "weight_decay": 1e-12, "drop_last": True, "eval_every": 5,
                  "patience": 50},
    },
}

for _m, _s, _k in ((3, 3, 3), (5, 5, 5), (10, 10, 10)):
    TASKS[f"single_{_m}x{_s}"] = {
        "script": "main_simulation.py",
        "args": ["--n_complex", str(_m), "--average_complex_size", str(_s), "--system_types", "1",
                 "--n_cluster", str(_k), "--max_training_samples", "1000"],
        "config": f"table1/eghn_single_{_m}x{_s}",
        "name": f"authors_single_{_m}x{_s}",
        "lambda": 1.0,
        "files": [],
        "mcomplex": (_m, _s),
        "data": {"name": "mcomplex", "n_complex": _m, "avg_size": _s, "n_types": 1, "length_scale": 1.0,
                 "train": {"max_samples": 1000}},
        "model": {"name": "authors_eghn", "hidden": 64, "enc_layers": 3, "pool_layers": 3, "dec_layers": 1,
                  "clusters": [_k], "lam": 1.0},
        "train": {"batch_size": 100, "lr": 5e-4, "weight_decay": 1e-12, "drop_last": True, "eval_every": 5,
                  "patience": 50},
    }

#: the columns of metrics.csv, as eghn's trainer writes them (the leading ones)
COLUMNS = ("epoch", "wall_s", "train_loss", "train_mse", "val_mse", "test_mse", "best_epoch", "best_val")

#: run in the child before their script: the two stand-ins, the thread count, then the script
#: as ``__main__`` with its arguments
LAUNCHER = """
import runpy, sys
import numpy, torch
benchmarks, threads, script, *args = sys.argv[1:]
torch.set_num_threads(int(threads))
used = []
if not hasattr(numpy, "Inf"):
    numpy.Inf = numpy.inf
    used.append("numpy.Inf")
sys.path.insert(0, benchmarks)
from side_by_side import _install_spmm_stand_in
if _install_spmm_stand_in():
    used.append("torch_sparse.spmm")
sys.path.remove(benchmarks)
print("eghn-harness: stand-ins " + ",".join(used), flush=True)
sys.argv = [script, *args]
sys.path.insert(0, ".")
runpy.run_path(script, run_name="__main__")
"""


def git_commit(folder: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def check_run_arrays(authors_dir: Path) -> dict[str, Any]:
    """Compare the authors' Run trials and split with eghn's (``cmu09_run.npz``, its split).

    Their files are pickles; they are read here only to compare them with eghn's arrays, as
    their own script reads them. Returns ``{"same": bool | None, "detail": str}`` (``None``
    when eghn's data cannot be found)."""
    import pickle

    import numpy as np

    from eghn.data.mocap import _locate, _subject, load_npz

    try:
        npz = _locate(_subject("run"), None, Path.home() / ".cache" / "eghn", download_missing=False)
    except FileNotFoundError as exc:
        return {"same": None, "detail": f"eghn's Run data not found: {exc}"}
    ours, ours_edges = load_npz(npz)
    split_file = npz.with_name(npz.name.replace(".npz", "_split.json"))
    with open(authors_dir / "motion/dataset/motion_run.pkl", "rb") as f:
        edges, trials = pickle.load(f)  # the authors' file, read as their script reads it
    with open(authors_dir / "motion/dataset/split_run.pkl", "rb") as f:
        split = pickle.load(f)
    if len(trials) != len(ours):
        return {"same": False, "detail": f"{len(trials)} trials against eghn's {len(ours)}"}
    for k, (a, b) in enumerate(zip(trials, ours, strict=True)):
        a = np.asarray(a)
        if a.shape != b.shape or not np.array_equal(a, b):
            return {"same": False, "detail": f"trial {k} differs"}
    if not np.array_equal(np.asarray(edges), ours_edges):
        return {"same": False, "detail": "the skeleton edges differ"}
    detail = f"{len(ours)} trials and the edges equal eghn's {npz.name} exactly"
    if split_file.is_file():
        theirs = json.loads(split_file.read_text())
        for part, mapping in zip(("train", "val", "test"), split, strict=True):
            if {str(k): [int(i) for i in v] for k, v in mapping.items()} != theirs[part]:
                return {"same": False, "detail": f"the {part} split differs from {split_file.name}"}
        detail += f"; the split equals {split_file.name}"
    return {"same": True, "detail": detail}


def write_mcomplex_pickles(config_name: str, out: Path) -> dict[str, Any]:
    """Write the splits of eghn's M-complex config ``config_name`` (``released`` protocol) as the
    pickle files of the authors' ``SimulationDataset`` into ``out``; returns the data check."""
    import pickle

    import numpy as np

    from eghn.train.config import load_config
    from eghn.train.loop import build_datasets

    config = load_config(config_name, ['protocol="released"'])
    splits = build_datasets(config, raw=True)
    c = config["data"]
    suffix = f"_charged{c['n_complex']}_{c['avg_size']}_{c['n_types']}"
    out.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for split, ds in splits.items():
        if (ds.input_frame, ds.target_frame) != (10, 25):
            raise SystemExit(f"{config_name}: frames {ds.input_frame} -> {ds.target_frame}; the authors' "
                             "script takes 10 -> 25")
        arrays = ds._load()
        loc, vel, charges, edges, cfg = [], [], [], [], []
        for i in range(len(ds)):
            a, b = ds._slice(i)
            loc.append(np.ascontiguousarray(arrays["pos"][a:b].transpose(1, 0, 2)))
            vel.append(np.ascontiguousarray(arrays["vel"][a:b].transpose(1, 0, 2)))
            q = arrays["charge"][a:b].astype(np.float64).reshape(-1, 1)
            charges.append(q)
            edges.append(q @ q.T)
            cid = arrays["complex_id"][a:b]
            cfg.append({"Complex": [np.flatnonzero(cid == k).tolist() for k in np.unique(cid)]})
        name = {"train": "train", "val": "valid", "test": "test"}[split]
        for key, value in (("loc", loc), ("vel", vel), ("charges", charges), ("edges", edges), ("cfg", cfg)):
            with open(out / f"{key}_{name}{suffix}.pkl", "wb") as f:
                pickle.dump(value, f)
        sizes[split] = len(ds)
    return {"same": True, "detail": f"written by this harness from eghn's {config_name} data (released "
                                    f"protocol): {sizes['train']} / {sizes['val']} / {sizes['test']} trajectories"}


class Recorder:
    """Turn the lines the authors' ``main_mocap.py`` prints into eghn's ``metrics.csv`` rows."""

    def __init__(self, run_dir: Path, lam: float, t_launch: float):
        self.run_dir, self.lam, self.t_launch = run_dir, lam, t_launch
        self.t0: float | None = None  # start of their training loop
        self.rows: list[dict[str, float]] = []
        self.train: dict[int, tuple[float, float]] = {}
        self.val: dict[int, float] = {}
        self.best: tuple[float, int] | None = None
        self.early_stop = False
        self.last_epoch = 0
        self.csv = open(run_dir / "metrics.csv", "w", newline="")
        self.writer = csv.DictWriter(self.csv, fieldnames=COLUMNS)
        self.writer.writeheader()
        self.csv.flush()

    def feed(self, line: str, now: float) -> None:
        text = line.strip()
        if self.t0 is None and text == ")":  # the last line of their print(model)
            self.t0 = now
            return
        if text == "Early Stopping.":
            self.early_stop = True
            return
        parts = text.split()
        if "avg" not in parts or "epoch" not in parts:
            return
        try:
            epoch = int(parts[parts.index("epoch") + 1])
            loss = float(parts[parts.index("loss:") + 1])
            lp = float(parts[parts.index("lploss:") + 1])
        except (ValueError, IndexError):
            return
        if parts[0] == "train":
            self.train[epoch] = (loss, lp)
            self.last_epoch = epoch + 1
        elif parts[:2] == ["==>", "val"]:
            self.val[epoch] = loss
        elif parts[:2] == ["==>", "test"] and epoch in self.val and epoch in self.train:
            val, (mse, lp_train) = self.val.pop(epoch), self.train[epoch]
            if self.best is None or val < self.best[0]:  # their script: strictly lower
                self.best = (val, epoch + 1)
            row = {"epoch": epoch + 1, "wall_s": round(now - (self.t0 or self.t_launch), 3),
                   "train_loss": round(mse + self.lam * lp_train, 7), "train_mse": mse, "val_mse": val,
                   "test_mse": loss,
                   "best_epoch": self.best[1], "best_val": self.best[0]}
            self.rows.append(row)
            self.writer.writerow(row)
            self.csv.flush()

    def close(self) -> None:
        self.csv.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("authors_dir", type=Path, help="a checkout of github hanjq17/EGHN, outside this repository")
    p.add_argument("--task", choices=sorted(TASKS), default="run")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=10000, help="their --epochs (the cap)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop their script after this many minutes of wall time (the run is then unfinished)")
    args = p.parse_args(argv)
    task = TASKS[args.task]
    authors = args.authors_dir.resolve()
    if not (authors / task["script"]).is_file():
        raise SystemExit(f"{authors} has no {task['script']}: pass a checkout of github hanjq17/EGHN")
    missing = [f for f in task["files"] if not (authors / f).is_file()]
    if missing:
        raise SystemExit(f"{authors} lacks {', '.join(missing)} (Git LFS or a partial checkout?)")
    if authors == ROOT or ROOT in authors.parents:
        raise SystemExit("keep the authors' checkout outside this repository")
    run_dir = args.run_dir
    if (run_dir / "metrics.csv").exists():
        raise SystemExit(f"{run_dir} already holds a run; their script cannot resume: use a fresh directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    out_dir = (run_dir / "authors_out").resolve()
    script_args = [*task["args"], "--seed", str(args.seed), "--epochs", str(args.epochs),
                   "--outf", str(out_dir), "--exp_name", f"seed{args.seed}"]
    if "mcomplex" in task:
        data_dir = (run_dir / "authors_data").resolve()
        check = write_mcomplex_pickles(task["config"], data_dir)
        script_args += ["--data_dir", str(data_dir)]
    else:
        check = check_run_arrays(authors)
    config = {
        "name": task["name"], "description": f"the authors' released EGHN, their {task['script']}",
        "seed": args.seed, "protocol": "authors", "data": task["data"], "model": task["model"],
        "train": {**task["train"], "epochs": args.epochs, "threads": args.threads},
        "authors": {"repository": "github.com/hanjq17/EGHN", "commit": git_commit(authors),
                    "script": task["script"], "arguments": script_args, "corresponds_to": task["config"],
                    "files_sha256": {f: file_sha256(authors / f) for f in task["files"]},
                    "same_arrays_as_eghn": check["same"], "data_check": check["detail"],
                    "max_minutes": args.max_minutes,
                    "epoch": "epochs trained (their script prints a 0-based index, one less)"},
        "command": "python benchmarks/authors_run.py AUTHORS_DIR " + " ".join(
            (argv if argv is not None else sys.argv[1:])[1:]),
    }
    (run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "PYTHONUNBUFFERED": "1"}
    t_launch = time.perf_counter()
    rec = Recorder(run_dir, task["lambda"], t_launch)
    log = open(run_dir / "stdout.log", "w")
    launch = [sys.executable, "-u", "-c", LAUNCHER, str(ROOT / "benchmarks"), str(args.threads), task["script"]]
    proc = subprocess.Popen([*launch, *script_args],
                            cwd=authors, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            process_group=0)
    stop_reason, stand_ins = None, []

    # their script and its data-loader workers form one process group (so that an interruption
    # reaches all of them) but stay in this session: with the kernel's autogroup scheduling a new
    # session would be scheduled as a group of its own and take a whole share of the CPU beside
    # the processes it is compared with
    def interrupt(signum, frame):  # pass an interruption on to their whole process group
        os.killpg(proc.pid, signal.SIGTERM)
        raise SystemExit(f"interrupted (signal {signum}); {run_dir} keeps the evaluations so far")

    signal.signal(signal.SIGTERM, interrupt)
    deadline = None if args.max_minutes is None else t_launch + 60 * args.max_minutes
    try:
        for line in proc.stdout:
            now = time.perf_counter()
            log.write(line)
            if line.startswith("eghn-harness: stand-ins"):
                stand_ins = [s for s in line.split("stand-ins", 1)[1].strip().split(",") if s]
                config["authors"]["stand_ins"] = stand_ins
                (run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
            rec.feed(line, now)
            if deadline is not None and now > deadline:
                stop_reason = "time cap"
                os.killpg(proc.pid, signal.SIGTERM)
                break
        proc.wait()
    finally:
        log.close()
        rec.close()
    if stop_reason is None:
        if proc.returncode != 0:
            stop_reason = "failed"
        else:
            stop_reason = "early stop" if rec.early_stop else "epoch cap"
    wall = round(time.perf_counter() - (rec.t0 or t_launch), 3)
    if stop_reason in ("early stop", "epoch cap") and rec.rows:
        best = min(rec.rows, key=lambda r: (r["val_mse"], r["epoch"]))
        result = {"run_dir": str(run_dir), "best_epoch": best["epoch"], "best_val": best["val_mse"],
                  "test": best["test_mse"], "epochs": rec.last_epoch, "wall_s": wall,
                  "startup_s": round((rec.t0 or t_launch) - t_launch, 3),
                  "stopped_early": stop_reason == "early stop", "stop_reason": stop_reason,
                  "version": f"authors {config['authors']['commit'][:7]}", "history": rec.rows}
        (run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"{stop_reason} at epoch {rec.last_epoch}: best val {best['val_mse']:.5g} at epoch "
              f"{best['epoch']}, test there {best['test_mse']:.5g} ({wall:,.0f} s)")
        return 0
    tail = (run_dir / "stdout.log").read_text().splitlines()[-5:]
    print(f"{stop_reason}: {len(rec.rows)} evaluations recorded in {run_dir}" +
          ("\n" + "\n".join(tail) if stop_reason == "failed" else ""))
    return 0 if stop_reason == "time cap" else 1


if __name__ == "__main__":
    raise SystemExit(main())
