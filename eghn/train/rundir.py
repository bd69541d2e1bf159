"""A run directory and the checks that tie every file in it to ``last.pt``.

``last.pt`` holds the truth of a run: the resolved config, every evaluation (the history), the
best evaluation and a copy of the best weights. Every other file is derived from it, and is
checked against it before it is believed:

=================  ==========================================================================
``config.json``    the resolved config; on resume, any difference from ``last.pt``'s config
                   is refused with the list of keys, unless the key is in
                   :data:`RESUME_ALLOWED` (then it is logged and recorded in ``last.pt``).
                   An unreadable ``config.json`` is rewritten from ``last.pt``.
``metrics.csv``    one row per evaluation; rewritten from ``last.pt``'s history.
``best.pt``        the weights of the best evaluation; its epoch must be ``last.pt``'s best
                   epoch. A missing or corrupt one is rewritten from ``last.pt``'s copy on
                   resume; ``eghn evaluate`` refuses it, naming the file.
``result.json``    the finished run's summary: its epochs and best evaluation must be those of
                   ``last.pt``, and it records the SHA-256 of the ``best.pt`` it describes.
                   It records no path: a copied run directory describes itself.
=================  ==========================================================================

Example:
    >>> config_differences({"seed": 1, "train": {"lr": 1e-3}}, {"seed": 7, "train": {"lr": 1e-3}})
    {'seed': (1, 7)}
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from torch import nn

from ..io import WriteGroup, append_text, read_json_object
from .checkpoint import CheckpointError, checkpoint_bytes, file_sha256, load_checkpoint
from .config import TOP_DEFAULTS, TRAIN_DEFAULTS, ConfigError
from .settings import TrainSettings
from .stability import CSV_FIELDS as STABILITY_FIELDS

__all__ = [
    "METRICS_FIELDS",
    "RESUME_ALLOWED",
    "RunLog",
    "RunResult",
    "best_problem",
    "best_repair",
    "check_resume_config",
    "config_differences",
    "csv_text",
    "finished_run",
    "finished_without_checkpoint",
    "flatten",
    "legacy_defaults",
    "load_weights",
    "read_result",
    "result_mismatch",
    "write_result",
]

#: Config keys that may differ between a run's checkpoint and the command line that resumes it.
#: Their new values are used, logged and recorded in ``last.pt`` (``resumes``); any other
#: difference (data, model, seed, protocol, batch size, precision, ...) is refused.
RESUME_ALLOWED: frozenset[str] = frozenset({
    "train.lr", "train.weight_decay", "train.adam_eps", "train.lr_schedule", "train.clip_grad",  # the optimiser
    "train.epochs", "train.patience",  # how long: raising them extends a finished run
    "train.threads", "train.progress", "train.tensorboard", "train.preload", "train.preload_max_gb",
    "train.recompute_edges", "train.cpu_malloc", "device",  # where and how fast
    "name", "description", "out_dir", "paper_reference",  # labels
})

#: Allowed changes that are not worth a line in the log (how the run is executed, not what).
_SILENT = frozenset({"train.threads", "train.progress", "device", "train.preload", "train.preload_max_gb",
                     "train.recompute_edges", "train.cpu_malloc", "out_dir"})


#: the columns of ``metrics.csv``: one row per evaluation
METRICS_FIELDS = ["epoch", "wall_s", "train_loss", "train_mse", "val_mse", "test_mse", "best_epoch",
                  "best_val", "samples_per_s", "step_share", *STABILITY_FIELDS]


def csv_text(rows: list[dict[str, float]]) -> str:
    """The whole metrics table (``metrics.csv``) as text.

    Example:
        >>> from eghn.train.rundir import csv_text
        >>> header, row = csv_text([{"epoch": 5, "val_mse": 0.25}]).splitlines()
        >>> header.split(",")[:5], row.split(",")[:5]
        (['epoch', 'wall_s', 'train_loss', 'train_mse', 'val_mse'], ['5', '', '', '', '0.25'])
    """
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=METRICS_FIELDS)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


@dataclass
class RunResult:
    """Summary of a finished training run (also written to ``result.json``, without ``run_dir``).

    Example:
        >>> from eghn.train.rundir import RunResult
        >>> r = RunResult(run_dir="runs/demo", best_epoch=5, best_val=0.25, test=0.5, epochs=10, wall_s=1.0,
        ...               stopped_early=False)
        >>> r.to_dict()["best_val"], r.to_dict()["history"]
        (0.25, [])
    """

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
    #: each machine the run trained on, from the epoch after ``after_epoch`` (eghn.train.machine)
    machines: list[dict[str, Any]] = field(default_factory=list)
    #: the probed starts and the chosen seed under ``train.init_tries`` (eghn.train.init_selection)
    init: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RunLog:
    """Prints on the main process (through tqdm so bars stay intact) and appends to train.log.

    With ``hold`` the lines are kept in memory until :meth:`write_held` (called as part of a
    run's first whole write), so a resume that fails before it leaves ``train.log`` untouched.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from eghn.train.rundir import RunLog
        >>> path = Path(tempfile.mkdtemp()) / "train.log"
        >>> log = RunLog(path, enabled=True, echo=print, hold=True)
        >>> log("epoch 1: train 0.5")
        epoch 1: train 0.5
        >>> path.exists()  # held until the run's first whole write
        False
        >>> log.write_held()
        >>> path.read_text().splitlines()
        ['epoch 1: train 0.5']
    """

    def __init__(self, path: Path | None, enabled: bool, echo: Callable[[str], None] | None = None,
                 *, hold: bool = False):
        self.path = path
        self.enabled = enabled
        self.echo = echo
        self.held: list[str] | None = [] if hold else None

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
        if self.path is None:
            return
        if self.held is not None:
            self.held.append(msg)
        else:
            append_text(self.path, msg + "\n")

    def write_held(self) -> None:
        """Append the held lines to train.log (whole or not at all); later lines go straight there."""
        if self.held is None or self.path is None:
            self.held = None
            return
        if self.held:
            append_text(self.path, "".join(line + "\n" for line in self.held))
        self.held = None


def legacy_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the defaults of runs saved by older versions: those saved before lengths
    were standardised were trained in the data's own units (``data.length_scale = 1``).

    Example:
        >>> from eghn.train.rundir import legacy_defaults
        >>> legacy_defaults({"data": {"name": "mocap"}})
        {'data': {'name': 'mocap', 'length_scale': 1.0}}
    """
    config.setdefault("data", {}).setdefault("length_scale", 1.0)
    return config


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train.lr": 5e-4, ...}``: the leaves of a nested config under dotted keys.

    Example:
        >>> from eghn.train.rundir import flatten
        >>> flatten({"seed": 1, "train": {"lr": 0.0005, "epochs": 600}, "model": {}})
        {'seed': 1, 'train.lr': 0.0005, 'train.epochs': 600, 'model': {}}
    """
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return (type(a) is type(b) and a == b) or (
        isinstance(a, (int, float)) and isinstance(b, (int, float))
        and not isinstance(a, bool) and not isinstance(b, bool) and a == b)


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old, new)}`` for every leaf that differs (a missing side is ``None``).

    ``data.length_scale = "auto"`` (or unset) on one side matches any number on the other: a
    run records the number ``"auto"`` resolved to. A ``[train]`` or top-level key missing on one
    side (a config saved before the key existed) counts as its default.

    Example:
        >>> from eghn.train.rundir import config_differences
        >>> old = {"train": {"lr": 0.0005, "epochs": 600}, "data": {"length_scale": "auto"}}
        >>> new = {"train": {"lr": 0.001, "epochs": 600}, "data": {"length_scale": 2.5}, "seed": 3}
        >>> config_differences(old, new)  # "auto" matches the number it resolved to; no seed: the default 1
        {'seed': (1, 3), 'train.lr': (0.0005, 0.001)}
    """
    a, b = flatten(old), flatten(new)
    defaults = {f"train.{k}": v for k, v in TRAIN_DEFAULTS.items()} | dict(TOP_DEFAULTS)
    out = {}
    for key in sorted(set(a) | set(b)):
        # a key added to the schema after the run was saved is its default there
        x, y = a.get(key, defaults.get(key, _MISSING)), b.get(key, defaults.get(key, _MISSING))
        if key == "data.length_scale" and ("auto" in (x, y) or None in (x, y) or _MISSING in (x, y)):
            continue
        if x is _MISSING or y is _MISSING or not _same(x, y):
            out[key] = (None if x is _MISSING else x, None if y is _MISSING else y)
    return out


def _show(v: Any) -> str:
    return json.dumps(v) if not isinstance(v, str) else repr(v)


def check_resume_config(saved: Mapping[str, Any], given: Mapping[str, Any], *, where: str = "last.pt"
                        ) -> dict[str, list[Any]]:
    """The allowed changes ``{key: [old, new]}`` between a checkpoint's config and the one given.

    Raises:
        eghn.train.config.ConfigError: listing every key that differs and is not in :data:`RESUME_ALLOWED`
            (changing data, model or seed would continue a different experiment).

    Example:
        >>> from eghn.train.config import ConfigError
        >>> from eghn.train.rundir import check_resume_config
        >>> check_resume_config({"train": {"epochs": 100}}, {"train": {"epochs": 200}})  # a run may be extended
        {'train.epochs': [100, 200]}
        >>> try:
        ...     check_resume_config({"seed": 1}, {"seed": 2})
        ... except ConfigError as e:
        ...     print(str(e)[:60])
        cannot resume: the config differs from the run's (seed: 1 in
    """
    diff = config_differences(saved, given)
    refused = {k: v for k, v in diff.items() if k not in RESUME_ALLOWED}
    if refused:
        lines = "; ".join(f"{k}: {_show(a)} in {where}, {_show(b)} now" for k, (a, b) in refused.items())
        raise ConfigError(f"cannot resume: the config differs from the run's ({lines}). These keys "
                          "define the experiment; start a new run for them (the keys a resume may "
                          "change: " + ", ".join(sorted(RESUME_ALLOWED - _SILENT)) + ")")
    return {k: [a, b] for k, (a, b) in diff.items() if k not in _SILENT}


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """``result.json`` of ``run_dir`` as a dict (``None`` when there is none).

    Raises:
        ValueError: naming the file when it is unreadable.

    Example:
        >>> import json, tempfile
        >>> from pathlib import Path
        >>> from eghn.train.rundir import read_result
        >>> run = Path(tempfile.mkdtemp())
        >>> read_result(run) is None
        True
        >>> _ = (run / "result.json").write_text(json.dumps({"best_epoch": 5, "best_val": 0.25}))
        >>> read_result(run)["best_epoch"]
        5
    """
    path = Path(run_dir) / "result.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is unreadable ({e}); remove it to resume the run from last.pt") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is unreadable (not a JSON object); remove it to resume the run from last.pt")
    return data


