r"""Building blocks shared by EMMP and E-UnPool: centring and the Gram-matrix invariant.

Lemmas of Theorem 2 (see ``proofs/theorem2.md``) are stated about these two functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .scatter import gather, scatter_mean, uniform_graph_size

__all__ = ["center", "gram", "position_mask", "safe_sqrt"]


def position_mask(channels: int, position_channels: Sequence[int], like: Tensor) -> Tensor:
    """Float mask of shape ``(channels,)``: 1 for position channels, 0 for the others.

    Example:
        >>> import torch
        >>> from eghn.nn.invariants import position_mask
        >>> position_mask(3, (0, 2), torch.zeros(1)).tolist()
        [1.0, 0.0, 1.0]
    """
    mask = like.new_zeros(channels)
    for c in position_channels:
        if not 0 <= c < channels:
            raise ValueError(f"position channel {c} out of range for {channels} channels")
        mask[c] = 1.0
    return mask


def center(Z: Tensor, batch: Tensor, num_graphs: int, mask: Tensor) -> Tensor:
    r"""Subtract :math:`\bar Z` (per-graph mean of the position channels; zero elsewhere).

    .. math:: Z_i - \bar Z, \qquad \bar Z = \frac{1}{N_g}\sum_{i \in g} Z_i \odot
              \mathbb{1}_{\text{position channels}}

    Shapes:
        - Z: :math:`(N, n, m)`, batch: :math:`(N,)`, mask: :math:`(m,)` -> :math:`(N, n, m)`

    Example:
        >>> import torch
        >>> from eghn.nn.invariants import center
        >>> Z = torch.tensor([[0.0, 1.0], [2.0, 1.0]]).view(2, 1, 2)  # 2 nodes, n = 1, m = 2 channels
        >>> center(Z, torch.zeros(2, dtype=torch.long), 1, torch.tensor([1.0, 0.0])).view(2, 2).tolist()
        [[-1.0, 1.0], [1.0, 1.0]]
    """
    n = uniform_graph_size(batch, num_graphs)
    if n is not None:  # equal graph sizes: per-graph means by a reshape, broadcast back
        Zg = Z.reshape(num_graphs, n, *Z.shape[1:])
        return (Zg - Zg.mean(1, keepdim=True) * mask).reshape(Z.shape)
    return Z - gather(scatter_mean(Z, batch, num_graphs) * mask, batch)


def safe_sqrt(x: Tensor) -> Tensor:
    r""":math:`\sqrt{x}` for :math:`x \geq 0` whose gradient stays finite at 0 (it is 0 there).

    ``x`` is clamped to the smallest normal number of its dtype first, so the value differs
    from ``x.sqrt()`` only below that (by at most :math:`10^{-19}` in float32).

    Example:
        >>> import torch
        >>> from eghn.nn.invariants import safe_sqrt
        >>> x = torch.tensor([0.0, 4.0], requires_grad=True)
        >>> y = safe_sqrt(x)
        >>> y.sum().backward()
        >>> y.detach().round().tolist(), bool(torch.isfinite(x.grad).all())
        ([0.0, 2.0], True)
    """
    return x.clamp_min(torch.finfo(x.dtype).tiny).sqrt()


def gram(Zhat: Tensor, normalize: bool = True, eps: float = 1e-8) -> Tensor:
    r"""The O(n)-invariant :math:`\hat Z^\top \hat Z`, optionally divided by its Frobenius norm.

    The norm is a :func:`safe_sqrt`, so coincident nodes and self-loops (:math:`\hat Z = 0`)
    give finite gradients.

    Shapes:
        - Zhat: :math:`(E, n, k)` -> :math:`(E, k, k)`

    Example:
        >>> import torch
        >>> from eghn.nn.invariants import gram
        >>> Zhat = torch.randn(4, 3, 2)
        >>> G = gram(Zhat)
        >>> tuple(G.shape), round(float(torch.linalg.matrix_norm(G)[0]), 4)
        ((4, 2, 2), 1.0)
    """
    inv = torch.bmm(Zhat.transpose(1, 2), Zhat)
    if normalize:
        inv = inv / (safe_sqrt((inv * inv).sum((-2, -1), keepdim=True)) + eps)
    return inv

