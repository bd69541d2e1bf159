"""The trainer: Adam on position MSE (+ the model's regulariser), early stopping, checkpoints.

Protocol (the published EGHN code's defaults, all configurable in ``[train]``): Adam with
lr 5e-4 and weight decay 1e-12, batches of 100 graphs, evaluation every 5 epochs, early
stopping after 50 evaluations without a better validation MSE, and the reported test MSE is
the one measured at the best validation evaluation. The loss of a batch is the position MSE
over all nodes and coordinates plus ``aux["reg_loss"]`` when the model returns one (EGHN:
lambda times the connectivity loss, Eq. 16).

Every evaluation writes ``last.pt`` (everything needed to continue: model, optimizer, RNG
states, counters, history) and, on improvement, ``best.pt``; ``resume=True`` continues from
``last.pt`` and, on CPU, ends with exactly the numbers of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.graph import Graph
from ..data.registry import build_dataset, get_dataset_class
from ..data.units import LengthScaled, length_scale
from ..io import DirLock, atomic_write, atomic_write_text
from ..models import registry as model_registry
from ..nn.edge_mlp import set_edge_recompute
from .checkpoint import load_checkpoint, save_checkpoint
from .config import ConfigError, check_kwargs, check_values, save_config
from .distributed import DistInfo, shard
from .loader import GraphBank
from .malloc import reuse_freed_memory
from .metrics import MSEAccumulator, position_sse, random_rotations
from .stability import CSV_FIELDS as _STABILITY_FIELDS
from .stability import StabilityMonitor

__all__ = [
    "RunResult",
    "TrainingDiverged",
    "build_datasets",
    "build_model",
    "check_datasets",
    "evaluate_model",
    "lr_at",
    "make_run_dir",
    "resolve_length_scale",
    "select_device",
    "split_options",
    "train",
    "transformed_batch",
    "validate_config",
]

_SPLITS = ("train", "val", "test")
_CSV_FIELDS = ["epoch", "wall_s", "train_loss", "train_mse", "val_mse", "test_mse", "best_epoch",
               "best_val", "samples_per_s", "step_share", *_STABILITY_FIELDS]


class _Interrupted(Exception):
    """Raised by the test hook ``stop_after`` to simulate a killed run."""


class TrainingDiverged(FloatingPointError):
    """The training loss, the weights or the validation MSE became NaN or infinite.

    The run stops before anything non-finite is written: ``last.pt`` and ``best.pt`` keep the
    last finite state, from which the run can be resumed (e.g. with a lower ``train.lr``).
    """


@dataclass
class RunResult:
    """Summary of a finished training run (also written to ``result.json``)."""

    run_dir: str
    best_epoch: int
    best_val: float
    test: float
    epochs: int
    wall_s: float
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)
    protocol: str = ""
    version: str = ""  #: the eghn version that trained the run
    stability: dict[str, Any] = field(default_factory=dict)  #: spikes and collapses (eghn.train.stability)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------- building blocks
def select_device(spec: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` as given."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} was asked for but CUDA is not available")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {spec!r} is not supported; use auto, cpu, cuda or cuda:N")
    return dev


def split_options(data: Mapping[str, Any], split: str) -> dict[str, Any]:
    """Constructor options of one split: the ``[data]`` keys, with ``[data.<split>]`` merged over.

    >>> split_options({"name": "mocap", "subject": "run", "val": {"max_samples": 30}}, "val")
    {'subject': 'run', 'max_samples': 30}
    """
    opts = {k: v for k, v in data.items() if k not in ("name", "length_scale", *_SPLITS)}
    per = data.get(split, {})
    if not isinstance(per, Mapping):
        raise ConfigError(f"config key 'data.{split}' must be a table of options for the {split} split")
    opts.update(per)
    return opts


def build_datasets(config: Mapping[str, Any], splits=_SPLITS, *, raw: bool = False) -> dict[str, Any]:
    """Build the dataset splits named by ``config["data"]`` (unknown options are errors).

    Options under ``[data.train]``, ``[data.val]`` or ``[data.test]`` apply to that split only.
    Unless ``raw``, every split is standardised by the length scale ``data.length_scale``
    (:class:`~eghn.data.units.LengthScaled`; see :func:`resolve_length_scale`).
    """
    name = config["data"]["name"]
    cls = get_dataset_class(name)
    out = {}
    for s in splits:
        opts = split_options(config["data"], s)
        check_kwargs(cls, {**opts, "split": s}, "data", f"dataset {name!r}")
        out[s] = build_dataset(name, s, **opts)
    if raw:
        return out
    spec = config["data"].get("length_scale", "auto")
    train_ds = out.get("train")
    if spec == "auto" and train_ds is None:
        train_ds = build_dataset(name, "train", **split_options(config["data"], "train"))
    scale = resolve_length_scale(spec, train_ds)
    return {s: LengthScaled(ds, scale) for s, ds in out.items()}


def resolve_length_scale(spec: Any, train_dataset: Any = None) -> float:
    """The number behind ``data.length_scale``: ``"auto"`` (default) is the RMS extent of the
    training systems (:func:`eghn.data.units.length_scale`); a positive number is used as given
    (``1`` turns standardisation off)."""
    if spec == "auto":
        if train_dataset is None:
            raise ValueError("data.length_scale = 'auto' needs the training split")
        return length_scale(train_dataset)
    if isinstance(spec, bool) or not isinstance(spec, (int, float)) or not (math.isfinite(spec) and spec > 0):
        raise ConfigError(f"data.length_scale must be 'auto' or a finite positive number, got {spec!r}")
    return float(spec)


_RESERVED_MODEL_KEYS = frozenset({"node_dim", "edge_dim", "local_edge_dim"})
_MODEL_MODULES = ("eghn", "linear", "mpnn", "radial_field", "egnn", "gmn", "tfn", "se3_transformer")


def _import_models() -> None:
    """Import the model modules so that they register themselves (missing ones are skipped)."""
    import importlib

    for mod in _MODEL_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(f"eghn.models.{mod}")


def validate_config(config: Mapping[str, Any]) -> None:
    """Check the ``[data]`` and ``[model]`` options against their classes before any work starts."""
    lr_at(config["train"], 0.0)  # a known learning-rate schedule
    name = config["data"]["name"]
    cls = get_dataset_class(name)
    for s in _SPLITS:
        check_kwargs(cls, {**split_options(config["data"], s), "split": s}, "data", f"dataset {name!r}")
        check_values(cls, split_options(config["data"], s), "data")
    _import_models()
    reserved = sorted(_RESERVED_MODEL_KEYS & set(config["model"]))
    if reserved:
        raise ConfigError(f"config keys {', '.join('model.' + k for k in reserved)} are set from the dataset; "
                          "remove them from [model]")
    mname = config["model"]["name"]
    mcls = model_registry.get_class(mname)
    check_kwargs(mcls, {k: v for k, v in config["model"].items() if k != "name"}, "model", f"model {mname!r}")
    check_values(mcls, {k: v for k, v in config["model"].items() if k != "name"}, "model")


def check_datasets(config: Mapping[str, Any], banks: Mapping[str, GraphBank]) -> None:
    """Checks of the config against the loaded splits (EGHN's clusters vs. the smallest system)."""
    clusters = config["model"].get("clusters")
    ks = clusters if isinstance(clusters, list) else [clusters]
    if not ks or not all(isinstance(k, int) and not isinstance(k, bool) for k in ks):
        return
    k = max(ks)
    for s, bank in banks.items():
        if bank.mode == "lazy":  # no node counts without a pass over the data; the model checks
            continue
        n = int(bank.node_count.min())
        if n < k:
            raise ConfigError(f"config key 'model.clusters' = {clusters} asks for {k} clusters but the "
                              f"smallest system of the {s} split has {n} nodes; use at most {n}")


def build_model(config: Mapping[str, Any], dataset) -> nn.Module:
    """Build ``config["model"]`` for the feature sizes of ``dataset``."""
    _import_models()
    name = config["model"]["name"]
    opts = {k: v for k, v in config["model"].items() if k != "name"}
    check_kwargs(model_registry.get_class(name), opts, "model", f"model {name!r}")
    return model_registry.get(name, node_dim=int(dataset.node_dim), edge_dim=int(dataset.edge_dim),
                              local_edge_dim=int(getattr(dataset, "local_edge_dim", 0)), **opts)


def make_run_dir(config: Mapping[str, Any]) -> Path:
    """A fresh directory ``<out_dir>/<name>-<YYYYmmdd-HHMMSS>[-k]``."""
    base = Path(config["out_dir"])
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = base / f"{config['name']}-{stamp}"
    k = 1
    while path.exists():
        k += 1
        path = base / f"{config['name']}-{stamp}-{k}"
    return path


def _rng_state(gen: torch.Generator) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "shuffle": gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any], gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["shuffle"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@torch.inference_mode()
def evaluate_model(model: nn.Module, bank: GraphBank, batch_size: int, *, info: DistInfo | None = None,
                   rotate: bool = False, translate: float = 0.0,
                   generator: torch.Generator | None = None, amp_dtype: torch.dtype | None = None) -> float:
    """Position MSE of ``model`` over every sample of ``bank``.

    With ``rotate`` every graph gets its own random rotation (det +1), with ``translate > 0``
    its own translation drawn from N(0, translate^2 I); inputs and targets are transformed
    together, so an E(n)-equivariant model scores the same as without.

    When the bank's dataset is standardised (:class:`~eghn.data.units.LengthScaled`, length
    scale :math:`L`), ``translate`` is in the data's own units and the MSE is returned in
    them too (times :math:`L^2`).
    """
    info = info if info is not None else DistInfo()
    unit = float(getattr(bank.dataset, "length_scale", 1.0))
    translate = translate / unit
    axis = getattr(bank.dataset, "rotation_axis", None)
    was_training = model.training
    model.eval()
    acc = MSEAccumulator(bank.device)
    order = torch.arange(bank.size)
    for s in range(0, bank.size, batch_size):
        idx = shard(order[s:s + batch_size], info)
        if idx.numel() == 0:
            continue
        g = bank.batch(idx)
        if rotate or translate:
            g = transformed_batch(g, rotate, translate, generator, axis)
        with _autocast(bank.device, amp_dtype):
            pred = model(g).pos
        acc.add(pred, g.target)
    acc.all_reduce()
    model.train(was_training)
    return acc.value() * unit**2


def lr_at(tcfg: Mapping[str, Any], progress: float) -> float:
    r"""Learning rate after ``progress`` epochs (fractional) under ``train.lr_schedule``.

    ``"constant"``: ``train.lr`` throughout. ``"cosine"``: :math:`\eta\,(1 + \cos(\pi p / T))/2`
    from ``train.lr`` at the start to 0 at ``T = train.epochs``; a pure function of the step, so
    a resumed run follows the same schedule.

    >>> lr_at({"lr": 1e-3, "lr_schedule": "cosine", "epochs": 10}, 5.0)
    0.0005
    """
    lr, kind = float(tcfg["lr"]), tcfg.get("lr_schedule", "constant")
    if kind == "constant":
        return lr
    if kind == "cosine":
        frac = min(max(progress / max(int(tcfg["epochs"]), 1), 0.0), 1.0)
        return lr * 0.5 * (1.0 + math.cos(math.pi * frac))
    raise ConfigError(f"train.lr_schedule must be 'constant' or 'cosine', got {kind!r}")


def _standardise(config: Mapping[str, Any], datasets: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Resolve ``data.length_scale`` (recorded as a number in the returned config, hence in
    ``config.json`` and every checkpoint) and wrap the splits in :class:`LengthScaled`."""
    config = json.loads(json.dumps(config))
    given = {getattr(ds, "length_scale", None) for ds in datasets.values() if isinstance(ds, LengthScaled)}
    if given:  # already standardised by the caller
        if len(given) > 1 or not all(isinstance(ds, LengthScaled) for ds in datasets.values()):
            raise ValueError("all dataset splits must share one length scale")
        scale = given.pop()
        config["data"]["length_scale"] = scale
        return config, dict(datasets)
    scale = resolve_length_scale(config["data"].get("length_scale", "auto"), datasets["train"])
    config["data"]["length_scale"] = scale
    return config, {s: LengthScaled(ds, scale) for s, ds in datasets.items()}


def _autocast(device: torch.device, amp_dtype: torch.dtype | None):
    if amp_dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=amp_dtype)


class _Logger:
    """Prints on the main process (through tqdm so bars stay intact) and appends to train.log."""

    def __init__(self, path: Path | None, enabled: bool, echo: Callable[[str], None] | None = None):
        self.path = path
        self.enabled = enabled
        self.echo = echo

    def __call__(self, msg: str) -> None:
        if not self.enabled:
            return
        if self.echo is not None:
            self.echo(msg)
        else:
            try:
                from tqdm.auto import tqdm

                # clears the bar, prints the line, redraws the bar below it
                tqdm.write(msg, file=sys.stdout)
                sys.stdout.flush()  # before the bar is redrawn on stderr
            except ImportError:  # pragma: no cover
                print(msg, flush=True)
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(msg + "\n")


def _eta(elapsed: float, done: int, left: int) -> str:
    """`` | ETA 1 min 05 s`` from this session's pace (an upper bound when early stopping ends the run)."""
    if left <= 0 or done <= 0:
        return ""
    secs = round(elapsed / done * left)
    return f" | ETA {secs // 60} min {secs % 60:02d} s" if secs >= 60 else f" | ETA {secs} s"


def _fmt(x: float) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4e}"


# ---------------------------------------------------------------------------- training
def train(config: Mapping[str, Any], run_dir: str | Path | None = None, *, resume: bool = False,
          datasets: Mapping[str, Any] | None = None, info: DistInfo | None = None,
          echo: Callable[[str], None] | None = None, stop_after: int | None = None) -> RunResult:
    """Train the model of ``config`` and return its :class:`RunResult`.

    ``train.recompute_edges`` applies for the duration of the call
    (:func:`eghn.nn.set_edge_recompute`).

    Args:
        config: a resolved config (:func:`eghn.train.config.load_config`).
        run_dir: where to write ``config.json``, ``metrics.csv``, ``train.log``, ``last.pt``,
            ``best.pt`` and ``result.json`` (default: a new directory under ``out_dir``).
        resume: continue from ``run_dir/last.pt`` if it exists.
        datasets: ``{"train", "val", "test"}`` datasets to use instead of building
            ``config["data"]``.
        info: distributed rank/world size (default: single process, or the initialised group).
        echo: function receiving each log line (default: print through tqdm).
        stop_after: testing hook -- raise after this epoch, as if the process had been killed.
    """
    mode = {"auto": "auto", "always": True, "never": False}[config["train"]["recompute_edges"]]
    previous = set_edge_recompute(mode)
    try:
        return _train(config, run_dir, resume=resume, datasets=datasets, info=info, echo=echo,
                      stop_after=stop_after)
    finally:
        set_edge_recompute(previous)


def _train(config: Mapping[str, Any], run_dir: str | Path | None, *, resume: bool,
           datasets: Mapping[str, Any] | None, info: DistInfo | None, echo: Callable[[str], None] | None,
           stop_after: int | None) -> RunResult:
    from .distributed import init_from_env

    tcfg = config["train"]
    device = select_device(config["device"])
    if info is None:
        info = init_from_env(device.type)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if tcfg["threads"] > 0:
        torch.set_num_threads(tcfg["threads"])
    if device.type == "cpu" and tcfg.get("cpu_malloc", "reuse") == "reuse":
        reuse_freed_memory()
    dtype = torch.float64 if tcfg["dtype"] == "float64" else torch.float32
    amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[tcfg["amp"]]
    if device.type != "cuda":
        amp_dtype = None

    if run_dir is None:
        run_dir = make_run_dir(config)
        if info.enabled:  # every process must write into rank 0's directory
            import torch.distributed as dist

            box = [str(run_dir)]
            dist.broadcast_object_list(box, src=0)
            run_dir = box[0]
    run_dir = Path(run_dir)
    created = lock = None
    if info.is_main:
        created = _make_dirs(run_dir)
        lock = DirLock(run_dir, "run directory")
    started = [False]
    try:
        if lock is not None:
            lock.acquire()
        return _train_in(config, run_dir, resume=resume, datasets=datasets, info=info, echo=echo,
                         stop_after=stop_after, device=device, dtype=dtype, amp_dtype=amp_dtype,
                         started=started)
    except BaseException:
        if created is not None and not started[0]:  # a failed start leaves no directory behind
            _remove_new_dirs(created)
        raise
    finally:
        if lock is not None:
            lock.release()


def _make_dirs(path: Path) -> list[Path]:
    """``mkdir -p path``; returns the folders it created, deepest first."""
    new = []
    p = path
    while not p.exists():
        new.append(p)
        if p.parent == p:
            break
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    return new


_OWN_FILES = frozenset({"config.json", "metrics.csv", "train.log", ".lock"})


def _remove_new_dirs(created: list[Path]) -> None:
    """Remove folders made by :func:`_make_dirs` that hold nothing but this module's own files."""
    for d in created:
        try:
            if any(f.name not in _OWN_FILES or f.is_dir() for f in d.iterdir()):
                return
            for f in d.iterdir():
                f.unlink()
            d.rmdir()
        except OSError:
            return


def _train_in(config: Mapping[str, Any], run_dir: Path, *, resume: bool, datasets: Mapping[str, Any] | None,
              info: DistInfo, echo: Callable[[str], None] | None, stop_after: int | None,
              device: torch.device, dtype: torch.dtype, amp_dtype: torch.dtype | None,
              started: list[bool]) -> RunResult:
    tcfg = config["train"]
    log = _Logger(run_dir / "train.log" if info.is_main else None, info.is_main, echo)
    result_path = run_dir / "result.json"
    last_path = run_dir / "last.pt"
    if resume and result_path.is_file():
        log(f"run {run_dir} already finished; nothing to resume")
        try:
            return RunResult(**json.loads(result_path.read_text()))
        except (ValueError, TypeError) as e:
            raise ValueError(f"{result_path} is unreadable ({e}); remove it to resume the run from "
                             "last.pt") from None
    if not resume and last_path.exists():
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it, "
                              "or choose another run directory")

    seed = int(config["seed"])
    torch.manual_seed(seed)
    if datasets is None:
        validate_config(config)
        datasets = build_datasets(config, raw=True)
    for s in ("train", "val", "test"):
        if s not in datasets:
            raise ValueError(f"datasets must provide a {s!r} split")
    config, datasets = _standardise(config, datasets)
    banks = {s: GraphBank(datasets[s], device, dtype, tcfg["preload"], tcfg["preload_max_gb"])
             for s in ("train", "val", "test")}
    check_datasets(config, banks)
    torch.manual_seed(seed)
    model = build_model(config, datasets["train"]).to(device=device, dtype=dtype)
    n_params = sum(p.numel() for p in model.parameters())
    ddp_model: nn.Module = model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ddp_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=tcfg["ddp_find_unused"])
    # the fused Adam kernel (CPU and CUDA): one pass over all parameters instead of ~10 ops each
    optimizer = torch.optim.Adam(model.parameters(), lr=tcfg["lr"], weight_decay=tcfg["weight_decay"],
                                 fused=device.type in ("cpu", "cuda"))
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype is torch.float16)
    shuffle_gen = torch.Generator().manual_seed(seed)

    start_epoch, evals_since_best = 1, 0
    best: dict[str, float] = {"epoch": 0, "val": math.inf, "test": math.nan}
    history: list[dict[str, float]] = []
    wall_offset = 0.0
    resumes: list[dict[str, Any]] = []
    monitor = StabilityMonitor()  # spikes and pooling collapse (eghn.train.stability)
    if resume and last_path.exists():
        state = load_checkpoint(last_path, map_location=device)
        if state.get("stability"):
            monitor.load_state_dict(state["stability"])
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        # the optimizer's state restores the old hyper-parameters: the config's values win
        saved_train = (state.get("config") or {}).get("train", {})
        changed = {}
        for key in ("lr", "weight_decay"):
            for group in optimizer.param_groups:
                old = group[key]
                group[key] = tcfg[key]
            old = saved_train.get(key, old)
            if old != tcfg[key]:
                changed[f"train.{key}"] = [old, tcfg[key]]
        resumes = [dict(r) for r in state.get("resumes", [])]
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        _set_rng_state({k: (v.cpu() if isinstance(v, torch.Tensor) else [t.cpu() for t in v])
                        for k, v in state["rng"].items()}, shuffle_gen)
        start_epoch = int(state["epoch"]) + 1
        evals_since_best = int(state["evals_since_best"])
        best = dict(state["best"])
        history = [dict(h) for h in state["history"]]
        wall_offset = float(history[-1]["wall_s"]) if history else 0.0
        log(f"resuming {run_dir} after epoch {start_epoch - 1} (best val {_fmt(best['val'])} "
            f"at epoch {int(best['epoch'])})")
        if changed:
            resumes.append({"after_epoch": start_epoch - 1, "changed": changed})
            log("changed on resume: " + ", ".join(f"{k} {a:g} -> {b:g}" for k, (a, b) in changed.items()))
    started[0] = True
    if info.is_main:
        save_config(config, run_dir / "config.json")
        _write_csv(run_dir / "metrics.csv", history)
    writer = _tensorboard(run_dir, tcfg["tensorboard"] and info.is_main, log)

    n_train = banks["train"].size
    unit = float(config["data"]["length_scale"])
    log(f"run {run_dir}: model {config['model']['name']} ({n_params:,} parameters), data "
        f"{config['data']['name']} ({n_train}/{banks['val'].size}/{banks['test'].size} samples), "
        f"device {device}{f' x{info.world_size} processes' if info.enabled else ''}, "
        f"batch {tcfg['batch_size']}, lr {tcfg['lr']:g}, length scale {unit:.4g}"
        + (" [quick mode: reduced data and epochs]" if config.get("quick") else ""))

    def checkpoint(epoch: int) -> None:
        if not (tcfg["checkpoint"] and info.is_main):
            return
        save_checkpoint(last_path, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else {},
            "epoch": epoch, "evals_since_best": evals_since_best, "best": dict(best),
            "history": history, "rng": _rng_state(shuffle_gen), "config": json.dumps(config),
            "resumes": resumes, "stability": monitor.state_dict(),
        })

    def diverged(what: str, epoch: int) -> TrainingDiverged:
        kept = []
        if tcfg["checkpoint"]:
            if last_path.exists() or history:
                kept.append(f"last.pt holds epoch {int(history[-1]['epoch']) if history else start_epoch - 1}")
            if best["epoch"]:
                kept.append(f"best.pt holds epoch {int(best['epoch'])}")
        where = ("; ".join(kept) + "; continue with a lower learning rate: eghn train --resume "
                 f"{run_dir} --set train.lr=<lower than {tcfg['lr']:g}>") if kept else (
                 f"no checkpoint was written yet; start again with a lower train.lr than {tcfg['lr']:g}")
        msg = f"training diverged: {what} at epoch {epoch}; stopped without saving it ({where})"
        log(msg)
        return TrainingDiverged(msg)

    bar = _progress(range(start_epoch, tcfg["epochs"] + 1), initial=start_epoch - 1, total=tcfg["epochs"],
               desc=config["name"], unit="ep", disable=not (tcfg["progress"] and info.is_main),
               leave=False, dynamic_ncols=True)
    t0 = time.perf_counter()
    seen_since_eval, t_eval, step_s = 0, time.perf_counter(), 0.0
    train_sse = torch.zeros((), dtype=torch.float64, device=device)
    train_loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    train_count = 0
    train_batches = 0
    # every batch's loss is checked; on CPU at once, elsewhere through a flag read once an epoch
    # (no per-batch device sync; under DDP all processes stop at the same epoch)
    check_now = device.type == "cpu" and not info.enabled
    loss_ok = torch.ones((), dtype=torch.float64, device=device)
    stopped_early = False
    epoch = start_epoch - 1
    bs = tcfg["batch_size"]
    ddp_model.train()
    for epoch in bar:
        perm = torch.randperm(n_train, generator=shuffle_gen)
        n_batches = math.ceil(n_train / bs)
        if tcfg.get("drop_last") and n_train >= bs:
            n_batches = n_train // bs
        if tcfg["max_batches"] > 0:
            n_batches = min(n_batches, tcfg["max_batches"])
        for b in range(n_batches):
            gidx = perm[b * bs:(b + 1) * bs]
            lidx = shard(gidx, info)
            global_nodes = banks["train"].num_nodes(gidx)
            if tcfg["lr_schedule"] != "constant":
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(tcfg, epoch - 1 + b / n_batches)
            optimizer.zero_grad(set_to_none=True)
            if lidx.numel() == 0:  # fewer graphs than processes: contribute a zero gradient
                loss = sum(p.sum() for p in model.parameters()) * 0.0
                loss.backward()
                optimizer.step()
                continue
            g = banks["train"].batch(lidx)
            t_step = time.perf_counter()
            with _autocast(device, amp_dtype):
                try:
                    out = ddp_model(g)
                except FloatingPointError as e:  # a model that refuses to return NaN/inf (EGHN)
                    raise diverged(f"the model's output is not finite ({e})", epoch) from None
                sse = position_sse(out.pos, g.target)
                loss = sse * (info.world_size / (global_nodes * g.dim))
                reg = out.aux.get("reg_loss") if isinstance(out.aux, Mapping) else None
                if reg is not None:
                    loss = loss + reg * (info.world_size * lidx.numel() / gidx.numel())
            monitor.observe(out.aux, g.num_graphs, g.batch)
            if check_now:
                if not math.isfinite(float(loss.detach())):
                    raise diverged(f"the training loss is {float(loss.detach())} (batch {b + 1} of {n_batches})",
                                   epoch)
            else:
                loss_ok.mul_(torch.isfinite(loss.detach()).to(loss_ok.dtype))
            scaler.scale(loss).backward()
            if tcfg["clip_grad"] > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg["clip_grad"])
            scaler.step(optimizer)
            scaler.update()
            step_s += time.perf_counter() - t_step
            train_sse += sse.detach().double()
            train_loss_sum += loss.detach().double() * (global_nodes * g.dim) / info.world_size
            train_count += g.num_nodes * g.dim
            train_batches += 1
            seen_since_eval += gidx.numel()
        if not check_now:
            flag = loss_ok.clone()
            if info.enabled:
                import torch.distributed as dist

                dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            if float(flag) < 1.0:
                raise diverged("the training loss is not finite", epoch)
        last_epoch = epoch == tcfg["epochs"]
        if epoch % tcfg["eval_every"] == 0 or last_epoch:
            stats = torch.stack([train_sse, train_loss_sum,
                                 torch.tensor(float(train_count), dtype=torch.float64, device=device)])
            if info.enabled:
                import torch.distributed as dist

                dist.all_reduce(stats)
            denom = max(float(stats[2]), 1.0)
            # in the data's own units: the MSE, and the loss as that MSE plus the (unitless)
            # regulariser; the objective itself is minimised in standardised units
            train_mse_std, train_loss_std = float(stats[0]) / denom, float(stats[1]) / denom
            train_mse = train_mse_std * unit**2
            train_loss = train_mse + (train_loss_std - train_mse_std)
            val = evaluate_model(ddp_model.module if info.enabled else model, banks["val"], bs, info=info,
                                 amp_dtype=amp_dtype)
            test = (evaluate_model(model, banks["test"], bs, info=info, amp_dtype=amp_dtype)
                    if tcfg["eval_test"] else math.nan)
            if not _weights_finite(model):
                raise diverged("some weights are NaN or infinite", epoch)
            if not math.isfinite(val):
                raise diverged(f"the validation MSE is {val}", epoch)
            if val < best["val"]:
                best = {"epoch": epoch, "val": val, "test": test}
                evals_since_best = 0
                if tcfg["checkpoint"] and info.is_main:
                    save_checkpoint(run_dir / "best.pt", {"model": model.state_dict(), "epoch": epoch,
                                                          "best": dict(best), "config": json.dumps(config)})
            else:
                evals_since_best += 1
            now = time.perf_counter()
            rate = seen_since_eval / max(now - t_eval, 1e-9)
            # the share of the wall time since the last evaluation spent in training steps
            # (forward, loss, backward, optimiser; host time, so on a GPU only indicative); the
            # rest is batching, evaluation, logging and checkpoints
            share = step_s / max(now - t_eval, 1e-9)
            wall = wall_offset + now - t0
            row = {"epoch": epoch, "wall_s": round(wall, 3), "train_loss": train_loss, "train_mse": train_mse,
                   "val_mse": val, "test_mse": test, "best_epoch": best["epoch"], "best_val": best["val"],
                   "samples_per_s": round(rate, 1), "step_share": round(share, 4)}
            row.update(monitor.evaluate(epoch, train_loss, val, log))
            history.append(row)
            log(f"epoch {epoch:4d}/{tcfg['epochs']} | train loss {_fmt(train_loss)} | val MSE {_fmt(val)} | "
                f"test MSE {_fmt(test)} | best epoch {int(best['epoch'])} (val {_fmt(best['val'])}) | "
                f"{rate:,.0f} samples/s | {wall:,.1f} s"
                + _eta(now - t0, epoch - start_epoch + 1, tcfg["epochs"] - epoch))
            if writer is not None:
                for k in ("train_loss", "train_mse", "val_mse", "test_mse", "samples_per_s"):
                    writer.add_scalar(k, row[k], epoch)
            bar.set_postfix(val=f"{val:.3e}", best=int(best["epoch"]))
            if info.is_main:
                _write_csv(run_dir / "metrics.csv", history)
            if evals_since_best >= tcfg["patience"]:
                stopped_early = True
            checkpoint(epoch)
            train_sse.zero_()
            train_loss_sum.zero_()
            train_count, train_batches = 0, 0
            # the next window starts where this one was measured: the evaluation's logging and
            # checkpoint count against it
            seen_since_eval, t_eval, step_s = 0, now, 0.0
        if stop_after is not None and epoch >= stop_after:
            bar.close()
            raise _Interrupted(f"stopped after epoch {epoch} (test hook)")
        if stopped_early:
            log(f"early stop at epoch {epoch}: no validation improvement in {tcfg['patience']} evaluations")
            break
    bar.close()
    if writer is not None:
        writer.close()
    wall = wall_offset + time.perf_counter() - t0
    result = RunResult(run_dir=str(run_dir), best_epoch=int(best["epoch"]), best_val=float(best["val"]),
                       test=float(best["test"]), epochs=int(epoch), wall_s=round(wall, 3),
                       stopped_early=stopped_early, history=history, protocol=str(config.get("protocol", "")),
                       version=_version(), stability=monitor.summary())
    if info.is_main:
        atomic_write_text(result_path, json.dumps(result.to_dict(), indent=2) + "\n")
    log(f"done: best val MSE {_fmt(result.best_val)} at epoch {result.best_epoch}, "
        f"test MSE at that epoch {_fmt(result.test)} ({result.epochs} epochs, {wall:,.1f} s)")
    log(f"stability: {result.stability['spikes']} spikes, {result.stability['collapses']} pooling collapses")
    if info.is_main:
        _write_plot(run_dir, config, history, log)
    return result