def result_mismatch(result: Mapping[str, Any], last: Mapping[str, Any]) -> str:
    """How ``result.json`` disagrees with ``last.pt`` (``""`` when it describes that state).

    Example:
        >>> from eghn.train.rundir import result_mismatch
        >>> last = {"epoch": 10, "best": {"epoch": 5, "val": 0.25}}
        >>> result_mismatch({"epochs": 10, "best_epoch": 5, "best_val": 0.25}, last)
        ''
        >>> result_mismatch({"epochs": 8, "best_epoch": 5, "best_val": 0.25}, last)
        'epochs 8 against 10'
    """
    best = last.get("best", {})
    checks = (("epochs", result.get("epochs"), last.get("epoch")),
              ("best_epoch", result.get("best_epoch"), best.get("epoch")),
              ("best_val", result.get("best_val"), best.get("val")))
    bad = [f"{name} {a} against {b}" for name, a, b in checks
           if not (isinstance(a, (int, float)) and isinstance(b, (int, float)) and _same(float(a), float(b)))]
    return "; ".join(bad)


def load_weights(model: nn.Module, weights: Mapping[str, Any], path: str | Path, saved_config: Any,
                 config: Mapping[str, Any]) -> None:
    """``model.load_state_dict(weights)``, or a :class:`ConfigError` that lists the missing,
    unexpected and misshapen keys and the model config keys that differ between ``saved_config``
    (the file's) and ``config`` (the model's).

    Example:
        >>> from torch import nn
        >>> from eghn.train.config import ConfigError
        >>> from eghn.train.rundir import load_weights
        >>> weights = nn.Linear(4, 8).state_dict()
        >>> load_weights(nn.Linear(4, 8), weights, "best.pt", {}, {})  # fits: nothing to say
        >>> try:
        ...     load_weights(nn.Linear(4, 16), weights, "best.pt", {"model": {"hidden": 8}}, {"model": {"hidden": 16}})
        ... except ConfigError as e:
        ...     print(str(e).split("; ")[-1])
        the config keys that differ: model.hidden
    """
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise ConfigError(_mismatch(e, Path(path), saved_config, config)) from None


