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

__all__ = ["TrainedRun", "evaluate_run", "evaluation_device", "load_run", "read_run"]


@dataclass
class TrainedRun:
    """A trained model with what it needs to predict in the data's units.

    Attributes:
        model: the trained network (eval mode), which works in standardised units.
        config: the run's resolved configuration.
        length_scale: :math:`L` of the run (``data.length_scale``).
        powers: the dataset's power of length of every feature column.
        checkpoint: the file the weights were read from.

    Example:
        A model that predicts no motion, for a run trained with :math:`L = 2`.

        >>> import torch
        >>> from eghn.data import Graph
        >>> from eghn.models import ModelOutput
        >>> from eghn.train.trained import TrainedRun
        >>> class Still(torch.nn.Module):
        ...     def forward(self, g):
        ...         return ModelOutput(pos=g.pos)
        >>> run = TrainedRun(model=Still(), config={}, length_scale=2.0)
        >>> g = Graph(pos=torch.tensor([[0.0, 0.0, 4.0], [1.0, 0.0, 0.0]]), edge_index=torch.tensor([[0, 1], [1, 0]]))
        >>> run.predict(g).tolist()  # in the data's units again
        [[0.0, 0.0, 4.0], [1.0, 0.0, 0.0]]
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


def read_run(target: str | Path, *, checkpoint: str = "best") -> tuple[dict[str, Any], Path, dict[str, Any]]:
    """``(config, checkpoint path, checkpoint state)`` of a run directory or a checkpoint file.

    For a run directory, ``checkpoint`` picks ``best.pt`` (default: the weights its
    ``result.json`` reports) or ``last.pt``. There is no fallback from one to the other: a
    missing or corrupt file is an error naming it. ``best.pt`` is checked against the run's
    ``result.json`` (its SHA-256 and epoch) or, before the run has finished, against the best
    epoch recorded in ``last.pt``. The config is the one stored in the checkpoint, else the
    run's ``config.json``; a run saved before lengths were standardised gets
    ``length_scale = 1`` (it was trained in the data's own units).

    Example:
        Two epochs of a small EGNN, then its best checkpoint.

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
        >>> from eghn.train.trained import read_run
        >>> config, ckpt, state = read_run(tmp / "run")
        >>> ckpt.name, state["epoch"] == result.best_epoch, config["model"]["name"]
        ('best.pt', True, 'egnn')
        >>> read_run(tmp / "run", checkpoint="last")[2]["epoch"]
        2
    """
    from .checkpoint import CheckpointError, file_sha256, load_checkpoint
    from .config import ConfigError
    from .rundir import legacy_defaults

    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    target = Path(target)
    ckpt = target
    if target.is_dir():
        ckpt = target / f"{checkpoint}.pt"
        if not ckpt.is_file():
            other = "last" if checkpoint == "best" else "best"
            hint = (f"; {target / (other + '.pt')} exists: ask for it with --checkpoint {other}"
                    if (target / f"{other}.pt").is_file() else
                    ": the run has not finished an evaluation yet, or it is not an eghn run directory")
            raise FileNotFoundError(f"{ckpt} does not exist{hint}")
    state = load_checkpoint(ckpt)
    if target.is_dir() and checkpoint == "best":
        problem = _best_disagrees(target, ckpt, state, file_sha256, load_checkpoint)
        if problem:
            raise CheckpointError(f"{ckpt} is not the checkpoint its run reports: {problem}; resume the run "
                                  "(eghn train --resume) to rebuild it from last.pt, or pass --checkpoint last")
    config = state.get("config")
    if isinstance(config, str):  # the trainer stores the resolved config as JSON text
        config = json.loads(config)
    if not isinstance(config, dict):
        cfg_path = ckpt.parent / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{ckpt} holds no config and {cfg_path} does not exist")
        config = read_json_object(cfg_path, ConfigError)
    return legacy_defaults(config), ckpt, state


def _best_disagrees(run_dir: Path, ckpt: Path, state: dict[str, Any], sha256, load) -> str:
    """How ``best.pt`` disagrees with the run's ``result.json`` or ``last.pt`` (``""``: it agrees)."""
    epoch = state.get("epoch")
    result_path = run_dir / "result.json"
    if result_path.is_file():
        result = read_json_object(result_path)
        digest = result.get("best_sha256")
        if digest and digest != sha256(ckpt):
            return f"its SHA-256 is not the one {result_path.name} records"
        if "best_epoch" in result and result["best_epoch"] != epoch:
            return f"it holds epoch {epoch} but {result_path.name} reports epoch {result['best_epoch']}"
        return ""
    last = run_dir / "last.pt"
    if last.is_file():
        best_epoch = load(last).get("best", {}).get("epoch")
        if best_epoch is not None and best_epoch != epoch:
            return f"it holds epoch {epoch} but last.pt's best evaluation is epoch {best_epoch}"
    return ""


def load_run(target: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
             checkpoint: str = "best") -> TrainedRun:
    """Load a run directory's ``best.pt`` (or ``last.pt``), or a checkpoint file (:func:`read_run`).

    Args:
        target: run directory or checkpoint file.
        device: where to put the model.
        dtype: model dtype (default: the run's training dtype).
        checkpoint: ``"best"`` or ``"last"``, for a run directory.

    Example:
        Two epochs of a small EGNN, then a prediction in the data's units.

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
        >>> import torch
        >>> from eghn.data import PointCloudDataset
        >>> from eghn.train.trained import load_run
        >>> run = load_run(tmp / "run")
        >>> graph = PointCloudDataset(tmp / "toy.npz", "test", split_sizes=[8, 2, 2])[0]
        >>> tuple(run.predict(graph).shape), run.model.training, run.length_scale > 0
        ((4, 3), False, True)
    """
    from .loop import build_datasets, build_model
    from .rundir import load_weights

    config, ckpt, state = read_run(target, checkpoint=checkpoint)
    ds = build_datasets(config, splits=("test",))["test"]
    if dtype is None:
        dtype = torch.float64 if config["train"]["dtype"] == "float64" else torch.float32
    model = build_model(config, ds).to(device=device, dtype=dtype)
    load_weights(model, state["model"], ckpt, config, config)
    model.eval()
    return TrainedRun(model=model, config=config, length_scale=float(ds.length_scale), powers=dict(ds.powers),
                      checkpoint=str(ckpt))


def evaluate_run(target: str | Path, *, split: str = "test", checkpoint: str = "best",
                 device: str | torch.device | None = None, dtype: str | None = None, batch_size: int | None = None,
                 rotate: bool = False, translate: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """The MSE of a run's checkpoint on one split, in the data's units (what ``eghn evaluate`` prints).

    With ``rotate`` and/or ``translate`` the split is evaluated a second time with every graph
    moved by its own random rotation and/or translation :math:`\\mathcal{N}(0, s^2 I)`, ``s =
    translate`` in the data's units, drawn from ``seed``
    (:func:`~eghn.train.trainer.evaluate_model`): an E(n)-equivariant model scores the same up
    to the rounding of ``dtype``.

    Args:
        target: run directory or checkpoint file (:func:`read_run`).
        split: ``"train"``, ``"val"`` or ``"test"``.
        checkpoint: ``"best"`` or ``"last"``, for a run directory.
        device: where to evaluate (default: :func:`evaluation_device`: the run's ``device``, or
            the CPU for a run trained on CUDA when this machine has none).
        dtype: ``"float32"`` or ``"float64"`` (default: the run's training dtype).
        batch_size: graphs per batch (default: the run's ``train.batch_size``).
        rotate, translate, seed: the test-time transformation.

    Returns:
        ``checkpoint`` (path), ``epoch``, ``split``, ``n_samples``, ``dtype`` and ``mse``; with a
        transformation also ``mse_transformed`` and ``transform`` (``rotate``,
        ``translate_scale``, ``seed``).

    Raises:
        CheckpointError: the checkpoint holds NaN or infinite weights (a diverged run).

    Example:
        Two epochs of a small EGNN, then its test MSE with and without a rotation of every graph.

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
        >>> _ = train(config, tmp / "run", echo=lambda msg: None)
        >>> from eghn.train.trained import evaluate_run
        >>> res = evaluate_run(tmp / "run", rotate=True, dtype="float64")
        >>> res["n_samples"], abs(res["mse_transformed"] - res["mse"]) < 1e-9 * res["mse"]
        (2, True)
    """
    from .loader import GraphBank
    from .loop import build_datasets, build_model, evaluate_model
    from .rundir import load_weights

    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    if dtype not in (None, "float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    config, ckpt, state = read_run(target, checkpoint=checkpoint)
    _check_finite_weights(ckpt, state)
    dev = evaluation_device(config, device)
    ds = build_datasets(config, splits=(split,))[split]
    torch_dtype = torch.float64 if (dtype or config["train"]["dtype"]) == "float64" else torch.float32
    model = build_model(config, ds).to(device=dev, dtype=torch_dtype)
    load_weights(model, state["model"], ckpt, config, config)
    train_cfg = config["train"]
    bank = GraphBank(ds, dev, torch_dtype, train_cfg.get("preload", "auto"), train_cfg.get("preload_max_gb", 4.0))
    bs = batch_size or train_cfg["batch_size"]
    res: dict[str, Any] = {"checkpoint": str(ckpt), "epoch": int(state.get("epoch", -1)), "split": split,
                           "n_samples": len(ds), "dtype": str(torch_dtype).removeprefix("torch."),
                           "mse": evaluate_model(model, bank, bs)}
    if rotate or translate:
        gen = torch.Generator().manual_seed(seed)
        res["mse_transformed"] = evaluate_model(model, bank, bs, rotate=rotate, translate=translate, generator=gen)
        res["transform"] = {"rotate": rotate, "translate_scale": translate, "seed": seed}
    return res


def evaluation_device(config: dict[str, Any], device: str | torch.device | None = None) -> torch.device:
    """Where to evaluate a trained run: ``device`` when given, else the run's own ``device``, except
    that a run trained on CUDA is evaluated on the CPU of a machine without CUDA (its checkpoint
    loads onto the CPU; an explicit ``device="cuda"`` there still fails with a clear error).

    >>> from eghn.train.trained import evaluation_device
    >>> evaluation_device({"device": "cpu"})
    device(type='cpu')
    >>> import torch
    >>> str(evaluation_device({"device": "cuda"})) == ("cuda" if torch.cuda.is_available() else "cpu")
    True
    """
    from .loop import select_device

    if device is not None:
        return select_device(str(device))
    spec = str(config.get("device", "auto"))
    if spec.startswith("cuda") and not torch.cuda.is_available():
        return torch.device("cpu")
    return select_device(spec)


def _check_finite_weights(ckpt: Path, state: dict[str, Any]) -> None:
    """A :class:`~eghn.train.checkpoint.CheckpointError` when a checkpoint holds NaN or infinite weights."""
    from .checkpoint import CheckpointError

    bad = [k for k, v in state["model"].items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"checkpoint {ckpt} holds NaN or infinite weights ({', '.join(bad[:3])}"
                              f"{', ...' if len(bad) > 3 else ''}); it comes from a diverged run")
