"""The trainings of a reproduction campaign: each trained once, here or in worker processes.

A campaign (``eghn reproduce``, :func:`eghn.train.reproduce.campaign`) is a list of trainings,
each named by its config, protocol and seed (:class:`RunSpec`) and kept in its own run
directory. :func:`run_all` trains them one after the other in this process (``jobs=1``), or at
most ``jobs`` at a time, each in a worker process with one torch thread. Before a run starts,
its directory decides what is done: a finished run with the same resolved config and eghn
version is reused, an interrupted one (``last.pt`` without ``result.json``) is resumed, one
that differs is moved aside to ``seed<k>.replaced-<time>`` and trained again, and one locked by
another eghn process is left alone. Every run ends with a stop reason (:data:`STOP_REASONS`),
kept in a :class:`RunRecord`; :func:`write_campaign` writes the records as ``campaign.json`` and
:func:`collect_runs` copies the files of the finished and diverged runs (never a checkpoint)
into a folder of results.

Example:
    >>> from eghn.train.runs import STOP_REASONS, parse_seeds
    >>> parse_seeds("1,3-5"), sorted(STOP_REASONS)[:3]
    ((1, 3, 4, 5), ['diverged', 'early stop', 'epoch cap'])
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shlex
import signal
import subprocess
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io import DirLock, LockedError, atomic_write_bytes, atomic_write_text, read_json_object

__all__ = [
    "FINISHED",
    "MAX_SEEDS",
    "STOP_REASONS",
    "RunRecord",
    "RunSpec",
    "collect_runs",
    "describe_run",
    "parse_seeds",
    "run_all",
    "source_commit",
    "write_campaign",
]

#: How a run of a campaign stopped (or why it has not: ``"running"``, ``"pending"``).
STOP_REASONS: dict[str, str] = {
    "early stop": "finished: the validation MSE did not improve for train.patience evaluations",
    "epoch cap": "finished: reached train.epochs",
    "diverged": "stopped: the loss, the weights or the validation MSE became NaN or infinite",
    "interrupted": "stopped by Ctrl-C, SIGTERM or a killed process; the next campaign resumes it from last.pt",
    "failed": "stopped by an error, or not run because another seed of its config failed (OOM: out of memory)",
    "running": "being trained: by this campaign, or by another eghn process that holds its run directory's lock",
    "pending": "not started yet",
}

#: The stop reasons of a finished run (one with a ``result.json``).
FINISHED: frozenset[str] = frozenset({"early stop", "epoch cap"})

#: The most seeds one campaign may name.
MAX_SEEDS = 10_000

#: The files of a run that a collection copies (never a checkpoint).
_COLLECTED_FILES = ("config.json", "metrics.csv", "result.json")

#: Overrides of a run trained in a worker process: one torch thread, no progress bars.
_WORKER_OVERRIDES = ("train.threads=1", "train.progress=false")

#: Config keys that change only what is displayed or how fast a run goes, not what it computes.
_NOT_COMPARED = frozenset({"train.progress", "train.tensorboard", "description", "train.threads"})


# ---------------------------------------------------------------------------- seeds
def _seed_range(token: str, spec: str) -> range:
    first, dash, last = token.partition("-")
    if not first.strip().isdigit() or (dash and not last.strip().isdigit()):
        raise ValueError(f"bad seed spec {spec!r}: expected a count (3) or seeds and ranges (4,5 or 2-4 or 1,3-5)")
    lo, hi = int(first), int(last) if dash else int(first)
    if lo > hi:
        raise ValueError(f"bad seed range {token.strip()!r} in {spec!r}: the first seed is larger than the last")
    if hi - lo >= MAX_SEEDS:
        raise ValueError(f"the seed range {token.strip()!r} names more than {MAX_SEEDS:,} seeds")
    return range(lo, hi + 1)


def parse_seeds(spec: int | str | Sequence[int]) -> tuple[int, ...]:
    """The seeds that ``spec`` names: a count ``n`` (seeds ``1..n``) or seeds and ranges.

    A string of digits alone is a count; ``"4,5"``, ``"2-4"`` and ``"1,3-5"`` name seeds
    (``"3-3"``: seed 3 alone), as does a sequence of integers. Every seed is at least 1; the
    result is sorted, without repeats.

    Raises:
        ValueError: for a spec that names no seed, a seed below 1 or above 2**63 - 1, or more
            than :data:`MAX_SEEDS` seeds.

    Example:
        >>> from eghn.train.runs import parse_seeds
        >>> parse_seeds(3), parse_seeds("3"), parse_seeds("4,5"), parse_seeds("1,3-5"), parse_seeds([2, 1, 2])
        ((1, 2, 3), (1, 2, 3), (4, 5), (1, 3, 4, 5), (1, 2))
        >>> parse_seeds("0-2")
        Traceback (most recent call last):
        ...
        ValueError: seeds must be >= 1, got 0 (in '0-2')
    """
    from .config import SEED_MAX

    if isinstance(spec, bool) or not isinstance(spec, (int, str, Sequence)):
        raise ValueError(f"seeds must be a count or a list of seeds, got {spec!r}")
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        count = int(spec)
        if count < 1:
            raise ValueError(f"seeds must be >= 1, got {count}")
        if count > MAX_SEEDS:
            raise ValueError(f"at most {MAX_SEEDS:,} seeds, got {count:,}")
        return tuple(range(1, count + 1))
    if isinstance(spec, str):
        seeds = [s for token in spec.split(",") for s in _seed_range(token, spec)]
    else:
        seeds = list(spec)
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise ValueError(f"seeds must be integers, got {list(spec)!r}")
    if not seeds:
        raise ValueError("no seeds given")
    where = f" (in {spec!r})" if isinstance(spec, str) else ""
    if min(seeds) < 1:
        raise ValueError(f"seeds must be >= 1, got {min(seeds)}{where}")
    if max(seeds) > SEED_MAX:
        raise ValueError(f"a seed must be at most 2**63 - 1, got {max(seeds)}{where}")
    unique = tuple(sorted(set(seeds)))
    if len(unique) > MAX_SEEDS:
        raise ValueError(f"at most {MAX_SEEDS:,} seeds, got {len(unique):,}")
    return unique


# ---------------------------------------------------------------------------- one run
@dataclass(frozen=True)
class RunSpec:
    """One training of a campaign: ``config`` under ``protocol`` with ``seed``, in ``run_dir``.

    ``overrides`` (the ``--set`` options) apply after the protocol's and, with ``quick``, the
    ``[quick]`` tables; ``device`` and ``progress`` change only where and how visibly it trains.

    Example:
        >>> from pathlib import Path
        >>> from eghn.train.runs import RunSpec
        >>> spec = RunSpec("mocap/run_eghn", "released", 2, Path("out/mocap__run_eghn/seed2"),
        ...                overrides=("train.lr=1e-3",))
        >>> spec.key
        'mocap__run_eghn-released-s2'
        >>> spec.command()
        'eghn train mocap/run_eghn --set protocol=released --seed 2 --set train.lr=1e-3'
    """

    config: str
    protocol: str
    seed: int
    run_dir: Path
    overrides: tuple[str, ...] = ()
    quick: bool = False
    device: str | None = None
    progress: bool = True

    @property
    def key(self) -> str:
        """``<config, / as __>-<protocol>[-quick]-s<seed>``: the run's name in a collection."""
        return f"{self.config.replace('/', '__')}-{self.protocol}{'-quick' if self.quick else ''}-s{self.seed}"

    @property
    def label(self) -> str:
        return f"{self.config} ({self.protocol}{', quick' if self.quick else ''}, seed {self.seed})"

    def command(self) -> str:
        """The ``eghn train`` command that trains this run alone (in a new run directory)."""
        words = ["eghn", "train", self.config, "--set", f"protocol={self.protocol}", "--seed", str(self.seed)]
        for option in self.overrides:
            words += ["--set", option]
        words += ["--quick"] if self.quick else []
        words += ["--device", self.device] if self.device else []
        return shlex.join(words)

    def resolve(self, *extra: str) -> dict[str, Any]:
        """The resolved config of the run (:func:`~eghn.train.config.load_config`), ``extra`` overrides last."""
        from .config import load_config

        options = [*self.overrides, f"seed={self.seed}"]
        if self.device:
            options.append(f"device={json.dumps(self.device)}")
        if not self.progress:
            options.append("train.progress=false")
        return load_config(self.config, [*options, *extra], quick=self.quick, protocol=self.protocol)


