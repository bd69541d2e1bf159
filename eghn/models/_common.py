"""Helpers shared by the baseline models: a scatter softmax and out-of-memory reporting.

MLPs, activations and sum/mean scatters come from :mod:`eghn.nn` (re-exported here). All
work on flat, batched tensors: per-edge quantities are aggregated at the receiving node
``edge_index[0]`` with ``index_add_`` / ``scatter_reduce``, so batches that mix graphs of
different sizes need no padding and no dense ``N x N`` matrices.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from ..nn.mlp import MLP, activation, pair_linear
from ..nn.scatter import scatter_mean, scatter_sum

__all__ = [
    "MLP",
    "ModelOutOfMemoryError",
    "activation",
    "oom_guard",
    "pair_linear",
    "scatter_mean",
    "scatter_softmax",
    "scatter_sum",
]


def scatter_softmax(scores: Tensor, index: Tensor, num: int) -> Tensor:
    """Softmax of ``scores`` over the entries sharing the same ``index`` (e.g. a receiver's edges).

    Shapes:
        - scores: :math:`(E, H)`, index: :math:`(E,)` -> out: :math:`(E, H)`
    """
    idx = index.view(-1, *([1] * (scores.dim() - 1))).expand_as(scores)
    smax = scores.new_full((num, *scores.shape[1:]), float("-inf"))
    smax = smax.scatter_reduce(0, idx, scores.detach(), reduce="amax", include_self=True)
    ex = torch.exp(scores - smax[index])
    denom = scatter_sum(ex, index, num)
    return ex / denom[index]


class ModelOutOfMemoryError(MemoryError):
    """Raised when a model runs out of (CPU or CUDA) memory; the message carries an estimate."""


def _is_oom(err: BaseException) -> bool:
    if isinstance(err, MemoryError | torch.OutOfMemoryError):
        return True
    msg = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


@contextlib.contextmanager
def oom_guard(model_name: str, detail: str, estimate: Callable[[], int]) -> Iterator[None]:
    """Turn an out-of-memory failure inside the block into a :class:`ModelOutOfMemoryError`.

    The error names the model, the problem size (``detail``) and the memory need returned by
    ``estimate()`` (called only after a failure), instead of a bare allocator traceback. Other
    exceptions pass through unchanged.
    """
    try:
        yield
    except (RuntimeError, MemoryError) as err:
        if not _is_oom(err) or isinstance(err, ModelOutOfMemoryError):
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        try:
            need = f"about {estimate() / 2**30:.2f} GiB"
        except (RuntimeError, MemoryError):
            need = "an amount that could not be estimated"
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelOutOfMemoryError(
            f"{model_name} ran out of memory ({detail}); its forward+backward pass needs {need} "
            f"by {model_name}.estimate_memory(). Use a smaller batch, fewer edges (a radius "
            f"cut-off) or smaller widths/degree. Original error: {first}"
        ) from err
