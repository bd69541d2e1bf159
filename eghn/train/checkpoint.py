"""Checkpoints that load with ``torch.load(weights_only=True)``.

A checkpoint is a dictionary of tensors and primitive containers only (no pickled objects):

* ``model``: the model's ``state_dict``; ``optimizer``: the optimizer's ``state_dict``;
  ``scaler``: the AMP grad scaler's ``state_dict`` (or ``{}``);
* ``epoch``: last completed epoch; ``evals_since_best``: early-stopping counter;
* ``best``: ``{"epoch", "val", "test"}`` of the best validation so far;
* ``history``: one dictionary of numbers per evaluation (the metrics CSV);
* ``rng``: ``{"torch": ByteTensor, "cuda": [ByteTensor...], "shuffle": ByteTensor}``;
* ``config``: the resolved configuration as a JSON string; ``format``: version number.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["CHECKPOINT_FORMAT", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically (temporary file + rename), so a kill never leaves a torn file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for corrupt/unsafe files
        raise ValueError(f"cannot load checkpoint {path}: {e}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or "model" not in state:
        raise ValueError(f"{path} is not an eghn checkpoint (format {CHECKPOINT_FORMAT})")
    if isinstance(state.get("config"), str):
        state["config"] = json.loads(state["config"])
    return state