def _mismatch(err: RuntimeError, path: Path, saved: Any, config: Mapping[str, Any]) -> str:
    """A state-dict mismatch as missing, unexpected and misshapen keys, and the config keys behind it."""
    text = str(err)
    parts = []
    for label, pattern in (("missing", r'Missing key\(s\) in state_dict: (.*?)\.\s*(?:Unexpected|size|$)'),
                           ("unexpected", r'Unexpected key\(s\) in state_dict: (.*?)\.\s*(?:size|$)')):
        m = re.search(pattern, text, re.S)
        if m:
            keys = re.findall(r'"([^"]+)"', m.group(1))
            parts.append(f"{len(keys)} {label} ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})")
    shapes = re.findall(r"size mismatch for ([^:]+): copying a param with shape (torch.Size\([^)]*\)) from "
                        r"checkpoint, the shape in current model is (torch.Size\([^)]*\))", text)
    if shapes:
        parts.append(f"{len(shapes)} misshapen (" + ", ".join(
            f"{k} {a.removeprefix('torch.Size')} in the file, {b.removeprefix('torch.Size')} now"
            for k, a, b in shapes[:3]) + (", ..." if len(shapes) > 3 else "") + ")")
    diff = config_differences(saved, config) if isinstance(saved, Mapping) else {}
    keys = [k for k in diff if k.startswith("model.")]
    why = (f"; the config keys that differ: {', '.join(keys)}" if keys else
           "; no model config key differs, so the file comes from another model or eghn version")
    return f"the weights in {path} do not fit the model: " + "; ".join(parts or [text.splitlines()[0]]) + why