@dataclass
class RunRecord:
    """What a campaign knows of one run: its :class:`RunSpec`, how it stopped and how far it got.

    ``action`` says what this campaign did with it (``"reused"``, ``"resumed"``, ``"trained"``, or
    ``""``: nothing yet); ``diverged_at`` is the epoch of a divergence and ``message`` the first
    line of the error that stopped the run. The numbers come from the run's files
    (:func:`describe_run`); ``learning_curve`` is ``[[epoch, val_mse], ...]``.

    Example:
        >>> from pathlib import Path
        >>> from eghn.train.runs import RunRecord, RunSpec
        >>> record = RunRecord(RunSpec("default", "released", 1, Path("out/default/seed1")), "epoch cap", test=0.5)
        >>> record.finished, record.to_dict(Path("out"))["run_dir"]
        (True, 'default/seed1')
    """

    spec: RunSpec
    stop_reason: str = "pending"
    message: str = ""
    diverged_at: int | None = None
    action: str = ""
    epochs: int | None = None
    best_epoch: int | None = None
    best_val: float | None = None
    test: float | None = None
    wall_s: float | None = None
    eghn_version: str | None = None
    learning_curve: list[list[float]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.stop_reason in FINISHED

    def update_from_files(self) -> str | None:
        """Fill the numbers from the run directory (:func:`describe_run`); returns its ``finished_as``."""
        info = describe_run(self.spec.run_dir)
        finished_as = info.pop("finished_as")
        for key, value in info.items():
            setattr(self, key, value)
        return finished_as

    def to_dict(self, folder: Path | None = None) -> dict[str, Any]:
        """The record as JSON data; ``run_dir`` relative to ``folder`` (absolute without one)."""
        spec = self.spec
        run_dir = os.path.relpath(spec.run_dir.resolve(), folder.resolve()) if folder else str(spec.run_dir.resolve())
        return {"config": spec.config, "protocol": spec.protocol, "seed": spec.seed, "quick": spec.quick,
                "overrides": list(spec.overrides), "command": spec.command(), "run_dir": run_dir,
                "stop_reason": self.stop_reason, "message": self.message, "diverged_at": self.diverged_at,
                "action": self.action, "epochs": self.epochs, "best_epoch": self.best_epoch,
                "best_val": self.best_val, "test": self.test, "wall_s": self.wall_s,
                "eghn_version": self.eghn_version, "learning_curve": self.learning_curve}


def _number(text: Any, kind: type = float) -> Any:
    if text in (None, ""):
        return None
    try:
        return kind(float(text)) if kind is int else float(text)
    except (TypeError, ValueError):
        return None


def _from_metrics(path: Path) -> dict[str, Any]:
    """Progress of an unfinished run: the last row of ``metrics.csv`` and its validation curve."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error):
        rows = []
    if not rows:
        return {}
    last = rows[-1]
    best_epoch = _number(last.get("best_epoch"), int)
    at_best = next((r for r in rows if _number(r.get("epoch"), int) == best_epoch), {})
    curve = [[_number(r.get("epoch"), int), _number(r.get("val_mse"))] for r in rows]
    return {"epochs": _number(last.get("epoch"), int), "best_epoch": best_epoch,
            "best_val": _number(last.get("best_val")), "test": _number(at_best.get("test_mse")),
            "wall_s": _number(last.get("wall_s")), "learning_curve": [c for c in curve if None not in c]}


def describe_run(run_dir: str | Path) -> dict[str, Any]:
    """How far the run in ``run_dir`` got, from ``result.json`` when it finished, else ``metrics.csv``.

    Keys: ``finished_as`` (``"early stop"``, ``"epoch cap"`` or ``None``), ``epochs``,
    ``best_epoch``, ``best_val``, ``test`` (at the best epoch), ``wall_s``, ``eghn_version`` (the
    version that trained it; ``None`` until it finishes) and ``learning_curve``
    (``[[epoch, val_mse], ...]``); a key without a value is ``None``.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from eghn.train.rundir import csv_text
        >>> from eghn.train.runs import describe_run
        >>> run = Path(tempfile.mkdtemp())
        >>> _ = (run / "metrics.csv").write_text(csv_text([
        ...     {"epoch": 1, "val_mse": 0.5, "test_mse": 0.6, "best_epoch": 1, "best_val": 0.5},
        ...     {"epoch": 2, "val_mse": 0.7, "test_mse": 0.8, "best_epoch": 1, "best_val": 0.5}]))
        >>> info = describe_run(run)
        >>> info["finished_as"], info["epochs"], info["test"], info["learning_curve"]
        (None, 2, 0.6, [[1, 0.5], [2, 0.7]])
    """
    run_dir = Path(run_dir)
    info: dict[str, Any] = dict.fromkeys(("finished_as", "epochs", "best_epoch", "best_val", "test", "wall_s",
                                          "eghn_version"))
    info["learning_curve"] = []
    try:
        result = read_json_object(run_dir / "result.json") if (run_dir / "result.json").is_file() else None
    except ValueError:
        result = None
    if result is None:
        info.update(_from_metrics(run_dir / "metrics.csv"))
        return info
    history = result.get("history") or []
    info.update(finished_as="early stop" if result.get("stopped_early") else "epoch cap",
                epochs=result.get("epochs"), best_epoch=result.get("best_epoch"), best_val=result.get("best_val"),
                test=result.get("test"), wall_s=result.get("wall_s"), eghn_version=result.get("version"),
                learning_curve=[[h["epoch"], h["val_mse"]] for h in history
                                if isinstance(h, Mapping) and "epoch" in h and "val_mse" in h])
    return info


# ---------------------------------------------------------------------------- reuse
def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _reuse_mismatch(run_dir: Path, config: dict[str, Any]) -> str | None:
    """Why the existing run in ``run_dir`` cannot stand for ``config`` (``None``: it can, or none exists).

    A run is reused (or resumed) only when its resolved config (``config.json``) equals
    ``config`` up to display-only keys and the thread count and, once finished, its
    ``result.json`` was written by this eghn version.
    """
    from .. import __version__

    if not run_dir.exists() or not any(p.name != ".lock" for p in run_dir.iterdir()):
        return None
    try:
        saved = read_json_object(run_dir / "config.json")
    except ValueError as e:
        return str(e)
    old, new = _flatten(saved), _flatten(config)
    if new.get("data.length_scale", "auto") == "auto":  # resolved from the training data at the start
        old.pop("data.length_scale", None)
        new.pop("data.length_scale", None)
    diff = [k for k in sorted(set(old) | set(new)) if k not in _NOT_COMPARED and old.get(k) != new.get(k)]
    if diff:
        shown = ", ".join(f"{k} {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}" for k in diff[:4])
        return f"it was trained with another config ({shown}{', ...' if len(diff) > 4 else ''})"
    for name in ("result.json", DIVERGED_FILE):
        if (run_dir / name).is_file():
            try:
                version = read_json_object(run_dir / name).get("version")
            except ValueError as e:
                return str(e)
            if version != __version__:
                return f"it was trained by eghn {version or '(unknown version)'}, this is eghn {__version__}"
    return None


def _locked(run_dir: Path) -> bool:
    """Whether another process holds the lock of ``run_dir`` (a run being trained)."""
    if not (run_dir / ".lock").is_file():
        return False
    try:
        DirLock(run_dir).acquire().release()
    except LockedError:
        return True
    return False


def _move_aside(run_dir: Path) -> Path:
    """Rename ``run_dir`` to ``<name>.replaced-<time>[-k]`` and return the new path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = run_dir.with_name(f"{run_dir.name}.replaced-{stamp}")
    k = 1
    while aside.exists():
        k += 1
        aside = run_dir.with_name(f"{run_dir.name}.replaced-{stamp}-{k}")
    run_dir.rename(aside)
    return aside


#: written into a run directory when its training diverged: the divergence is the run's outcome,
#: so a later campaign reports it instead of training the run again (delete the file to retry)
DIVERGED_FILE = "diverged.json"


def _claim(spec: RunSpec, config: dict[str, Any], echo: Callable[[str], None]) -> str:
    """What to do with the run directory: ``"reuse"``, ``"diverged"`` (it diverged before, with
    this config and eghn version), ``"resume"``, ``"train"`` or ``"running"`` (locked by another
    process); a directory that cannot stand for ``config`` is moved aside."""
    run_dir = spec.run_dir
    if _locked(run_dir):
        return "running"
    reason = _reuse_mismatch(run_dir, config)
    if reason is None and (run_dir / "result.json").is_file():
        return "reuse"
    if reason is None and (run_dir / DIVERGED_FILE).is_file():
        return "diverged"
    if reason is not None:
        aside = _move_aside(run_dir)
        echo(f"[moved] {spec.label}: not reusing {run_dir}: {reason}; moved it to {aside.name} and training again")
    return "resume" if (run_dir / "last.pt").exists() else "train"


# ---------------------------------------------------------------------------- training
def _status_of(err: BaseException) -> str:
    """The message of a failed run: ``"OOM: ..."`` for out of memory, else ``"not run (Error: ...)"``."""
    name = type(err).__name__
    msg = str(err).splitlines()[0] if str(err) else name
    if isinstance(err, MemoryError) or "out of memory" in msg.lower():
        return f"OOM: {msg}"
    return f"not run ({name}: {msg})"


def _outcome_of(err: BaseException) -> dict[str, Any]:
    """How a run that raised ``err`` stopped, as plain data (it crosses process boundaries)."""
    from .callbacks import TrainingDiverged

    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, TrainingDiverged):
        epoch = re.search(r" at epoch (\d+)", first)
        return {"stop_reason": "diverged", "message": first, "diverged_at": int(epoch.group(1)) if epoch else None}
    if isinstance(err, (KeyboardInterrupt, SystemExit)):
        return {"stop_reason": "interrupted", "message": f"interrupted ({type(err).__name__})"}
    return {"stop_reason": "failed", "message": _status_of(err), "traceback": traceback.format_exc()}


