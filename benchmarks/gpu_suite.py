"""The GPU suite: every check and measurement that needs a GPU, in one command, in at most 9 minutes.

Run on one H100 / H200 (``benchmarks/gpu_suite.sh`` is the one-command entry point)::

    bash benchmarks/gpu_suite.sh [--authors AUTHORS_DIR]          # writes benchmarks/results/gpu/*.json
    python benchmarks/gpu_suite.py --smoke --out /tmp/suite        # every part in seconds, on a CPU

One JSON file per part, ``PART.json`` in the output folder, each with its provenance (eghn
version, commit, PyTorch version, device name, date, ``smoke``), its ``status`` (``"ok"``,
``"failed"``, ``"skipped"`` or ``"timeout"``) and, when it did not run to the end, the
``error`` or ``reason``. The parts:

``pytest_gpu``
    the GPU-marked tests (``pytest -m gpu tests`` with ``EGHN_REQUIRE_CUDA=1``, as
    ``tox -e gpu`` runs them; called directly because tox may be unable to install packages
    on the device machine): counts of passed, failed and skipped tests, and the failures.
``side_by_side``
    ``benchmarks/side_by_side.py`` on the device for the workloads ``mocap``,
    ``mcomplex1010`` and ``adk`` (one process per workload, three models alternating). Needs a
    checkout of the authors' code (``--authors``, or ``$EGHN_AUTHORS_DIR``); without one the part
    records ``"authors' code not available"`` instead of numbers.
``scale``
    forward + backward of ``EGHN.single_level`` on one radius graph of 10^4, 10^5 and 10^6
    nodes (``benchmarks/bench_eghn.py``'s graphs, one process each): time and peak device
    memory; a size that does not fit is recorded as such (``"out of memory"``).
``time_to_accuracy``
    ``eghn train`` on motion capture, Run, for eghn's recipe (``mocap/run_eghn`` with
    ``protocol=eghn``) and the released architecture (``mocap/run_eghn_released`` under
    ``released``), one run each, cut at 3 minutes of training: the wall time and epoch at which
    the validation MSE first reaches the paper's Run number for EGHN (read from
    ``eghn/results/paper.json``), or that it did not within the cut.
``gallery_mcomplex``
    the full build of the tutorial ``gallery/tutorials/plot_04_mcomplex_training.py``
    (``EGHN_GALLERY=full``): its exit status, wall time and printed results. The tutorial runs
    on the CPU, so on a device machine it runs beside the GPU parts, on the upper half of the
    cores (the GPU parts keep the lower half); its wall time is then not a clean measurement.

A part that fails records its error and the suite goes on. A global budget (``--budget``,
540 s) bounds the whole: each part runs in its own process under a time limit that leaves
room for the parts after it, and a part that would not fit is skipped with the reason
``"budget"``. ``--smoke`` runs every part with tiny sizes on the CPU in seconds (the test
``tests/test_gpu_suite.py``): it writes to ``--out`` (default: a new temporary folder), never
into ``benchmarks/results/gpu/`` unless that is given, and its files say ``"smoke": true``, so
that the Benchmarks page never shows them as measurements.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "gpu"
PARTS = ("pytest_gpu", "scale", "side_by_side", "time_to_accuracy", "gallery_mcomplex")
#: the parts that run on the device, in order, with (time limit, least time worth starting) in seconds
LIMITS = {"pytest_gpu": (60, 20), "scale": (60, 20), "side_by_side": (75, 30), "time_to_accuracy": (400, 60)}
BUDGET_S = 540.0
SIDE_BY_SIDE_WORKLOADS = ("mocap", "mcomplex1010", "adk")
SCALE_NODES = (10_000, 100_000, 1_000_000)
SMOKE_SCALE_NODES = (200, 500)
TTA_CUT_S = 180.0
#: (config, overrides) of the two time-to-accuracy runs
TTA_RUNS = {"eghn": ("mocap/run_eghn", ["protocol=eghn"]),
            "released": ("mocap/run_eghn_released", ["protocol=released"])}
GALLERY = ROOT / "gallery" / "tutorials" / "plot_04_mcomplex_training.py"


# ------------------------------------------------------------------------------------ helpers
def provenance(smoke: bool, device: str) -> dict:
    """eghn version, commit, PyTorch version, device name, date and whether this is a smoke run."""
    import torch

    import eghn

    sys.path.insert(0, str(HERE))
    import side_by_side as sbs

    name = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else "cpu"
    return dict(eghn=eghn.__version__, commit=sbs.commit(), torch=torch.__version__, device=name,
                date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), smoke=smoke)


def paper_run_target() -> float:
    """The paper's test MSE of EGHN on motion capture, Run (Table 2), in the data's units."""
    table = json.loads((ROOT / "eghn" / "results" / "paper.json").read_text())["table2"]
    return float(table["rows"]["EGHN"]["Run (Subject 9)"]) * float(table["scale"])


def _env(**extra: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


def _last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in the output")


def _tail(text: str, n: int = 2000) -> str:
    return text[-n:] if text else ""


def run_child(argv: list[str], timeout: float, env: dict | None = None, cwd: Path = ROOT) -> dict:
    """Run a command; ``{"rc", "stdout", "stderr", "wall_s", "timed_out"}``."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=max(timeout, 1.0), env=env or _env(),
                              cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return dict(rc=None, stdout=out, stderr=err, wall_s=round(time.perf_counter() - t0, 1), timed_out=True)
    return dict(rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr, wall_s=round(time.perf_counter() - t0, 1),
                timed_out=False)