def best_state(best_model: Mapping[str, Any] | None, best: Mapping[str, float],
               config: Mapping[str, Any]) -> dict[str, Any]:
    """The contents of ``best.pt``: the best weights, their epoch and evaluation, the config."""
    return {"model": best_model, "epoch": int(best["epoch"]), "best": dict(best), "config": json.dumps(config)}


def best_problem(best_path: Path, state: Mapping[str, Any]) -> str:
    """How ``best.pt`` fails to be the best evaluation that ``last.pt`` names (``""``: it is).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from eghn.train.rundir import best_problem
        >>> best = Path(tempfile.mkdtemp()) / "best.pt"
        >>> best_problem(best, {"best": {"epoch": 0}})  # no evaluation yet: nothing to hold
        ''
        >>> best_problem(best, {"best": {"epoch": 5}}).endswith("best.pt is missing")
        True
    """
    epoch = int(state["best"]["epoch"])
    if epoch == 0:
        return ""
    if not best_path.is_file():
        return f"{best_path} is missing"
    try:
        held = load_checkpoint(best_path)
    except (CheckpointError, OSError) as e:
        return str(e)
    if int(held.get("epoch", -1)) != epoch:
        return f"{best_path} holds epoch {held.get('epoch')} but last.pt's best evaluation is epoch {epoch}"
    return ""