def _train_here(config: dict[str, Any], run_dir: Path, resume: bool, echo: Callable[[str], None]) -> dict[str, Any]:
    """Train in this process; an interruption (Ctrl-C, SIGTERM: not an ``Exception``) ends the campaign."""
    from .loop import train

    try:
        train(config, run_dir, resume=resume, echo=echo)
    except Exception as e:
        return _outcome_of(e)
    return {}


def _train_in_worker(config: dict[str, Any], run_dir: str, resume: bool) -> dict[str, Any]:
    """Train in a worker process, silently (the run's ``train.log`` keeps its lines)."""
    from .loop import train

    try:
        train(config, Path(run_dir), resume=resume, echo=lambda _line: None)
    except BaseException as e:  # a worker reports every ending, interruptions included
        return _outcome_of(e)
    return {}


def _worker_init() -> None:
    """Each worker: one torch thread; Ctrl-C goes to the parent, which stops the workers."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables (inherited by the worker processes) for the duration."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _Workers:
    """At most ``jobs`` worker processes (spawned: a fresh interpreter each, nothing inherited
    but the environment); a pool that broke (a worker was killed) is replaced on the next submit."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.pool: ProcessPoolExecutor | None = None

    def submit(self, *args: Any) -> Future:
        import multiprocessing

        if self.pool is None:
            self.pool = ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_worker_init)
        try:
            return self.pool.submit(_train_in_worker, *args)
        except BrokenProcessPool:
            self.close(stop=True)
            return self.submit(*args)

    def close(self, *, stop: bool = False) -> None:
        """Shut the pool down; ``stop``: terminate the workers first (their runs resume from last.pt)."""
        if self.pool is None:
            return
        if stop:
            for process in list((getattr(self.pool, "_processes", None) or {}).values()):
                with contextlib.suppress(Exception):
                    process.terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.pool = None


