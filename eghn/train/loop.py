"""``eghn train``: build the data, the model and a :class:`~eghn.train.trainer.Trainer` from a
config, check the run directory, train, and write the result.

Protocol (the published EGHN code's defaults, all configurable in ``[train]``): Adam with
``lr = 5e-4`` and ``weight_decay = 1e-12``, batches of 100 graphs, evaluation every 5 epochs, early
stopping after 50 evaluations without a better validation MSE, and the reported test MSE is
the one measured at the best validation evaluation. The loss of a batch is Eq. 16
(:func:`~eghn.train.objective.training_objective`): the position MSE over all nodes and
coordinates plus ``aux["reg_loss"]`` when the model returns one (EGHN: lambda times the
connectivity loss).

Every evaluation writes ``last.pt`` (everything needed to continue: model, optimizer, RNG
states, counters, history, the best weights) and, on improvement, ``best.pt``, together with
``metrics.csv`` (:class:`~eghn.train.callbacks.RunWriter`); ``resume=True`` continues from
``last.pt`` and, on CPU, ends with exactly the numbers of an uninterrupted run.

The path of one config value, e.g. ``train.lr``: ``--set train.lr=1e-3`` ->
:func:`~eghn.train.config.load_config` (merged and checked once) -> :func:`train` ->
:class:`~eghn.train.trainer.Trainer` (``settings["lr"]``, the optimiser's param groups).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.registry import build_dataset, get_dataset_class
from ..data.units import LengthScaled, length_scale
from ..io import DirLock, atomic_write_text
from ..models import registry as model_registry
from ..nn.edge_mlp import set_edge_recompute
from .callbacks import (
    DivergenceGuard,
    EarlyStopping,
    LogLine,
    ProgressBar,
    RunWriter,
    Stability,
    TensorBoard,
    TrainingDiverged,
    fmt,
)
from .checkpoint import load_checkpoint
from .config import ConfigError, check_kwargs, check_values, save_config
from .distributed import DistInfo
from .init_selection import select_init
from .loader import GraphBank
from .machine import machine_record
from .malloc import reuse_freed_memory
from .rundir import (
    RunLog,
    RunResult,
    best_repair,
    check_resume_config,
    csv_text,
    finished_run,
    finished_without_checkpoint,
    load_weights,
    write_result,
)
from .settings import RunSettings
from .trainer import Trainer, TrainerParts, evaluate_model, lr_at

__all__ = [
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
    "validate_config",
]

_SPLITS = ("train", "val", "test")

# ---------------------------------------------------------------------------- building blocks
def select_device(spec: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` as given.

    Example:
        >>> from eghn.train.loop import select_device
        >>> select_device("cpu")
        device(type='cpu')
        >>> select_device("gpu")
        Traceback (most recent call last):
        ...
        eghn.train.config.ConfigError: unknown device 'gpu'; use auto, cpu, cuda or cuda:N
    """
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

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> tmp = Path(tempfile.mkdtemp())
        >>> from eghn.data.arrays import write_example
        >>> _ = write_example(tmp / "toy.npz")  # 12 systems of 4 particles
        >>> from eghn.train.loop import build_datasets
        >>> data = {"name": "arrays", "path": str(tmp / "toy.npz"), "split_sizes": [8, 2, 2], "length_scale": 2.0}
        >>> splits = build_datasets({"data": data})
        >>> {s: len(ds) for s, ds in splits.items()}, splits["train"].length_scale
        ({'train': 8, 'val': 2, 'test': 2}, 2.0)
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
    (``1`` turns standardisation off).

    Example:
        >>> from eghn.train.loop import resolve_length_scale
        >>> resolve_length_scale(2.5), resolve_length_scale(1)
        (2.5, 1.0)
        >>> resolve_length_scale("auto")
        Traceback (most recent call last):
        ...
        ValueError: data.length_scale = 'auto' needs the training split
    """
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
    """Check the ``[data]`` and ``[model]`` options against their classes before any work starts.

    Example:
        >>> from eghn.train.loop import validate_config
        >>> data = {"name": "arrays", "path": "my_system.npz"}
        >>> validate_config({"data": data, "model": {"name": "egnn", "hidden": 8}})
        >>> validate_config({"data": data, "model": {"name": "egnn", "hiden": 8}})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        eghn.train.config.ConfigError: unknown config key 'model.hiden' ...; did you mean model.hidden?
    """
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
    """Checks of the config against the loaded splits (EGHN's clusters vs. the smallest system).

    Example:
        >>> from types import SimpleNamespace
        >>> import torch
        >>> from eghn.train.loop import check_datasets
        >>> banks = {"train": SimpleNamespace(mode="device", node_count=torch.tensor([6, 5, 7]))}
        >>> check_datasets({"model": {"name": "eghn", "clusters": [5]}}, banks)
        >>> check_datasets({"model": {"name": "eghn", "clusters": [6]}}, banks)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        eghn.train.config.ConfigError: config key 'model.clusters' = [6] asks for 6 clusters ...; use at most 5
    """
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
    """Build ``config["model"]`` for the feature sizes of ``dataset``.

    Example:
        >>> from types import SimpleNamespace
        >>> from eghn.train.loop import build_model
        >>> features = SimpleNamespace(node_dim=2, edge_dim=1)  # what a dataset reports
        >>> model = build_model({"model": {"name": "egnn", "hidden": 8, "layers": 1}}, features)
        >>> type(model).__name__, model.node_dim, model.edge_dim
        ('EGNN', 2, 1)
    """
    _import_models()
    name = config["model"]["name"]
    opts = {k: v for k, v in config["model"].items() if k != "name"}
    check_kwargs(model_registry.get_class(name), opts, "model", f"model {name!r}")
    try:
        return model_registry.get(name, node_dim=int(dataset.node_dim), edge_dim=int(dataset.edge_dim),
                                  local_edge_dim=int(getattr(dataset, "local_edge_dim", 0)), **opts)
    except ValueError as e:
        if not config.get("protocol"):
            raise
        # a protocol's [protocols.<name>.model] table can set options that the config's model
        # form does not take: say which config and protocol asked for them
        raise ValueError(f"{e} (the [model] of config {config.get('name', '?')!r} under protocol "
                         f"{config['protocol']!r}, whose [protocols.{config['protocol']}] table may set "
                         "model options for another form of the model)") from None


def make_run_dir(config: Mapping[str, Any]) -> Path:
    """A fresh directory ``<out_dir>/<name>-<YYYYmmdd-HHMMSS>[-k]``.

    Example:
        >>> import tempfile
        >>> from eghn.train.loop import make_run_dir
        >>> path = make_run_dir({"out_dir": tempfile.mkdtemp(), "name": "demo"})
        >>> path.name.startswith("demo-"), path.exists()  # named, not created
        (True, False)
    """
    base = Path(config["out_dir"])
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = base / f"{config['name']}-{stamp}"
    k = 1
    while path.exists():
        k += 1
        path = base / f"{config['name']}-{stamp}-{k}"
    return path


def _standardise(spec: Any, datasets: Mapping[str, Any]) -> tuple[float, dict[str, Any]]:
    """``(the length scale, the splits wrapped in LengthScaled)`` for ``data.length_scale = spec``
    (the scale of splits the caller standardised already)."""
    given = {getattr(ds, "length_scale", None) for ds in datasets.values() if isinstance(ds, LengthScaled)}
    if given:  # already standardised by the caller
        if len(given) > 1 or not all(isinstance(ds, LengthScaled) for ds in datasets.values()):
            raise ValueError("all dataset splits must share one length scale")
        return float(given.pop()), dict(datasets)
    scale = resolve_length_scale(spec, datasets["train"])
    return scale, {s: LengthScaled(ds, scale) for s, ds in datasets.items()}


# ---------------------------------------------------------------------------- training
def train(config: Mapping[str, Any], run_dir: str | Path | None = None, *, resume: bool = False,
          datasets: Mapping[str, Any] | None = None, info: DistInfo | None = None,
          echo: Callable[[str], None] | None = None, callbacks: Sequence[Any] = ()) -> RunResult:
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
        callbacks: extra :mod:`~eghn.train.callbacks` objects, called before the built-in ones
            (early stopping, divergence guard, log line, progress bar, TensorBoard, run files).

    Resuming checks every file of ``run_dir`` against ``last.pt`` first
    (:mod:`eghn.train.rundir`): a config that differs in a key outside
    :data:`~eghn.train.rundir.RESUME_ALLOWED` is refused with the list of keys; a finished run
    is extended when ``train.epochs`` (and, after an early stop, ``train.patience``) allow more;
    a missing or corrupt ``best.pt`` is rebuilt from ``last.pt``. Nothing is written before
    the first evaluation, and each evaluation writes ``metrics.csv``, ``best.pt`` and
    ``last.pt`` together or not at all (:class:`eghn.io.WriteGroup`).

    Example:
        Two epochs of a small EGNN on a system given as arrays.

        >>> import tempfile
        >>> from pathlib import Path
        >>> tmp = Path(tempfile.mkdtemp())
        >>> from eghn.data.arrays import write_example
        >>> _ = write_example(tmp / "toy.npz")  # 12 systems of 4 particles
        >>> from eghn.train import train
        >>> from eghn.train.config import resolve
        >>> config = resolve({"name": "toy", "device": "cpu",
        ...                   "data": {"name": "arrays", "path": str(tmp / "toy.npz"), "split_sizes": [8, 2, 2]},
        ...                   "model": {"name": "egnn", "hidden": 8, "layers": 1},
        ...                   "train": {"epochs": 2, "batch_size": 4, "eval_every": 1, "progress": False}})
        >>> result = train(config, tmp / "run", echo=lambda msg: None)
        >>> result.epochs, len(result.history), result.best_epoch in (1, 2)
        (2, 2, True)
        >>> sorted(p.name for p in (tmp / "run").iterdir())
        ['.lock', 'best.pt', 'config.json', 'last.pt', 'learning_curve.png', 'metrics.csv', 'result.json', 'train.log']
    """
    settings = RunSettings.from_config(config)  # checked once; frozen from here on
    mode = {"auto": "auto", "always": True, "never": False}[settings.train.recompute_edges]
    previous = set_edge_recompute(mode)
    try:
        return _train(settings, run_dir, resume=resume, datasets=datasets, info=info, echo=echo,
                      callbacks=callbacks)
    finally:
        set_edge_recompute(previous)


def _train(settings: RunSettings, run_dir: str | Path | None, *, resume: bool,
           datasets: Mapping[str, Any] | None, info: DistInfo | None, echo: Callable[[str], None] | None,
           callbacks: Sequence[Any]) -> RunResult:
    from .distributed import init_from_env

    tcfg = settings.train
    device = select_device(settings.device)
    if info is None:
        info = init_from_env(device.type)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if tcfg.threads > 0:
        torch.set_num_threads(tcfg.threads)
    if device.type == "cpu" and tcfg.cpu_malloc == "reuse":
        reuse_freed_memory()
    dtype = torch.float64 if tcfg.dtype == "float64" else torch.float32
    amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[tcfg.amp]
    if device.type != "cuda":
        amp_dtype = None

    if run_dir is None:
        run_dir = make_run_dir(settings.to_dict())
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
        env = _Env(info=info, device=device, dtype=dtype, amp_dtype=amp_dtype, echo=echo)
        return _run(settings, run_dir, resume=resume, datasets=datasets, env=env, callbacks=callbacks,
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


@dataclass(frozen=True)
class _Env:
    """Where and how a run trains: process group, device, dtypes, log sink."""

    info: DistInfo
    device: torch.device
    dtype: torch.dtype
    amp_dtype: torch.dtype | None
    echo: Callable[[str], None] | None


def _run(settings: RunSettings, run_dir: Path, *, resume: bool, datasets: Mapping[str, Any] | None,
         env: _Env, callbacks: Sequence[Any], started: list[bool]) -> RunResult:
    """Check the run directory, build everything, train, write the result."""
    # a resumed run writes nothing, not even a log line, until it can write a whole evaluation
    log = RunLog(run_dir / "train.log" if env.info.is_main else None, env.info.is_main, env.echo, hold=resume)
    state, changed, pending, finished = _inspect(settings, run_dir, resume, log, env.device)
    if finished is not None:
        return finished
    settings, banks, model = _build(settings, datasets, env)
    seed, selection = settings.seed, None
    if state is None and settings.train.init_tries > 1:  # a new run probes its starts first
        _announce(settings, run_dir, banks, model, env, log)
        selection = _select_init(settings, banks, env, log)
        seed = selection["chosen_seed"]
        model = _seeded_model(settings, banks, env, seed)
    trainer = _make_trainer(settings, run_dir, banks, model, env, log, callbacks, pending, seed=seed)
    if selection is not None and (writer := _run_writer(trainer)) is not None:
        writer.init = selection
    if state is not None:
        _restore(trainer, state, changed, run_dir, settings, log)
    started[0] = True
    if env.info.is_main and not resume:
        save_config(settings.to_dict(), run_dir / "config.json")
        _write_csv(run_dir / "metrics.csv", trainer.history)
    elif env.info.is_main:
        pending[run_dir / "config.json"] = (json.dumps(settings.to_dict(), indent=2, sort_keys=True) + "\n").encode()
    if selection is None:
        _announce(settings, run_dir, banks, model, env, log)
    _record_machine(trainer, env, log)
    trainer.fit()
    return _finish(trainer, settings, run_dir, env, log, pending)


def _inspect(settings: RunSettings, run_dir: Path, resume: bool, log: RunLog, device: torch.device
             ) -> tuple[dict | None, dict, dict, RunResult | None]:
    """``(last.pt's state, allowed config changes, files the first write rewrites, the result of
    a finished run)``, after checking the run directory against ``last.pt`` (:mod:`.rundir`)."""
    last_path = run_dir / "last.pt"
    if not resume and last_path.exists():
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it, "
                              "or choose another run directory")
    state = load_checkpoint(last_path, map_location=device) if resume and last_path.exists() else None
    pending: dict[Path, bytes | None] = {}
    if state is None:
        finished = finished_without_checkpoint(run_dir, log) if resume else None
        if finished is None and resume and (run_dir / "metrics.csv").is_file():
            log(f"{run_dir} holds no last.pt: training starts again from epoch 1; its old files are "
                "replaced at the first evaluation")
        return None, {}, pending, finished
    changed = (check_resume_config(state["config"], settings.to_dict(), where=f"{last_path}")
               if isinstance(state.get("config"), Mapping) else {})
    finished = finished_run(run_dir, state, settings.train, log)
    if finished is None:
        pending.update(best_repair(run_dir / "best.pt", state, log))
        if (run_dir / "result.json").exists():
            pending[run_dir / "result.json"] = None  # the run goes on: its old summary no longer holds
    return state, changed, pending, finished


def _build(settings: RunSettings, datasets: Mapping[str, Any] | None, env: _Env
           ) -> tuple[RunSettings, dict[str, GraphBank], nn.Module]:
    """``(the settings with their length scale resolved, the three banks, the seeded model)``."""
    tcfg = settings.train
    torch.manual_seed(settings.seed)
    if datasets is None:
        validate_config(settings.to_dict())
        datasets = build_datasets(settings.to_dict(), raw=True)
    for s in _SPLITS:
        if s not in datasets:
            raise ValueError(f"datasets must provide a {s!r} split")
    scale, datasets = _standardise(settings.length_scale, datasets)
    settings = settings.with_length_scale(scale)
    banks = {s: GraphBank(datasets[s], env.device, env.dtype, tcfg.preload, tcfg.preload_max_gb) for s in _SPLITS}
    check_datasets(settings.to_dict(), banks)
    return settings, banks, _seeded_model(settings, banks, env, settings.seed)


def _seeded_model(settings: RunSettings, banks: Mapping[str, GraphBank], env: _Env, seed: int) -> nn.Module:
    """The model of ``settings``, its weights drawn after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return build_model(settings.to_dict(), banks["train"].dataset).to(device=env.device, dtype=env.dtype)


def _select_init(settings: RunSettings, banks: Mapping[str, GraphBank], env: _Env, log: RunLog) -> dict[str, Any]:
    """Probe ``train.init_tries`` starts in memory and choose one (:mod:`.init_selection`)."""
    tcfg = settings.train

    def make_trainer(seed: int) -> Trainer:
        trainer = Trainer(_trainer_parts(settings, banks, _seeded_model(settings, banks, env, seed), env), [],
                          log=log)
        trainer.generator.manual_seed(seed)
        return trainer

    return select_init(make_trainer, settings.seed, tries=tcfg.init_tries, epochs=min(tcfg.init_epochs, tcfg.epochs),
                       every=tcfg.eval_every, max_regulariser=tcfg.init_max_regulariser, log=log)


def _trainer_parts(settings: RunSettings, banks: Mapping[str, GraphBank], model: nn.Module, env: _Env
                   ) -> TrainerParts:
    """``model`` with a fresh optimiser (and its DDP wrapper in a process group)."""
    tcfg, info = settings.train, env.info
    ddp_model = None
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ddp_model = DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == "cuda" else None,
            find_unused_parameters=tcfg.ddp_find_unused)
    # the fused Adam kernel (CPU and CUDA): one pass over all parameters instead of ~10 ops each
    optimizer = torch.optim.Adam(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay, eps=tcfg.adam_eps,
                                 fused=env.device.type in ("cpu", "cuda"))
    return TrainerParts(model=model, optimizer=optimizer, banks=banks, settings=tcfg, device=env.device,
                        unit=float(settings.length_scale), info=info, amp_dtype=env.amp_dtype, ddp_model=ddp_model)


def _make_trainer(settings: RunSettings, run_dir: Path, banks: Mapping[str, GraphBank], model: nn.Module,
                  env: _Env, log: RunLog, callbacks: Sequence[Any], pending: dict[Path, bytes | None], *,
                  seed: int) -> Trainer:
    """The trainer of ``model`` with the built-in callbacks after the given ones; ``seed`` orders
    its batches."""
    tcfg, info = settings.train, env.info
    parts = _trainer_parts(settings, banks, model, env)
    builtin: list[Any] = [DivergenceGuard(run_dir, log, tcfg.checkpoint), Stability(log),
                          EarlyStopping(tcfg.patience, log), LogLine(log),
                          ProgressBar(settings.name, tcfg.progress and info.is_main)]
    if tcfg.tensorboard and info.is_main:
        builtin.append(TensorBoard(run_dir, log))
    if info.is_main:
        builtin.append(RunWriter(run_dir, settings.to_dict(), log, checkpoints=tcfg.checkpoint, pending=pending))
    trainer = Trainer(parts, [*callbacks, *builtin], log=log)
    trainer.generator.manual_seed(seed)
    return trainer


def _restore(trainer: Trainer, state: Mapping[str, Any], changed: Mapping[str, list[Any]], run_dir: Path,
             settings: RunSettings, log: RunLog) -> None:
    """Continue from ``last.pt``'s ``state``; the allowed config changes are logged and recorded."""
    load_weights(trainer.model, state["model"], run_dir / "last.pt", state.get("config"), settings.to_dict())
    trainer.load_state_dict(state)
    log(f"resuming {run_dir} after epoch {trainer.epoch} (best val {fmt(trainer.best['val'])} "
        f"at epoch {int(trainer.best['epoch'])})")
    if changed:
        writer = _run_writer(trainer)
        if writer is not None:
            writer.resumes.append({"after_epoch": trainer.epoch, "changed": dict(changed)})
        log("changed on resume: " + ", ".join(f"{k} {_show(a)} -> {_show(b)}" for k, (a, b) in changed.items()))


def _run_writer(trainer: Trainer) -> RunWriter | None:
    """The trainer's :class:`RunWriter` (``None`` on a process that writes no run files)."""
    return next((cb for cb in trainer.callbacks if isinstance(cb, RunWriter)), None)


def _record_machine(trainer: Trainer, env: _Env, log: RunLog) -> None:
    """Log the machine this (part of the) run trains on and record it in ``last.pt`` and
    ``result.json`` (:mod:`.machine`: a seed reproduces bit for bit only on the same kind)."""
    record = machine_record(env.device)
    writer = _run_writer(trainer)
    if writer is not None:
        writer.machines.append({"after_epoch": trainer.epoch, **record})
    log(f"machine: {record['cpu']} ({record['cpu_capability']}), {record['threads']} torch "
        f"thread{'s' if record['threads'] != 1 else ''}, torch {record['torch']}"
        + (f", {record['gpu']}" if "gpu" in record else ""))


def _show(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else json.dumps(v)


def _announce(settings: RunSettings, run_dir: Path, banks: Mapping[str, GraphBank], model: nn.Module,
              env: _Env, log: RunLog) -> None:
    """The first log line: what trains on what, where, with which batch, rate and length unit."""
    tcfg, info = settings.train, env.info
    n_params = sum(p.numel() for p in model.parameters())
    log(f"run {run_dir}: model {settings.model['name']} ({n_params:,} parameters), data "
        f"{settings.data['name']} ({banks['train'].size}/{banks['val'].size}/{banks['test'].size} samples), "
        f"device {env.device}{f' x{info.world_size} processes' if info.enabled else ''}, "
        f"batch {tcfg.batch_size}, lr {tcfg.lr:g}, length scale {float(settings.length_scale):.4g}"
        + (" [quick mode: reduced data and epochs]" if settings.quick else ""))


def _finish(trainer: Trainer, settings: RunSettings, run_dir: Path, env: _Env, log: RunLog,
            pending: Mapping[Path, bytes | None]) -> RunResult:
    """The run's :class:`RunResult`, written to ``result.json`` with the learning curve."""
    best = trainer.best
    stability = next(cb for cb in trainer.callbacks if isinstance(cb, Stability)).monitor.summary()
    writer = _run_writer(trainer)
    result = RunResult(run_dir=str(run_dir), best_epoch=int(best["epoch"]), best_val=float(best["val"]),
                       test=float(best["test"]), epochs=int(trainer.epoch), wall_s=round(trainer.wall, 3),
                       stopped_early=bool(trainer.stop), history=trainer.history,
                       protocol=settings.protocol, version=_version(), stability=stability,
                       machines=list(writer.machines) if writer is not None else [],
                       init=dict(writer.init) if writer is not None and writer.init else {})
    log(f"done: best val MSE {fmt(result.best_val)} at epoch {result.best_epoch}, "
        f"test MSE at that epoch {fmt(result.test)} ({result.epochs} epochs, {result.wall_s:,.1f} s)")
    log(f"stability: {stability['spikes']} spikes, {stability['collapses']} pooling collapses")
    if env.info.is_main:
        write_result(result, run_dir, pending, log)
        _write_plot(run_dir, settings.to_dict(), trainer.history, log)
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


def _write_csv(path: Path, rows: list[dict[str, float]]) -> None:
    """Write the whole metrics table atomically (so it always matches ``last.pt``'s history)."""
    atomic_write_text(path, csv_text(rows))


def _version() -> str:
    from .. import __version__

    return __version__