def best_repair(best_path: Path, state: Mapping[str, Any], log: RunLog) -> dict[Path, bytes]:
    """``{best_path: bytes}`` rebuilt from ``last.pt``'s copy of the best weights when ``best.pt``
    does not hold them (``{}`` when it does); an error when it cannot be rebuilt.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from eghn.train.rundir import RunLog, best_repair
        >>> best = Path(tempfile.mkdtemp()) / "best.pt"
        >>> state = {"best": {"epoch": 5, "val": 0.25}, "best_model": {}, "config": {}}
        >>> repair = best_repair(best, state, RunLog(None, enabled=False))
        >>> list(repair) == [best], isinstance(repair[best], bytes)
        (True, True)
    """
    problem = best_problem(best_path, state)
    if not problem:
        return {}
    if state.get("best_model") is None:
        raise CheckpointError(f"{problem}; its last.pt was written by an older eghn and holds no copy of the "
                              "best weights, so it cannot be rebuilt: restore best.pt from a backup, or "
                              "remove result.json and best.pt to keep training from last.pt")
    log(f"{problem}: rebuilt from the copy of the best weights in last.pt")
    config = state.get("config")
    return {best_path: checkpoint_bytes(best_state(state["best_model"], state["best"],
                                                   config if isinstance(config, Mapping) else {}))}


def finished_run(run_dir: Path, state: Mapping[str, Any], tcfg: TrainSettings, log: RunLog) -> RunResult | None:
    """The result of a finished run that the settings ``tcfg`` do not extend (``None``: train on).

    ``result.json`` must describe ``last.pt``; when it does not it is stale (a kill while
    extending the run) and training goes on. A finished run is extended when ``train.epochs``
    now exceeds its last epoch and (after an early stop) ``train.patience`` its evaluations
    without improvement.

    Example:
        >>> import json, tempfile
        >>> from pathlib import Path
        >>> from eghn.train.rundir import RunLog, finished_run
        >>> from eghn.train.settings import TrainSettings
        >>> run = Path(tempfile.mkdtemp())
        >>> _ = (run / "config.json").write_text("{}")
        >>> _ = (run / "result.json").write_text(json.dumps({"epochs": 10, "best_epoch": 0, "best_val": 1.0,
        ...                                                  "test": 1.0, "wall_s": 1.0, "stopped_early": False}))
        >>> state = {"epoch": 10, "best": {"epoch": 0, "val": 1.0}, "evals_since_best": 0}
        >>> finished_run(run, state, TrainSettings(epochs=10, patience=5), RunLog(None, enabled=False)).epochs
        10
        >>> finished_run(run, state, TrainSettings(epochs=20, patience=5), RunLog(None, enabled=False)) is None
        True

        True
    """
    result = read_result(run_dir)
    if result is None:
        return None
    mismatch = result_mismatch(result, state)
    if mismatch:
        log(f"{run_dir / 'result.json'} does not describe last.pt ({mismatch}); continuing from last.pt")
        return None
    last = int(state["epoch"])
    early = bool(result.get("stopped_early"))
    if tcfg.epochs > last and (not early or int(state["evals_since_best"]) < tcfg.patience):
        log(f"extending the finished run in {run_dir} from epoch {last} to at most {tcfg.epochs}")
        return None
    repair = best_repair(run_dir / "best.pt", state, log)
    try:
        read_json_object(run_dir / "config.json")
    except ValueError:
        if isinstance(state.get("config"), Mapping):
            log(f"{run_dir / 'config.json'} is unreadable: rewritten from last.pt")
            repair[run_dir / "config.json"] = (json.dumps(state["config"], indent=2, sort_keys=True) + "\n").encode()
    if repair:
        best = run_dir / "best.pt"
        if best in repair:  # result.json names the bytes of the best.pt it reports
            result = {**result, "best_sha256": hashlib.sha256(repair[best]).hexdigest()}
            repair[run_dir / "result.json"] = (json.dumps(result, indent=2) + "\n").encode()
        with WriteGroup() as group:
            for path, data in repair.items():
                group.add(path, data)
            log.write_held()
    why = (f"stopped early: no improvement in {int(state['evals_since_best'])} evaluations; raise "
           "train.patience and train.epochs to go on" if early else
           f"reached train.epochs = {last}; raise it to go on")
    log(f"run {run_dir} already finished at epoch {last} ({why}); nothing to resume")
    return result_of(result, run_dir)