def _future_outcome(future: Future) -> dict[str, Any]:
    try:
        return future.result()
    except BrokenProcessPool as e:
        return {"stop_reason": "interrupted", "message": f"its worker process died ({e})"}
    except BaseException as e:
        return _outcome_of(e)


def _finish(record: RunRecord, outcome: Mapping[str, Any]) -> None:
    """Record how a run ended: the outcome of its training, else what its ``result.json`` says."""
    finished_as = record.update_from_files()
    if outcome.get("stop_reason"):
        record.stop_reason = outcome["stop_reason"]
        record.message = outcome.get("message", "")
        record.diverged_at = outcome.get("diverged_at")
        if record.stop_reason == "diverged" and record.spec.run_dir.is_dir():
            from .. import __version__

            atomic_write_text(record.spec.run_dir / DIVERGED_FILE, json.dumps(
                {"message": record.message, "diverged_at": record.diverged_at, "version": __version__}, indent=1)
                + "\n")
    elif finished_as is None:
        record.stop_reason, record.message = "failed", "not run (the run wrote no result.json)"
    else:
        record.stop_reason, record.message = finished_as, ""
    if outcome.get("traceback"):
        with (record.spec.run_dir.parent.parent / "errors.log").open("a") as log_file:
            log_file.write(f"== {record.spec.label}\n{outcome['traceback']}\n")


