"""Parameter count and forward+backward time per batch of every registered model.

Two synthetic configurations shaped like the paper's datasets (built here, no data needed):

* ``mcomplex55``: M-complex (5,5)-like: 25 particles per graph, fully connected (600 directed
  edges), local edges along a random spanning tree; batch 100 (N = 2500, E = 60000);
* ``mcomplex1010``: M-complex (10,10)-like: 100 particles per graph, fully connected (9900
  directed edges); batch 100 (N = 10^4, E = 990000), where the paper reports TFN and the
  SE(3)-Transformer out of memory;
* ``mocap``: motion-capture-like: 31 nodes, 60 directed local edges (a random 30-bone tree
  in both directions) and 130 directed global edges (the bones plus 35 random pairs, both
  directions); batch 100 (N = 3100, E = 13000).

Each model is built with its defaults (``node_dim = 1``, ``edge_dim = 2``), run once to warm
up, then timed over ``--reps`` forward+backward passes of an MSE loss (median wall-clock time
and median process CPU time per batch; on a shared, loaded machine the CPU time is the more
stable figure, with ``--threads 1`` it is the single-core compute time). TFN and the
SE(3)-Transformer get ``memory_limit = --mem-limit-gib``: above it they report the estimated
need instead of running (as the paper reports them out of memory on large systems).

Usage::

    python benchmarks/bench_models.py [--reps 3] [--threads 1] [--device cpu] [--models egnn,gmn]
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from eghn.data import Graph, collate
from eghn.models import available, get
from eghn.models._common import ModelOutOfMemoryError
from eghn.train.objective import training_objective

sys.path.insert(0, str(Path(__file__).resolve().parent))

BASELINE_MODULES = ["linear", "mpnn", "radial_field", "egnn", "gmn", "tfn", "se3_transformer"]


def random_tree(n: int, gen: torch.Generator) -> list[tuple[int, int]]:
    return [(k, int(torch.randint(0, k, (1,), generator=gen))) for k in range(1, n)]


def make_graph(kind: str, gen: torch.Generator) -> Graph:
    if kind in ("mcomplex55", "mcomplex1010"):
        n = 25 if kind == "mcomplex55" else 100
        glob = [(i, j) for i in range(n) for j in range(n) if i != j]
    elif kind == "mocap":
        n = 31
        glob = None
    else:
        raise ValueError(kind)
    bones = random_tree(n, gen)
    local = bones + [(b, a) for a, b in bones]
    if glob is None:
        pairs = set(map(frozenset, bones))
        while len(pairs) < 65:
            a, b = torch.randint(0, n, (2,), generator=gen).tolist()
            if a != b:
                pairs.add(frozenset((a, b)))
        und = [tuple(p) for p in pairs]
        glob = und + [(b, a) for a, b in und]
    ei = torch.tensor(glob, dtype=torch.long).t().contiguous()
    is_bond = torch.tensor([((i, j) in set(local)) for i, j in glob], dtype=torch.float32)
    edge_attr = torch.stack([torch.randn(len(glob), generator=gen), is_bond], -1)
    pos = torch.randn(n, 3, generator=gen) * 2
    vel = torch.randn(n, 3, generator=gen) * 0.1
    return Graph(pos=pos, vel=vel, h=vel.norm(dim=-1, keepdim=True), edge_index=ei, edge_attr=edge_attr,
                 local_edge_index=torch.tensor(local, dtype=torch.long).t().contiguous(),
                 target=pos + vel + 0.01 * torch.randn(n, 3, generator=gen))


def bench(name: str, batch: Graph, reps: int, mem_limit: float | None, device: str) -> dict:
    extra = {"memory_limit": mem_limit} if name in ("tfn", "se3_transformer") else {}
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = get(name, node_dim=batch.h.shape[1], edge_dim=batch.edge_attr.shape[1], local_edge_dim=0,
                **extra).to(device)
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    row = {"model": name, "params": n_params, "build_s": build_s, "ms": None, "cpu_ms": None, "note": "",
           "peak": None}
    if hasattr(model, "estimate_memory"):
        est = model.estimate_memory(batch.num_nodes, batch.num_edges, torch.float32)
        row["note"] = f"est. {est / 2**30:.2f} GiB"

    def step() -> None:
        model.zero_grad(set_to_none=True)
        out = model(batch)
        training_objective(out, batch.target).loss.backward()

    try:
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        step()  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
            row["peak"] = torch.cuda.max_memory_allocated() / 2**30
        walls, cpus = [], []
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            if device == "cuda":
                torch.cuda.synchronize()
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        row["ms"] = 1000 * statistics.median(walls)
        row["cpu_ms"] = 1000 * statistics.median(cpus)
    except ModelOutOfMemoryError as err:
        row["note"] = f"{type(err).__name__}: {str(err)[:400]}"
    finally:
        if device == "cuda":
            torch.cuda.empty_cache()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--mem-limit-gib", type=float, default=4.0,
                    help="refuse TFN/SE(3)-Tr runs whose estimated memory exceeds this (<= 0: no limit)")
    ap.add_argument("--models", default="", help="comma-separated subset (default: all registered)")
    ap.add_argument("--configs", default="mcomplex55,mocap")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args()
    results = []
    torch.set_num_threads(args.threads)
    for mod in BASELINE_MODULES:
        importlib.import_module(f"eghn.models.{mod}")
    names = args.models.split(",") if args.models else available()
    print(f"torch {torch.__version__}, device {args.device}, threads {args.threads}, reps {args.reps}, "
          f"batch {args.batch}")
    for kind in args.configs.split(","):
        gen = torch.Generator().manual_seed(0)
        batch = collate([make_graph(kind, gen) for _ in range(args.batch)]).to(args.device)
        entry = dict(config=kind, nodes=batch.num_nodes, edges=batch.num_edges,
                     local_edges=int(batch.local_edge_index.shape[1]), models=[])
        results.append(entry)
        print(f"\n{kind}: N = {batch.num_nodes}, E = {batch.num_edges}, E_local = "
              f"{batch.local_edge_index.shape[1]}")
        print(f"| {'model':16s} | {'params':>9s} | {'wall ms/batch':>13s} | {'CPU ms/batch':>12s} | "
              f"{'peak GiB':>8s} | {'build s':>7s} | note |")
        print(f"|{'-' * 18}|{'-' * 11}|{'-' * 15}|{'-' * 14}|{'-' * 10}|{'-' * 9}|------|")
        for name in names:
            try:
                limit = args.mem_limit_gib * 2**30 if args.mem_limit_gib > 0 else None
                r = bench(name, batch, args.reps, limit, args.device)
            except Exception as err:  # report and go on with the other models
                r = {"model": name, "params": 0, "build_s": 0.0, "ms": None, "cpu_ms": None, "peak": None,
                     "note": f"failed: {type(err).__name__}: {str(err)[:80]}"}
            entry["models"].append(r)
            ms = f"{r['ms']:.1f}" if r["ms"] is not None else "-"
            cpu = f"{r['cpu_ms']:.1f}" if r.get("cpu_ms") is not None else "-"
            peak = f"{r['peak']:.2f}" if r["peak"] is not None else "-"
            print(f"| {r['model']:16s} | {r['params']:>9,d} | {ms:>13s} | {cpu:>12s} | {peak:>8s} | "
                  f"{r['build_s']:>7.1f} | {r['note']} |", flush=True)
    if args.out:
        import side_by_side as sbs

        out = dict(machine=sbs.machine(), commit=sbs.commit(), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   command="python benchmarks/bench_models.py " + " ".join(sys.argv[1:]), threads=args.threads,
                   reps=args.reps, batch=args.batch, results=results)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
