"""Why a forward pass went non-finite: the first NaN/inf tensor, and what grew before it.

When training diverges, the trainer replays the offending batch through
:func:`first_nonfinite`, which records every submodule's output in call order (forward hooks:
a child reports before its parent) and returns the first module whose output holds a NaN or
an infinity, the largest finite activation seen before it, and what is wrong with the input's
scale, if anything (:func:`eghn.data.units.scale_advice`). Its :meth:`Diagnosis.message`
suggests remedies that fit that cause: it blames the coordinate units only when the input's
RMS extent is far from 1, and huge absolute coordinates (a translation far from the origin)
only when they are there.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from eghn.data import Graph
    >>> class Blows(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.first, self.second = nn.Linear(3, 3), nn.Linear(3, 3)
    ...     def forward(self, g):
    ...         return self.second(self.first(g.pos) * float("inf"))
    >>> g = Graph(pos=torch.ones(2, 3), edge_index=torch.tensor([[0, 1], [1, 0]]))
    >>> d = first_nonfinite(Blows(), g)
    >>> d.module
    'second'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..data.units import scale_advice

__all__ = ["Diagnosis", "first_nonfinite", "level_of"]

_LEVEL = re.compile(r"(?:^|\.)(encoders|pools|decoders|unpools)\.(\d+)(?:\.|$)")


def level_of(module_path: str) -> int | None:
    """The hierarchy level (1-based) of an EGHN submodule path, or ``None`` outside the levels.

    >>> level_of("pools.1.emmps.0.message.phi.2"), level_of("embed")
    (2, None)
    """
    m = _LEVEL.search(module_path)
    return int(m.group(2)) + 1 if m else None


def _tensors(x: Any) -> list[Tensor]:
    if isinstance(x, Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return [t for item in x for t in _tensors(item)]
    if isinstance(x, dict):
        return [t for item in x.values() for t in _tensors(item)]
    pos = getattr(x, "pos", None)  # a model output record
    return [pos] if isinstance(pos, Tensor) else []


@dataclass(frozen=True)
class Diagnosis:
    """Where a forward pass first went non-finite.

    Attributes:
        module: dotted path of the first submodule whose output is non-finite (``""``: the
            model's own output, or none found).
        level: its hierarchy level (1-based) or ``None``.
        parameter: the first non-finite parameter, if the weights themselves are bad.
        largest_module, largest: the largest finite absolute activation before ``module``.
        scale_advice: what is wrong with the input's coordinate scale, ``""`` when nothing
            (:func:`eghn.data.units.scale_advice`).

    Example:
        >>> from eghn.train.diagnose import Diagnosis
        >>> d = Diagnosis(module="pools.0.emmps.1", level=1, parameter="", largest_module="embed", largest=1e6)
        >>> d.where()
        'the output of pools.0.emmps.1 (level 1)'
        >>> d.message().startswith("first non-finite tensor: the output of pools.0.emmps.1 (level 1); largest")
        True
    """

    module: str
    level: int | None
    parameter: str
    largest_module: str
    largest: float
    scale_advice: str = ""

    def where(self) -> str:
        """``"module pools.1.emmps.0 (level 2)"`` style description of the first bad tensor."""
        if self.parameter:
            return f"parameter {self.parameter}"
        if not self.module:
            return "the model's output"
        lvl = f" (level {self.level})" if self.level is not None else ""
        return f"the output of {self.module}{lvl}"

    def message(self) -> str:
        """The diagnosis and the remedies that fit it, in a few sentences."""
        text = f"first non-finite tensor: {self.where()}"
        if self.largest_module:
            text += f"; largest activation before it: {self.largest:.3g} in {self.largest_module}"
        if self.parameter:
            return text + ("; the weights were corrupted by an earlier step: resume from a checkpoint "
                           "with a lower train.lr or with train.clip_grad")
        if self.scale_advice:
            return f"{text}; {self.scale_advice}"
        return text + ("; the input is at unit scale near the origin, so the activations grew during "
                       "training: lower train.lr or set train.clip_grad")


def first_nonfinite(model: nn.Module, g: Any) -> Diagnosis:
    """Run ``model(g)`` without gradients and report the first module with a non-finite output.

    Exceptions of the forward pass (e.g. EGHN's own ``FloatingPointError`` on a NaN output)
    are caught: the hooks have recorded what happened before.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from eghn.data import Graph
        >>> from eghn.train.diagnose import first_nonfinite
        >>> model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
        >>> with torch.no_grad():
        ...     _ = model[1].weight.fill_(float("nan"))
        >>> d = first_nonfinite(model, torch.ones(2, 3))
        >>> d.parameter, d.module, d.level
        ('1.weight', '1', None)
    """
    bad_param = next((n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())), "")
    first: list[str] = []
    largest = ["", 0.0]

    def hook(name: str):
        def record(_module, _inputs, output) -> None:
            if first:
                return
            for t in _tensors(output):
                if not t.is_floating_point() or t.numel() == 0:
                    continue
                finite = torch.isfinite(t)
                if not bool(finite.all()):
                    first.append(name)
                    return
                m = float(t.detach().abs().max())
                if m > largest[1]:
                    largest[:] = [name, m]
        return record

    handles = [mod.register_forward_hook(hook(name)) for name, mod in model.named_modules() if name]
    was_training = model.training
    try:
        with torch.no_grad():
            try:
                model(g)
            except (FloatingPointError, RuntimeError, ValueError):
                pass
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    module = first[0] if first else ""
    try:
        advice = scale_advice(g)
    except Exception:  # advice only
        advice = ""
    return Diagnosis(module=module, level=level_of(module) if module else None, parameter=bad_param,
                     largest_module=str(largest[0]), largest=float(largest[1]), scale_advice=advice)
