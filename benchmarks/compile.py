"""``torch.compile`` as a route to fused kernels: a training step of eghn's models compiled
beside the same step run eagerly, in one process.

For each workload (as in ``benchmarks/fast_paths.py``: ``mocap``, ``mocap-released``,
``mcomplex55``, ...), two copies of the model with the same weights are built; one is wrapped
in :func:`torch.compile` (default backend, Inductor). Reported: the time of the first compiled
step (compilation included), the number of graph breaks Dynamo reports, the difference of the
losses of the two copies on the first step, and the median step time of each, timed in
alternating rounds.

``--breaks-only`` times nothing: for every model variant of :data:`VARIANTS` (EGHN with
L = 1, 2, 3 levels, the default config's bounded messages and the paper's, the released
architecture, EGNN; the shipped configs' widths and layer counts) it runs training steps
(forward, Eq. 16 loss, backward) through ``train.compile``'s :class:`~eghn.train.compiled.CompiledForward`
on six batches of different sizes and records, with :func:`eghn.train.compiled.trace_report`,
the graph breaks (count, reason and place), the graphs compiled and why Dynamo recompiled;
then the same for each workload named, on its one batch.

Usage::

    python benchmarks/compile.py mocap mcomplex55 [--threads 1] [--out benchmarks/results/compile.json]
    python benchmarks/compile.py mocap --device cuda
    python benchmarks/compile.py --breaks-only mcomplex55 mocap --out benchmarks/results/compile_breaks.json
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


#: model variants of ``--breaks-only``: (name, what, batches, builder)
VARIANTS = (
    ("eghn-L1", "EGHN, clusters [3], bounded messages (the default config)", "mcomplex",
     lambda: _eghn([3], bounded=True)),
    ("eghn-L2", "EGHN, clusters [4, 2], bounded messages", "mcomplex", lambda: _eghn([4, 2], bounded=True)),
    ("eghn-L3", "EGHN, clusters [6, 3, 2], bounded messages", "mcomplex", lambda: _eghn([6, 3, 2], bounded=True)),
    ("eghn-L1-paper", "EGHN, clusters [3], the paper's messages", "mcomplex", lambda: _eghn([3], bounded=False)),
    ("eghn-L2-paper", "EGHN, clusters [4, 2], the paper's messages", "mcomplex",
     lambda: _eghn([4, 2], bounded=False)),
    ("eghn-L3-paper", "EGHN, clusters [6, 3, 2], the paper's messages", "mcomplex",
     lambda: _eghn([6, 3, 2], bounded=False)),
    ("eghn-released", "EGHN.released, mocap-like inputs, 5 clusters, batch_max_features [1]", "mocap",
     lambda: _released()),
    ("egnn", "EGNN, 4 layers", "mcomplex", lambda: _egnn()),
)


def _eghn(clusters: list[int], bounded: bool):
    from eghn.models import EGHN

    messages = dict(coord_message="bounded", pool_message="bounded") if bounded else {}
    return EGHN(1, 3, 3, hidden=64, clusters=clusters, enc_layers=3, pool_layers=3, dec_layers=1, **messages)


def _released():
    from eghn.models import EGHN

    return EGHN.released(2, 2, 2, clusters=5, hidden=64, layers=3, pool_layers=3, batch_max_features=[1])


def _egnn():
    from eghn.models import EGNN

    return EGNN(1, 3, hidden=64, layers=4)


def _batches(kind: str) -> list:
    """Six batches of different node, edge and graph counts (and one of mixed system sizes)."""
    import side_by_side as sbs
    import torch

    from eghn.data import collate
    from eghn.testing.strategies import random_graph

    if kind == "mcomplex":  # M-complex single systems of m complexes of `size` particles
        shapes = [(8, 3, 3), (5, 3, 3), (4, 3, 4), (3, 4, 4), (2, 5, 5)]
        out = [sbs._mcomplex_graphs(b, m, size) for b, m, size in shapes]
        return [*out, collate(out[1].unbatch()[:2] + out[3].unbatch()[:2])]
    # motion-capture-like: 31 joints, node features [|v|, height], two features on each edge set
    gen = torch.Generator().manual_seed(0)

    def skeleton(n: int):
        g = random_graph(n, node_dim=2, edge_dim=2, local_edge_dim=2, edge_prob=0.2, target=True,
                         generator=gen, dtype=torch.float32)
        return g.replace(h=g.h.abs())

    return [collate([skeleton(n) for n in sizes])
            for sizes in [(31,) * 8, (31,) * 5, (31,) * 3, (31,) * 2, (31,) * 12, (31, 25, 31)]]


def _shape(g) -> list[int]:
    return [g.num_graphs, g.num_nodes, g.num_edges]


def breaks(name: str, what: str, model, graphs: list, backend: str) -> dict:
    """Graph breaks, graphs compiled and recompilations of training steps on ``graphs``."""
    import torch

    from eghn.train.compiled import trace_report

    torch.manual_seed(0)
    report = trace_report(model, graphs, backend=backend)
    return dict(variant=name, model=what, steps=len(graphs), batches=[_shape(g) for g in graphs],
                graph_breaks=len(report.graph_breaks), graph_break_reasons=report.graph_breaks,
                graphs_compiled=report.graphs, recompile_reasons=report.recompiles)


def breaks_only(workloads: list[str], backend: str) -> list[dict]:
    import side_by_side as sbs
    import torch

    runs = []
    for name, what, kind, build in VARIANTS:
        torch.manual_seed(0)
        runs.append(breaks(name, what, build(), _batches(kind), backend))
    for w in workloads:
        try:
            model, g = sbs.workload_model(w)
        except Exception as exc:  # a workload whose data is not here
            runs.append(dict(variant=w, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"))
            continue
        runs.append(breaks(w, f"workload {w} (benchmarks/side_by_side.py)", model, [g], backend))
    for r in runs:
        if "error" in r:
            print(f"{r['variant']:<15} not run: {r['error']}", flush=True)
            continue
        print(f"{r['variant']:<15} {r['graph_breaks']} graph breaks, {r['graphs_compiled']} graph(s) compiled over "
              f"{len(r['batches'])} batch(es)", flush=True)
        for reason in r["graph_break_reasons"] + r["recompile_reasons"]:
            print(f"{'':<15} - {reason}", flush=True)
    return runs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workloads", nargs="*",
                    help="default: mocap mcomplex55 (timed); none with --breaks-only (the variants only)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--breaks-only", action="store_true",
                    help="count graph breaks and recompilations of every model variant; no timing")
    ap.add_argument("--backend", default="aot_eager",
                    help="torch.compile backend of --breaks-only (default aot_eager: traces forward and backward "
                         "as Inductor would, generates no kernels)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import side_by_side as sbs

    command = "python benchmarks/compile.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.breaks_only:
        runs = breaks_only(args.workloads, args.backend)
        result = dict(**sbs.provenance(), command=command, backend=args.backend, dynamic=True,
                      batches="[graphs, nodes, global edges] of each batch", runs=runs)
        if args.out:
            sbs.write_result(args.out, result)
        return
    result = dict(**sbs.provenance(), command=command, runs=[])
    for w in args.workloads or ["mocap", "mcomplex55"]:
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
