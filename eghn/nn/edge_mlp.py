r"""Edge MLPs whose first layer sees :math:`[h_i, h_j, e_{ij}]`.

Every message function of the paper (EGNN's :math:`\phi_e`, EMMP's :math:`\phi`, GMN's edge
MLP) starts with a linear layer on the concatenation :math:`[h_i, h_j, e_{ij}]`. Two things
make these layers cheaper without changing what they compute:

* **Node split** (:func:`pair_linear`): :math:`W [h_i, h_j, e_{ij}] + b = (W_1 h)_i +
  (W_2 h)_j + W_3 e_{ij} + b`; the products with :math:`h` run once per *node* and are gathered
  per edge, so the edge-level product shrinks from width :math:`2c + d` to :math:`d`. What it
  saves per training step is measured by ``benchmarks/fast_paths.py`` (the Benchmarks page).
* **Recomputed edge activations** (:func:`set_edge_recompute`): on large edge sets the edge
  MLP runs under :func:`torch.utils.checkpoint.checkpoint`, so that nothing edge-sized but
  its inputs is kept for the backward pass, which recomputes the activations; the memory of a
  layer then grows with the nodes rather than the edges.

Both are plain PyTorch operations: autograd, :func:`torch.autocast` and double backward work
as for any module.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .scatter import gather

__all__ = ["edge_mlp", "pair_linear", "set_edge_recompute"]

_EDGE_RECOMPUTE: bool | str = "auto"
_AUTO_THRESHOLD = 1 << 22  # elements of one edge activation (16 MB in float32)


def set_edge_recompute(mode: bool | str = "auto") -> bool | str:
    """Choose when :func:`edge_mlp` recomputes edge activations in the backward pass.

    ``True``: always (least memory: nothing edge-sized is kept); ``False``: never (the
    activations are kept, no extra work); ``"auto"`` (default): when one edge activation has
    at least 2^22 elements (e.g. 65,536 edges at width 64), where memory, not the extra matrix
    products, is what limits a training step. Returns the previous mode. Training
    configurations set it with ``train.recompute_edges``.

    Example:
        >>> from eghn.nn import set_edge_recompute
        >>> previous = set_edge_recompute(False)  # keep edge activations
        >>> set_edge_recompute(previous)
        False
    """
    global _EDGE_RECOMPUTE
    if mode not in (True, False, "auto") or not isinstance(mode, (bool, str)):
        raise ValueError(f"edge recompute mode must be True, False or 'auto', got {mode!r}")
    previous, _EDGE_RECOMPUTE = _EDGE_RECOMPUTE, mode
    return previous


def _recompute(elements: int) -> bool:
    if _EDGE_RECOMPUTE == "auto":
        return elements >= _AUTO_THRESHOLD
    return bool(_EDGE_RECOMPUTE)


def pair_linear(linear: nn.Linear, h: Tensor, i: Tensor, j: Tensor, rest: Tensor | None = None) -> Tensor:
    r"""``linear(cat([h[i], h[j], rest], -1))`` without building the per-edge concatenation.

    The weight is split into the blocks acting on :math:`h_i`, :math:`h_j` and the edge
    features; the node blocks are applied once per node and gathered. Same function (up to
    floating-point rounding), fewer FLOPs.

    Shapes:
        - h: :math:`(N, c)`, i, j: :math:`(E,)`, rest: :math:`(E, d)` -> :math:`(E, \text{out})`

    Example:
        >>> import torch
        >>> from eghn.nn.edge_mlp import pair_linear
        >>> lin = torch.nn.Linear(2 * 4 + 1, 8)
        >>> h, rest = torch.randn(5, 4), torch.randn(3, 1)
        >>> i, j = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3])
        >>> out = pair_linear(lin, h, i, j, rest)
        >>> tuple(out.shape), torch.allclose(out, lin(torch.cat([h[i], h[j], rest], -1)), atol=1e-6)
        ((3, 8), True)
    """
    c = h.shape[1]
    W = linear.weight
    out = gather(h @ W[:, :c].t(), i) + gather(h @ W[:, c:2 * c].t(), j)
    if rest is not None and rest.shape[1] > 0:
        out = out + rest @ W[:, 2 * c:].t()
    return out + linear.bias if linear.bias is not None else out


def _apply(x: Tensor, main: Sequence[nn.Module], heads: Sequence[Sequence[nn.Module]]) -> tuple[Tensor, ...]:
    y = x
    for mod in main:
        y = mod(y)
    outs = [y]
    for head in heads:
        z = y
        for mod in head:
            z = mod(z)
        outs.append(z)
    return tuple(outs)


def _edge_mlp(first: nn.Linear, h: Tensor, i: Tensor, j: Tensor, rest: Tensor | None,
              main: Sequence[nn.Module], heads: Sequence[Sequence[nn.Module]]) -> tuple[Tensor, ...]:
    return _apply(pair_linear(first, h, i, j, rest), main, heads)


def edge_mlp(first: nn.Linear, h: Tensor, i: Tensor, j: Tensor, rest: Tensor | None,
             main: Sequence[nn.Module], *heads: Sequence[nn.Module]) -> tuple[Tensor, ...]:
    r"""An edge MLP whose first layer sees ``cat([h_i, h_j, rest_ij])``: returns
    ``(y, *[head(y) for head in heads])`` with ``y = main(first(cat([h[i], h[j], rest])))``.

    ``first`` runs through :func:`pair_linear`; ``main`` (starting with the activation that
    follows ``first``) and every head are applied module by module. With gradients enabled and
    a large edge set (see :func:`set_edge_recompute`) the whole MLP runs under
    :func:`torch.utils.checkpoint.checkpoint`.

    Shapes:
        - h: :math:`(N, c)`, i, j: :math:`(E,)`, rest: :math:`(E, d)` or ``None``
        - output: :math:`(E, \cdot)` tensors

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from eghn.nn.edge_mlp import edge_mlp
        >>> first, head = nn.Linear(2 * 4, 8), nn.Linear(8, 1)
        >>> h = torch.randn(5, 4)
        >>> i, j = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3])
        >>> y, coef = edge_mlp(first, h, i, j, None, [nn.SiLU()], [head])
        >>> tuple(y.shape), tuple(coef.shape)
        ((3, 8), (3, 1))
    """
    if torch.is_grad_enabled() and _recompute(i.shape[0] * first.out_features):
        return checkpoint(_edge_mlp, first, h, i, j, rest, main, heads, use_reentrant=False)
    return _edge_mlp(first, h, i, j, rest, main, heads)
