"""What each speed-only mechanism of eghn buys, measured side by side in one process.

eghn has mechanisms that change how, not what, a layer computes (the results are the same;
``tests/test_edge_mlp.py`` and ``tests/test_scatter.py`` check values and gradients):

* **node split** (:func:`eghn.nn.edge_mlp.pair_linear`): the first layer of an edge MLP, which
  sees ``[h_i, h_j, e_ij]``, applied per node and gathered per edge instead of per edge on the
  concatenation (fewer FLOPs);
* **equal-size reshapes** (:func:`eghn.nn.scatter.uniform_graph_size`): per-graph reductions
  as reshapes and batched products when every graph of a batch has the same size (always the
  case for one graph), instead of scatters over the batch vector.

Variants, each a training step (forward, loss, backward, fused Adam) of the same model on the
same batch:

* ``eghn``: the library as it is;
* ``plain``: node split off -- every edge MLP's first layer the plain ``nn.Linear`` applied to
  ``torch.cat([h[i], h[j], e])``;
* ``no_reshapes``: equal-size reshapes off (scatters), everything else as ``eghn``.

The variants are switched by replacing the functions in the modules that use them, between
rounds; rounds alternate, the order rotating, so that machine drift hits all alike. The loss
and gradient of every variant are checked against ``eghn`` first. Peak memory (resident memory
during the steps above that before them, one process per variant) is measured with ``--memory``.

A fourth mechanism is process-wide and so is measured across processes: ``--malloc`` times
the ``eghn`` variant in fresh processes with and without
:func:`eghn.train.malloc.reuse_freed_memory` (what ``eghn train`` does on a CPU), alternating
the two kinds of process (``--pairs`` of each).

Workloads: ``mocap`` (eghn's default model and the released architecture on mocap Run,
batch 100; needs the mocap data), ``mcomplex55`` (default model, 100 M-complex (5,5)
systems), ``adk`` (the AdK config's default model, 8 frames of 855 atoms, about 34,000
edges each), ``radius-N`` (``EGHN.single_level``, one random system of N particles, about 16
neighbours each, K = 20).

Usage::

    python benchmarks/fast_paths.py                           # all workloads, 1 thread
    python benchmarks/fast_paths.py mocap --threads 2 --memory --out benchmarks/results/fast_paths.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

VARIANTS = ("eghn", "plain", "no_reshapes")
WORKLOADS = ("mocap", "mocap-released", "mcomplex55", "adk", "radius-10000")


def _cat_linear(linear, h, i, j, rest=None):
    parts = [h.index_select(0, i), h.index_select(0, j)]
    if rest is not None and rest.shape[1] > 0:
        parts.append(rest)
    return linear(torch.cat(parts, -1))


def _patches(variant: str) -> dict[str, dict[str, object]]:
    """``{module name: {attribute: replacement}}`` for a variant."""
    if variant == "eghn":
        return {}
    if variant == "no_reshapes":
        return {m: {"uniform_graph_size": lambda batch, num_graphs: None}
                for m in ("eghn.nn.scatter", "eghn.nn.invariants", "eghn.nn.pool_ops")}
    return {m: {"pair_linear": _cat_linear}
            for m in ("eghn.nn.edge_mlp", "eghn.nn.mlp", "eghn.nn.plain_mp", "eghn.models.mpnn")}


class Variant:
    """Context manager: switch the library to a variant and back."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self):
        self.saved = []
        for mod_name, attrs in _patches(self.name).items():
            mod = sys.modules[mod_name]
            for attr, new in attrs.items():
                self.saved.append((mod, attr, getattr(mod, attr)))
                setattr(mod, attr, new)
        return self

    def __exit__(self, *exc):
        for mod, attr, old in reversed(self.saved):
            setattr(mod, attr, old)


def build(workload: str):
    """``(step, graphs)``: a training-step closure and the batch size of a workload."""
    import side_by_side as sbs

    import eghn.models.mpnn
    import eghn.nn.plain_mp  # noqa: F401
    from eghn.models import EGHN
    from eghn.train.objective import training_objective

    if workload.startswith("radius-"):
        from bench_eghn import radius_graph

        g, cfg = radius_graph(int(workload.split("-")[1]))
        torch.manual_seed(0)
        model = EGHN.single_level(cfg["node_dim"], cfg["edge_dim"], clusters=cfg["clusters"])
    else:
        model, g = sbs.workload_model(workload)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4, fused=True)

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(g)
        training_objective(out, g.target).loss.backward()
        opt.step()

    def loss_and_grad() -> tuple[float, float]:
        model.zero_grad(set_to_none=True)
        out = model(g)
        loss = training_objective(out, g.target).loss
        loss.backward()
        grad = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters() if p.grad is not None))
        return float(loss.detach()), float(grad)

    return step, g.num_graphs, dict(nodes=g.num_nodes, edges=g.num_edges,
                                    params=sum(p.numel() for p in model.parameters())), loss_and_grad