def _end_line(record: RunRecord, seconds: float | None) -> str:
    took = f", {seconds:,.0f} s" if seconds is not None else ""
    head = f"{record.spec.label}: "
    if record.finished:
        return (f"[end] {head}finished ({record.stop_reason}), test MSE {record.test:.4g}, {record.epochs} epochs"
                f"{took}")
    if record.stop_reason == "diverged":
        return f"[end] {head}diverged at epoch {record.diverged_at} ({record.message}){took}"
    return f"[end] {head}{record.stop_reason} ({record.message}){took}"


def _start(record: RunRecord, failed: dict[tuple[str, str], str], echo: Callable[[str], None], *,
           worker: bool) -> tuple[dict[str, Any], Path, bool] | None:
    """Claim the run directory; returns ``(config, run_dir, resume)`` when the run has to train,
    ``None`` when it is settled already (reused, locked elsewhere, or its config failed)."""
    spec = record.spec
    if (spec.config, spec.protocol) in failed:
        record.stop_reason, record.message = "failed", f"not run: {failed[spec.config, spec.protocol]}"
        return None
    try:
        config = spec.resolve(*(_WORKER_OVERRIDES if worker else ()))
        todo = _claim(spec, config, echo)
    except Exception as e:  # a config this model cannot take
        _finish(record, _outcome_of(e))
        failed[spec.config, spec.protocol] = f"{record.message} (seed {spec.seed})"
        echo(_end_line(record, None))
        return None
    if todo == "diverged":
        record.update_from_files()
        record.action = "reused"
        marker = read_json_object(spec.run_dir / DIVERGED_FILE)
        _finish(record, {"stop_reason": "diverged", "message": marker.get("message", ""),
                         "diverged_at": marker.get("diverged_at")})
        echo(f"[reuse] {spec.label}: {spec.run_dir} diverged before with this config (epoch {record.diverged_at}); "
             f"not training it again (delete {DIVERGED_FILE} there to retry)")
        return None
    if todo in ("reuse", "running"):
        record.update_from_files()
        if todo == "running":
            record.stop_reason, record.message = "running", "locked by another eghn process"
            echo(f"[skip] {spec.label}: {spec.run_dir} is being trained by another eghn process")
        else:
            record.action = "reused"
            _finish(record, {})
            echo(f"[reuse] {spec.label}: reusing the finished run {spec.run_dir} (same config and eghn version): "
                 f"{record.stop_reason}, test MSE {record.test:.4g}, {record.epochs} epochs")
        return None
    record.action = "resumed" if todo == "resume" else "trained"
    record.stop_reason = "running"
    how = "resuming it from last.pt" if todo == "resume" else "training"
    echo(f"[start] {spec.label}: {how} in {spec.run_dir}" + (" (worker process)" if worker else ""))
    return config, spec.run_dir, todo == "resume"


