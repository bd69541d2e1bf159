"""A trained run as a predictor in the data's own units.

``eghn train`` standardises lengths by the run's length scale :math:`L`
(:mod:`eghn.data.units`). :func:`load_run` returns the trained model together with :math:`L`
and the dataset's feature length powers, and :meth:`TrainedRun.predict` takes a graph in the
data's units and returns positions in the same units.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data.graph import Graph
from ..data.units import standardize_graph
from ..io import read_json_object

__all__ = ["TrainedRun", "load_run", "read_run"]


@dataclass
class TrainedRun:
    """A trained model with what it needs to predict in the data's units.

    Attributes:
        model: the trained network (eval mode), which works in standardised units.
        config: the run's resolved configuration.
        length_scale: :math:`L` of the run (``data.length_scale``).
        powers: the dataset's power of length of every feature column.
        checkpoint: the file the weights were read from.
    """

    model: nn.Module
    config: dict[str, Any]
    length_scale: float
    powers: dict[str, tuple[int, ...]] = field(default_factory=dict)
    checkpoint: str = ""

    @torch.no_grad()
    def predict(self, graph: Graph) -> Tensor:
        """Predicted positions, shape ``(N, n)``, for ``graph`` given in the data's own units
        (as the dataset class builds it), in those units."""
        p = next(self.model.parameters(), None)
        if p is not None:
            graph = graph.to(p.device, dtype=p.dtype)
        out = self.model(standardize_graph(graph, self.length_scale, self.powers)).pos
        return out * self.length_scale


def read_run(target: str | Path) -> tuple[dict[str, Any], Path, dict[str, Any]]:
    """``(config, checkpoint path, checkpoint state)`` of a run directory (its ``best.pt``, else
    ``last.pt``) or a checkpoint file. The config is the one stored in the checkpoint, else the
    run's ``config.json``; a run saved before lengths were standardised gets ``length_scale = 1``
    (it was trained in the data's own units)."""
    from .checkpoint import load_checkpoint
    from .config import ConfigError

    target = Path(target)
    ckpt = target
    if target.is_dir():
        ckpt = target / "best.pt" if (target / "best.pt").is_file() else target / "last.pt"
        if not ckpt.is_file():
            raise FileNotFoundError(f"{target} holds no checkpoint (best.pt or last.pt): the run has not "
                                    "finished an evaluation yet, or it is not an eghn run directory")
    state = load_checkpoint(ckpt)
    config = state.get("config")
    if isinstance(config, str):  # the trainer stores the resolved config as JSON text
        config = json.loads(config)
    if not isinstance(config, dict):
        cfg_path = ckpt.parent / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{ckpt} holds no config and {cfg_path} does not exist")
        config = read_json_object(cfg_path, ConfigError)
    config.setdefault("data", {}).setdefault("length_scale", 1.0)
    return config, ckpt, state


def load_run(target: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
             ) -> TrainedRun:
    """Load a run directory's ``best.pt`` (else ``last.pt``), or a checkpoint file (:func:`read_run`).

    Args:
        target: run directory or checkpoint file.
        device: where to put the model.
        dtype: model dtype (default: the run's training dtype).
    """
    from .loop import build_datasets, build_model

    config, ckpt, state = read_run(target)
    ds = build_datasets(config, splits=("test",))["test"]
    if dtype is None:
        dtype = torch.float64 if config["train"]["dtype"] == "float64" else torch.float32
    model = build_model(config, ds).to(device=device, dtype=dtype)
    model.load_state_dict(state["model"])
    model.eval()
    return TrainedRun(model=model, config=config, length_scale=float(ds.length_scale), powers=dict(ds.powers),
                      checkpoint=str(ckpt))