def _self(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


# ------------------------------------------------------------------------------------ parts
def part_pytest_gpu(opts, limit: float) -> dict:
    junit = Path(tempfile.mkdtemp(prefix="eghn-gpu-suite-")) / "junit.xml"
    # the smoke run collects the GPU tests of one file (they skip without CUDA)
    where = "tests/test_gpu.py" if opts.smoke else "tests"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", where, "-q", "-p", "no:cacheprovider",
           "-p", "no:xdist", f"--junitxml={junit}"]
    env = _env() if opts.smoke else _env(EGHN_REQUIRE_CUDA="1", HYPOTHESIS_PROFILE="thorough")
    r = run_child(cmd, limit, env)
    rec: dict = dict(command=" ".join(cmd[1:-1]), wall_s=r["wall_s"])
    if r["timed_out"]:
        return dict(rec, status="timeout", error=f"pytest did not finish in {limit:.0f} s", output=_tail(r["stdout"]))
    counts, failures = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}, []
    with contextlib.suppress(OSError, ValueError):
        import xml.etree.ElementTree as ET

        for case in ET.parse(junit).getroot().iter("testcase"):
            kinds = {c.tag for c in case}
            name = f"{case.get('classname')}::{case.get('name')}"
            if "failure" in kinds:
                counts["failed"] += 1
                failures.append(name)
            elif "error" in kinds:
                counts["errors"] += 1
                failures.append(name)
            elif "skipped" in kinds:
                counts["skipped"] += 1
            else:
                counts["passed"] += 1
    rec.update(exit_code=r["rc"], tests=counts, failures=failures)
    if r["rc"] not in (0, 5):  # 5: nothing collected
        return dict(rec, status="failed", error=f"pytest exited with {r['rc']}", output=_tail(r["stdout"]))
    return dict(rec, status="ok")