def time_workload(workload: str, rounds: int, steps: int) -> dict:
    step, _, info, check = build(workload)
    ref = check()
    for v in VARIANTS:  # the variants compute the same loss and gradient (to float32 rounding)
        with Variant(v):
            got = check()
        if abs(got[0] - ref[0]) > 1e-4 * abs(ref[0]) or abs(got[1] - ref[1]) > 1e-3 * abs(ref[1]):
            raise SystemExit(f"variant {v} changes the result on {workload}: loss, |grad| {got} vs {ref}")
    for v in VARIANTS:
        with Variant(v):
            step()
    per_round = {v: [] for v in VARIANTS}
    for r in range(rounds):
        for v in VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]:
            with Variant(v):
                ts = []
                for _ in range(steps):
                    t0 = time.perf_counter()
                    step()
                    ts.append(time.perf_counter() - t0)
            per_round[v].append(statistics.median(ts) * 1e3)
    base = per_round["eghn"]
    out = dict(workload=workload, threads=torch.get_num_threads(), rounds=rounds, steps_per_round=steps, **info,
               variants={})
    for v in VARIANTS:
        rel = [b / e for b, e in zip(per_round[v], base)]  # > 1: the variant is slower than eghn
        out["variants"][v] = dict(ms_per_step=round(statistics.median(per_round[v]), 2),
                                  round_medians_ms=[round(x, 2) for x in per_round[v]],
                                  time_vs_eghn=round(statistics.median(rel), 3),
                                  time_vs_eghn_range=[round(min(rel), 3), round(max(rel), 3)])
    return out


def memory(workload: str, variant: str) -> dict:
    import side_by_side as sbs

    step, _, _, _ = build(workload)
    with Variant(variant):
        sbs._trim()
        before = sbs._status_mb("VmRSS")
        sbs._reset_peak()
        for _ in range(2):
            step()
        return dict(workload=workload, variant=variant, step_mb=round(sbs._status_mb("VmHWM") - before, 1))


def malloc_child(workload: str, reuse: bool, steps: int) -> dict:
    if reuse:
        from eghn.train.malloc import reuse_freed_memory

        if not reuse_freed_memory():
            raise SystemExit("reuse_freed_memory is not available here (not glibc)")
    step, _, _, _ = build(workload)
    for _ in range(2):
        step()
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t0)
    return dict(ms=statistics.median(ts) * 1e3)


def malloc_workload(workload: str, pairs: int, steps: int, threads: int) -> dict:
    times = {"reuse": [], "default": []}
    for p in range(pairs):
        for kind in (("reuse", "default") if p % 2 == 0 else ("default", "reuse")):
            proc = subprocess.run([sys.executable, __file__, workload, "--malloc-child", kind, "--steps", str(steps),
                                   "--threads", str(threads)], capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(proc.stderr[-3000:])
            times[kind].append(json.loads(proc.stdout.strip().splitlines()[-1])["ms"])
    rel = [d / r for d, r in zip(times["default"], times["reuse"])]  # > 1: reuse is faster
    return dict(workload=workload, threads=threads, pairs=pairs, steps=steps,
                reuse_ms=round(statistics.median(times["reuse"]), 2),
                default_ms=round(statistics.median(times["default"]), 2),
                default_vs_reuse=round(statistics.median(rel), 3), range=[round(min(rel), 3), round(max(rel), 3)])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workloads", nargs="*", default=list(WORKLOADS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--memory", action="store_true", help="also the step memory of every variant")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--malloc", action="store_true", help="also the gain of eghn.train.malloc (across processes)")
    ap.add_argument("--pairs", type=int, default=4, help="--malloc: processes of each kind")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--malloc-child", choices=["reuse", "default"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(memory(args.workloads[0], args.child)))
        return
    if args.malloc_child:
        print(json.dumps(malloc_child(args.workloads[0], args.malloc_child == "reuse", args.steps)))
        return
    import side_by_side as sbs

    result = dict(**sbs.provenance(),
                  command="python benchmarks/fast_paths.py " + " ".join(sys.argv[1:] if argv is None else argv),
                  timing=[], memory=[], malloc=[])
    for w in args.workloads:
        big = w in ("adk",) or w.startswith("radius-1000")
        r = time_workload(w, max(4, args.rounds // 2) if big else args.rounds, 1 if big else args.steps)
        result["timing"].append(r)
        print(f"{w:<15}{r['nodes']:>7} nodes{r['edges']:>8} edges  "
              f"eghn {r['variants']['eghn']['ms_per_step']:8.1f} ms  "
              + "  ".join(f"{v} x{r['variants'][v]['time_vs_eghn']:.2f}" for v in VARIANTS[1:]), flush=True)
        if args.memory:
            mem = {}
            for v in VARIANTS:
                proc = subprocess.run([sys.executable, __file__, w, "--child", v, "--threads", str(args.threads)],
                                      capture_output=True, text=True)
                if proc.returncode:
                    raise SystemExit(proc.stderr[-3000:])
                rec = json.loads(proc.stdout.strip().splitlines()[-1])
                result["memory"].append(rec)
                mem[v] = rec["step_mb"]
            print(f"{'':<15}step memory MB: " + "  ".join(f"{v} {mb:.0f}" for v, mb in mem.items()), flush=True)
        if args.malloc:
            big = w in ("adk",) or w.startswith("radius-1000")
            m = malloc_workload(w, args.pairs, 1 if big else args.steps, args.threads)
            result["malloc"].append(m)
            print(f"{'':<15}glibc defaults {m['default_ms']:.1f} ms, reuse_freed_memory {m['reuse_ms']:.1f} ms: "
                  f"x{m['default_vs_reuse']:.2f} ({m['range'][0]:.2f}-{m['range'][1]:.2f})", flush=True)
    if args.out:
        sbs.write_result(args.out, result)


if __name__ == "__main__":
    main()
