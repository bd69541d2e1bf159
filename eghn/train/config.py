"""Experiment configurations: TOML files, inheritance, ``--set key=value`` overrides.

A configuration is a nested dictionary with four parts::

    name = "mocap_run_eghn"      # run name (used for the run directory)
    seed = 1
    device = "auto"               # "auto", "cpu", "cuda" or "cuda:N"
    out_dir = "runs"
    protocol = "released"         # optional: the protocol the run follows (see [protocols] below)

    [data]                        # dataset: "name" selects it, the other keys go to its class
    name = "mocap"
    ...

    [model]                       # model: "name" selects it, the other keys go to its class
    name = "eghn"
    ...

    [train]                       # optimisation (the paper's defaults, see TRAIN_DEFAULTS)
    epochs = 600

    [quick]                       # optional: merged on top when a reduced ("--quick") run is asked
    train = { epochs = 10 }

    [protocols.released]          # optional: the overrides that define each protocol; the one
    data = { features = "released" }  # named by ``protocol`` (or ``--set protocol=...``) is merged
    [protocols.paper]             # first, before [quick] and --set
    data = { features = "paper" }

A file may start with ``extends = "other.toml"`` (a path relative to it, or a shipped config
name): it is read first and this file's keys are merged over it. Keys of ``train`` and the top
level are checked against a fixed schema (name and type); keys of ``data`` and ``model`` are
checked against the constructor of the selected class when the run is built
(:func:`check_kwargs`). Unknown keys are errors with a suggestion.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import json
import math
import sys
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "SEED_MAX",
    "TABLE_ALIASES",
    "TOP_DEFAULTS",
    "TRAIN_DEFAULTS",
    "ConfigError",
    "apply_overrides",
    "apply_protocol",
    "check_kwargs",
    "check_values",
    "describe_configs",
    "list_configs",
    "load_config",
    "merge",
    "parse_value",
    "resolve",
    "save_config",
]


class ConfigError(ValueError):
    """A configuration file or override is invalid (unknown key, wrong type, missing file).

    Example:
        >>> from eghn.train.config import ConfigError, apply_overrides
        >>> try:
        ...     apply_overrides({}, ["train.lr"])
        ... except ConfigError as e:
        ...     print(e)
        override 'train.lr' must look like key=value (e.g. train.lr=1e-3)
    """


#: Top-level keys and their defaults.
TOP_DEFAULTS: dict[str, Any] = {
    "name": "run",
    "seed": 1,
    "device": "auto",
    "out_dir": "runs",
    "description": "",
    "protocol": "",             # "released" (the authors' released code) or "paper" (the paper's text)
    "paper_reference": "",      # "tableN/ROW/COLUMN" of eghn/results/paper.json, printed beside the result
}

#: The largest seed (PyTorch's generators take 64-bit seeds; 2**63 - 1 fits every platform).
SEED_MAX = 2**63 - 1

#: The ``[train]`` table: the published EGHN code's defaults.
TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 600,              # maximum number of epochs
    "batch_size": 100,          # global batch size (split over processes under DDP)
    "lr": 5e-4,                 # Adam learning rate
    "weight_decay": 1e-12,      # Adam weight decay
    "adam_eps": 1e-8,           # Adam's epsilon: added to the root of the second moment (torch's default)
    "eval_every": 5,            # evaluate (val + test) every this many epochs
    "patience": 50,             # early stopping: evaluations without val improvement
    "eval_test": True,          # also evaluate the test split at every evaluation
    "lr_schedule": "constant",  # "constant" (the paper) or "cosine" (decay to 0 over train.epochs)
    "clip_grad": 0.0,           # max gradient norm (0 = off)
    "amp": "off",               # mixed precision on CUDA: "off", "bf16" or "fp16"
    "dtype": "float32",         # "float32" or "float64"
    "threads": 0,               # torch.set_num_threads (0 = leave torch's default)
    "recompute_edges": "auto",  # recompute edge-MLP activations in backward: "auto", "always", "never"
    "cpu_malloc": "reuse",      # on a CPU: "reuse" freed memory (eghn.train.malloc) or the C library's "default"
    "preload": "auto",          # keep batches on the device: "auto", "device", "cpu" or "lazy"
    "preload_max_gb": 4.0,      # "auto" pre-collates a split only below this size
    "checkpoint": True,         # write last.pt at every evaluation and best.pt at improvements
    "tensorboard": False,       # write TensorBoard logs (needs the tensorboard package)
    "progress": True,           # tqdm progress bars
    "max_batches": 0,           # limit batches per epoch (0 = all; for smoke tests)
    "ddp_find_unused": True,    # DDP: allow parameters that get no gradient (e.g. a last h-update)
    "drop_last": False,         # skip the last, smaller training batch (the released code); kept if the only one
    "compile": "off",           # torch.compile the training forward pass: "off", "on" or "auto" (where measured faster)
    "init_tries": 1,            # starts probed before training (1 = none; eghn.train.init_selection)
    "init_epochs": 20,          # epochs of each probed start
    "init_max_regulariser": 0.01,  # a probed start passes when its training regulariser falls to this
}

_SECTIONS = ("data", "model", "train", "quick")
_FREE_TABLES = ("data", "model")


def _config_dir():
    return resources.files("eghn") / "configs"


def list_configs() -> list[str]:
    """Names of the configurations shipped in ``eghn/configs`` (without ``.toml``), sorted.

    Example:
        >>> from eghn.train.config import list_configs
        >>> "default" in list_configs(), any(name.startswith("table1/") for name in list_configs())
        (True, True)
    """
    root = Path(str(_config_dir()))
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.toml"))


#: shipped config folders that hold a table of the paper under another name: ``table2/NAME``
#: is ``mocap/NAME`` and ``table3/NAME`` is ``protein/NAME``
TABLE_ALIASES = {"table2": "mocap", "table3": "protein"}

#: the heading of each group of shipped configs in ``eghn train --list``
_GROUPS = (
    ("", "Quick start and base configurations"),
    ("table1", "Table 1 -- M-complex simulation"),
    ("mocap", "Table 2 -- CMU motion capture (also as table2/NAME)"),
    ("protein", "Table 3 -- protein molecular dynamics (also as table3/NAME)"),
    ("table4", "Table 4 -- ablations on motion capture"),
)


def describe_configs() -> list[tuple[str, list[tuple[str, str]]]]:
    """Shipped configurations grouped by the paper's tables: ``[(heading, [(name, description)])]``.

    The description is the config's ``description`` key (inherited through ``extends``).

    Example:
        >>> from eghn.train.config import describe_configs
        >>> groups = describe_configs()
        >>> groups[0][0], all(isinstance(name, str) for _, items in groups for name, _ in items)
        ('Quick start and base configurations', True)
    """
    groups: dict[str, list[tuple[str, str]]] = {folder: [] for folder, _ in _GROUPS}
    for name in list_configs():
        folder = name.rpartition("/")[0]
        raw = _read_toml(_locate(name))
        groups.setdefault(folder, []).append((name, str(raw.get("description", ""))))
    headings = dict(_GROUPS)
    return [(headings.get(folder, folder), items) for folder, items in groups.items() if items]


def _locate(spec: str | Path, base: Path | None = None) -> Path:
    """Find a config file: a path (absolute or relative to ``base``/cwd) or a shipped name."""
    spec_s = str(spec)
    candidates = []
    p = Path(spec_s)
    if base is not None and not p.is_absolute():
        candidates.append(base / p)
    candidates.append(p)
    shipped = Path(str(_config_dir()))
    name = spec_s[:-5] if spec_s.endswith(".toml") else spec_s
    folder, _, rest = name.partition("/")
    if rest and folder in TABLE_ALIASES:
        name = f"{TABLE_ALIASES[folder]}/{rest}"
    candidates.append(shipped / f"{name}.toml")
    for c in candidates:
        if c.is_file():
            return c
    close = difflib.get_close_matches(name, list_configs(), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `eghn train --list`"
    raise FileNotFoundError(f"config {spec_s!r} is neither a file nor a shipped config name{hint}")


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dictionary merge: tables merge key by key, other values of ``over`` win.

    Example:
        >>> from eghn.train.config import merge
        >>> merge({"train": {"lr": 0.0005, "epochs": 600}, "seed": 1}, {"train": {"epochs": 10}})
        {'train': {'lr': 0.0005, 'epochs': 10}, 'seed': 1}
    """
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _read_toml(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ConfigError(f"circular 'extends' in configs: {chain}")
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except OSError as e:
        raise FileNotFoundError(f"cannot read config {path}: {e}") from None
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: 'extends' must be a string (a config path or name)")
    base = _read_toml(_locate(parent, base=path.parent), (*_seen, path))
    return merge(base, raw)


def _type_name(v: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "table"}.get(
        type(v), type(v).__name__)


def _check_type(key: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the type of ``default``; ints are accepted for floats."""
    if default is None:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"config key {key!r} must be of type {_type_name(default)}, "
                          f"got {value!r} ({_type_name(value)})")
    return value


def _unknown(key: str, known: Iterable[str], owner: str = "") -> ConfigError:
    known = sorted(known)
    prefix = key.rsplit(".", 1)[0] + "." if "." in key else ""
    leaves = [k[len(prefix):] if k.startswith(prefix) else k for k in known]
    close = difflib.get_close_matches(key[len(prefix):], leaves, n=3)
    hint = (f"; did you mean {', '.join(prefix + c for c in close)}?" if close
            else f"; known keys: {', '.join(known)}")
    return ConfigError(f"unknown config key {key!r}{owner}{hint}")


def resolve(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Fill defaults and check the fixed schema, once (:class:`~eghn.train.settings.RunSettings`).

    ``raw`` is a merged config (its ``[quick]`` table, if any, already applied by
    :func:`load_config`; ``quick`` may be the boolean record of that). Returns the JSON form
    with keys ``name, seed, device, out_dir, description, protocol, paper_reference, quick,
    data, model, train``.

    Example:
        >>> cfg = resolve({"model": {"name": "egnn"}, "data": {"name": "arrays"}, "train": {"epochs": 2}})
        >>> cfg["train"]["epochs"], cfg["train"]["lr"], cfg["seed"], cfg["quick"]
        (2, 0.0005, 1, False)
    """
    from .settings import RunSettings

    return RunSettings.from_config(raw).to_dict()


def parse_value(text: str) -> Any:
    """Parse the right-hand side of ``--set key=value`` as a TOML value; bare words stay strings.

    >>> parse_value("3"), parse_value("1e-3"), parse_value("true"), parse_value("[1, 2]"), parse_value("cpu")
    (3, 0.001, True, [1, 2], 'cpu')
    """
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key=value`` strings (dotted keys, e.g. ``train.lr=1e-3``) to a raw config.

    Keys of ``train`` and the top level must exist in the schema and keep their type; keys of
    ``data``/``model`` may be new (they are checked against the constructor later).

    Example:
        >>> from eghn.train.config import apply_overrides
        >>> apply_overrides({"train": {"lr": 0.0005}}, ["train.lr=1e-3", "model.hidden=32"])
        {'train': {'lr': 0.001}, 'model': {'hidden': 32}}
    """
    out = copy.deepcopy(dict(raw))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. train.lr=1e-3)")
        key, text = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if not all(parts):
            raise ConfigError(f"override key {key!r} is malformed")
        value = parse_value(text.strip())
        if parts[0] == "train":  # types and ranges are checked once, by resolve()
            if len(parts) != 2 or parts[1] not in TRAIN_DEFAULTS:
                raise _unknown(key, [f"train.{k}" for k in TRAIN_DEFAULTS])
        elif parts[0] in _FREE_TABLES:
            if len(parts) < 2:
                raise ConfigError(f"override {key!r} must name a key inside [{parts[0]}]")
            old = _get(out, parts)
            if key != "data.length_scale" and parts[1] != "name" and old is not None and not isinstance(old, Mapping):
                value = _check_type(key, value, old)
        elif parts[0] == "quick":
            pass
        elif len(parts) != 1 or parts[0] not in TOP_DEFAULTS:
            raise _unknown(key, [*TOP_DEFAULTS, *(f"{s}.*" for s in _SECTIONS)])
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r}: {p!r} is not a table")
        node[parts[-1]] = value
    return out


def _get(d: Mapping[str, Any], parts: list[str]) -> Any:
    for p in parts:
        if not isinstance(d, Mapping) or p not in d:
            return None
        d = d[p]
    return d


def _protocol_of(overrides: Iterable[str]) -> str | None:
    """The value of a ``protocol=...`` override, if there is one (the last wins)."""
    found = None
    for item in overrides:
        key, _, text = item.partition("=")
        if key.strip() == "protocol":
            found = str(parse_value(text.strip()))
    return found


def apply_protocol(raw: Mapping[str, Any], protocol: str | None = None) -> dict[str, Any]:
    """Merge the ``[protocols.<name>]`` table of a raw config, ``name`` being ``protocol`` or
    else the config's own ``protocol`` key; drops the ``protocols`` table and records the name.

    A config without ``[protocols]`` follows the one protocol its ``protocol`` key names; asking
    it for another is an error.

    >>> raw = {"protocol": "released", "data": {"name": "x"},
    ...        "protocols": {"released": {"data": {"n": 400}}, "paper": {"data": {"n": 200}}}}
    >>> apply_protocol(raw)["data"], apply_protocol(raw, "paper")["data"]["n"]
    ({'name': 'x', 'n': 400}, 200)
    """
    raw = dict(raw)
    tables = raw.pop("protocols", None) or {}
    if not isinstance(tables, Mapping) or not all(isinstance(v, Mapping) for v in tables.values()):
        raise ConfigError("'protocols' must hold one table of overrides per protocol")
    own = raw.get("protocol", "")
    if not isinstance(own, str):
        raise ConfigError("config key 'protocol' must be a string")
    name = own if protocol is None else protocol
    if tables:
        if name not in tables:
            raise ConfigError(f"protocol {name!r} is not defined by this config; it defines "
                              f"{', '.join(sorted(tables))}")
        raw = merge(raw, tables[name])
    elif name != own and own:
        raise ConfigError(f"this config follows protocol {own!r} only (it has no [protocols] tables), "
                          f"not {name!r}")
    raw["protocol"] = name
    return raw


def load_config(spec: str | Path, overrides: Iterable[str] = (), *, quick: bool = False,
                protocol: str | None = None) -> dict[str, Any]:
    """Read a config (path or shipped name), merge the tables of its protocol (``protocol``, a
    ``protocol=...`` override, or the file's own ``protocol`` key), apply ``[quick]`` (if
    ``quick``) and then the ``--set`` overrides, fill and check defaults.

    Example:
        >>> cfg = load_config("default", ["train.epochs=3"])
        >>> cfg["train"]["epochs"], cfg["train"]["lr"], cfg["model"]["name"]
        (3, 0.002, 'eghn')
    """
    overrides = list(overrides)
    from_set = _protocol_of(overrides)
    raw = apply_protocol(_read_toml(_locate(spec)), from_set if from_set is not None else protocol)
    quick_over = raw.pop("quick", {}) or {}
    if not isinstance(quick_over, Mapping):
        raise ConfigError("'quick' must be a table of overrides")
    if quick:  # the [quick] table first, so that --set overrides win over it
        raw = merge(raw, quick_over)
    raw["quick"] = bool(quick)  # the record that it was applied
    return resolve(apply_overrides(raw, overrides))


def save_config(config: Mapping[str, Any], path: str | Path) -> None:
    """Write the resolved config as JSON (stable key order).

    Example:
        >>> import json, tempfile
        >>> from pathlib import Path
        >>> from eghn.train.config import save_config
        >>> path = Path(tempfile.mkdtemp()) / "config.json"
        >>> save_config({"seed": 1, "name": "run"}, path)
        >>> list(json.loads(path.read_text()))  # keys sorted
        ['name', 'seed']
    """
    from ..io import atomic_write_text

    atomic_write_text(path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def check_kwargs(fn: Any, kwargs: Mapping[str, Any], what: str, owner: str = "") -> None:
    """Raise :class:`ConfigError` if ``fn`` (a class or function) cannot take these keywords.

    Classes or functions that accept ``**kwargs`` accept anything.

    Example:
        >>> from eghn.models import EGNN
        >>> from eghn.train.config import ConfigError, check_kwargs
        >>> check_kwargs(EGNN, {"hidden": 64, "layers": 4}, "model")
        >>> try:
        ...     check_kwargs(EGNN, {"hiden": 64}, "model")
        ... except ConfigError as e:
        ...     print(str(e)[:32])
        unknown config key 'model.hiden'
    """
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return
    params = sig.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = {n for n, p in params.items()
                if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
                and n not in ("self", "node_dim", "edge_dim", "local_edge_dim", "split")}
    for k in kwargs:
        if k not in accepted and k != "split":
            raise _unknown(f"{what}.{k}", [f"{what}.{a}" for a in accepted],
                           f" ({owner or fn.__name__} takes no {k!r})")


#: options that count something and must be >= 1 wherever a model or dataset takes them
POSITIVE_OPTIONS = frozenset({
    "hidden", "layers", "enc_layers", "pool_layers", "dec_layers", "heads", "clusters", "n_complex",
    "avg_size", "n_types", "n_train", "n_val", "n_test", "max_samples", "delta_frame", "n_steps",
    "sample_every", "size", "dim",
})

#: Model and data options that must be >= 0 (weights of loss terms).
NONNEGATIVE_OPTIONS = frozenset({"lam"})


def check_values(fn: Any, kwargs: Mapping[str, Any], what: str) -> None:
    """Raise :class:`ConfigError` for option values of the wrong type or out of range.

    An option whose default in ``fn``'s signature is an int (a float) must be an int (a finite
    number); counts (:data:`POSITIVE_OPTIONS`, lists of them too) must be >= 1.

    Example:
        >>> from eghn.models import EGNN
        >>> from eghn.train.config import ConfigError, check_values
        >>> check_values(EGNN, {"hidden": 64}, "model")
        >>> try:
        ...     check_values(EGNN, {"hidden": 0}, "model")
        ... except ConfigError as e:
        ...     print(type(e).__name__)
        ConfigError
    """
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        params = {}
    for k, v in kwargs.items():
        key = f"{what}.{k}"
        p = params.get(k)
        default = p.default if p is not None and p.default is not inspect.Parameter.empty else None
        if isinstance(default, bool):
            if not isinstance(v, bool):
                raise ConfigError(f"config key {key!r} must be true or false, got {v!r}")
            continue
        if isinstance(default, int) and not (isinstance(v, int) and not isinstance(v, bool)) and not (
                k == "clusters" and isinstance(v, list)):
            raise ConfigError(f"config key {key!r} must be an integer, got {v!r} ({_type_name(v)})")
        if isinstance(default, float) and v is not None:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"config key {key!r} must be a finite number, got {v!r}")
            if k in NONNEGATIVE_OPTIONS and v < 0:
                raise ConfigError(f"config key {key!r} must be >= 0, got {v!r}")
        if k in POSITIVE_OPTIONS and v is not None:
            items = v if isinstance(v, list) else [v]
            if k == "clusters" and not items:
                raise ConfigError(f"config key {key!r} must not be empty")
            for x in items:
                if isinstance(x, bool) or not isinstance(x, int):
                    raise ConfigError(f"config key {key!r} must be {'a list of ' if isinstance(v, list) else 'an '}"
                                      f"integer{'s' if isinstance(v, list) else ''} >= 1, got {v!r}")
                if x < 1:
                    raise ConfigError(f"config key {key!r} must be >= 1, got {v!r}")