def _write_plot(run_dir: Path, config: Mapping[str, Any], history: list[dict[str, Any]],
                log: Callable[[str], None]) -> None:
    """``learning_curve.png`` in the run directory (skipped with a note without matplotlib)."""
    from .plots import write_learning_curve

    unit = {"protein": "Å²"}.get(config.get("data", {}).get("name", ""), "")
    try:
        path = write_learning_curve(run_dir, history, title=config.get("name", ""), unit=unit, echo=log)
    except Exception as exc:  # a figure must never fail a finished run
        log(f"learning curve not written: {exc}")
        return
    if path is not None:
        log(f"learning curve: {path}")


def _progress(iterable, **kwargs):
    """A tqdm progress bar over ``iterable`` (a plain iterator when tqdm is not installed).

    The bar is drawn only on a terminal: when stderr is a pipe or a file (``2>&1 | tee``, a
    notebook, CI), redrawing it would interleave with the log lines on stdout.
    """
    if kwargs.get("disable") is False:
        kwargs["disable"] = None  # tqdm: enabled on a terminal, disabled otherwise
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        class _Plain:
            def __init__(self, it):
                self.it = it

            def __iter__(self):
                return iter(self.it)

            def set_postfix(self, **_kw):
                pass

            def close(self):
                pass

        return _Plain(iterable)
    return tqdm(iterable, **kwargs)


