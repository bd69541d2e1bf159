"""Run ``eghn train default`` as a user would and record what it prints and how long it takes.

Writes ``docs/results/default_run.json`` (wall time of the whole command, test MSE, the
reference MSEs it prints, the equivariance report line, the machine's CPU count and load), read
by the landing page and the quick start::

    python docs/scripts/measure_default.py [--out FILE] [--run-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "results" / "default_run.json")
    ap.add_argument("--run-dir", type=Path, default=None)
    args = ap.parse_args()
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="eghn-default-")) / "run"
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "eghn.cli", "train", "default", "--no-progress", "--run-dir",
                           str(run_dir)], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(proc.stdout + proc.stderr)
    out = proc.stdout
    test = float(re.search(r"test MSE \(at best val epoch (\d+)\): ([0-9.eE+-]+)", out).group(2))
    refs = {m.group(1): float(m.group(2)) for m in re.finditer(r"for comparison, (.+): ([0-9.eE+-]+)", out)}
    linear = next(v for k, v in refs.items() if k.startswith("linear"))
    paper = next(v for k, v in refs.items() if k.startswith("the paper"))
    equi = re.search(r"equivariance error of the trained model \(relative\): (.*)", out).group(1)
    result = {
        "about": "`eghn train default` run as a subprocess by docs/scripts/measure_default.py; wall time of the "
                 "whole command (data generation on first use excluded when the cache exists).",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "load_before": round(load, 2),
        "wall_s": round(wall, 1),
        "test_mse": test,
        "linear_baseline_mse": linear,
        "paper_mse": paper,
        "equivariance": equi,
        "output": out,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(out)
    print(f"wrote {args.out} (wall {wall:.1f} s, load {load:.2f})")


if __name__ == "__main__":
    main()
