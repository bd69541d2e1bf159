r"""The :class:`Trainer`: Adam on the objective of Eq. 16, evaluation every few epochs, callbacks.

The trainer owns the optimisation only: :meth:`Trainer.fit` runs epochs, :meth:`~Trainer.train_epoch`
shuffles and batches, :meth:`~Trainer.step` takes one optimiser step on
:func:`~eghn.train.objective.training_objective`, and :meth:`~Trainer.evaluate` measures the
validation (and test) MSE and keeps the best evaluation. Everything else -- early stopping,
the divergence guard, the log line, the progress bar, TensorBoard, the run directory's files --
is a small callback object (:mod:`eghn.train.callbacks`) with its own state, called at
:meth:`~eghn.train.callbacks.Callback.on_batch`, :meth:`~eghn.train.callbacks.Callback.on_evaluation`
and :meth:`~eghn.train.callbacks.Callback.on_epoch_end`.

:meth:`Trainer.state_dict` holds everything a resumed run needs to end with exactly the numbers
of an uninterrupted one on a CPU: weights, optimiser, scaler, generator states, the history,
the best evaluation with a copy of its weights, and the state of every callback.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .distributed import DistInfo, shard
from .loader import GraphBank
from .metrics import MSEAccumulator, transformed_batch
from .objective import Objective, training_objective
from .settings import TrainSettings

__all__ = ["Trainer", "TrainerParts", "evaluate_model", "lr_at"]


def lr_at(tcfg: Mapping[str, Any] | TrainSettings, progress: float) -> float:
    r"""Learning rate after ``progress`` epochs (fractional) under ``train.lr_schedule``.

    ``"constant"``: ``train.lr`` throughout. ``"cosine"``: :math:`\eta\,(1 + \cos(\pi p / T))/2`
    from ``train.lr`` at the start to 0 at ``T = train.epochs``; a pure function of the step, so
    a resumed run follows the same schedule.

    >>> lr_at({"lr": 1e-3, "lr_schedule": "cosine", "epochs": 10}, 5.0)
    0.0005
    """
    from .config import ConfigError

    lr, kind = float(tcfg["lr"]), tcfg.get("lr_schedule", "constant")
    if kind == "constant":
        return lr
    if kind == "cosine":
        frac = min(max(progress / max(int(tcfg["epochs"]), 1), 0.0), 1.0)
        return lr * 0.5 * (1.0 + math.cos(math.pi * frac))
    raise ConfigError(f"train.lr_schedule must be 'constant' or 'cosine', got {kind!r}")


def autocast(device: torch.device, amp_dtype: torch.dtype | None):
    """Mixed precision on CUDA with ``amp_dtype``; a no-op elsewhere or without one."""
    if amp_dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=amp_dtype)


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

    Example:
        A model that predicts no motion, on targets one unit away in every coordinate.

        >>> import tempfile
        >>> from pathlib import Path
        >>> import numpy as np
        >>> import torch
        >>> from eghn.data import PointCloudDataset
        >>> from eghn.models import ModelOutput
        >>> from eghn.train.loader import GraphBank
        >>> from eghn.train.trainer import evaluate_model
        >>> path = Path(tempfile.mkdtemp()) / "toy.npz"
        >>> pos = np.random.default_rng(0).normal(size=(6, 4, 3))
        >>> np.savez(path, pos=pos, target=pos + 1.0)
        >>> class Still(torch.nn.Module):
        ...     def forward(self, g):
        ...         return ModelOutput(pos=g.pos)
        >>> bank = GraphBank(PointCloudDataset(path, "val", split_sizes=[2, 2, 2]))
        >>> round(evaluate_model(Still(), bank, batch_size=4), 4)
        1.0
        >>> gen = torch.Generator().manual_seed(0)
        >>> moved = evaluate_model(Still(), bank, 4, rotate=True, translate=5.0, generator=gen)
        >>> round(moved, 4)  # inputs and targets move together
        1.0
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
        with autocast(bank.device, amp_dtype):
            pred = model(g).pos
        acc.add(pred, g.target)
    acc.all_reduce()
    model.train(was_training)
    return acc.value() * unit**2


@dataclass
class TrainerParts:
    """What a :class:`Trainer` is built from (all made by :func:`eghn.train.loop.train`).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> tmp = Path(tempfile.mkdtemp())
        >>> from eghn.data.arrays import write_example
        >>> _ = write_example(tmp / "toy.npz")  # 12 systems of 4 particles
        >>> import torch
        >>> from eghn.data import PointCloudDataset
        >>> from eghn.train.distributed import DistInfo
        >>> from eghn.train.loader import GraphBank
        >>> from eghn.train.loop import build_model
        >>> from eghn.train.settings import TrainSettings
        >>> from eghn.train.trainer import TrainerParts
        >>> banks = {s: GraphBank(PointCloudDataset(tmp / "toy.npz", s, split_sizes=[8, 2, 2]))
        ...          for s in ("train", "val", "test")}
        >>> model = build_model({"model": {"name": "egnn", "hidden": 8, "layers": 1}}, banks["train"].dataset)
        >>> parts = TrainerParts(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-3), banks=banks,
        ...                      settings=TrainSettings(epochs=3, batch_size=4, eval_every=1),
        ...                      device=torch.device("cpu"), unit=1.0, info=DistInfo())
        >>> parts.settings.batch_size, parts.amp_dtype, parts.ddp_model
        (4, None, None)
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    banks: Mapping[str, GraphBank]
    settings: TrainSettings  #: the ``[train]`` settings
    device: torch.device
    unit: float  #: the length scale: MSEs are reported in the data's units (times ``unit**2``)
    info: DistInfo
    amp_dtype: torch.dtype | None = None
    ddp_model: nn.Module | None = None


