"""Throughput of the M-complex simulator (paper Section 4.1) and the linear-baseline sanity figure.

Usage::

    python benchmarks/bench_mcomplex.py                    # 200 trajectories per paper config
    python benchmarks/bench_mcomplex.py -n 1000 --configs 3-3-1 3-3-5 --workers 2
    python benchmarks/bench_mcomplex.py -n 200 --backend torch   # the vectorised PyTorch path on CPU
    python benchmarks/bench_mcomplex.py -n 500 --configs 3-3-5 5-5-5 --device cuda
    python benchmarks/bench_mcomplex.py --linear           # x_10 + t v_10 baseline on (3,3), J=5

For every configuration it prints trajectories/second (full 5000-step trajectories, paper
integrator, rejected trajectories redrawn and counted as work) by wall-clock time and by CPU
time (this process and its worker processes; the better measure on a shared machine) and the
projected wall time of a full 5000/2000/2000 dataset. The last column is the speed-up over the
published generator: its seconds per trajectory are an input of this script, read from
``--reference`` (default ``benchmarks/results/simulator.json``: the ``published_s_per_trajectory``
of each configuration, the published generator timed in one process on a 2-core CPU of the
class of that file's machine); a system size without a reference gets no speed-up.

``--linear`` prints the test MSE of the best single-scalar extrapolation ``x_10 + t v_10``
(``t`` fitted on the training split) on (3,3), J=5 systems, beside the paper's Linear value
where ``eghn/results/paper.json`` holds one.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch

from eghn.data.mcomplex import PAPER_CONFIGS, MComplexDataset, linear_extrapolation_baseline
from eghn.data.mcomplex_sim import simulate_mcomplex
from eghn.train.reproduce import paper_results

#: the result file whose ``published_s_per_trajectory`` values are the default reference
REFERENCE = Path(__file__).resolve().parent / "results" / "simulator.json"


def published_s_per_trajectory(path: Path | None) -> dict[tuple[int, int], float]:
    """The published generator's seconds per trajectory by system size ``(M, N/M)``, as recorded
    in a result file of this script (``published_s_per_trajectory`` of its rows); ``{}`` without
    a file."""
    if path is None:
        return {}
    times = {}
    for row in json.loads(path.read_text()).get("results", []):
        config = PAPER_CONFIGS.get(row.get("config"))
        if config is not None and row.get("published_s_per_trajectory") is not None:
            times[config["n_complex"], config["avg_size"]] = float(row["published_s_per_trajectory"])
    return times


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _shown(path: Path | None) -> str | None:
    """``path`` as a result file records it: relative to the repository when inside it."""
    if path is None:
        return None
    root = Path(__file__).resolve().parents[1]
    return str(path.resolve().relative_to(root)) if path.resolve().is_relative_to(root) else str(path)


def bench(configs: list[str], n: int, device: str, integrator: str, chunk: int | None, threads: int,
          workers: int, backend: str, published: dict[tuple[int, int], float]) -> list[dict]:
    print(f"device={device} cpu threads={threads} workers={workers} integrator={integrator} backend={backend} "
          f"n={n}")
    print(f"{'config':>9} {'N':>6} {'draws':>6} {'wall s':>7} {'traj/s':>8} {'cpu s':>7} {'traj/cpu-s':>10} "
          f"{'full 9000 (min)':>16} {'vs published':>13}")
    rows = []
    for name in configs:
        c = PAPER_CONFIGS[name]
        m, s, j = c["n_complex"], c["avg_size"], c["n_types"]
        simulate_mcomplex(m, s, j, 2, seed=1, n_steps=20, integrator=integrator, device=device,
                          num_threads=threads, backend=backend)  # warm-up (and numba compilation)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), cpu_seconds()
        tr = simulate_mcomplex(m, s, j, n, seed=0, integrator=integrator, device=device, chunk_size=chunk,
                               num_threads=threads, workers=workers, backend=backend)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        dt, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        rate = n / dt
        total = c["n_train"] + c["n_val"] + c["n_test"]
        pub = published.get((m, s))
        speedup = f"{rate * pub:12.0f}x" if pub else f"{'-':>13}"
        print(f"{name:>9} {tr.node_ptr[-1] / n:6.1f} {int(tr.draws.sum()):6d} {dt:7.1f} {rate:8.1f} {cpu:7.1f} "
              f"{n / max(cpu, 1e-9):10.1f} {total / rate / 60:16.1f} {speedup}", flush=True)
        rows.append(dict(config=name, trajectories=n, draws=int(tr.draws.sum()), wall_s=round(dt, 2),
                         per_s=round(rate, 2), cpu_s=round(cpu, 2), per_cpu_s=round(n / max(cpu, 1e-9), 2),
                         full_dataset_min=round(total / rate / 60, 2),
                         published_s_per_trajectory=pub, speedup=round(rate * pub, 1) if pub else None))
    return rows


def linear(n_train: int, n_test: int, seed: int, device: str) -> None:
    t0 = time.perf_counter()
    train = MComplexDataset.generate(3, 3, 5, n_train, split="train", seed=seed, device=device)
    test = MComplexDataset.generate(3, 3, 5, n_test, split="test", seed=seed, device=device)
    t, mse = linear_extrapolation_baseline(train, test)
    paper = paper_results()["table1"]["rows"].get("Linear", {}).get("multiple (3,3)")
    print(f"(3,3) J=5 seed={seed} train={n_train} test={n_test}: best t = {t:.4f}, "
          f"test MSE per coordinate = {mse:.4f} ({mse * 100:.1f}e-2"
          + (f"; paper Linear {paper}e-2 (eghn/results/paper.json)" if paper is not None else "")
          + f") [{time.perf_counter() - t0:.0f} s]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=200, help="trajectories per configuration")
    ap.add_argument("--configs", nargs="+", default=list(PAPER_CONFIGS), choices=sorted(PAPER_CONFIGS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--integrator", default="paper", choices=("paper", "exact"))
    ap.add_argument("--chunk", type=int, default=None, help="trajectories per batch (default: automatic)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads of the simulator (default 1)")
    ap.add_argument("--workers", type=int, default=1,
                    help="parallel CPU workers (threads for the compiled backend; default 1, as the published run)")
    ap.add_argument("--backend", default="auto", choices=("auto", "torch", "compiled"),
                    help="auto: the compiled numba kernel on CPU when installed, else PyTorch")
    ap.add_argument("--linear", action="store_true", help="measure the linear-extrapolation sanity figure")
    ap.add_argument("--n-train", type=int, default=300)
    ap.add_argument("--n-test", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--reference", default=None,
                    help="result file of this script whose published_s_per_trajectory values give the speed-up "
                         "column ('none': no speed-up; default: benchmarks/results/simulator.json)")
    args = ap.parse_args()
    reference = None if args.reference == "none" else Path(args.reference or REFERENCE)
    if args.linear:
        linear(args.n_train, args.n_test, args.seed, args.device)
    else:
        rows = bench(args.configs, args.n, args.device, args.integrator, args.chunk, args.threads, args.workers,
                     args.backend, published_s_per_trajectory(reference))
        if args.out:
            import sys

            sys.path.insert(0, str(Path(__file__).resolve().parent))
            import side_by_side as sbs

            out = dict(machine=sbs.machine(), commit=sbs.commit(),
                       date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       command="python benchmarks/bench_mcomplex.py " + " ".join(sys.argv[1:]), device=args.device,
                       threads=args.threads, workers=args.workers, backend=args.backend,
                       reference=_shown(reference), results=rows)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(out, indent=1) + "\n")
            print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