def run_all(specs: Sequence[RunSpec], *, jobs: int = 1, echo: Callable[[str], None] = print,
            on_change: Callable[[Mapping[RunSpec, RunRecord]], None] | None = None) -> dict[RunSpec, RunRecord]:
    """Train every run of ``specs`` (each once), at most ``jobs`` at a time; their records, in order.

    ``jobs=1`` trains in this process, one run after the other, its log lines going to ``echo``;
    ``jobs > 1`` trains each run in a worker process with one torch thread
    (``OMP_NUM_THREADS=1``, ``train.threads=1``), printing one line when a run starts and one
    when it ends. When a run fails (not a divergence), the runs of its config and protocol that
    have not started are not run. ``on_change`` receives the records whenever a run starts or
    ends. An interruption of this process (Ctrl-C, SIGTERM) stops the workers, records their runs
    as ``"interrupted"``, calls ``on_change`` and propagates; the next call resumes those runs.

    Example:
        The call trains models, so it is skipped when the docs are tested.

        >>> from pathlib import Path
        >>> from eghn.train.runs import RunSpec, run_all
        >>> specs = [RunSpec("default", "released", s, Path(f"out/default/seed{s}"), quick=True) for s in (1, 2)]
        >>> records = run_all(specs, jobs=2)  # doctest: +SKIP
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    records = {spec: RunRecord(spec) for spec in specs}
    changed = on_change or (lambda _records: None)
    queue = deque(records.values())
    failed: dict[tuple[str, str], str] = {}
    workers = _Workers(jobs) if jobs > 1 else None
    running: dict[Future, tuple[RunRecord, float]] = {}
    here: RunRecord | None = None
    try:
        with _environ(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1") if workers else contextlib.nullcontext():
            while queue or running:
                while queue and len(running) < jobs:
                    record = queue.popleft()
                    job = _start(record, failed, echo, worker=workers is not None)
                    changed(records)
                    if job is None:
                        continue
                    t0 = time.perf_counter()
                    if workers is None:
                        here = record
                        outcome = _train_here(*job, echo)
                        here = None
                        _settle(record, outcome, failed, echo, t0)
                        changed(records)
                    else:
                        running[workers.submit(job[0], str(job[1]), job[2])] = (record, t0)
                if running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        record, t0 = running.pop(future)
                        _settle(record, _future_outcome(future), failed, echo, t0)
                    changed(records)
    except BaseException:
        for record in [here, *(r for r, _ in running.values())]:
            if record is not None:  # a run that wrote its result.json just before counts as finished
                finished = describe_run(record.spec.run_dir)["finished_as"] is not None
                _finish(record, {} if finished else {"stop_reason": "interrupted",
                                                     "message": "the campaign was interrupted"})
        if workers is not None:
            workers.close(stop=True)
        changed(records)
        raise
    if workers is not None:
        workers.close()
    return records


def _settle(record: RunRecord, outcome: Mapping[str, Any], failed: dict[tuple[str, str], str],
            echo: Callable[[str], None], t0: float) -> None:
    """Record a run's end, print its line, and note a failure of its config."""
    _finish(record, outcome)
    spec = record.spec
    if record.stop_reason == "failed":
        failed.setdefault((spec.config, spec.protocol), f"{record.message} (seed {spec.seed})")
    echo(_end_line(record, time.perf_counter() - t0))


