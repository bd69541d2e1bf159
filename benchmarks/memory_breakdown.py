"""Where a training step's memory goes: the tensors autograd keeps for the backward pass.

For each workload and model of ``benchmarks/side_by_side.py`` (the authors' released EGHN,
eghn's released architecture at equal capacity, eghn's default model), one forward pass of a
training step runs under :func:`torch.autograd.graph.saved_tensors_hooks`, which sees every
tensor autograd saves for the backward pass. Each saved tensor is counted once per storage
(views of one buffer share it) and attributed:

* to its **size class**: ``edge`` (first dimension = number of global or local edges),
  ``node`` (number of nodes), ``other`` (cluster-level, weights, scalars);
* to the **module** whose forward was running when it was saved (the innermost one; its class
  name, e.g. ``Linear`` or ``SiLU``), as a share of the total.

Beside the saved tensors: the bytes of the parameters, of their gradients (as many) and of
Adam's two moment buffers (twice as many), which a training step holds as well.

The account is not a peak. So each model also runs in a process of its own, one thread, and
its **steady step memory** is measured: three training steps (the optimiser state exists
after the first), then the peak resident memory of two more steps (``VmHWM``, reset before
them) minus the resident memory just before them: what a step adds in a running training.

Models: ``authors``, ``released`` and ``default`` as in ``side_by_side.py``, and
``released_recompute`` / ``default_recompute``: the same with the edge MLPs' activations
recomputed in the backward pass (:func:`eghn.nn.set_edge_recompute` ``(True)``,
``train.recompute_edges = true``), which keeps only their inputs.

Usage::

    python benchmarks/memory_breakdown.py AUTHORS_DIR [--workloads mocap mcomplex55] \\
        [--out benchmarks/results/memory_breakdown.json]

The time a recomputation costs is a speed question, measured side by side elsewhere
(``benchmarks/fast_paths.py``); this script measures memory only.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import side_by_side

MB = 2**20
MODELS = ("authors", "released", "released_recompute", "default", "default_recompute")


def saved_tensor_account(module, loss, sizes: dict[str, set[int]]) -> dict[str, Any]:
    """Run ``loss()`` once, recording what autograd saves (see the module docstring)."""
    import torch

    stack: list[str] = []
    seen: set[tuple[int, int]] = set()
    by_class: Counter[str] = Counter()
    by_module: Counter[str] = Counter()
    count = 0

    def pre(mod, args):
        stack.append(type(mod).__name__)

    def post(mod, args, out):
        stack.pop()

    handles = []
    for m in module.modules():
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))

    def pack(t: torch.Tensor):
        nonlocal count
        storage = t.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key not in seen and storage.nbytes() > 0:
            seen.add(key)
            count += 1
            nbytes = storage.nbytes()
            first = t.shape[0] if t.dim() else 0
            cls = next((name for name, values in sizes.items() if first in values), "other")
            by_class[cls] += nbytes
            by_module[stack[-1] if stack else "(outside modules)"] += nbytes
        return t

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            value = loss()
    finally:
        for h in handles:
            h.remove()
    value.backward()  # the graph is complete and usable
    total = sum(by_class.values())
    params = sum(p.numel() * p.element_size() for p in module.parameters())
    return {
        "saved_tensors": count,
        "saved_mb": round(total / MB, 2),
        "saved_by_size_mb": {k: round(v / MB, 2) for k, v in sorted(by_class.items())},
        "saved_by_module_share": {k: round(v / total, 3) for k, v in by_module.most_common(6)},
        "parameters_mb": round(params / MB, 2),
        "gradients_mb": round(params / MB, 2),
        "adam_state_mb": round(2 * params / MB, 2),
    }


def steady_step_mb(module, loss, authors: bool) -> float:
    """Peak resident memory of two training steps after three, minus the memory before them."""
    import torch

    opt = torch.optim.Adam(module.parameters(), lr=5e-4, weight_decay=1e-12, fused=not authors)

    def step():
        opt.zero_grad(set_to_none=True)
        loss().backward()
        opt.step()

    for _ in range(3):
        step()
    gc.collect()
    side_by_side._trim()
    before = side_by_side._status_mb("VmRSS")
    side_by_side._reset_peak()
    for _ in range(2):
        step()
    return round(side_by_side._status_mb("VmHWM") - before, 1)


def child(workload: str, variant: str, authors_dir: str) -> dict[str, Any]:
    """One model of one workload, in this process (see the module docstring)."""
    import torch

    from eghn.nn import set_edge_recompute

    torch.set_num_threads(1)
    model = variant.removesuffix("_recompute")
    set_edge_recompute(variant.endswith("_recompute"))
    work = side_by_side.build_workload(workload)
    g = work["common"]
    sizes = {"edge": {int(g.num_edges), int(g.local_edge_index.shape[1])}, "node": {int(g.num_nodes)}}
    module, loss = side_by_side.make_losses(work, authors_dir, (model,), "cpu")[model]
    row = {"workload": workload, "model": variant, "nodes": int(g.num_nodes), "edges": int(g.num_edges),
           "local_edges": int(g.local_edge_index.shape[1]), "params": sum(q.numel() for q in module.parameters()),
           **saved_tensor_account(module, loss, sizes)}
    module.zero_grad(set_to_none=True)
    row["steady_step_mb"] = steady_step_mb(module, loss, model == "authors")
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("authors", help="a checkout of github hanjq17/EGHN (outside this repository)")
    p.add_argument("--workloads", nargs="+", default=["mocap", "mcomplex55"], choices=side_by_side.WORKLOADS)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--child", nargs=2, metavar=("WORKLOAD", "MODEL"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(*args.child, args.authors)), flush=True)
        return 0
    rows = []
    for workload in args.workloads:
        for variant in args.models:
            proc = subprocess.run([sys.executable, __file__, args.authors, "--child", workload, variant],
                                  capture_output=True, text=True, env={**os.environ,
                                                                       "OMP_NUM_THREADS": "1"})
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                raise SystemExit(f"{workload} {variant} failed:\n{proc.stderr[-2000:]}")
            row = json.loads(line[len("RESULT "):])
            rows.append(row)
            print(f"{workload:11s} {variant:18s} saved {row['saved_mb']:7.1f} MB {row['saved_by_size_mb']}; "
                  f"steady step {row['steady_step_mb']:.0f} MB; by module {row['saved_by_module_share']}", flush=True)
        authors = next((r for r in rows if r["workload"] == workload and r["model"] == "authors"), None)
        for row in rows:
            if authors and row["workload"] == workload and row is not authors:
                row["saved_vs_authors"] = round(row["saved_mb"] / authors["saved_mb"], 3)
                row["steady_step_vs_authors"] = round(row["steady_step_mb"] / authors["steady_step_mb"], 3)
    if args.out:
        side_by_side.write_result(args.out, {**side_by_side.provenance(), "command": "python benchmarks/"
                                            "memory_breakdown.py AUTHORS_DIR " + " ".join(sys.argv[2:]),
                                            "breakdown": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