def child_scale(nodes: int, device: str) -> dict:
    """Forward + backward of ``EGHN.single_level`` on one radius graph of ``nodes`` nodes."""
    import torch

    sys.path.insert(0, str(HERE))
    from bench_eghn import radius_graph

    from eghn.models import EGHN
    from eghn.train.objective import training_objective

    torch.manual_seed(0)
    g, cfg = radius_graph(nodes)
    g = g.to(device)
    model = EGHN.single_level(cfg["node_dim"], cfg["edge_dim"], clusters=cfg["clusters"]).to(device)
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def step():
        model.zero_grad(set_to_none=True)
        training_objective(model(g), g.target).loss.backward()

    rec = dict(nodes=g.num_nodes, edges=g.num_edges, params=sum(p.numel() for p in model.parameters()))
    try:
        step()  # warm-up (kernel selection, allocator)
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        times = []
        for _ in range(1 if nodes >= 1_000_000 or not cuda else 3):
            t0 = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - t0)
    except torch.cuda.OutOfMemoryError as exc:
        return dict(rec, status="out of memory", error=str(exc).splitlines()[0][:300])
    times.sort()
    rec.update(status="ok", ms_forward_backward=round(times[len(times) // 2] * 1e3, 2), steps=len(times))
    if cuda:
        rec.update(peak_mb=round(torch.cuda.max_memory_allocated() / 2**20, 1),
                   step_mb=round((torch.cuda.max_memory_allocated() - base) / 2**20, 1))
    return rec


def part_scale(opts, limit: float) -> dict:
    sizes = SMOKE_SCALE_NODES if opts.smoke else SCALE_NODES
    deadline, runs = time.monotonic() + limit, []
    for n in sizes:
        left = deadline - time.monotonic()
        if left < 5:
            runs.append(dict(nodes=n, status="not run", reason="budget"))
            continue
        r = run_child(_self("--child", "scale", "--nodes", str(n), "--device", opts.device), left)
        if r["timed_out"]:
            runs.append(dict(nodes=n, status="timeout", error=f"did not finish in {left:.0f} s"))
        elif r["rc"]:
            err = r["stderr"].strip().splitlines()
            oom = "OutOfMemoryError" in r["stderr"] or "out of memory" in r["stderr"]
            runs.append(dict(nodes=n, status="out of memory" if oom else "failed",
                             error=err[-1] if err else str(r["rc"])))
        else:
            runs.append(_last_json(r["stdout"]))
    bad = [x for x in runs if x["status"] not in ("ok", "out of memory")]
    rec = dict(status="failed" if bad else "ok", model="EGHN.single_level (width 64, K = 20)",
               graph="radius graph at unit density, about 16 neighbours, bonded chain as local edges", runs=runs)
    if bad:
        rec["error"] = "; ".join(f"{x['nodes']}: {x.get('error', x.get('reason'))}" for x in bad)
    return rec


def part_side_by_side(opts, limit: float) -> dict:
    authors = opts.authors or os.environ.get("EGHN_AUTHORS_DIR", "")
    if not authors or not (Path(authors) / "model" / "eghn.py").is_file():
        return dict(status="skipped", reason="authors' code not available",
                    detail="pass --authors PATH (or set EGHN_AUTHORS_DIR) to a checkout of github hanjq17/EGHN")
    workloads = ("mcomplex55",) if opts.smoke else SIDE_BY_SIDE_WORKLOADS
    effort = ["--rounds", "1", "--steps", "1"] if opts.smoke else ["--rounds", "5", "--steps", "5"]
    deadline, timing = time.monotonic() + limit, []
    for w in workloads:
        left = deadline - time.monotonic()
        if left < 5:
            timing.append(dict(workload=w, status="not run", reason="budget"))
            continue
        cmd = [sys.executable, str(HERE / "side_by_side.py"), str(Path(authors).resolve()), "--device", opts.device,
               "--child", "time", "--workload", w, "--threads", "1", *effort]
        r = run_child(cmd, left)
        if r["timed_out"]:
            timing.append(dict(workload=w, status="timeout", error=f"did not finish in {left:.0f} s"))
        elif r["rc"]:
            err = r["stderr"].strip().splitlines()
            timing.append(dict(workload=w, status="failed", error=err[-1] if err else str(r["rc"])))
        else:
            timing.append(dict(_last_json(r["stdout"]), status="ok"))
    ok = all(t["status"] == "ok" for t in timing)
    return dict(status="ok" if ok else "failed", timing=timing,
                **({} if ok else {"error": "; ".join(f"{t['workload']}: {t.get('error', t.get('reason'))}"
                                                    for t in timing if t["status"] != "ok")}))


class _TimeToAccuracy:
    """Trainer callback: the first evaluation at or below ``target``, and a stop after ``cut_s``."""

    def __init__(self, target: float, cut_s: float) -> None:
        self.target, self.cut_s, self.reached, self.curve = target, cut_s, None, []

    def on_evaluation(self, trainer, row, improved) -> None:
        self.curve.append([int(row["epoch"]), float(row["wall_s"]), float(row["val_mse"])])
        if self.reached is None and row["val_mse"] <= self.target:
            self.reached = dict(epoch=int(row["epoch"]), wall_s=float(row["wall_s"]), val_mse=float(row["val_mse"]))

    def on_epoch_end(self, trainer, epoch) -> None:
        if trainer.wall >= self.cut_s:
            trainer.stop = True


def child_tta(which: str, cut_s: float, device: str, smoke: bool) -> dict:
    from eghn.train.config import load_config
    from eghn.train.loop import train

    config, overrides = TTA_RUNS[which]
    sets = [*overrides, f'device="{device}"', "train.eval_every=1", "train.eval_test=false", "train.progress=false",
            "train.checkpoint=false"]
    if smoke:
        sets += ["train.epochs=1", "train.max_batches=1", "data.val.max_samples=10", "data.test.max_samples=10",
                 "model.hidden=8"]
    cfg = load_config(config, sets)
    target = paper_run_target()
    cb = _TimeToAccuracy(target, cut_s)
    with tempfile.TemporaryDirectory(prefix="eghn-tta-") as run_dir:
        result = train(cfg, run_dir, callbacks=[cb], echo=lambda s: None)
    return dict(config=config, overrides=sets, cut_s=cut_s, target_val_mse=target, reached=cb.reached is not None,
                epoch_reached=cb.reached["epoch"] if cb.reached else None,
                wall_s_reached=cb.reached["wall_s"] if cb.reached else None,
                epochs_run=int(result.epochs), wall_s=float(result.wall_s), best_val=float(result.best_val),
                best_epoch=int(result.best_epoch), curve=cb.curve)


def part_time_to_accuracy(opts, limit: float) -> dict:
    from eghn.data.mocap import MocapDataset

    # the Run data the part trains on, found the way its runs will look for it (a mocap folder
    # that holds only other subjects does not count)
    try:
        MocapDataset("val", subject="run", max_samples=3)
    except OSError as exc:
        return dict(status="skipped", reason=f"motion-capture data not available: {exc}")
    runs, t_start = {}, time.monotonic()
    for k, which in enumerate(TTA_RUNS):
        left = limit - (time.monotonic() - t_start)
        # each run's share of what is left: its cut plus the start-up (data, model, first evaluation)
        overhead = 10.0 if opts.smoke else 30.0
        cut = min(opts.tta_cut, (left / (len(TTA_RUNS) - k)) - overhead)
        if cut < (1.0 if opts.smoke else 30.0):
            runs[which] = dict(status="not run", reason="budget")
            continue
        r = run_child(_self("--child", "tta", "--which", which, "--cut", str(cut), "--device", opts.device,
                            *(["--smoke"] if opts.smoke else [])), cut + overhead + 30)
        if r["timed_out"]:
            runs[which] = dict(status="timeout", error="the run did not stop at its cut", cut_s=cut)
        elif r["rc"]:
            err = r["stderr"].strip().splitlines()
            runs[which] = dict(status="failed", error=err[-1] if err else str(r["rc"]), cut_s=cut)
        else:
            runs[which] = dict(_last_json(r["stdout"]), status="ok", process_wall_s=r["wall_s"])
    ok = all(x["status"] == "ok" for x in runs.values())
    return dict(status="ok" if ok else "failed", target="table2/EGHN/Run (Subject 9) of eghn/results/paper.json",
                target_val_mse=paper_run_target(), cut_s=opts.tta_cut, runs=runs,
                **({} if ok else {"error": "; ".join(f"{k}: {v.get('error', v.get('reason'))}" for k, v in runs.items()
                                                    if v["status"] != "ok")}))


def start_gallery(opts) -> tuple[subprocess.Popen | None, dict]:
    """Start the tutorial in the background (CPU, upper half of the cores); ``(process, record)``."""
    rec: dict = dict(script=str(GALLERY.relative_to(ROOT)))
    if opts.smoke:
        # even its fast build takes minutes on a busy CPU: the smoke run only checks that it compiles
        try:
            compile(GALLERY.read_text(), str(GALLERY), "exec")
        except (OSError, SyntaxError) as exc:
            return None, dict(rec, status="failed", error=f"{type(exc).__name__}: {exc}")
        return None, dict(rec, status="skipped", reason="smoke mode: the tutorial is compiled, not run")
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    env = _env(EGHN_GALLERY="full", MPLBACKEND="Agg")
    if len(cores) >= 4:
        upper = cores[len(cores) // 2:]
        env["OMP_NUM_THREADS"] = str(len(upper))
        rec.update(cores=f"{upper[0]}-{upper[-1]}", threads=len(upper),
                   note="ran on the CPU beside the GPU parts; its wall time is not a clean measurement")
    log = tempfile.NamedTemporaryFile("w+", prefix="eghn-gallery-", suffix=".log", delete=False)
    proc = subprocess.Popen([sys.executable, str(GALLERY)], stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=GALLERY.parent, text=True)
    if len(cores) >= 4:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(proc.pid, cores[len(cores) // 2:])
            os.sched_setaffinity(0, cores[:len(cores) // 2])
    rec.update(env="EGHN_GALLERY=full", log=log.name, _t0=time.monotonic())
    return proc, rec


def gallery_fits(output: str) -> list[dict]:
    """The trainings the tutorial finished, read off its printed ``N steps in T s`` lines.

    >>> gallery_fits("simulated 20 trajectories\\n3000 steps in 147.0 s; test MSE 0.19\\n")
    [{'steps': 3000, 'wall_s': 147.0}]
    """
    import re

    return [dict(steps=int(m[1]), wall_s=float(m[2])) for m in re.finditer(r"^(\d+) steps in ([\d.]+) s", output, re.M)]


def finish_gallery(proc: subprocess.Popen | None, rec: dict, deadline: float) -> dict:
    if proc is None:
        return rec
    t0 = rec.pop("_t0")
    try:
        proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        out = Path(rec["log"]).read_text(errors="replace")
        return dict(rec, status="timeout", error="the tutorial did not finish within the suite's budget",
                    wall_s=round(time.monotonic() - t0, 1), fits=gallery_fits(out), output=_tail(out))
    out = Path(rec["log"]).read_text(errors="replace")
    rec.update(exit_code=proc.returncode, wall_s=round(time.monotonic() - t0, 1), fits=gallery_fits(out),
               output=_tail(out, 4000))
    if proc.returncode:
        return dict(rec, status="failed", error=(out.strip().splitlines() or ["?"])[-1])
    return dict(rec, status="ok")


# ------------------------------------------------------------------------------------ driver
def write_part(out: Path, part: str, rec: dict, head: dict, wall: float) -> Path:
    path = out / f"{part}.json"
    path.write_text(json.dumps(dict(part=part, **head, part_wall_s=round(wall, 1), **rec), indent=1) + "\n")
    return path


def run_suite(opts) -> dict:
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    head = provenance(opts.smoke, opts.device)
    t_start = time.monotonic()
    deadline = t_start + opts.budget
    parts = [p for p in PARTS if p in (opts.parts or PARTS)]
    summary = {}
    gallery = None
    if "gallery_mcomplex" in parts:
        try:
            gallery = start_gallery(opts)
        except Exception as exc:
            gallery = (None, dict(status="failed", error=f"{type(exc).__name__}: {exc}"))
    device_parts = [p for p in parts if p in LIMITS]
    for k, part in enumerate(device_parts):
        t0 = time.monotonic()
        left = deadline - t0
        # keep the least time of each later part in reserve
        reserve = sum(LIMITS[p][1] for p in device_parts[k + 1:])
        limit, least = LIMITS[part]
        limit = min(limit if part != "time_to_accuracy" else math.inf, left - reserve)
        if opts.smoke:
            limit = min(left, 60.0)
        if limit < (least if not opts.smoke else 1.0):
            rec = dict(status="skipped", reason="budget",
                       detail=f"{left:.0f} s of the {opts.budget:.0f} s budget left, "
                              f"{reserve:.0f} s kept for later parts")
        else:
            try:
                rec = globals()[f"part_{part}"](opts, limit)
            except Exception as exc:  # a failing part records its error; the suite goes on
                rec = dict(status="failed", error=f"{type(exc).__name__}: {exc}",
                           traceback=_tail(traceback.format_exc()))
        path = write_part(out, part, rec, head, time.monotonic() - t0)
        summary[part] = rec["status"]
        print(f"{part:<18} {rec['status']:<8} {time.monotonic() - t0:6.1f} s  "
              f"{rec.get('error') or rec.get('reason') or ''}  -> {path}", flush=True)
    if gallery is not None:
        t0 = time.monotonic()
        rec = finish_gallery(*gallery, deadline)
        path = write_part(out, "gallery_mcomplex", rec, head, rec.get("wall_s", time.monotonic() - t0))
        summary["gallery_mcomplex"] = rec["status"]
        print(f"{'gallery_mcomplex':<18} {rec['status']:<8} {rec.get('error') or rec.get('reason') or ''}  -> {path}",
              flush=True)
    total = time.monotonic() - t_start
    (out / "suite.json").write_text(json.dumps(dict(**head, budget_s=opts.budget, wall_s=round(total, 1),
                                                    parts=summary), indent=1) + "\n")
    print(f"suite: {total:.0f} s of {opts.budget:.0f} s; results in {out}")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="every part with tiny sizes on the CPU, in seconds")
    ap.add_argument("--out", help="output folder (default: benchmarks/results/gpu; with --smoke a temporary folder)")
    ap.add_argument("--device", help="default: cuda (cpu with --smoke)")
    ap.add_argument("--authors", help="a checkout of github hanjq17/EGHN, outside this repository (optional)")
    ap.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for the whole suite (default: 540)")
    ap.add_argument("--tta-cut", type=float, default=None, help="seconds of training per time-to-accuracy run")
    ap.add_argument("--parts", nargs="+", choices=PARTS, help="run only these parts")
    ap.add_argument("--child", choices=["scale", "tta"], help=argparse.SUPPRESS)
    ap.add_argument("--nodes", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--which", help=argparse.SUPPRESS)
    ap.add_argument("--cut", type=float, help=argparse.SUPPRESS)
    opts = ap.parse_args(argv)
    opts.device = opts.device or ("cpu" if opts.smoke else "cuda")
    if opts.child == "scale":
        print(json.dumps(child_scale(opts.nodes, opts.device)))
        return 0
    if opts.child == "tta":
        print(json.dumps(child_tta(opts.which, opts.cut, opts.device, opts.smoke)))
        return 0
    if opts.tta_cut is None:
        opts.tta_cut = 2.0 if opts.smoke else TTA_CUT_S
    if opts.out is None:
        opts.out = tempfile.mkdtemp(prefix="eghn-gpu-suite-") if opts.smoke else str(RESULTS)
    if not opts.smoke and opts.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print(f"gpu_suite: no CUDA device is visible to PyTorch {torch.__version__}; "
                  "run with --smoke for the CPU smoke test", file=sys.stderr)
            return 2
    summary = run_suite(opts)
    return 0 if all(s in ("ok", "skipped") for s in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