# ---------------------------------------------------------------------------- records
def source_commit() -> str:
    """The git commit of the checkout eghn runs from (``""`` when it is not a git checkout).

    Example:
        >>> from eghn.train.runs import source_commit
        >>> commit = source_commit()
        >>> commit == "" or len(commit) == 40
        True
    """
    package = Path(__file__).resolve().parents[1]
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=package, capture_output=True,
                             text=True, check=True, timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return ""
    if len(top) != 2 or Path(top[0]).resolve() != package.parent:  # eghn inside someone else's repository
        return ""
    return top[1]


def write_campaign(path: str | Path, header: Mapping[str, Any], records: Sequence[RunRecord]) -> Path:
    """Write ``header`` and the records (``"runs"``; ``run_dir`` relative to the file's folder)
    to ``path``, atomically.

    Example:
        >>> import json, tempfile
        >>> from pathlib import Path
        >>> from eghn.train.runs import RunRecord, RunSpec, write_campaign
        >>> folder = Path(tempfile.mkdtemp())
        >>> record = RunRecord(RunSpec("default", "released", 1, folder / "default" / "seed1"))
        >>> path = write_campaign(folder / "campaign.json", {"command": "eghn reproduce table1"}, [record])
        >>> data = json.loads(path.read_text())
        >>> data["command"], data["runs"][0]["run_dir"], data["runs"][0]["stop_reason"]
        ('eghn reproduce table1', 'default/seed1', 'pending')
    """
    path = Path(path)
    data = {**header, "runs": [r.to_dict(path.parent) for r in records]}
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    return path