def _tensorboard(run_dir: Path, enabled: bool, log: Callable[[str], None]):
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log("train.tensorboard = true but the tensorboard package is not installed; skipping")
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _write_csv(path: Path, rows: list[dict[str, float]]) -> None:
    """Write the whole metrics table atomically (so it always matches ``last.pt``'s history)."""
    with atomic_write(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)


def _version() -> str:
    from .. import __version__

    return __version__


def _weights_finite(model: nn.Module) -> bool:
    flags = [torch.isfinite(p.detach()).all() for p in model.parameters()]
    return bool(torch.stack(flags).all()) if flags else True


def transformed_batch(g: Graph, rotate: bool, translate: float, generator: torch.Generator,
                      axis: int | None = None) -> Graph:
    """``g`` with a random rotation and/or translation per graph (see :func:`evaluate_model`).

    With ``axis`` the rotations fix that coordinate axis and the translations leave it alone
    (data whose features single out a direction, e.g. the height in motion capture).
    """
    q = random_rotations(g.num_graphs, g.dim, generator=generator) if rotate else None
    if q is not None and axis is not None:
        others = [k for k in range(g.dim) if k != axis]
        sub = random_rotations(g.num_graphs, g.dim - 1, generator=generator)
        q = torch.eye(g.dim, dtype=torch.float64).repeat(g.num_graphs, 1, 1)
        q[:, torch.tensor(others)[:, None], torch.tensor(others)[None, :]] = sub
    t = torch.randn(g.num_graphs, g.dim, generator=generator, dtype=torch.float64) * translate if translate else None
    if t is not None and axis is not None:
        t[:, axis] = 0
    return g.transform(None if q is None else q.to(g.pos), None if t is None else t.to(g.pos))
