"""Training-step throughput and peak memory of EGHN.

Configurations (each runs in its own process so that peak RSS is its own):

* ``mocap``: batch of 100 motion-capture graphs (31 nodes, 130 global + 60 local directed
  edges), the ``EGHN.single_level`` preset (width 64, K = 5, 3 interaction / 3 pooling / 1 decoder layers).
* ``mcomplex55``: batch of 100 M-complex (5,5) systems (25 particles, fully connected: 600
  global edges with 3 features, 100 local edges within the complexes), ``single_level`` preset, K = 3.
* ``radius-N`` for N in 10^3 .. 10^5 (any N can be asked for): one random system of N particles in a box of constant
  density, global edges within a cutoff (about 16 neighbours), a bonded chain as local edges,
  K = 20; one forward + backward + Adam step.

Usage::

    python benchmarks/bench_eghn.py                   # all configurations
    python benchmarks/bench_eghn.py mocap mcomplex55  # some of them
    python benchmarks/bench_eghn.py --device cuda     # on a GPU (peak CUDA memory reported)

``--live`` adds the peak of heap memory in use during one step (the tensors alive at the peak;
CPU, glibc), ``--flops`` the GFLOP of matrix products in one step (forward and backward,
``torch.utils.flop_counter``; its bookkeeping raises the peak RSS reported) and this
machine's rate on an edge-sized product, and
``--recompute-edges always|never`` overrides :func:`eghn.nn.set_edge_recompute`.

Prints one line per configuration: median and fastest ms per step, samples/s at the median,
peak resident memory of the process during the timed steps (CPU) or peak allocated CUDA
memory, and ``step MB``, that peak minus the memory in use before the steps. For the radius
graphs of 1,000 nodes or more, the growth exponents of time and step memory with N are fitted
(least squares in log-log). ``--out FILE`` writes everything as JSON. Each child process calls
:func:`eghn.train.malloc.reuse_freed_memory`, as ``eghn train`` does on a CPU
(``--glibc-malloc`` leaves it out).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from eghn.data import Graph, collate
from eghn.models import EGHN
from eghn.nn import set_edge_recompute
from eghn.train.objective import training_objective

sys.path.insert(0, str(Path(__file__).resolve().parent))
import side_by_side as sbs

SCALES = [1_000, 3_000, 10_000, 30_000, 100_000]


def mocap_batch(batch: int = 100) -> tuple[Graph, dict]:
    from eghn.data.mocap import SKELETON_EDGES, skeleton_graph

    ei, ea, lei = skeleton_graph(np.asarray(SKELETON_EDGES), 31)
    gen = torch.Generator().manual_seed(0)
    graphs = []
    for _ in range(batch):
        pos = torch.randn(31, 3, generator=gen) * 5
        graphs.append(Graph(pos=pos, vel=torch.randn(31, 3, generator=gen) * 0.3, h=pos[:, 1:2] / 10,
                            edge_index=ei, edge_attr=ea, local_edge_index=lei, target=pos))
    return collate(graphs), dict(node_dim=1, edge_dim=2, clusters=5)


def mcomplex_batch(batch: int = 100, m: int = 5, size: int = 5) -> tuple[Graph, dict]:
    n = m * size
    gen = torch.Generator().manual_seed(0)
    complex_id = torch.arange(m).repeat_interleave(size)
    i, j = torch.nonzero(~torch.eye(n, dtype=torch.bool), as_tuple=True)
    same = complex_id[i] == complex_id[j]
    graphs = []
    for _ in range(batch):
        pos = torch.randn(n, 3, generator=gen) * 2
        charge = torch.randint(0, 2, (n,), generator=gen).float() * 2 - 1
        d2 = ((pos[i] - pos[j]) ** 2).sum(-1)
        ea = torch.stack([charge[i] * charge[j], same.float(), d2], -1)
        vel = torch.randn(n, 3, generator=gen) * 0.5
        graphs.append(Graph(pos=pos, vel=vel, h=vel.norm(dim=-1, keepdim=True), edge_index=torch.stack([i, j]),
                            edge_attr=ea, local_edge_index=torch.stack([i[same], j[same]]), target=pos))
    return collate(graphs), dict(node_dim=1, edge_dim=3, clusters=3)


def radius_graph(n: int, neighbours: float = 16.0) -> tuple[Graph, dict]:
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(0)
    box = n ** (1 / 3)  # unit density
    pos = rng.uniform(0, box, (n, 3))
    cutoff = (3 * neighbours / (4 * np.pi)) ** (1 / 3)
    pairs = cKDTree(pos).query_pairs(cutoff, output_type="ndarray")
    ei = np.concatenate([pairs, pairs[:, ::-1]]).T
    chain = np.stack([np.arange(n - 1), np.arange(1, n)])
    lei = np.concatenate([chain, chain[::-1]], 1)
    p = torch.tensor(pos, dtype=torch.float32)
    g = Graph(pos=p, vel=torch.randn(n, 3) * 0.1, edge_index=torch.from_numpy(ei.copy()),
              local_edge_index=torch.from_numpy(lei.copy()), target=p)
    return g, dict(node_dim=1, edge_dim=0, clusters=20)


class _LiveHeap:
    """Peak bytes in use in glibc's malloc heap above a starting point, sampled from a thread
    every 0.2 ms (``mallinfo2``): the tensors alive at the peak of a CPU step, as opposed to the
    resident memory, which also keeps freed heap pages. ``None`` where glibc is not available."""

    def __init__(self) -> None:
        import ctypes
        import threading

        class _Info(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in
                        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

        try:
            self._fn = ctypes.CDLL("libc.so.6").mallinfo2
        except (OSError, AttributeError):
            self._fn = None
            return
        self._fn.restype = _Info
        self._threading = threading

    def _used(self) -> int:
        m = self._fn()
        return m.uordblks + m.hblkhd

    def __enter__(self) -> _LiveHeap:
        self.peak_mb = None
        if self._fn is None:
            return self
        self._base, self._peak, self._stop = self._used(), 0, False

        def sample() -> None:
            while not self._stop:
                self._peak = max(self._peak, self._used() - self._base)
                time.sleep(2e-4)

        self._thread = self._threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._fn is not None:
            self._stop = True
            self._thread.join()
            self.peak_mb = self._peak / 2**20


def gemm_rate(device: str = "cpu", reps: int = 50) -> float:
    """GFLOP/s of one edge-sized matrix product (13000 x 64 @ 64 x 64) on this machine."""
    a = torch.randn(13000, 64, device=device)
    w = torch.randn(64, 64, device=device)
    for _ in range(5):
        a @ w
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ w
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * 13000 * 64 * 64 / best / 1e9


def run_one(name: str, device: str, steps: int, live: bool = False, flops: bool = False) -> dict:
    torch.manual_seed(0)
    if name == "mocap":
        g, cfg = mocap_batch()
    elif name == "mcomplex55":
        g, cfg = mcomplex_batch()
    elif name.startswith("radius-"):
        g, cfg = radius_graph(int(name.split("-")[1]))
    else:
        raise SystemExit(f"unknown configuration {name!r}")
    g = g.to(device)
    model = EGHN.single_level(cfg["node_dim"], cfg["edge_dim"], clusters=cfg["clusters"]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4, fused=True)  # as eghn train does

    def step():
        opt.zero_grad(set_to_none=True)
        out = model(g)
        training_objective(out, g.target).loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(2):
        step()
    sync()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    else:  # the resident-memory peak of the timed steps alone (Linux)
        sbs._trim()
        rss_before = sbs._status_mb("VmRSS")
        sbs._reset_peak()
    gflop = None
    if flops:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            step()
        gflop = counter.get_total_flops() / 1e9
    times = []
    live_mb = None
    if live and not device.startswith("cuda"):
        with _LiveHeap() as heap:
            step()
        live_mb = heap.peak_mb
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    dt = float(np.median(times))  # robust to other jobs on a shared machine
    if device.startswith("cuda"):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
        step_mb = peak_mb - torch.cuda.memory_allocated() / 2**20
    else:
        peak_mb = sbs._status_mb("VmHWM")
        step_mb = peak_mb - rss_before
    return dict(config=name, nodes=g.num_nodes, edges=g.num_edges, graphs=g.num_graphs, ms_per_step=1e3 * dt,
                min_ms=1e3 * min(times), samples_per_s=g.num_graphs / dt, peak_mb=peak_mb, step_mb=step_mb,
                live_mb=live_mb,
                matmul_gflop=gflop,
                device=device,
                params=sum(p.numel() for p in model.parameters()), threads=torch.get_num_threads())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="*", help="mocap, mcomplex55, radius-N (default: all)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--recompute-edges", choices=["auto", "always", "never"], default="auto",
                    help="eghn.nn.set_edge_recompute for the step (default: auto)")
    ap.add_argument("--flops", action="store_true",
                    help="also count the matrix-product GFLOP of one step and measure this machine's GEMM rate")
    ap.add_argument("--live", action="store_true",
                    help="also report the peak of live heap memory during one step (CPU, glibc)")
    ap.add_argument("--glibc-malloc", action="store_true",
                    help="leave glibc's malloc settings alone (default: eghn.train.malloc.reuse_freed_memory, "
                         "as eghn train does on a CPU)")
    ap.add_argument("--out", type=Path, help="write the results (and the fitted growth exponents) as JSON here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    configs = args.configs or ["mocap", "mcomplex55"] + [f"radius-{n}" for n in SCALES]
    if args.threads:
        torch.set_num_threads(args.threads)
    set_edge_recompute({"auto": "auto", "always": True, "never": False}[args.recompute_edges])
    if args.child:
        if args.device == "cpu" and not args.glibc_malloc:
            from eghn.train.malloc import reuse_freed_memory

            reuse_freed_memory()
        print(json.dumps(run_one(configs[0], args.device, args.steps, args.live, args.flops)))
        return
    if args.flops:
        print(f"GEMM rate (13000x64 @ 64x64, best of 50): {gemm_rate(args.device):.0f} GFLOP/s")
    print(f"{'config':<14}{'nodes':>8}{'edges':>10}{'ms/step':>10}{'min ms':>9}{'samples/s':>11}{'peak MB':>9}"
          f"{'step MB':>9}" + (f"{'live MB':>9}" if args.live else "") + (f"{'GFLOP':>8}" if args.flops else ""))
    rows = []
    for name in configs:
        steps = args.steps if not name.startswith("radius-1000") else max(2, args.steps // 5)
        cmd = [sys.executable, __file__, name, "--child", "--device", args.device, "--steps", str(steps)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        cmd += ["--recompute-edges", args.recompute_edges] + (["--live"] if args.live else [])
        cmd += (["--flops"] if args.flops else []) + (["--glibc-malloc"] if args.glibc_malloc else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            print(f"{name:<14} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr else proc.returncode}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(r)
        live = "" if not args.live else (f"{r['live_mb']:>9.0f}" if r["live_mb"] is not None else f"{'-':>9}")
        print(f"{r['config']:<14}{r['nodes']:>8}{r['edges']:>10}{r['ms_per_step']:>10.1f}{r['min_ms']:>9.1f}"
              f"{r['samples_per_s']:>11.1f}{r['peak_mb']:>9.0f}{r['step_mb']:>9.0f}" + live
              + (f"{r['matmul_gflop']:>8.2f}" if args.flops else ""), flush=True)
    fit = fit_growth([r for r in rows if r["config"].startswith("radius-") and r["nodes"] >= 1000])
    if fit:
        print(f"radius graphs, {fit['nodes'][0]:,}-{fit['nodes'][1]:,} nodes: time ~ N^{fit['time_exponent']:.2f}, "
              f"step memory ~ N^{fit['memory_exponent']:.2f}")
    if args.out:
        out = dict(machine=sbs.machine(), commit=sbs.commit(), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   command="python benchmarks/bench_eghn.py " + " ".join(sys.argv[1:] if argv is None else argv),
                   malloc="glibc defaults" if args.glibc_malloc else "reuse_freed_memory",
                   results=rows, fit=fit)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.out}")


def fit_growth(rows: list[dict]) -> dict | None:
    """Least-squares exponents of ``ms/step ~ N^a`` and ``step memory ~ N^b`` (log-log)."""
    if len(rows) < 2:
        return None
    n = np.log([r["nodes"] for r in rows])
    a = np.polyfit(n, np.log([r["ms_per_step"] for r in rows]), 1)[0]
    b = np.polyfit(n, np.log([max(r["step_mb"], 1e-3) for r in rows]), 1)[0]
    return dict(nodes=[min(r["nodes"] for r in rows), max(r["nodes"] for r in rows)],
                time_exponent=round(float(a), 3), memory_exponent=round(float(b), 3))


if __name__ == "__main__":
    main()
