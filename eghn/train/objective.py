r"""The training objective of EGHN (paper Eq. 16): position MSE plus :math:`\lambda` times the
connectivity loss.

.. math::

    \mathcal{L} = \frac{1}{N n} \sum_{i=1}^{N} \lVert \hat{x}_i - x_i \rVert^2
    \;+\; \lambda \sum_{l} \big\lVert \mathrm{rownorm}(S_l^\top A_{l-1} S_l) - I \big\rVert_F^2

The first term is the mean squared error over all :math:`N` nodes and :math:`n` coordinates
of the batch (every node counts once, whatever its graph's size); the second is the model's
regulariser, returned by EGHN as ``aux["reg_loss"]`` (already multiplied by ``lam``); models
without one contribute zero. The trainer, every benchmark and every gallery script compute
their loss with :func:`training_objective`.

Example:
    >>> import torch
    >>> from eghn.models import ModelOutput
    >>> out = ModelOutput(pos=torch.zeros(2, 3), aux={"reg_loss": torch.tensor(0.5)})
    >>> obj = training_objective(out, torch.ones(2, 3))
    >>> float(obj.mse), float(obj.reg), float(obj.loss)
    (1.0, 0.5, 1.5)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from .metrics import position_sse

__all__ = ["Objective", "training_objective"]


@dataclass(frozen=True)
class Objective:
    """The objective of one batch and its parts (all scalars).

    Attributes:
        loss: what is minimised, ``mse_scale * sse + reg_scale * reg``.
        sse: :math:`\\sum_i \\lVert \\hat x_i - x_i\\rVert^2` over the batch.
        mse: ``mse_scale * sse``, the position MSE (per coordinate) of the batch.
        reg: the model's regulariser :math:`\\lambda\\,\\mathcal{L}_{conn}` (0 without one).

    Example:
        >>> import torch
        >>> from eghn.train.objective import Objective
        >>> obj = Objective(loss=torch.tensor(1.5), sse=torch.tensor(6.0), mse=torch.tensor(1.0), reg=torch.tensor(0.5))
        >>> float(obj.loss - obj.mse - obj.reg)
        0.0
    """

    loss: Tensor
    sse: Tensor
    mse: Tensor
    reg: Tensor


def training_objective(out: Any, target: Tensor, *, mse_scale: float | None = None,
                       reg_scale: float = 1.0) -> Objective:
    """Eq. 16 for a model output ``out`` (``out.pos``, ``out.aux``) against ``target``.

    Args:
        out: a :class:`~eghn.models.ModelOutput`; ``out.aux["reg_loss"]``, when present, is the
            regulariser.
        target: the true positions.
        mse_scale: the factor that turns the sum of squared errors into the MSE, default
            ``1 / target.numel()``; a data-parallel trainer passes ``world_size / (N n)`` with
            the global node count, so that the gradients averaged over processes are those of
            the global batch.
        reg_scale: the share of the regulariser this batch carries (1 on one process).

    Shapes:
        - out.pos, target: :math:`(N, n)`; every field of the result is a scalar.

    Example:
        >>> import torch
        >>> from eghn.models import ModelOutput
        >>> from eghn.train.objective import training_objective
        >>> out = ModelOutput(pos=torch.zeros(2, 3))  # no regulariser
        >>> obj = training_objective(out, torch.ones(2, 3), mse_scale=1 / 6)
        >>> float(obj.sse), round(float(obj.mse), 6), float(obj.reg)
        (6.0, 1.0, 0.0)
    """
    sse = position_sse(out.pos, target)
    scale = 1.0 / target.numel() if mse_scale is None else mse_scale
    mse = sse * scale
    aux = out.aux if isinstance(out.aux, Mapping) else {}
    reg = aux.get("reg_loss")
    if reg is None:
        return Objective(loss=mse, sse=sse, mse=mse, reg=mse.new_zeros(()))
    return Objective(loss=mse + reg * reg_scale, sse=sse, mse=mse, reg=reg)