class _Window:
    """Training sums between two evaluations (float64 on the device: no per-batch sync)."""

    def __init__(self, device: torch.device) -> None:
        self.sse = torch.zeros((), dtype=torch.float64, device=device)
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.count, self.seen, self.step_s, self.t0 = 0, 0, 0.0, time.perf_counter()

    def reset(self, now: float) -> None:
        self.sse.zero_()
        self.loss.zero_()
        self.count, self.seen, self.step_s, self.t0 = 0, 0, 0.0, now


class Trainer:
    """Trains ``parts.model`` on ``parts.banks["train"]``, evaluating every ``eval_every`` epochs.

    Attributes:
        epoch: the last completed epoch.
        best: ``{"epoch", "val", "test"}`` of the best validation so far; ``best_model`` its weights.
        history: one row per evaluation (the columns of ``metrics.csv``).
        stop: set by a callback (early stopping) to end :meth:`fit` after the current epoch.

    Example:
        Three epochs of a small EGNN, evaluated after each.

        >>> import tempfile
        >>> from pathlib import Path
        >>> tmp = Path(tempfile.mkdtemp())
        >>> from eghn.data.arrays import write_example
        >>> _ = write_example(tmp / "toy.npz")  # 12 systems of 4 particles
        >>> import torch
        >>> from eghn.data import PointCloudDataset
        >>> from eghn.train.distributed import DistInfo
        >>> from eghn.train.loader import GraphBank
        >>> from eghn.train.loop import build_model
        >>> from eghn.train.settings import TrainSettings
        >>> from eghn.train.trainer import Trainer, TrainerParts
        >>> banks = {s: GraphBank(PointCloudDataset(tmp / "toy.npz", s, split_sizes=[8, 2, 2]))
        ...          for s in ("train", "val", "test")}
        >>> model = build_model({"model": {"name": "egnn", "hidden": 8, "layers": 1}}, banks["train"].dataset)
        >>> parts = TrainerParts(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-3), banks=banks,
        ...                      settings=TrainSettings(epochs=3, batch_size=4, eval_every=1),
        ...                      device=torch.device("cpu"), unit=1.0, info=DistInfo())
        >>> trainer = Trainer(parts, log=lambda msg: None)
        >>> trainer.fit()
        >>> trainer.epoch, [row["epoch"] for row in trainer.history], trainer.best["epoch"] in (1, 2, 3)
        (3, [1, 2, 3], True)
    """

    def __init__(self, parts: TrainerParts, callbacks: Sequence[Any] = (), *,
                 log: Callable[[str], None] = print) -> None:
        self.parts, self.callbacks, self.log = parts, list(callbacks), log
        self.tcfg, self.model, self.optimizer = parts.settings, parts.model, parts.optimizer
        self.scaler = torch.amp.GradScaler("cuda", enabled=parts.amp_dtype is torch.float16)
        self.generator = torch.Generator()
        self.epoch, self.history, self.wall_offset, self.stop = 0, [], 0.0, False
        self.best: dict[str, float] = {"epoch": 0, "val": math.inf, "test": math.nan}
        self.best_model: dict[str, torch.Tensor] | None = None
        # every batch's loss is checked; on CPU at once, elsewhere through a flag read once an
        # epoch (no per-batch device sync; under DDP all processes stop at the same epoch)
        self.check_now = parts.device.type == "cpu" and not parts.info.enabled
        self._window = _Window(parts.device)
        self._t0 = time.perf_counter()
        self._compile_logged = False
        self.forward = self._training_forward()

    def _training_forward(self) -> Callable[[Any], Any]:
        """The model, or under ``train.compile`` its :class:`~eghn.train.compiled.CompiledForward`."""
        from .compiled import CompiledForward, resolve_compile

        setting = self.tcfg.get("compile", "off")
        name = type(self.model).__name__.lower()
        on, why = resolve_compile(setting, self.parts.device, name)
        if on and self.parts.ddp_model is not None:
            on, why = False, "not under DDP: compile off"
        if setting != "off" or on:
            self.log(f"compile: {'on' if on else 'off'} ({why})")
        return CompiledForward(self.model) if on else self.model

    # ------------------------------------------------------------------------ the loop
    def fit(self) -> None:
        """Train from ``epoch + 1`` to ``train.epochs`` or until a callback sets :attr:`stop`."""
        self._t0 = time.perf_counter()
        self._window.reset(self._t0)
        (self.parts.ddp_model or self.model).train()
        self._call("on_fit_start")
        try:
            for epoch in range(self.epoch + 1, self.tcfg.epochs + 1):
                self.train_epoch(epoch)
                self.epoch = epoch
                if epoch % self.tcfg.eval_every == 0 or epoch == self.tcfg.epochs:
                    self.evaluate(epoch)
                self._call("on_epoch_end", epoch)
                if self.stop:
                    break
        finally:
            self._call("on_fit_end")

    @property
    def wall(self) -> float:
        """Seconds of training so far, over all sessions of a resumed run."""
        return self.wall_offset + time.perf_counter() - self._t0

    def train_epoch(self, epoch: int) -> None:
        """One pass over the training split in a fresh random order."""
        bank, bs = self.parts.banks["train"], self.tcfg.batch_size
        perm = torch.randperm(bank.size, generator=self.generator)
        n_batches = math.ceil(bank.size / bs)
        if self.tcfg.drop_last and bank.size >= bs:
            n_batches = bank.size // bs
        if self.tcfg.max_batches > 0:
            n_batches = min(n_batches, self.tcfg.max_batches)
        for b in range(n_batches):
            if self.tcfg.lr_schedule != "constant":
                for group in self.optimizer.param_groups:
                    group["lr"] = lr_at(self.tcfg, epoch - 1 + b / n_batches)
            self.step(perm[b * bs:(b + 1) * bs], epoch, f"batch {b + 1} of {n_batches}")
        self._call("on_train_epoch_end", epoch)

    def step(self, gidx: torch.Tensor, epoch: int, where: str = "") -> Objective | None:
        """One optimiser step on the graphs ``gidx`` of the training split (this process's share)."""
        info, bank, opt = self.parts.info, self.parts.banks["train"], self.optimizer
        lidx = shard(gidx, info)
        opt.zero_grad(set_to_none=True)
        if lidx.numel() == 0:  # fewer graphs than processes: contribute a zero gradient
            (sum(p.sum() for p in self.model.parameters()) * 0.0).backward()
            opt.step()
            return None
        g = bank.batch(lidx)
        t_step = time.perf_counter()
        global_nodes = bank.num_nodes(gidx)
        with autocast(self.parts.device, self.parts.amp_dtype):
            try:
                out = (self.parts.ddp_model or self.forward)(g)
            except FloatingPointError:  # a model that refuses to return NaN/inf (EGHN)
                self._call("on_nonfinite_output", g, epoch, where)
                raise
            obj = training_objective(out, g.target, mse_scale=info.world_size / (global_nodes * g.dim),
                                     reg_scale=info.world_size * lidx.numel() / gidx.numel())
        self._call("on_batch", obj, out, g, epoch, where)
        self.scaler.scale(obj.loss).backward()
        self._log_compile_time(time.perf_counter() - t_step)
        if self.tcfg.clip_grad > 0:
            self.scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tcfg.clip_grad)
        self.scaler.step(opt)
        self.scaler.update()
        w = self._window
        w.step_s += time.perf_counter() - t_step
        w.sse += obj.sse.detach().double()
        w.loss += obj.loss.detach().double() * (global_nodes * g.dim) / info.world_size
        w.count += g.num_nodes * g.dim
        w.seen += gidx.numel()
        return obj

    def _log_compile_time(self, step_s: float) -> None:
        """Once: the time of the first compiled step up to its backward pass, ``step_s``: the forward
        pass is traced and compiled in its first call, the backward pass in the first ``backward``.
        Part of the run's wall time."""
        secs = getattr(self.forward, "compile_s", None)
        if secs is not None and not self._compile_logged:
            self._compile_logged = True
            self.log(f"compile: compiled the training step in {step_s:.1f} s (the first step's forward and backward "
                     f"passes, the forward {secs:.1f} s; tracing and compiling included; counted in the run's "
                     "wall time)")

    def evaluate(self, epoch: int) -> dict[str, float]:
        """Validation (and test) MSE, the best evaluation so far, and a row of ``metrics.csv``."""
        train_mse, train_loss = self._train_means()
        p, bs = self.parts, self.tcfg.batch_size
        val = evaluate_model(p.ddp_model.module if p.info.enabled else self.model, p.banks["val"], bs,
                             info=p.info, amp_dtype=p.amp_dtype)
        test = (evaluate_model(self.model, p.banks["test"], bs, info=p.info, amp_dtype=p.amp_dtype)
                if self.tcfg.eval_test else math.nan)
        self._call("on_validation", epoch, val)
        improved = val < self.best["val"]
        if improved:
            self.best = {"epoch": epoch, "val": val, "test": test}
            self.best_model = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        now, w = time.perf_counter(), self._window
        row = {"epoch": epoch, "wall_s": round(self.wall_offset + now - self._t0, 3), "train_loss": train_loss,
               "train_mse": train_mse, "val_mse": val, "test_mse": test, "best_epoch": self.best["epoch"],
               "best_val": self.best["val"], "samples_per_s": round(w.seen / max(now - w.t0, 1e-9), 1),
               # the share of the wall time since the last evaluation spent in training steps
               # (host time, so on a GPU only indicative); the rest is batching, evaluation,
               # logging and checkpoints
               "step_share": round(w.step_s / max(now - w.t0, 1e-9), 4)}
        self.history.append(row)
        self._call("on_evaluation", row, improved)
        # the next window starts where this one was measured: the evaluation's logging and
        # checkpoint count against it
        self._window.reset(now)
        return row

    def _train_means(self) -> tuple[float, float]:
        """``(train MSE, train loss)`` of the window in the data's units (the regulariser is unitless)."""
        w, info = self._window, self.parts.info
        stats = torch.stack([w.sse, w.loss, torch.tensor(float(w.count), dtype=torch.float64, device=w.sse.device)])
        if info.enabled:
            import torch.distributed as dist

            dist.all_reduce(stats)
        denom = max(float(stats[2]), 1.0)
        mse_std, loss_std = float(stats[0]) / denom, float(stats[1]) / denom
        train_mse = mse_std * self.parts.unit**2
        return train_mse, train_mse + (loss_std - mse_std)

    def start_window(self) -> None:
        """Start a new window of training sums (as :meth:`fit` does), with the model in training mode."""
        self._window.reset(time.perf_counter())
        (self.parts.ddp_model or self.model).train()

    def take_train_means(self) -> tuple[float, float]:
        """``(train MSE, train loss)`` since the window started (see :meth:`evaluate`), and a new window.

        For a loop outside :meth:`fit` (:mod:`eghn.train.init_selection`): the regulariser of
        the window is ``train loss - train MSE`` (unitless)."""
        means = self._train_means()
        self._window.reset(time.perf_counter())
        return means

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            method = getattr(cb, hook, None)
            if method is not None:
                method(self, *args)

    # ------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything ``last.pt`` holds about the training (the checkpoint format of
        :mod:`eghn.train.checkpoint`); the callbacks' states are merged in."""
        rng = {"torch": torch.get_rng_state(), "shuffle": self.generator.get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
                 "epoch": self.epoch, "best": dict(self.best), "best_model": self.best_model,
                 "history": self.history, "rng": rng}
        for cb in self.callbacks:
            if hasattr(cb, "state_dict"):
                state.update(cb.state_dict())
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (weights are loaded by the caller, which can explain a
        mismatch); the config's learning rate, weight decay and Adam epsilon win over the
        optimiser's."""
        self.optimizer.load_state_dict(state["optimizer"])
        for key, name in (("lr", "lr"), ("weight_decay", "weight_decay"), ("adam_eps", "eps")):
            for group in self.optimizer.param_groups:
                if name in group:
                    group[name] = self.tcfg[key]
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        rng = {k: (v.cpu() if isinstance(v, torch.Tensor) else [t.cpu() for t in v]) for k, v in state["rng"].items()}
        torch.set_rng_state(rng["torch"])
        self.generator.set_state(rng["shuffle"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.epoch, self.best = int(state["epoch"]), dict(state["best"])
        self.best_model = state.get("best_model")
        self.history = [dict(h) for h in state["history"]]
        self.wall_offset = float(self.history[-1]["wall_s"]) if self.history else 0.0
        for cb in self.callbacks:
            if hasattr(cb, "load_state_dict"):
                cb.load_state_dict(state)
