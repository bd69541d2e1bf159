"""Where a training step spends its time: the operators of one step of each model of
``benchmarks/side_by_side.py`` (the authors' code, eghn's released architecture, eghn's
default model), by self CPU time under :mod:`torch.profiler`.

Usage::

    python benchmarks/profile_step.py AUTHORS_DIR [--workload mocap] [--threads 1] [--top 8]
        [--out benchmarks/results/profile.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def profile(authors: str, workload: str, steps: int, top: int) -> dict:
    import side_by_side as sbs
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    work = sbs.build_workload(workload)
    s = sbs.make_steps(work, authors, sbs.MODELS, "cpu")
    out = dict(workload=workload, threads=torch.get_num_threads(), steps=steps, models={})
    for m, f in s["steps"].items():
        for _ in range(2):
            f()
        t0 = time.perf_counter()
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                f()
        wall = (time.perf_counter() - t0) / steps * 1e3
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events) / steps / 1e3
        ops = [dict(name=e.key, self_ms=round(e.self_cpu_time_total / steps / 1e3, 2),
                    share=round(e.self_cpu_time_total / steps / 1e3 / total, 4), calls=e.count // steps)
               for e in events[:top]]
        out["models"][m] = dict(params=s["params"][m], profiled_ms_per_step=round(wall, 1),
                                self_cpu_ms_per_step=round(total, 1), top=ops)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("authors", help="a checkout of github hanjq17/EGHN (outside this repository)")
    ap.add_argument("--workload", default="mocap")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import side_by_side as sbs

    r = profile(str(Path(args.authors).resolve()), args.workload, args.steps, args.top)
    for m, rec in r["models"].items():
        print(f"{m}: {rec['self_cpu_ms_per_step']:.0f} ms of operators per step; "
              + ", ".join(f"{o['name']} {100 * o['share']:.0f} %" for o in rec["top"]))
    if args.out:
        result = dict(**sbs.provenance(),
                      command="python benchmarks/profile_step.py AUTHORS_DIR " + " ".join(
                          sys.argv[2:] if argv is None else argv[1:]), **r)
        sbs.write_result(args.out, result)


if __name__ == "__main__":
    main()
