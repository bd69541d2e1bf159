"""The ``eghn`` command line.

::

    eghn train CONFIG [--set key=value ...] [--quick] [--device D] [--run-dir DIR]
    eghn train --resume RUN_DIR
    eghn train --list
    eghn evaluate RUN_OR_CHECKPOINT [--rotate] [--translate [SCALE]] [--split test]
    eghn reproduce {table1,table2,table3,table4} [--seeds 3] [--quick] [--device D] [--out DIR]
    eghn data {mcomplex,mocap,protein} ...

``CONFIG`` is a TOML file or the name of a shipped config (``eghn train --list``). Under
``torchrun`` ``eghn train`` trains data-parallel over all processes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a config",
        description="Train any registered model on any dataset from a TOML config "
        "(a path or a shipped name, see --list). The resolved config, "
        "metrics.csv, train.log and checkpoints go to the run directory.",
    )
    p.add_argument(
        "config", nargs="?", help="config file or shipped config name (e.g. default, mocap/run_eghn)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.lr=1e-3 --set model.hidden=32 (repeatable)",
    )
    p.add_argument(
        "--quick", action="store_true", help="apply the config's [quick] table (small data, few epochs)"
    )
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides the config)")
    p.add_argument("--seed", type=int, help="random seed (overrides the config)")
    p.add_argument("--run-dir", type=Path, help="run directory (default: <out_dir>/<name>-<timestamp>)")
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its last checkpoint (config from RUN_DIR/config.json "
        "unless CONFIG is given)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--list", action="store_true", help="list the shipped configs and exit")
    p.add_argument("--show", action="store_true", help="print the resolved config as JSON and exit")
    p.set_defaults(func=_cmd_train)


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="test metrics of a trained run or checkpoint",
        description="Evaluate the best checkpoint of a run (or a given .pt file) on a split, "
        "optionally under a random rotation and/or translation of every test graph.",
    )
    p.add_argument("target", type=Path, help="run directory (its best.pt) or checkpoint file")
    p.add_argument("--split", choices=("train", "val", "test"), default="test",
                   help="split to evaluate on (default: test)")
    p.add_argument("--rotate", action="store_true", help="apply a random rotation to every graph")
    p.add_argument(
        "--translate",
        nargs="?",
        type=float,
        const=10.0,
        default=0.0,
        metavar="SCALE",
        help="apply a random translation N(0, SCALE^2) to every graph (default SCALE 10)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random transformations")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=None,
                   help="graphs per evaluation batch (default: the run's train.batch_size)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_evaluate)


def _add_reproduce(sub) -> None:
    from .train.reproduce import TABLES

    p = sub.add_parser(
        "reproduce",
        help="train every model of a paper table and tabulate mean +- std",
        description="Train every row of one of the paper's tables over several seeds and write "
        "<out>/<table>.md and .csv with mean +- std beside the published numbers. "
        "Finished runs are reused, so an interrupted reproduction can be restarted.",
    )
    p.add_argument("table", choices=sorted(TABLES), help="the paper's table to reproduce")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds per row (default 3)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="reduced data and epochs, minutes on a CPU; numbers are NOT comparable to the paper",
    )
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", type=Path, default=Path("reproduce"), help="output folder (default ./reproduce)")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="CONFIG",
        help="run only these configs of the table (repeatable)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key in every config of the table",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_reproduce)


def _add_data(sub) -> None:
    from .data.registry import dataset_modules

    p = sub.add_parser(
        "data",
        help="generate, download or preprocess datasets",
        description="Dataset tools; one subcommand per dataset module.",
    )
    dsub = p.add_subparsers(dest="dataset", metavar="DATASET")
    for name, mod in dataset_modules():
        try:
            mod.register_cli(dsub)
        except Exception as e:  # a broken module must not break the other commands
            warnings.warn(f"eghn data {name}: cannot register its command line ({e})", stacklevel=1)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1], _data_parser=p)


def build_parser() -> argparse.ArgumentParser:
    """The ``eghn`` argument parser."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="eghn",
        description="Equivariant Graph Hierarchy-Based Neural Networks (Han et al., NeurIPS 2022)",
    )
    parser.add_argument("--version", action="version", version=f"eghn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    _add_evaluate(sub)
    _add_reproduce(sub)
    _add_data(sub)
    return parser


# ---------------------------------------------------------------------------- commands
def _cmd_train(args: argparse.Namespace) -> int:
    from .train.config import apply_overrides, load_config, resolve
    from .train.loop import train

    if args.list:
        from .train.config import describe_configs

        groups = describe_configs()
        width = max(len(name) for _, items in groups for name, _ in items)
        for k, (heading, items) in enumerate(groups):
            print(("\n" if k else "") + heading + ":")
            for name, description in items:
                print(f"  {name:<{width}}  {description}".rstrip())
        return 0
    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"device={json.dumps(args.device)}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.no_progress:
        overrides.append("train.progress=false")
    run_dir = args.run_dir
    if args.resume is not None:
        run_dir = args.resume
        saved = run_dir / "config.json"
        if args.config is None:
            if not saved.is_file():
                raise FileNotFoundError(f"{saved} not found: is {run_dir} an eghn run directory?")
            raw = json.loads(saved.read_text())
            was_quick = bool(raw.pop("quick", False))
            config = resolve(apply_overrides(raw, overrides), quick=False)
            config["quick"] = was_quick
        else:
            config = load_config(args.config, overrides, quick=args.quick)
    else:
        if args.config is None:
            raise SystemExit(
                "eghn train: give a CONFIG (file or shipped name; see --list) or --resume RUN_DIR"
            )
        config = load_config(args.config, overrides, quick=args.quick)
    if args.show:
        print(json.dumps(config, indent=2, sort_keys=True))
        return 0
    from .train.distributed import cleanup

    try:
        result = train(config, run_dir, resume=args.resume is not None)
    finally:
        cleanup()
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    print(f"test MSE (at best val epoch {result.best_epoch}): {result.test:.6g}")
    try:
        err = _equivariance_report(Path(result.run_dir))
        if err:
            print(
                "equivariance error of the trained model (relative, on a test batch): "
                + ", ".join(f"{k} {v:.2e}" for k, v in err.items())
            )
    except Exception as e:  # the report is informative only
        print(f"(equivariance check skipped: {e})")
    print(f"run directory: {result.run_dir}")
    return 0


def _load_run(target: Path, device: str | None):
    """``(config, checkpoint path, checkpoint state, device)`` of a run directory or checkpoint file."""
    from .train.checkpoint import load_checkpoint
    from .train.loop import select_device

    if target.is_dir():
        ckpt = target / "best.pt"
        if not ckpt.is_file():
            ckpt = target / "last.pt"
    else:
        ckpt = target
    state = load_checkpoint(ckpt)
    config = state.get("config")
    if not isinstance(config, dict):
        cfg_path = ckpt.parent / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{ckpt} holds no config and {cfg_path} does not exist")
        config = json.loads(cfg_path.read_text())
    dev = select_device(device or config.get("device", "auto"))
    return config, ckpt, state, dev


def _equivariance_report(run_dir: Path) -> dict[str, float]:
    """Equivariance error of a run's best model on one test batch (eghn.testing when present)."""
    import torch

    from .train.loader import GraphBank
    from .train.loop import build_datasets, build_model

    config, _, state, _ = _load_run(run_dir, "cpu")
    ds = build_datasets(config, splits=("test",))["test"]
    dtype = torch.float64
    model = build_model(config, ds).to(dtype=dtype)
    model.load_state_dict(state["model"])
    model.eval()
    g = GraphBank(ds, "cpu", dtype, mode="lazy").batch(torch.arange(min(len(ds), 8)))
    try:
        from .testing import equivariance_error
    except ImportError:
        equivariance_error = None
    if equivariance_error is not None:
        return equivariance_error(model, g, checks=("rotation", "reflection", "translation", "permutation"))
    from .train.metrics import random_rotations

    gen = torch.Generator().manual_seed(0)
    q = random_rotations(1, g.dim, generator=gen)[0]
    t = torch.randn(g.dim, generator=gen, dtype=dtype) * 10
    with torch.no_grad():
        expected = model(g).pos @ q.T + t
        out = model(g.transform(q, t)).pos
    return {"rotation+translation": float((out - expected).norm() / expected.norm())}


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from .train.loader import GraphBank
    from .train.loop import build_datasets, build_model, evaluate_model

    config, ckpt, state, dev = _load_run(args.target, args.device)
    ds = build_datasets(config, splits=(args.split,))[args.split]
    dtype = torch.float64 if config["train"]["dtype"] == "float64" else torch.float32
    model = build_model(config, ds).to(device=dev, dtype=dtype)
    model.load_state_dict(state["model"])
    bank = GraphBank(ds, dev, dtype, config["train"].get("preload", "auto"))
    bs = args.batch_size or config["train"]["batch_size"]
    plain = evaluate_model(model, bank, bs)
    res = {"checkpoint": str(ckpt), "epoch": int(state.get("epoch", -1)), "split": args.split, "mse": plain}
    if args.rotate or args.translate:
        gen = torch.Generator().manual_seed(args.seed)
        res["mse_transformed"] = evaluate_model(
            model, bank, bs, rotate=args.rotate, translate=args.translate, generator=gen
        )
        res["transform"] = {"rotate": args.rotate, "translate_scale": args.translate, "seed": args.seed}
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{ckpt} (epoch {res['epoch']}), {args.split} split, {len(ds)} samples")
        print(f"  MSE: {plain:.6g}")
        if "mse_transformed" in res:
            what = " + ".join(
                w
                for w, on in (
                    ("rotation", args.rotate),
                    (f"translation (scale {args.translate:g})", bool(args.translate)),
                )
                if on
            )
            print(f"  MSE under random {what}: {res['mse_transformed']:.6g}")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .train.reproduce import reproduce

    reproduce(
        args.table,
        seeds=args.seeds,
        quick=args.quick,
        device=args.device,
        out=args.out,
        only=args.only,
        overrides=args.overrides,
        progress=not args.no_progress,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eghn`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .train.config import ConfigError

    try:
        return int(args.func(args) or 0)
    except (ConfigError, FileNotFoundError, FileExistsError, KeyError, ImportError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"eghn: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "eghn: interrupted; continue a training run with `eghn train --resume RUN_DIR`", file=sys.stderr
        )
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
