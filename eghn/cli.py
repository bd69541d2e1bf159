"""The ``eghn`` command line.

::

    eghn train CONFIG [--set key=value ...] [--quick] [--device D] [--run-dir DIR]
    eghn train --resume RUN_DIR
    eghn train --list
    eghn evaluate RUN_OR_CHECKPOINT [--rotate] [--translate [SCALE]] [--split test]
    eghn reproduce TABLE [TABLE ...] [--protocol released|paper|eghn ...] [--seeds 3|1,3-5] [--jobs N]
                   [--quick] [--device D] [--out DIR] [--collect DIR]
    eghn data {mcomplex,mocap,protein} ...

``CONFIG`` is a TOML file or the name of a shipped config (``eghn train --list``). Under
``torchrun`` ``eghn train`` trains data-parallel over all processes.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

__all__ = ["UsageError", "build_parser", "main"]


class UsageError(Exception):
    """The command line is wrong (exit status 2).

    Example:
        >>> from eghn.cli import UsageError
        >>> try:
        ...     raise UsageError("--translate needs a positive scale")
        ... except UsageError as err:
        ...     print(f"eghn: error: {err}")
        eghn: error: --translate needs a positive scale
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (raised by the handler that :func:`main` installs)."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _seed(text: str) -> int:
    from .train.config import SEED_MAX

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"the seed must be from 0 to {SEED_MAX} (2**63 - 1), got {text}")
    return value