def _copy_run(run_dir: Path, dest: Path) -> None:
    """Copy the collected files of ``run_dir`` into ``dest``; a file the run lacks is removed there."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in _COLLECTED_FILES:
        source = run_dir / name
        if source.is_file():
            atomic_write_bytes(dest / name, source.read_bytes())
        else:
            (dest / name).unlink(missing_ok=True)


def collect_runs(directory: str | Path, name: str, header: Mapping[str, Any], records: Sequence[RunRecord]) -> Path:
    """Copy each finished or diverged run's ``config.json``, ``metrics.csv`` and ``result.json``
    into ``<directory>/run_files/<key>/`` (:attr:`RunSpec.key`) and write ``<directory>/<name>``
    with ``header`` and the records, each ``run_dir`` the collected folder (relative); a run
    that is not finished or diverged is listed with ``run_dir`` ``null`` and not copied.
    Checkpoints are never copied.

    Example:
        >>> import json, tempfile
        >>> from pathlib import Path
        >>> from eghn.train.runs import RunRecord, RunSpec, collect_runs
        >>> tmp = Path(tempfile.mkdtemp())
        >>> run = tmp / "runs" / "default" / "seed1"
        >>> run.mkdir(parents=True)
        >>> _ = (run / "config.json").write_text("{}")
        >>> _ = (run / "best.pt").write_bytes(b"weights")
        >>> record = RunRecord(RunSpec("default", "released", 1, run), "epoch cap")
        >>> path = collect_runs(tmp / "results", "campaign_table1_released.json", {}, [record])
        >>> sorted(p.name for p in (tmp / "results" / "run_files" / "default-released-s1").iterdir())
        ['config.json']
        >>> json.loads(path.read_text())["runs"][0]["run_dir"]
        'run_files/default-released-s1'
    """
    directory = Path(directory)
    runs = []
    for record in records:
        entry = record.to_dict()
        if record.finished or record.stop_reason == "diverged":
            _copy_run(record.spec.run_dir, directory / "run_files" / record.spec.key)
            entry["run_dir"] = f"run_files/{record.spec.key}"
        else:
            entry["run_dir"] = None
        runs.append(entry)
    path = directory / name
    atomic_write_text(path, json.dumps({**header, "runs": runs}, indent=2) + "\n")
    return path
