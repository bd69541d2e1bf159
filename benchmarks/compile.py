"""``torch.compile`` as a route to fused kernels: a training step of eghn's models compiled
beside the same step run eagerly, in one process.

For each workload (as in ``benchmarks/fast_paths.py``: ``mocap``, ``mocap-released``,
``mcomplex55``, ...), two copies of the model with the same weights are built; one is wrapped
in :func:`torch.compile` (default backend, Inductor). Reported: the time of the first compiled
step (compilation included), the number of graph breaks Dynamo reports, the difference of the
losses of the two copies on the first step, and the median step time of each, timed in
alternating rounds.

Usage::

    python benchmarks/compile.py mocap mcomplex55 [--threads 1] [--out benchmarks/results/compile.json]
    python benchmarks/compile.py mocap --device cuda
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def run(workload: str, device: str, rounds: int, steps: int) -> dict:
    import side_by_side as sbs

    from eghn.train.objective import training_objective

    model, g = sbs.workload_model(workload)
    model, g = model.to(device), g.to(device)
    twin = copy.deepcopy(model)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def make_step(m, fwd):
        opt = torch.optim.Adam(m.parameters(), lr=5e-4, fused=True)

        def step():
            opt.zero_grad(set_to_none=True)
            out = fwd(g)
            loss = training_objective(out, g.target).loss
            loss.backward()
            opt.step()
            return loss.detach()

        return step

    torch._dynamo.reset()
    explained = torch._dynamo.explain(twin)(g)
    compiled = torch.compile(twin)
    eager_step, compiled_step = make_step(model, model), make_step(twin, compiled)
    t0 = time.perf_counter()
    loss_c = compiled_step()
    sync()
    first = time.perf_counter() - t0
    loss_e = eager_step()
    rel = abs(float(loss_c) - float(loss_e)) / abs(float(loss_e))
    for _ in range(2):
        eager_step()
        compiled_step()
    sync()
    times = {"eager": [], "compiled": []}
    for r in range(rounds):
        for name, f in ((("eager", eager_step), ("compiled", compiled_step)) if r % 2 == 0
                        else (("compiled", compiled_step), ("eager", eager_step))):
            for _ in range(steps):
                t = time.perf_counter()
                f()
                sync()
                times[name].append(time.perf_counter() - t)
    e, c = statistics.median(times["eager"]) * 1e3, statistics.median(times["compiled"]) * 1e3
    return dict(workload=workload, device=device, threads=torch.get_num_threads(),
                graph_breaks=explained.graph_break_count, graphs=explained.graph_count,
                first_compiled_step_s=round(first, 1), loss_rel_diff=float(f"{rel:.2e}"),
                eager_ms=round(e, 2), compiled_ms=round(c, 2), eager_vs_compiled=round(e / c, 3))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workloads", nargs="*", default=["mocap", "mcomplex55"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import side_by_side as sbs

    result = dict(**sbs.provenance(),
                  command="python benchmarks/compile.py " + " ".join(sys.argv[1:] if argv is None else argv), runs=[])
    for w in args.workloads:
        try:
            r = run(w, args.device, args.rounds, args.steps)
        except Exception as exc:  # a failure to compile is a result too
            r = dict(workload=w, device=args.device, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
            print(f"{w:<15} torch.compile failed: {r['error']}", flush=True)
        else:
            print(f"{w:<15} {r['graphs']} graphs, {r['graph_breaks']} breaks, "
                  f"first step {r['first_compiled_step_s']} s, "
                  f"eager {r['eager_ms']:.1f} ms, compiled {r['compiled_ms']:.1f} ms (x{r['eager_vs_compiled']:.2f}), "
                  f"loss difference {r['loss_rel_diff']:.1e}", flush=True)
        result["runs"].append(r)
    if args.out:
        sbs.write_result(args.out, result)


if __name__ == "__main__":
    main()