def finished_without_checkpoint(run_dir: Path, log: RunLog) -> RunResult | None:
    """A finished run without ``last.pt`` (``train.checkpoint = false``): its ``result.json``.

    Example:
        >>> import json, tempfile
        >>> from pathlib import Path
        >>> from eghn.train.rundir import RunLog, finished_without_checkpoint
        >>> run = Path(tempfile.mkdtemp())
        >>> finished_without_checkpoint(run, RunLog(None, enabled=False)) is None
        True
        >>> _ = (run / "result.json").write_text(json.dumps({"epochs": 10, "best_epoch": 10, "best_val": 0.5,
        ...                                                  "test": 0.6, "wall_s": 1.0, "stopped_early": False}))
        >>> finished_without_checkpoint(run, RunLog(None, enabled=False)).test
        0.6
    """
    result = read_result(run_dir)
    if result is None:
        return None
    log(f"run {run_dir} already finished (no last.pt to continue from)")
    return result_of(result, run_dir)


def result_of(data: Mapping[str, Any], run_dir: Path) -> RunResult:
    names = {f.name for f in fields(RunResult)} - {"run_dir"}
    try:
        return RunResult(run_dir=str(run_dir), **{k: v for k, v in data.items() if k in names})
    except TypeError as e:
        raise ValueError(f"{run_dir / 'result.json'} is unreadable ({e})") from None


def write_result(result: RunResult, run_dir: Path, extra: Mapping[Path, bytes | None], log: RunLog) -> None:
    """``result.json`` (with the SHA-256 of the ``best.pt`` it describes; no path), together with
    any file still waiting for its first write.

    Example:
        >>> import json, tempfile
        >>> from pathlib import Path
        >>> from eghn.train.rundir import RunLog, RunResult, write_result
        >>> run = Path(tempfile.mkdtemp())
        >>> result = RunResult(run_dir=str(run), best_epoch=5, best_val=0.25, test=0.5, epochs=10, wall_s=1.0,
        ...                    stopped_early=False)
        >>> write_result(result, run, {run / "config.json": b"{}"}, RunLog(None, enabled=False))
        >>> sorted(p.name for p in run.iterdir()), "run_dir" in json.loads((run / "result.json").read_text())
        (['config.json', 'result.json'], False)
    """
    best = run_dir / "best.pt"
    data = result.to_dict()
    del data["run_dir"]  # a copied run directory describes itself
    with WriteGroup() as group:
        for path, content in extra.items():
            if content is not None and path != run_dir / "result.json":
                group.add(path, content)
        if best.is_file() and best not in extra:
            data["best_sha256"] = file_sha256(best)
        elif best in extra and extra[best] is not None:
            data["best_sha256"] = hashlib.sha256(extra[best]).hexdigest()
        group.add(run_dir / "result.json", json.dumps(data, indent=2) + "\n")
        log.write_held()
