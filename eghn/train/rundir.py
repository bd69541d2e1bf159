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

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from .config import ConfigError

__all__ = [
    "RESUME_ALLOWED",
    "check_resume_config",
    "config_differences",
    "flatten",
    "load_weights",
    "read_result",
    "result_mismatch",
]

#: Config keys that may differ between a run's checkpoint and the command line that resumes it.
#: Their new values are used, logged and recorded in ``last.pt`` (``resumes``); any other
#: difference (data, model, seed, protocol, batch size, precision, ...) is refused.
RESUME_ALLOWED: frozenset[str] = frozenset({
    "train.lr", "train.weight_decay", "train.lr_schedule", "train.clip_grad",  # the optimiser
    "train.epochs", "train.patience",  # how long: raising them extends a finished run
    "train.threads", "train.progress", "train.tensorboard", "train.preload", "train.preload_max_gb",
    "train.recompute_edges", "train.cpu_malloc", "device",  # where and how fast
    "name", "description", "out_dir", "paper_reference",  # labels
})

#: Allowed changes that are not worth a line in the log (how the run is executed, not what).
_SILENT = frozenset({"train.threads", "train.progress", "device", "train.preload", "train.preload_max_gb",
                     "train.recompute_edges", "train.cpu_malloc", "out_dir"})


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train.lr": 5e-4, ...}``: the leaves of a nested config under dotted keys."""
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
    run records the number ``"auto"`` resolved to.
    """
    a, b = flatten(old), flatten(new)
    out = {}
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key, _MISSING), b.get(key, _MISSING)
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
        ConfigError: listing every key that differs and is not in :data:`RESUME_ALLOWED`
            (changing data, model or seed would continue a different experiment).
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
    """How ``result.json`` disagrees with ``last.pt`` (``""`` when it describes that state)."""
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
    (the file's) and ``config`` (the model's)."""
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