def _finite_float(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


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
    p.add_argument("--seed", type=_seed, help="random seed, 0 to 2**63 - 1 (overrides the config)")
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
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="which checkpoint of a run directory: best (default; the one result.json reports) "
                   "or last (the latest evaluation)")
    p.add_argument("--split", choices=("train", "val", "test"), default="test",
                   help="split to evaluate on (default: test)")
    p.add_argument("--rotate", action="store_true",
                   help="apply a random rotation to every graph (about the vertical axis for data whose "
                   "features single one out, e.g. motion capture)")
    p.add_argument(
        "--translate",
        nargs="?",
        type=_finite_float,
        const=10.0,
        default=0.0,
        metavar="SCALE",
        help="apply a random translation N(0, SCALE^2) to every graph, SCALE in the data's units (default 10)",
    )
    p.add_argument("--dtype", choices=("float32", "float64"), default=None,
                   help="evaluate in this precision (default: the run's training dtype); an E(n)-equivariant "
                   "model gives the same MSE under --rotate/--translate up to the rounding of this dtype")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the random transformations")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="graphs per evaluation batch (default: the run's train.batch_size)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_evaluate)


def _seed_spec(text: str) -> tuple[int, ...]:
    from .train.runs import parse_seeds

    try:
        return parse_seeds(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_reproduce(sub) -> None:
    from .train.reproduce import PROTOCOLS, TABLES

    p = sub.add_parser(
        "reproduce",
        help="train every model of paper tables over several seeds and tabulate mean +- std",
        description="Train every row of the paper's tables over several seeds and write "
        "<out>/<table>-<protocol>/<table>.md and .csv with mean +- std beside the published numbers, and "
        "campaign.json with every run's stop reason and learning curve. Each run (config, protocol, seed) "
        "is trained once, even when several cells or tables use it. A finished run is reused (an interrupted "
        "one resumed from its last.pt) only when its resolved config, --set options included, and the eghn "
        "version match; otherwise it is moved aside and trained again.",
    )
    p.add_argument("tables", nargs="+", choices=sorted(TABLES), metavar="TABLE",
                   help=f"the paper's tables to reproduce ({', '.join(sorted(TABLES))})")
    p.add_argument(
        "--protocol",
        dest="protocols",
        action="append",
        choices=list(PROTOCOLS),
        default=None,
        help="released (default: the authors' released code's sample counts, input features and batching), "
        "paper (the paper's text) or eghn (eghn's own recipe, EGHN configs only); repeatable",
    )
    p.add_argument("--seeds", type=_seed_spec, default="3", metavar="SPEC",
                   help="a count (3: seeds 1 to 3, the default) or seeds and ranges (4,5 or 2-4 or 1,3-5)")
    p.add_argument("--jobs", type=_positive_int, default=1, metavar="N",
                   help="train at most N runs at a time, each in its own process with one torch thread "
                   "(default 1: one after the other in this process)")
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
        help="run only these configs of the tables (repeatable)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key in every config of the tables",
    )
    p.add_argument("--collect", type=Path, default=None, metavar="DIR",
                   help="copy config.json, metrics.csv and result.json of every finished or diverged run into "
                   "DIR/run_files/<config>-<protocol>-s<seed>/ (never a checkpoint) and write "
                   "DIR/campaign_<table>_<protocol>.json")
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
    """The ``eghn`` argument parser.

    Example:
        >>> from eghn.cli import build_parser
        >>> args = build_parser().parse_args(["train", "mocap/run_eghn", "--set", "train.lr=1e-3", "--quick"])
        >>> args.command, args.config, args.overrides, args.quick
        ('train', 'mocap/run_eghn', ['train.lr=1e-3'], True)
    """
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="eghn",
        description="Equivariant Graph Hierarchy-Based Neural Networks (Han et al., NeurIPS 2022)",
    )
    parser.add_argument("--version", action="version", version=f"eghn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
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
            # the run's own config (its "quick" is the record of whether [quick] was applied)
            config = resolve(apply_overrides(_resume_config(run_dir, saved), overrides))
        else:
            config = load_config(args.config, overrides, quick=args.quick)
    else:
        if args.config is None:
            raise UsageError("eghn train: give a CONFIG (file or shipped name; see --list) or --resume RUN_DIR")
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
        from .train.references import reference_mses

        for ref in reference_mses(config):
            print(f"  for comparison, {ref.label}: {ref.mse:.4g}")
    except Exception as e:  # informative only
        print(f"(reference MSEs skipped: {type(e).__name__}: {e})")
    try:
        rep = _equivariance_report(Path(result.run_dir))
        print(f"equivariance error of the trained model (relative): {rep.summary()}")
        if not rep.passed():
            detail = "; ".join(rep.nonfinite.values()) or f"largest error {rep.worst:.2e}"
            print(f"WARNING: the trained model is not equivariant within the {rep.dtype} tolerance ({detail})")
    except Exception as e:  # the report is informative only
        print(f"(equivariance check skipped: {type(e).__name__}: {e})")
    print(f"run directory: {result.run_dir}")
    return 0


def _resume_config(run_dir: Path, saved: Path) -> dict:
    """The config to resume ``run_dir`` with: its ``config.json``, or, when that file is missing or
    unreadable, the config stored in its ``last.pt`` (which holds the truth of the run)."""
    from .train.checkpoint import load_checkpoint
    from .train.config import ConfigError
    from .train.rundir import legacy_defaults

    last = run_dir / "last.pt"
    try:
        raw = _read_json(saved)
    except ConfigError as e:
        if not last.is_file():
            if not saved.exists():
                raise FileNotFoundError(f"{saved} not found: is {run_dir} an eghn run directory?") from None
            raise
        stored = load_checkpoint(last).get("config")
        if not isinstance(stored, dict):
            raise
        reason = "is missing" if not saved.exists() else f"is unreadable ({str(e).split('(', 1)[-1].rstrip(')')})"
        print(f"{saved} {reason}: resuming with the config stored in {last}; config.json is rewritten from it")
        raw = json.loads(json.dumps(stored))
    return legacy_defaults(raw)


def _load_run(target: Path, device: str | None, checkpoint: str = "best"):
    """``(config, checkpoint path, checkpoint state, device)`` of a run directory or checkpoint file."""
    from .train.trained import _check_finite_weights, evaluation_device, read_run

    config, ckpt, state = read_run(target, checkpoint=checkpoint)
    _check_finite_weights(ckpt, state)
    dev = evaluation_device(config, device)
    return config, ckpt, state, dev


def _read_json(path: Path) -> dict:
    """A JSON object from ``path``; a clear :class:`ConfigError` when it is unreadable."""
    from .io import read_json_object
    from .train.config import ConfigError

    return read_json_object(path, ConfigError)


def _equivariance_report(run_dir: Path, max_graphs: int = 1000, batch_size: int = 100):
    """Equivariance error of a run's best model, in float64, on the whole test split (at most
    ``max_graphs`` graphs), with translations of at least 100 times the systems' extent."""
    from .train.equivariance import trained_equivariance_error

    config, _, state, _ = _load_run(run_dir, "cpu")
    return trained_equivariance_error(config, state["model"], max_graphs=max_graphs, batch_size=batch_size)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .train.trained import evaluate_run

    res = evaluate_run(args.target, split=args.split, checkpoint=args.checkpoint, device=args.device,
                       dtype=args.dtype, batch_size=args.batch_size, rotate=args.rotate,
                       translate=args.translate, seed=args.seed)
    plain = res["mse"]
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{res['checkpoint']} (epoch {res['epoch']}), {args.split} split, {res['n_samples']} samples, "
              f"{res['dtype']}")
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
    import shlex

    from .train.reproduce import campaign

    argv = getattr(args, "argv", None)
    campaign(
        args.tables,
        seeds=args.seeds,
        protocols=args.protocols or ["released"],
        jobs=args.jobs,
        quick=args.quick,
        device=args.device,
        out=args.out,
        only=args.only,
        overrides=args.overrides,
        progress=not args.no_progress,
        collect=args.collect,
        command=None if argv is None else shlex.join(["eghn", *argv]),
    )
    return 0


