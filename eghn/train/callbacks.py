"""Small objects that watch a :class:`~eghn.train.trainer.Trainer`, each with its own state.

A callback implements any of these hooks (all optional), each called with the trainer first:

================================  ===============================================================
``on_fit_start()``                before the first epoch of this session
``on_batch(obj, out, g, e, w)``   after the objective ``obj`` of a batch ``g`` (``out``: the
                                  model's output), before its backward pass
``on_nonfinite_output(g, e, w)``  the model refused to return a NaN/inf output
``on_train_epoch_end(e)``         after the last batch of epoch ``e``
``on_validation(e, val)``         after the validation MSE, before it is believed
``on_evaluation(row, imp)``       after a row of ``metrics.csv`` (``imp``: a new best)
``on_epoch_end(e)``               after epoch ``e`` (and its evaluation)
``on_fit_end()``                  when training ends, normally or not
================================  ===============================================================

(``e``: the epoch, ``w``: where in the epoch, e.g. ``"batch 3 of 5"``.)

and, when it has state that a resumed run needs, ``state_dict()`` (a dictionary merged into
``last.pt``) and ``load_state_dict(state)``.

Example:
    >>> stopper = EarlyStopping(patience=2, log=lambda msg: None)
    >>> class T:
    ...     stop = False
    >>> t = T()
    >>> for improved in (True, False, False):
    ...     stopper.on_evaluation(t, {}, improved)
    >>> t.stop, stopper.state_dict()
    (True, {'evals_since_best': 2})
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..io import WriteGroup
from .checkpoint import CheckpointError, checkpoint_bytes, load_checkpoint
from .rundir import best_state, csv_text

__all__ = [
    "Callback",
    "DivergenceGuard",
    "EarlyStopping",
    "LogLine",
    "ProgressBar",
    "RunWriter",
    "Stability",
    "StopAfter",
    "TensorBoard",
    "TrainingDiverged",
    "fmt",
    "kept_checkpoints",
]


class TrainingDiverged(FloatingPointError):
    """The training loss, the weights or the validation MSE became NaN or infinite.

    The run stops before anything non-finite is written: ``last.pt`` and ``best.pt`` keep the
    last finite state, from which the run can be resumed (e.g. with a lower ``train.lr``).

    Example:
        >>> from eghn.train.callbacks import TrainingDiverged
        >>> issubclass(TrainingDiverged, FloatingPointError)
        True
    """


class Callback:
    """Base class: every hook does nothing (subclasses override what they need).

    Example:
        >>> from eghn.train.callbacks import Callback
        >>> class CountEpochs(Callback):
        ...     def __init__(self):
        ...         self.epochs = 0
        ...     def on_epoch_end(self, trainer, epoch):
        ...         self.epochs += 1
        >>> counter = CountEpochs()
        >>> for epoch in (1, 2, 3):
        ...     counter.on_epoch_end(None, epoch)
        >>> counter.epochs
        3
    """


def fmt(x: float | None) -> str:
    """A metric for the log: ``1.2345e-02``, or ``nan``.

    Example:
        >>> from eghn.train.callbacks import fmt
        >>> fmt(0.012345), fmt(float("nan")), fmt(None)
        ('1.2345e-02', 'nan', 'nan')
    """
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4e}"


class EarlyStopping(Callback):
    """Stops training after ``patience`` evaluations without a better validation MSE.

    Example:
        >>> from types import SimpleNamespace
        >>> from eghn.train.callbacks import EarlyStopping
        >>> trainer = SimpleNamespace(stop=False)
        >>> stopper = EarlyStopping(patience=1, log=print)
        >>> stopper.on_evaluation(trainer, {}, False)
        >>> stopper.on_epoch_end(trainer, 10)
        early stop at epoch 10: no validation improvement in 1 evaluations
        >>> trainer.stop
        True
    """

    def __init__(self, patience: int, log: Callable[[str], None]) -> None:
        self.patience, self.log, self.evals_since_best = int(patience), log, 0

    def on_evaluation(self, trainer: Any, row: Mapping[str, Any], improved: bool) -> None:
        self.evals_since_best = 0 if improved else self.evals_since_best + 1
        if self.evals_since_best >= self.patience:
            trainer.stop = True

    def on_epoch_end(self, trainer: Any, epoch: int) -> None:
        if trainer.stop:
            self.log(f"early stop at epoch {epoch}: no validation improvement in {self.patience} evaluations")

    def state_dict(self) -> dict[str, Any]:
        return {"evals_since_best": self.evals_since_best}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.evals_since_best = int(state["evals_since_best"])


class Stability(Callback):
    """Spikes (a jump of more than 3x over the running best of the train loss or the validation
    MSE) and pooling collapse (a level with fewer occupied clusters than K, or saturated scores),
    logged when they happen, added to every row of ``metrics.csv`` and counted for
    ``result.json`` (:class:`eghn.train.stability.StabilityMonitor`).

    Example:
        >>> from eghn.train.callbacks import Stability
        >>> watch = Stability(log=print)
        >>> for epoch, loss in ((1, 1.0), (2, 0.2), (3, 0.9)):
        ...     row = {"epoch": epoch, "train_loss": loss, "val_mse": 0.5}
        ...     watch.on_evaluation(None, row, False)
        stability: spike in the train loss at epoch 3: 0.9 is 4.5x its running best 0.2
        >>> row["spikes"], watch.state_dict()["stability"]["train"]["count"]
        (1, 1)
    """

    def __init__(self, log: Callable[[str], None]) -> None:
        from .stability import StabilityMonitor

        self.log, self.monitor = log, StabilityMonitor()

    def on_batch(self, trainer: Any, obj: Any, out: Any, g: Any, epoch: int, where: str) -> None:
        self.monitor.observe(out.aux, g.num_graphs, g.batch)

    def on_evaluation(self, trainer: Any, row: dict[str, Any], improved: bool) -> None:
        row.update(self.monitor.evaluate(int(row["epoch"]), row["train_loss"], row["val_mse"], self.log))

    def state_dict(self) -> dict[str, Any]:
        return {"stability": self.monitor.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("stability"):
            self.monitor.load_state_dict(state["stability"])


class StopAfter(Callback):
    """Test hook: raises :class:`Interrupted` after epoch ``epoch``, as if the process were killed.

    Example:
        >>> from eghn.train.callbacks import StopAfter
        >>> hook = StopAfter(2)
        >>> hook.on_epoch_end(None, 1)
        >>> try:
        ...     hook.on_epoch_end(None, 2)
        ... except StopAfter.Interrupted as err:
        ...     print(err)
        stopped after epoch 2 (test hook)
    """

    class Interrupted(Exception):
        """Raised by :class:`StopAfter`."""

    def __init__(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def on_epoch_end(self, trainer: Any, epoch: int) -> None:
        if epoch >= self.epoch:
            raise StopAfter.Interrupted(f"stopped after epoch {epoch} (test hook)")


class DivergenceGuard(Callback):
    """Stops a run whose loss, weights or validation MSE is NaN or infinite, naming the first
    non-finite tensor (:mod:`eghn.train.diagnose`) and what the checkpoints on disk hold.

    Example:
        >>> import tempfile
        >>> from types import SimpleNamespace
        >>> import torch
        >>> from eghn.train.callbacks import DivergenceGuard, TrainingDiverged
        >>> guard = DivergenceGuard(tempfile.mkdtemp(), log=lambda msg: None)
        >>> trainer = SimpleNamespace(check_now=True)  # on a CPU every loss is checked at once
        >>> guard.on_batch(trainer, SimpleNamespace(loss=torch.tensor(0.5)), None, None, 1, "batch 1 of 2")
        >>> try:
        ...     guard.on_batch(trainer, SimpleNamespace(loss=torch.tensor(float("nan"))), None, None, 1, "batch 2 of 2")
        ... except TrainingDiverged as err:
        ...     print(str(err).split(" (")[0])
        training diverged: the training loss is nan
    """

    def __init__(self, run_dir: Path, log: Callable[[str], None], checkpoints: bool = True) -> None:
        self.run_dir, self.log, self.checkpoints = Path(run_dir), log, checkpoints
        self._ok: torch.Tensor | None = None

    def on_batch(self, trainer: Any, obj: Any, out: Any, g: Any, epoch: int, where: str) -> None:
        loss = obj.loss.detach()
        if trainer.check_now:
            if not math.isfinite(float(loss)):
                raise self.diverged(trainer, f"the training loss is {float(loss)} ({where})", epoch, g)
            return
        if self._ok is None:
            self._ok = torch.ones((), dtype=torch.float64, device=loss.device)
        self._ok.mul_(torch.isfinite(loss).to(self._ok.dtype))

    def on_nonfinite_output(self, trainer: Any, g: Any, epoch: int, where: str) -> None:
        raise self.diverged(trainer, f"the model's output is not finite ({where})", epoch, g) from None

    def on_train_epoch_end(self, trainer: Any, epoch: int) -> None:
        if trainer.check_now or self._ok is None:
            return
        flag = self._ok.clone()
        if trainer.parts.info.enabled:
            import torch.distributed as dist

            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        if float(flag) < 1.0:
            raise self.diverged(trainer, "the training loss is not finite", epoch)

    def on_validation(self, trainer: Any, epoch: int, val: float) -> None:
        if not all(bool(torch.isfinite(p.detach()).all()) for p in trainer.model.parameters()):
            raise self.diverged(trainer, "some weights are NaN or infinite", epoch, self._val_batch(trainer))
        if not math.isfinite(val):
            raise self.diverged(trainer, f"the validation MSE is {val}", epoch, self._val_batch(trainer))

    @staticmethod
    def _val_batch(trainer: Any) -> Any:
        bank = trainer.parts.banks["val"]
        return bank.batch(torch.arange(min(trainer.tcfg.batch_size, bank.size)))

    def diverged(self, trainer: Any, what: str, epoch: int, batch: Any = None) -> TrainingDiverged:
        """The error to raise (and log): what went non-finite, where first, and what to do."""
        from .diagnose import first_nonfinite

        cause = "; " + first_nonfinite(trainer.model, batch).message() if batch is not None else ""
        kept = kept_checkpoints(self.run_dir / "last.pt", self.run_dir / "best.pt") if self.checkpoints else ""
        where = (f"{kept}; continue from there: eghn train --resume {self.run_dir} with a remedy above"
                 if kept else "no checkpoint was written yet; start again with a remedy above")
        msg = f"training diverged: {what} at epoch {epoch}{cause} ({where})"
        self.log(msg)
        return TrainingDiverged(msg)


def kept_checkpoints(last_path: Path, best_path: Path) -> str:
    """What the checkpoints on disk hold, read from the files themselves.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from eghn.train.callbacks import kept_checkpoints
        >>> from eghn.train.checkpoint import save_checkpoint
        >>> run = Path(tempfile.mkdtemp())
        >>> save_checkpoint(run / "last.pt", {"epoch": 10, "model": {}})
        >>> kept_checkpoints(run / "last.pt", run / "best.pt")
        'last.pt holds epoch 10'
    """
    kept = []
    for name, path in (("last.pt", last_path), ("best.pt", best_path)):
        if not path.is_file():
            continue
        try:
            kept.append(f"{name} holds epoch {int(load_checkpoint(path)['epoch'])}")
        except (CheckpointError, OSError, KeyError, ValueError):
            kept.append(f"{name} is unreadable")
    return "; ".join(kept)


class LogLine(Callback):
    """One line per evaluation: losses, MSEs, the best epoch, throughput, wall time, time left.

    Example:
        >>> from types import SimpleNamespace
        >>> from eghn.train.callbacks import LogLine
        >>> trainer = SimpleNamespace(epoch=0, tcfg=SimpleNamespace(epochs=5), best={"epoch": 5, "val": 0.02})
        >>> lines = []
        >>> line = LogLine(log=lines.append)
        >>> line.on_fit_start(trainer)
        >>> row = {"epoch": 5, "train_loss": 0.03, "val_mse": 0.02, "test_mse": 0.025,
        ...        "samples_per_s": 1234.5, "wall_s": 2.0}
        >>> line.on_evaluation(trainer, row, True)  # the last epoch: no time left to show
        >>> print(*lines[0].split(" | "), sep="\\n")
        epoch    5/5
        train loss 3.0000e-02
        val MSE 2.0000e-02
        test MSE 2.5000e-02
        best epoch 5 (val 2.0000e-02)
        1,234 samples/s
        2.0 s
    """

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self._start_epoch, self._t0 = 0, 0.0

    def on_fit_start(self, trainer: Any) -> None:
        import time

        self._start_epoch, self._t0 = trainer.epoch + 1, time.perf_counter()

    def on_evaluation(self, trainer: Any, row: Mapping[str, Any], improved: bool) -> None:
        import time

        epochs, epoch, best = trainer.tcfg.epochs, int(row["epoch"]), trainer.best
        self.log(f"epoch {epoch:4d}/{epochs} | train loss {fmt(row['train_loss'])} | val MSE {fmt(row['val_mse'])} | "
                 f"test MSE {fmt(row['test_mse'])} | best epoch {int(best['epoch'])} (val {fmt(best['val'])}) | "
                 f"{row['samples_per_s']:,.0f} samples/s | {row['wall_s']:,.1f} s"
                 + _eta(time.perf_counter() - self._t0, epoch - self._start_epoch + 1, epochs - epoch))


def _eta(elapsed: float, done: int, left: int) -> str:
    """`` | ETA 1 min 05 s`` from this session's pace (an upper bound when early stopping ends the run)."""
    if left <= 0 or done <= 0:
        return ""
    secs = round(elapsed / done * left)
    return f" | ETA {secs // 60} min {secs % 60:02d} s" if secs >= 60 else f" | ETA {secs} s"


