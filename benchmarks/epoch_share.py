"""How much of ``eghn train``'s wall time goes into training steps.

Runs ``eghn train CONFIG`` for a few epochs (evaluation of the validation and test splits every
``train.eval_every`` epochs, checkpoints and logs as usual) and reads ``step_share`` from its
``metrics.csv``: per evaluation window, the seconds spent in training steps (forward, loss,
backward, optimiser) over the wall time of the window. The rest is batching, evaluation,
logging and checkpointing. The first window also holds the warm-up of the first steps.

Usage::

    python benchmarks/epoch_share.py                          # mocap/run_eghn, 20 epochs, 1 and 2 threads
    python benchmarks/epoch_share.py --config mocap/run_eghn_released --epochs 10 --threads 2
    python benchmarks/epoch_share.py --out benchmarks/results/epoch_share.json
"""

from __future__ import annotations

import argparse
import csv
import itertools
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def measure(config: str, epochs: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        cmd = ["eghn", "train", config, "--device", "cpu", "--no-progress", "--run-dir", str(run_dir),
               "--set", f"train.epochs={epochs}", "--set", f"train.threads={threads}"]
        proc = subprocess.run([sys.executable, "-m", "eghn.cli", *cmd[1:]], capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        with open(run_dir / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
    windows = [dict(epoch=int(r["epoch"]), wall_s=float(r["wall_s"]), step_share=float(r["step_share"]))
               for r in rows]
    # the share over all windows but the first (which holds the first steps' warm-up)
    later = windows[1:] or windows
    spans = [w["wall_s"] - p["wall_s"] for p, w in itertools.pairwise(windows)] if len(windows) > 1 else \
        [windows[0]["wall_s"]]
    overall = sum(s * w["step_share"] for s, w in zip(spans, later)) / sum(spans)
    return dict(config=config, epochs=epochs, threads=threads, command=" ".join(cmd), windows=windows,
                step_share_after_first_window=round(overall, 4))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="mocap/run_eghn")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    import side_by_side as sbs

    result = dict(**sbs.provenance(), runs=[])
    for t in args.threads:
        r = measure(args.config, args.epochs, t)
        result["runs"].append(r)
        print(f"{args.config}, {t} thread(s): steps take {100 * r['step_share_after_first_window']:.1f} % of the "
              f"wall time (windows: " + ", ".join(f"{100 * w['step_share']:.1f} %" for w in r["windows"]) + ")",
              flush=True)
    if args.out:
        sbs.write_result(args.out, result)


if __name__ == "__main__":
    main()