def _describe(e: BaseException) -> tuple[str, int]:
    """The one-line message and exit status of an error that ends a command."""
    from .train.config import ConfigError

    if isinstance(e, (ConfigError, UsageError, FileExistsError, KeyError, ImportError)) or (
            isinstance(e, FileNotFoundError) and not e.filename):
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        return str(msg), 2
    if isinstance(e, OSError) and e.errno is not None:
        where = f" ({e.filename})" if e.filename else ""
        if e.errno == errno.ENOSPC:
            return f"no space left on device while writing{where or ' a file'}; free some space and retry", 1
        if e.errno == errno.EDQUOT:
            return f"disk quota exceeded while writing{where or ' a file'}", 1
        if e.errno in (errno.EACCES, errno.EPERM):
            return f"permission denied{where}: choose a folder you can write to", 1
        if e.errno == errno.EROFS:
            return f"read-only file system{where}: choose a writable folder", 1
        if e.errno == errno.ENOENT:
            return f"no such file or directory{where}", 2
        return f"{e.strerror or e}{where}", 1
    if isinstance(e, MemoryError) or "out of memory" in str(e).lower():
        first = str(e).strip().splitlines()[0] if str(e).strip() else "out of memory"
        return f"out of memory ({first}); lower train.batch_size or the model size", 1
    text = str(e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    if type(e).__name__ in ("ValueError", "TrainingDiverged", "CheckpointError", "LockedError", "TypeError"):
        return first, 1
    return f"{type(e).__name__}: {first}", 1


def _on_signal(signum, frame):  # pragma: no cover - exercised through a subprocess
    """SIGINT or SIGTERM: start a clean shutdown, and ignore both signals from now on, so that a
    second Ctrl-C cannot interrupt the clean-up (the process exits right after it)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eghn`` console script; returns the exit status.

    Every error ends in one ``eghn: error: ...`` line on stderr (exit status 2 for a wrong
    command line or config, 1 for a failure while running); ``--debug`` shows the traceback.

    Example:
        >>> import contextlib, io
        >>> from eghn.cli import main
        >>> listing = io.StringIO()
        >>> with contextlib.redirect_stdout(listing):
        ...     status = main(["train", "--list"])
        >>> status, listing.getvalue().splitlines()[0]
        (0, 'Quick start and base configurations:')
        >>> main(["train", "no_such_config"])  # one "eghn: error: ..." line on stderr
        2
        >>> try:
        ...     main(["--version"])  # doctest: +ELLIPSIS
        ... except SystemExit as done:  # argparse prints the version and exits
        ...     print("exit status", done.code)
        eghn ...
        exit status 0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command line, as campaign.json records it
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    previous: dict = {}
    with _suppress_value_error():  # not the main thread: leave signals alone
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _on_signal)
    interrupted = False
    resume = ("the same `eghn reproduce` command (it reuses the finished runs and resumes the others)"
              if args.command == "reproduce" else "`eghn train --resume RUN_DIR`")
    try:
        return int(args.func(args) or 0)
    except Terminated:
        interrupted = True
        print(f"eghn: terminated (SIGTERM); a training run keeps its last checkpoint: continue it with {resume}",
              file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        interrupted = True
        print(f"eghn: interrupted; continue a training run with {resume}", file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug:
            raise
        msg, code = _describe(e)
        hint = "" if code == 2 else " (rerun with --debug for the traceback)"
        print(f"eghn: error: {msg}{hint if type(e).__name__ not in _KNOWN else ''}", file=sys.stderr)
        return code
    finally:
        # after an interruption the signals stay ignored: the process is shutting down
        if not interrupted:
            with _suppress_value_error():
                for sig, handler in previous.items():
                    signal.signal(sig, handler)


#: errors whose message is complete: no hint about --debug
_KNOWN = frozenset({"ConfigError", "UsageError", "TrainingDiverged", "CheckpointError", "LockedError",
                    "FileExistsError", "FileNotFoundError", "PermissionError", "KeyError"})


def _suppress_value_error():
    import contextlib

    return contextlib.suppress(ValueError)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
