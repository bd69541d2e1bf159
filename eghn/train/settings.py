"""A resolved configuration as frozen, typed objects: :class:`TrainSettings` and :class:`RunSettings`.

A config file, its protocol's table, ``[quick]`` and the ``--set`` overrides are merged by
:func:`eghn.train.config.load_config` into a raw nested dictionary; it becomes settings here,
once: every type, choice and range is checked in :meth:`TrainSettings.__post_init__` and
:meth:`RunSettings.from_config`, nowhere else. Values derived later are fields too: the length
scale that ``data.length_scale = "auto"`` resolves to is :attr:`RunSettings.length_scale`,
set with :meth:`RunSettings.with_length_scale` (a new object; nothing is written back into a
dictionary). :meth:`RunSettings.to_dict` gives the JSON form stored in ``config.json`` and in
every checkpoint.

Example:
    >>> s = TrainSettings(epochs=10, lr=1e-3)
    >>> s.epochs, s.lr, s["batch_size"]
    (10, 0.001, 100)
    >>> TrainSettings(patience=0)
    Traceback (most recent call last):
    ...
    eghn.train.config.ConfigError: config key 'train.patience' must be >= 1, got 0
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .config import SEED_MAX, TOP_DEFAULTS, TRAIN_DEFAULTS, ConfigError, _check_type, _unknown

__all__ = ["RunSettings", "TrainSettings"]

#: keys of ``[train]`` that take one of a few strings
CHOICES: dict[str, tuple[str, ...]] = {
    "lr_schedule": ("constant", "cosine"),
    "amp": ("off", "bf16", "fp16"),
    "dtype": ("float32", "float64"),
    "preload": ("auto", "device", "cpu", "lazy"),
    "recompute_edges": ("auto", "always", "never"),
    "cpu_malloc": ("reuse", "default"),
    "compile": ("off", "on", "auto"),
}
#: counts that must be >= 1
_AT_LEAST_ONE = ("epochs", "batch_size", "eval_every", "patience", "init_tries", "init_epochs")
#: numbers with a lower bound: (key, bound, strict)
_BOUNDED = (("lr", 0.0, True), ("weight_decay", 0.0, False), ("adam_eps", 0.0, True), ("clip_grad", 0.0, False),
            ("preload_max_gb", 0.0, True), ("max_batches", 0, False), ("threads", 0, False),
            ("init_max_regulariser", 0.0, False))


@dataclass(frozen=True)
class TrainSettings:
    """The ``[train]`` table (defaults: the published EGHN code's, :data:`~eghn.train.config.TRAIN_DEFAULTS`).

    Read as attributes (``settings.lr``) or, for code written against the table, as a
    read-only mapping (``settings["lr"]``).

    Example:
        >>> from eghn.train.settings import TrainSettings
        >>> s = TrainSettings.from_table({"epochs": 5, "lr_schedule": "cosine"})
        >>> s.epochs, s["lr_schedule"], s.get("no_such_key", "-"), s.as_dict()["batch_size"]
        (5, 'cosine', '-', 100)
        >>> TrainSettings.from_table({"epoch": 5})
        Traceback (most recent call last):
        ...
        eghn.train.config.ConfigError: unknown config key 'train.epoch'; did you mean train.epochs, train.init_epochs?
    """

    epochs: int = TRAIN_DEFAULTS["epochs"]
    batch_size: int = TRAIN_DEFAULTS["batch_size"]
    lr: float = TRAIN_DEFAULTS["lr"]
    weight_decay: float = TRAIN_DEFAULTS["weight_decay"]
    adam_eps: float = TRAIN_DEFAULTS["adam_eps"]
    eval_every: int = TRAIN_DEFAULTS["eval_every"]
    patience: int = TRAIN_DEFAULTS["patience"]
    eval_test: bool = TRAIN_DEFAULTS["eval_test"]
    lr_schedule: str = TRAIN_DEFAULTS["lr_schedule"]
    clip_grad: float = TRAIN_DEFAULTS["clip_grad"]
    amp: str = TRAIN_DEFAULTS["amp"]
    dtype: str = TRAIN_DEFAULTS["dtype"]
    threads: int = TRAIN_DEFAULTS["threads"]
    recompute_edges: str = TRAIN_DEFAULTS["recompute_edges"]
    cpu_malloc: str = TRAIN_DEFAULTS["cpu_malloc"]
    preload: str = TRAIN_DEFAULTS["preload"]
    preload_max_gb: float = TRAIN_DEFAULTS["preload_max_gb"]
    checkpoint: bool = TRAIN_DEFAULTS["checkpoint"]
    tensorboard: bool = TRAIN_DEFAULTS["tensorboard"]
    progress: bool = TRAIN_DEFAULTS["progress"]
    max_batches: int = TRAIN_DEFAULTS["max_batches"]
    ddp_find_unused: bool = TRAIN_DEFAULTS["ddp_find_unused"]
    drop_last: bool = TRAIN_DEFAULTS["drop_last"]
    compile: str = TRAIN_DEFAULTS["compile"]
    init_tries: int = TRAIN_DEFAULTS["init_tries"]
    init_epochs: int = TRAIN_DEFAULTS["init_epochs"]
    init_max_regulariser: float = TRAIN_DEFAULTS["init_max_regulariser"]

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # types (an int is accepted for a float, as a float)
            object.__setattr__(self, f.name, _check_type(f"train.{f.name}", getattr(self, f.name),
                                                         TRAIN_DEFAULTS[f.name]))
        for key, choices in CHOICES.items():
            if getattr(self, key) not in choices:
                raise ConfigError(f"config key 'train.{key}' must be one of {', '.join(choices)}, "
                                  f"got {getattr(self, key)!r}")
        for key in _AT_LEAST_ONE:
            if getattr(self, key) < 1:
                raise ConfigError(f"config key 'train.{key}' must be >= 1, got {getattr(self, key)}")
        for key, low, strict in _BOUNDED:
            val = getattr(self, key)
            if not math.isfinite(val) or val < low or (strict and val == low):
                raise ConfigError(f"config key 'train.{key}' must be a finite number {'>' if strict else '>='} "
                                  f"{low:g}, got {val}")

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None) -> TrainSettings:
        """Settings from a ``[train]`` table; an unknown key is an error with a suggestion."""
        table = dict(table or {})
        for key in table:
            if key not in TRAIN_DEFAULTS:
                raise _unknown(f"train.{key}", TRAIN_DEFAULTS)
        return cls(**table)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __getitem__(self, key: str) -> Any:
        if key not in TRAIN_DEFAULTS:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in TRAIN_DEFAULTS else default


def _frozen(table: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType({k: _frozen(v) if isinstance(v, Mapping) else v for k, v in table.items()})


def _thawed(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thawed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thawed(v) for v in value]
    return value


@dataclass(frozen=True)
class RunSettings:
    """A whole resolved config: the top-level keys, the ``[data]`` and ``[model]`` tables
    (read-only; checked against their classes when the run is built), the ``[train]`` settings
    and the length scale (``"auto"`` until the training split has resolved it).

    Example:
        >>> from eghn.train.settings import RunSettings
        >>> s = RunSettings.from_config({"data": {"name": "arrays"}, "model": {"name": "egnn"}, "train": {"epochs": 3}})
        >>> s.train.epochs, s.seed, s.length_scale
        (3, 1, 'auto')
        >>> s.with_length_scale(2.5).to_dict()["data"]
        {'name': 'arrays', 'length_scale': 2.5}
    """

    data: Mapping[str, Any]
    model: Mapping[str, Any]
    train: TrainSettings = field(default_factory=TrainSettings)
    name: str = TOP_DEFAULTS["name"]
    seed: int = TOP_DEFAULTS["seed"]
    device: str = TOP_DEFAULTS["device"]
    out_dir: str = TOP_DEFAULTS["out_dir"]
    description: str = TOP_DEFAULTS["description"]
    protocol: str = TOP_DEFAULTS["protocol"]
    paper_reference: str = TOP_DEFAULTS["paper_reference"]
    quick: bool = False  #: whether the config's ``[quick]`` table was applied
    length_scale: float | str | None = "auto"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RunSettings:
        """Check a raw or resolved config (``quick`` is the record of whether ``[quick]`` was
        applied: a bool; the table itself must already have been merged by ``load_config``)."""
        top = {k: v for k, v in config.items() if k not in ("data", "model", "train", "quick", "protocols")}
        for k, v in top.items():
            if k not in TOP_DEFAULTS:
                raise _unknown(k, [*TOP_DEFAULTS, "data", "model", "train", "quick"])
            top[k] = _check_type(k, v, TOP_DEFAULTS[k])
        if not 0 <= top.get("seed", TOP_DEFAULTS["seed"]) <= SEED_MAX:
            raise ConfigError(f"config key 'seed' must be an integer from 0 to {SEED_MAX}, got {top['seed']}")
        quick = config.get("quick", False)
        if isinstance(quick, Mapping):
            quick = False  # an unapplied [quick] table
        if not isinstance(quick, bool):
            raise ConfigError("'quick' must be a table of overrides")
        train = TrainSettings.from_table(config.get("train"))
        tables = {}
        for sec in ("data", "model"):
            table = config.get(sec)
            if not isinstance(table, Mapping) or "name" not in table:
                raise ConfigError(f"the config needs a [{sec}] table with a 'name' key")
            if not isinstance(table["name"], str):
                raise ConfigError(f"config key '{sec}.name' must be a string")
            tables[sec] = _frozen(table)
        scale = tables["data"].get("length_scale", "auto")
        if scale != "auto" and scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                                                      or not (math.isfinite(scale) and scale > 0)):
            raise ConfigError(f"data.length_scale must be 'auto' or a finite positive number, got {scale!r}")
        return cls(data=tables["data"], model=tables["model"], train=train, quick=quick, length_scale=scale, **top)

    def with_length_scale(self, scale: float) -> RunSettings:
        """These settings with the length scale resolved to ``scale``."""
        return dataclasses.replace(self, length_scale=float(scale))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``config.json``): top-level keys, ``data`` (with the length scale when it
        is known), ``model``, ``train``, ``quick``."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                               if f.name not in ("data", "model", "train", "length_scale")}
        out["data"] = _thawed(self.data)
        if self.length_scale not in ("auto", None) or "length_scale" in self.data:
            out["data"]["length_scale"] = self.length_scale
        out["model"] = _thawed(self.model)
        out["train"] = self.train.as_dict()
        return out