class ProgressBar(Callback):
    """A tqdm bar over the epochs, drawn only on a terminal (never between log lines in a file).

    Example:
        >>> from types import SimpleNamespace
        >>> from eghn.train.callbacks import ProgressBar
        >>> bar = ProgressBar("demo", enabled=False)  # e.g. train.progress = false
        >>> bar.on_fit_start(SimpleNamespace(epoch=0, tcfg=SimpleNamespace(epochs=3)))
        >>> bar.on_epoch_end(None, 1)
        >>> bar.bar is None
        True
    """

    def __init__(self, desc: str, enabled: bool) -> None:
        self.desc, self.enabled, self.bar = desc, enabled, None

    def on_fit_start(self, trainer: Any) -> None:
        if not self.enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            return
        # disable=None: enabled on a terminal, disabled when stderr is a pipe or a file
        self.bar = tqdm(total=trainer.tcfg.epochs, initial=trainer.epoch, desc=self.desc, unit="ep",
                        disable=None, leave=False, dynamic_ncols=True)

    def on_evaluation(self, trainer: Any, row: Mapping[str, Any], improved: bool) -> None:
        if self.bar is not None:
            self.bar.set_postfix(val=f"{row['val_mse']:.3e}", best=int(trainer.best["epoch"]))

    def on_epoch_end(self, trainer: Any, epoch: int) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_fit_end(self, trainer: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class TensorBoard(Callback):
    """Scalars of every evaluation in ``<run_dir>/tensorboard`` (needs the tensorboard package).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from eghn.train.callbacks import TensorBoard
        >>> run = Path(tempfile.mkdtemp())
        >>> board = TensorBoard(run, log=lambda msg: None)  # without tensorboard: a note, no writer
        >>> row = {"epoch": 1, "train_loss": 0.5, "train_mse": 0.5, "val_mse": 0.4, "test_mse": 0.4,
        ...        "samples_per_s": 100.0}
        >>> board.on_evaluation(None, row, True)
        >>> board.on_fit_end(None)
        >>> (run / "tensorboard").is_dir() == (board.writer is not None)
        True
    """

    KEYS = ("train_loss", "train_mse", "val_mse", "test_mse", "samples_per_s")

    def __init__(self, run_dir: Path, log: Callable[[str], None]) -> None:
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log("train.tensorboard = true but the tensorboard package is not installed; skipping")
            return
        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def on_evaluation(self, trainer: Any, row: Mapping[str, Any], improved: bool) -> None:
        if self.writer is not None:
            for k in self.KEYS:
                self.writer.add_scalar(k, row[k], row["epoch"])

    def on_fit_end(self, trainer: Any) -> None:
        if self.writer is not None:
            self.writer.close()


class RunWriter(Callback):
    """Writes ``metrics.csv``, ``best.pt`` (on improvement) and ``last.pt`` at every evaluation,
    together or not at all (:class:`eghn.io.WriteGroup`), with the held log lines.

    ``pending`` holds files that the first write also rewrites (``None``: removes), e.g. a
    ``config.json`` or ``best.pt`` rebuilt on resume; ``resumes`` the record of every resume;
    ``machines`` the machine of the start and of every resume (:mod:`eghn.train.machine`);
    ``init`` the probed starts and the chosen one (:mod:`eghn.train.init_selection`; empty
    without ``train.init_tries``).

    Example:
        Without checkpoints: ``metrics.csv`` and the pending files.

        >>> import tempfile
        >>> from pathlib import Path
        >>> from types import SimpleNamespace
        >>> from eghn.train.callbacks import RunWriter
        >>> from eghn.train.rundir import RunLog
        >>> run = Path(tempfile.mkdtemp())
        >>> writer = RunWriter(run, {}, RunLog(None, enabled=False), checkpoints=False,
        ...                    pending={run / "config.json": b"{}"})
        >>> trainer = SimpleNamespace(history=[{"epoch": 1, "val_mse": 0.5}])
        >>> writer.on_evaluation(trainer, trainer.history[-1], True)
        >>> sorted(p.name for p in run.iterdir()), writer.pending
        (['config.json', 'metrics.csv'], {})
        >>> (run / "metrics.csv").read_text().splitlines()[1].split(",")[:5]
        ['1', '', '', '', '0.5']
    """

    def __init__(self, run_dir: Path, config: Mapping[str, Any], log: Any, *, checkpoints: bool,
                 pending: dict[Path, bytes | None] | None = None) -> None:
        self.run_dir, self.config, self.log, self.checkpoints = Path(run_dir), config, log, checkpoints
        self.pending = pending if pending is not None else {}
        self.resumes: list[dict[str, Any]] = []
        self.machines: list[dict[str, Any]] = []  # eghn.train.machine.machine_record, one per start or resume
        self.init: dict[str, Any] = {}  # the probed starts and the chosen one (eghn.train.init_selection)

    def on_evaluation(self, trainer: Any, row: Mapping[str, Any], improved: bool) -> None:
        best_path, last_path = self.run_dir / "best.pt", self.run_dir / "last.pt"
        with WriteGroup() as group:
            group.add(self.run_dir / "metrics.csv", csv_text(trainer.history))
            for path, data in self.pending.items():
                if data is not None and not (path == best_path and improved):
                    group.add(path, data)
            if self.checkpoints:
                if improved:
                    group.add(best_path, checkpoint_bytes(best_state(trainer.best_model, trainer.best, self.config)))
                group.add(last_path, checkpoint_bytes({**trainer.state_dict(), "config": json.dumps(self.config)}))
            self.log.write_held()
        for path, data in self.pending.items():
            if data is None:
                path.unlink(missing_ok=True)
        self.pending.clear()

    def state_dict(self) -> dict[str, Any]:
        return {"resumes": self.resumes, "machines": self.machines, "init": self.init}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.resumes = [dict(r) for r in state.get("resumes", [])]
        self.machines = [dict(r) for r in state.get("machines", [])]
        self.init = dict(state.get("init") or {})
