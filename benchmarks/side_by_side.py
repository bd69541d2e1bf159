"""Training-step speed and memory of eghn beside the authors' released EGHN code, in one run.

The authors' code (github ``hanjq17/EGHN``) is *not* part of eghn: pass the path of a checkout
of it, kept outside this repository; it is imported from there unmodified. It imports
``torch_sparse.spmm``; where the ``torch_sparse`` package is not installed, a stand-in with the
same arithmetic as ``torch_sparse.spmm`` (gather the dense rows, scale, scatter-add) is used.

Three models per workload, each trained for a step (forward, loss, backward, Adam) on the
*same* batch:

* ``authors``: the released ``EGHN`` with the hyperparameters of the authors' scripts for the
  task, and their optimiser (``torch.optim.Adam``, default implementation);
* ``released``: :meth:`eghn.models.EGHN.released` with the same hyperparameters -- the same
  architecture, the same parameter count (checked), equal capacity -- fed the same arrays;
* ``default``: the model of eghn's shipped config for the task (the paper's equations), on
  eghn's own inputs for the task, with the optimiser ``eghn train`` uses (fused Adam).

Workloads:

* ``mocap``: CMU motion capture, Subject 9 running, 100 validation samples (31 joints;
  needs the mocap data, see :mod:`eghn.data.mocap`), width 64, K = 5;
* ``mcomplex55`` / ``mcomplex1010``: 100 M-complex (5,5) / (10,10) single systems
  (25 / 100 particles, fully connected, 3 edge features; positions and charges drawn at random,
  which changes nothing in the arithmetic), width 64, K as eghn's Table 1 configs;
* ``adk``: 8 frames of the AdK backbone from the trajectory that ships with MDAnalysisTests
  (855 atoms, pairs within 8 Å: about 34,000 edges per frame), the authors' MD config
  (width 128, 4 interaction and 4 pooling layers, 2 decoder layers, K = 20, batch 8).

Timing: one process per (workload, thread count) holds all three models and alternates them in
rounds, the order rotating every round, so that drift of a shared machine hits all three alike.
Reported: the median ms per step of each model over all timed steps, the spread of the
per-round medians (max / min), and the ratio ``authors / model`` per round (median and range).
Also per model: the GFLOP of one step (``torch.utils.flop_counter``: matrix products, forward
and backward) and ``gemm_floor_ms``, those FLOPs at this machine's rate on an edge-sized matrix
product -- the time the step would take if it did nothing but its matrix products at that rate.

With ``--per-process N`` each model is also timed alone in its own processes, as its training
script runs it: eghn's two models with :func:`eghn.train.malloc.reuse_freed_memory` (what
``eghn train`` does on a CPU), the authors' model with the C library's defaults; N processes of
each kind, alternating.

Memory: one process per (workload, model), one thread. ``above_import_mb`` is the peak
resident memory during the timed steps minus the resident memory just after ``import torch``
(data, model, optimiser state and the step's own tensors); ``step_mb`` is that peak minus the
resident memory just before the first step (the step's own tensors: activations kept for the
backward pass, gradients, optimiser state). Peaks are read from ``VmHWM`` after resetting it
(``/proc/self/clear_refs``), so they belong to the steps alone. Linux only.

Usage::

    python benchmarks/side_by_side.py AUTHORS_DIR                 # all workloads, 1 and 2 threads
    python benchmarks/side_by_side.py AUTHORS_DIR --workloads mocap mcomplex55 --threads 2
    python benchmarks/side_by_side.py AUTHORS_DIR --out benchmarks/results/side_by_side.json

``--device cuda`` times on a GPU (peak CUDA memory instead of resident memory).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

WORKLOADS = ("mocap", "mcomplex55", "mcomplex1010", "adk")
MODELS = ("authors", "released", "default")
#: with --compiled: eghn's two models through train.compile's CompiledForward (timed after their
#: first step, which compiles)
COMPILED = ("released_compiled", "default_compiled")
# default timing effort per workload: (rounds, steps per round)
EFFORT = {"mocap": (7, 5), "mcomplex55": (7, 5), "mcomplex1010": (5, 2), "adk": (5, 2)}
_RSS_AT_IMPORT: float | None = None


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def _trim() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _install_spmm_stand_in() -> bool:
    """``torch_sparse.spmm`` for the authors' code where ``torch_sparse`` is not installed;
    ``True`` when the stand-in was installed."""
    try:
        import torch_sparse  # noqa: F401
        return False
    except ImportError:
        pass

    def spmm(index, value, m, n, matrix):
        row, col = index
        out = matrix.index_select(-2, col) * value.unsqueeze(-1).to(matrix.dtype)
        return matrix.new_zeros(m, matrix.shape[-1]).index_add_(0, row, out)

    mod = types.ModuleType("torch_sparse")
    mod.spmm = spmm
    sys.modules["torch_sparse"] = mod
    return True


def _shipped(config: str, overrides=()):
    from eghn.train.config import load_config

    return load_config(config, list(overrides))


def _mcomplex_graphs(batch: int, m: int, size: int):
    """A batch of M-complex single systems shaped as :class:`eghn.data.MComplexDataset` builds
    them (fully connected, edge features [q_i q_j, same complex, |x_i - x_j|^2], local edges
    within the complexes carrying the same features)."""
    import torch

    from eghn.data import Graph, collate

    n = m * size
    gen = torch.Generator().manual_seed(0)
    complex_id = torch.arange(m).repeat_interleave(size)
    i, j = torch.nonzero(~torch.eye(n, dtype=torch.bool), as_tuple=True)
    same = complex_id[i] == complex_id[j]
    graphs = []
    for _ in range(batch):
        pos = torch.randn(n, 3, generator=gen) * 2
        charge = torch.randint(0, 2, (n,), generator=gen).float() * 2 - 1
        ea = torch.stack([charge[i] * charge[j], same.float(), ((pos[i] - pos[j]) ** 2).sum(-1)], -1)
        vel = torch.randn(n, 3, generator=gen) * 0.5
        target = pos + vel * 0.5 + 0.1 * torch.randn(n, 3, generator=gen)
        graphs.append(Graph(pos=pos, vel=vel, h=vel.norm(dim=-1, keepdim=True), edge_index=torch.stack([i, j]),
                            edge_attr=ea, local_edge_index=torch.stack([i[same], j[same]]), local_edge_attr=ea[same],
                            target=target))
    return collate(graphs)


def build_workload(name: str) -> dict:
    """The batch and the hyperparameters of one workload (see the module docstring).

    Returns a dict with ``common`` (a :class:`~eghn.data.Graph` whose ``h``, ``edge_attr`` and
    ``local_edge_attr`` are the authors' inputs, given to ``authors`` and ``released``),
    ``own`` (eghn's own inputs for ``default``), ``authors_kw`` (the authors' ``EGHN(...)``
    arguments), ``released_kw`` and the ``default`` model's config."""

    from eghn.train.loop import build_datasets

    if name == "mocap":
        cfg_rel = _shipped("mocap/run_eghn_released")
        ds = build_datasets(cfg_rel, splits=("val",))["val"]
        common = ds.collate(range(100))  # released features: h = [|v|, y / 10], edges [hops, d^2]
        h = common.h.clone()
        h[:, 1] = h[:, 1] / h[:, 1].max()  # the authors' script divides the height by its batch maximum
        authors_h = h
        cfg = _shipped("mocap/run_eghn")
        own = build_datasets(cfg, splits=("val",))["val"].collate(range(100))
        authors_kw = dict(in_node_nf=2, in_edge_nf=2, hidden_nf=64, n_cluster=5, layer_per_block=3,
                          layer_pooling=3, layer_decoder=1)
        released_kw = dict(node_dim=2, edge_dim=2, local_edge_dim=2, clusters=5, hidden=64, layers=3,
                           pool_layers=3, unpool_layers=1, batch_max_features=[1])
    elif name in ("mcomplex55", "mcomplex1010"):
        size = 5 if name == "mcomplex55" else 10
        cfg = _shipped(f"table1/eghn_single_{size}x{size}")
        common = own = _mcomplex_graphs(100, size, size)
        authors_h = common.h
        k = cfg["model"]["clusters"][0]
        authors_kw = dict(in_node_nf=1, in_edge_nf=3, hidden_nf=64, n_cluster=k, layer_per_block=3,
                          layer_pooling=3, layer_decoder=1)
        released_kw = dict(node_dim=1, edge_dim=3, local_edge_dim=3, clusters=k, hidden=64, layers=3,
                           pool_layers=3, unpool_layers=1)
    elif name == "adk":
        cfg = _shipped("protein/adk_eghn", ['data.source="adk-embedded"'])
        # the released protocol gives the authors' MD inputs: nodes [|v|, q / max q], global
        # edges [d_ij, d_ij^2], local (bonded) edges [first-frame bond length, d_ij^2]
        common = own = build_datasets(cfg, splits=("train",))["train"].collate(range(8))
        authors_h = common.h
        authors_kw = dict(in_node_nf=2, in_edge_nf=2, hidden_nf=128, n_cluster=20, layer_per_block=4,
                          layer_pooling=4, layer_decoder=2)
        released_kw = dict(node_dim=2, edge_dim=2, local_edge_dim=2, clusters=20, hidden=128, layers=4,
                           pool_layers=4, unpool_layers=2)
    else:
        raise SystemExit(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
    return dict(common=common, own=own, authors_h=authors_h, authors_kw=authors_kw, released_kw=released_kw,
                default_config=cfg)


def released_model(work: dict):
    """``EGHN.released`` at the workload's sizes (``released_kw``); unseeded."""
    from eghn.models import EGHN

    kw = dict(work["released_kw"])
    return EGHN.released(kw.pop("node_dim"), kw.pop("edge_dim"), kw.pop("local_edge_dim"), **kw)


def default_model(work: dict):
    """eghn's model of the workload's config, sized by its own inputs (``own``); unseeded."""
    from eghn.train.loop import build_model

    g = work["own"]
    dims = types.SimpleNamespace(node_dim=g.h.shape[1], edge_dim=g.edge_attr.shape[1] if g.edge_attr is not None else 0,
                                 local_edge_dim=g.local_edge_attr.shape[1] if g.local_edge_attr is not None else 0)
    return build_model(work["default_config"], dims)


def workload_model(workload: str):
    """``(model, batch)`` of eghn for a workload name: a :data:`WORKLOADS` name gives the default
    model on eghn's own inputs, ``NAME-released`` the released architecture on the common
    inputs (e.g. ``mocap-released``). Seeded: the same weights every call."""
    import torch

    released = workload.endswith("-released")
    work = build_workload(workload.removesuffix("-released"))
    torch.manual_seed(0)
    if released:
        return released_model(work), work["common"]
    return default_model(work), work["own"]


def provenance() -> dict:
    """Machine, commit and date: the head of every result file."""
    return dict(machine=machine(), commit=commit(), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))


def write_result(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")


def authors_model(work: dict, authors_dir: str, device: str = "cpu"):
    """The authors' ``EGHN`` (imported from their checkout ``authors_dir``, unmodified) built
    with the workload's arguments after ``torch.manual_seed(0)``."""
    import torch
    from torch import nn

    _install_spmm_stand_in()
    if authors_dir not in sys.path:
        sys.path.insert(0, authors_dir)
    from model.eghn import EGHN as AuthorsEGHN

    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        return AuthorsEGHN(activation=nn.SiLU(), device=device, **work["authors_kw"]).to(device)


def make_losses(work: dict, authors_dir: str | None, which, device: str) -> dict:
    """Per model of ``which``: ``(module, loss)``, where ``loss()`` runs the forward pass of
    a training step on the workload's batch and returns the training loss (MSE plus the
    connectivity loss), as each code trains."""
    import torch

    out = {}
    common = work["common"].to(device)
    if "authors" in which:
        ref = authors_model(work, authors_dir, device)
        n = int(common.nodes_per_graph()[0])
        nodes = work["authors_h"].to(device)
        lei = common.local_edge_index

        def loss_authors():
            x, _, _ = ref(common.pos, nodes, common.edge_index, common.edge_attr, [lei[0], lei[1]],
                          common.local_edge_attr, n_node=n, v=common.vel, node_mask=None, node_nums=None)
            return ((x - common.target) ** 2).mean() + ref.cut_loss

        out["authors"] = (ref, loss_authors)

    def eghn_loss(model, graph, compiled: bool):
        from eghn.train.objective import training_objective

        if compiled:  # as train.compile runs it: checks outside, the model through torch.compile
            from eghn.train.compiled import CompiledForward

            forward = CompiledForward(model)
            return lambda: training_objective(forward(graph), graph.target).loss
        return lambda: training_objective(model(graph), graph.target).loss

    for name in which:
        base = name.removesuffix("_compiled")
        if base not in ("released", "default"):
            continue
        torch.manual_seed(0)
        if base == "released":
            model, graph = released_model(work).to(device), common
        else:
            model, graph = default_model(work).to(device), work["own"].to(device)
        out[name] = (model, eghn_loss(model, graph, name.endswith("_compiled")))
    return out


def make_steps(work: dict, authors_dir: str | None, which, device: str) -> dict:
    """One closure per model that runs a full training step (:func:`make_losses`, backward,
    Adam: the authors' default implementation for their model, fused for eghn's, as each code
    trains) on the workload's batch."""
    import torch

    steps, params = {}, {}
    common = work["common"]
    for name, (model, loss) in make_losses(work, authors_dir, which, device).items():
        opt = (torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=1e-12) if name == "authors" else
               torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=1e-12, fused=True))

        def step(opt=opt, loss=loss):
            opt.zero_grad(set_to_none=True)  # the default of zero_grad(), which the authors' script calls
            loss().backward()
            opt.step()

        steps[name], params[name] = step, sum(p.numel() for p in model.parameters())
    if "authors" in params and "released" in params and params["authors"] != params["released"]:
        raise SystemExit(f"parameter counts differ: authors {params['authors']:,}, released {params['released']:,}")
    return dict(steps=steps, params=params, nodes=common.num_nodes, edges=common.num_edges,
                local_edges=int(common.local_edge_index.shape[1]), graphs=common.num_graphs)


def gemm_rate(device: str = "cpu", reps: int = 30) -> float:
    """GFLOP/s of an edge-sized matrix product (13,000 x 64 @ 64 x 64, the shape of most of the
    products in a mocap step), best of ``reps``, on the current thread count."""
    import torch

    a = torch.randn(13000, 64, device=device)
    w = torch.randn(64, 64, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(5):
        a @ w
    sync()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ w
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * 13000 * 64 * 64 / best / 1e9


def child_time(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    work = build_workload(args.workload)
    models = MODELS + (COMPILED if args.compiled else ())
    s = make_steps(work, args.authors, models, args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    compile_s = {}
    for m, f in s["steps"].items():
        t0 = time.perf_counter()
        f()  # a compiled model compiles here
        compile_s[m] = time.perf_counter() - t0
        f()
    sync()
    from torch.utils.flop_counter import FlopCounterMode

    gflop = {}
    for m, f in s["steps"].items():
        if m in COMPILED:  # the same products as the eager model
            continue
        with FlopCounterMode(display=False) as counter:
            f()
        gflop[m] = counter.get_total_flops() / 1e9
    for m in COMPILED:
        gflop[m] = gflop[m.removesuffix("_compiled")]
    rate = gemm_rate(args.device)
    rounds, n_steps = args.rounds or EFFORT[args.workload][0], args.steps or EFFORT[args.workload][1]
    per_round = {m: [] for m in models}
    all_steps = {m: [] for m in models}
    for r in range(rounds):
        order = models[r % len(models):] + models[:r % len(models)]
        for m in order:
            ts = []
            for _ in range(n_steps):
                t0 = time.perf_counter()
                s["steps"][m]()
                sync()
                ts.append(time.perf_counter() - t0)
            per_round[m].append(statistics.median(ts) * 1e3)
            all_steps[m] += ts
    out = dict(workload=args.workload, threads=args.threads, device=args.device, rounds=rounds,
               steps_per_round=n_steps, params=s["params"], nodes=s["nodes"], edges=s["edges"],
               local_edges=s["local_edges"], graphs=s["graphs"], gemm_gflop_per_s=round(rate, 1), models={})
    for m in models:
        med = statistics.median(all_steps[m]) * 1e3
        rec = dict(ms_per_step=round(med, 2), samples_per_s=round(s["graphs"] / med * 1e3, 1),
                   round_medians_ms=[round(x, 2) for x in per_round[m]],
                   spread=round(max(per_round[m]) / min(per_round[m]), 3), gflop=round(gflop[m], 3),
                   gemm_floor_ms=round(gflop[m] / rate * 1e3, 2))
        if m != "authors":
            ratios = [a / b for a, b in zip(per_round["authors"], per_round[m])]
            rec.update(ratio=round(statistics.median(all_steps["authors"]) / statistics.median(all_steps[m]), 3),
                       ratio_rounds=[round(min(ratios), 3), round(max(ratios), 3)])
        if m in COMPILED:
            rec["first_step_s"] = round(compile_s[m], 1)
        out["models"][m] = rec
    return out


def child_steps(args) -> dict:
    """One model alone in this process, as its own training script would run it: eghn's models
    with :func:`eghn.train.malloc.reuse_freed_memory` (``eghn train`` on a CPU), the authors'
    model with the C library's defaults."""
    import torch

    torch.set_num_threads(args.threads)
    if args.model != "authors" and args.device == "cpu":
        from eghn.train.malloc import reuse_freed_memory

        reuse_freed_memory()
    work = build_workload(args.workload)
    f = make_steps(work, args.authors, (args.model,), args.device)["steps"][args.model]
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for _ in range(2):
        f()
    sync()
    ts = []
    for _ in range(args.steps or EFFORT[args.workload][1]):
        t0 = time.perf_counter()
        f()
        sync()
        ts.append(time.perf_counter() - t0)
    return dict(ms=statistics.median(ts) * 1e3)


def per_process(common: list[str], workload: str, threads: int, pairs: int, steps: int) -> dict:
    """Each model in its own processes (see :func:`child_steps`), the three kinds of process
    alternating ``pairs`` times, the order rotating."""
    ms = {m: [] for m in MODELS}
    for r in range(pairs):
        for m in MODELS[r % 3:] + MODELS[:r % 3]:
            extra = ["--steps", str(steps)] if steps else []
            ms[m].append(_child([*common, "--child", "steps", "--workload", workload, "--model", m,
                                 "--threads", str(threads), *extra])["ms"])
    out = dict(workload=workload, threads=threads, processes_per_model=pairs,
               eghn_malloc="reuse_freed_memory", authors_malloc="glibc defaults", models={})
    for m in MODELS:
        rec = dict(ms_per_step=round(statistics.median(ms[m]), 2), process_medians_ms=[round(x, 2) for x in ms[m]],
                   spread=round(max(ms[m]) / min(ms[m]), 3))
        if m != "authors":
            ratios = [a / b for a, b in zip(ms["authors"], ms[m])]
            rec.update(ratio=round(statistics.median(ms["authors"]) / statistics.median(ms[m]), 3),
                       ratio_rounds=[round(min(ratios), 3), round(max(ratios), 3)])
        out["models"][m] = rec
    return out


def child_memory(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    work = build_workload(args.workload)
    s = make_steps(work, args.authors, (args.model,), args.device)
    del work
    f = s["steps"][args.model]
    cuda = args.device.startswith("cuda")
    _trim()
    before = _status_mb("VmRSS")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before_cuda = torch.cuda.memory_allocated() / 2**20
    _reset_peak()
    for _ in range(2):  # the first step also creates the gradients and the optimiser state
        f()
    if cuda:
        torch.cuda.synchronize()
        peak_cuda = torch.cuda.max_memory_allocated() / 2**20
    peak = _status_mb("VmHWM")
    rec = dict(workload=args.workload, model=args.model, params=s["params"][args.model],
               rss_at_torch_import_mb=round(_RSS_AT_IMPORT, 1), rss_before_steps_mb=round(before, 1),
               peak_rss_mb=round(peak, 1), above_import_mb=round(peak - _RSS_AT_IMPORT, 1),
               step_mb=round(peak - before, 1))
    if cuda:
        rec.update(cuda_peak_mb=round(peak_cuda, 1), cuda_step_mb=round(peak_cuda - before_cuda, 1))
    return rec


def machine() -> dict:
    import platform

    import torch

    from eghn.train.machine import cpu_name

    rec = dict(cpu=cpu_name(), cores=os.cpu_count(), torch=torch.__version__, python=platform.python_version())
    if torch.cuda.is_available():
        rec["gpu"] = torch.cuda.get_device_name(0)
    return rec


def commit() -> str:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True)
        if out.returncode:
            # a copy without its git folder (a device machine, a source archive): the commit it was made
            # from, if the caller says so
            return os.environ.get("EGHN_COMMIT", "unknown")
        # the code measured: the package and the benchmarks (edits elsewhere, e.g. to the docs, do not count)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "../eghn", "."],
                               cwd=here, capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("+local changes" if dirty else "")
    except OSError:
        return "unknown"


def _child(argv: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"benchmark child {' '.join(argv[1:])} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("authors", help="a checkout of github hanjq17/EGHN (outside this repository)")
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--rounds", type=int, default=0, help="timing rounds (default: per workload)")
    ap.add_argument("--steps", type=int, default=0, help="timed steps per model per round (default: per workload)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-memory", action="store_true", help="timing only")
    ap.add_argument("--compiled", action="store_true",
                    help="also time eghn's two models compiled (train.compile), in the same rounds")
    ap.add_argument("--no-timing", action="store_true", help="skip the timing of the three models in one process")
    ap.add_argument("--per-process", type=int, default=0, metavar="N",
                    help="also time each model in its own processes, as its training script runs it (eghn's "
                         "with eghn.train.malloc.reuse_freed_memory), N processes of each kind, alternating")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--child", choices=["time", "memory", "steps"], help=argparse.SUPPRESS)
    ap.add_argument("--workload", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        args.threads = args.threads[0]
        rec = {"time": child_time, "memory": child_memory, "steps": child_steps}[args.child](args)
        print(json.dumps(rec))
        return
    if not (Path(args.authors) / "model" / "eghn.py").is_file():
        raise SystemExit(f"{args.authors} is not a checkout of the authors' code (no model/eghn.py)")
    authors = str(Path(args.authors).resolve())
    result = dict(**provenance(),
                  command="python benchmarks/side_by_side.py AUTHORS_DIR " + " ".join(sys.argv[2:] if argv is None
                                                                                     else argv[1:]),
                  timing=[], per_process=[], memory=[])
    common = [authors, "--device", args.device]
    for w in args.workloads:
        for t in args.threads:
            extra = (["--rounds", str(args.rounds)] if args.rounds else []) + (["--steps", str(args.steps)]
                                                                              if args.steps else [])
            if args.no_timing:
                r = None
            else:
                r = _child([*common, "--child", "time", "--workload", w, "--threads", str(t), *extra,
                            *(["--compiled"] if args.compiled else [])])
                result["timing"].append(r)
            ms = r["models"] if r else None
            if ms:
                print(f"{w:<13} {t} thr  authors {ms['authors']['ms_per_step']:8.1f} ms  "
                      f"released {ms['released']['ms_per_step']:8.1f} ms (x{ms['released']['ratio']:.2f}, rounds "
                      f"{ms['released']['ratio_rounds'][0]:.2f}-{ms['released']['ratio_rounds'][1]:.2f})  "
                      f"default {ms['default']['ms_per_step']:8.1f} ms (x{ms['default']['ratio']:.2f}, rounds "
                      f"{ms['default']['ratio_rounds'][0]:.2f}-{ms['default']['ratio_rounds'][1]:.2f})", flush=True)
                for m in COMPILED:
                    if m in ms:
                        print(f"{'':<13} {t} thr  {m} {ms[m]['ms_per_step']:8.1f} ms (x{ms[m]['ratio']:.2f}, rounds "
                              f"{ms[m]['ratio_rounds'][0]:.2f}-{ms[m]['ratio_rounds'][1]:.2f}; first step "
                              f"{ms[m]['first_step_s']:.0f} s)", flush=True)
            if args.per_process:
                r = per_process(common, w, t, args.per_process, args.steps)
                result["per_process"].append(r)
                ms = r["models"]
                print(f"{w:<13} {t} thr, one process per model: authors {ms['authors']['ms_per_step']:8.1f} ms  "
                      f"released {ms['released']['ms_per_step']:8.1f} ms (x{ms['released']['ratio']:.2f})  "
                      f"default {ms['default']['ms_per_step']:8.1f} ms (x{ms['default']['ratio']:.2f})", flush=True)
        if not args.no_memory:
            for m in MODELS:
                r = _child([*common, "--child", "memory", "--workload", w, "--model", m, "--threads", "1"])
                result["memory"].append(r)
                print(f"{w:<13} memory {m:<9} {r['params']:>9,} params  above torch import {r['above_import_mb']:8.1f}"
                      f" MB  step {r['step_mb']:8.1f} MB", flush=True)
    if args.out:
        write_result(args.out, result)


if __name__ == "__main__":
    if "--child" in sys.argv:
        import torch  # noqa: F401  (the memory baseline is the resident memory after importing torch)

        _RSS_AT_IMPORT = _status_mb("VmRSS")
    main()
