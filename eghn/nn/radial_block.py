r"""A block of coordinate-form layers (EGNN, plain MPNN) called as an EMMP."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

__all__ = ["RadialBlock", "run_coordinate_layers"]


def run_coordinate_layers(layers: Iterable[nn.Module], Z: Tensor, h: Tensor, edge_index: Tensor,
                          edge_attr: Tensor | None = None) -> tuple[Tensor, Tensor]:
    r"""Run layers of the coordinate form ``(x, h, edge_index, edge_attr, vel) -> (x', h', v')``
    (:class:`~eghn.nn.EGNNLayer`, :class:`~eghn.nn.PlainMPLayer`) one after the other on the
    channels of :math:`Z`:

    .. math::
        Z = [x, v] \;\mapsto\; [x^{(L)}, v^{(L)}], \qquad
        (x^{(l)}, h^{(l)}, v^{(l)}) = \mathrm{layer}_l(x^{(l-1)}, h^{(l-1)}, v^{(l-1)})

    :math:`Z` holds the positions and, if it has a second channel, the velocities.

    Shapes:
        - Z: :math:`(N, n, m)` with :math:`m \in \{1, 2\}`, h: :math:`(N, c)`,
          edge_index: :math:`(2, E)`, edge_attr: :math:`(E, d)`
        - output: ``(Z', h')`` of shapes :math:`(N, n, m)` and :math:`(N, c')`

    Example:
        >>> import torch
        >>> from eghn.nn import EGNNLayer
        >>> from eghn.nn.radial_block import run_coordinate_layers
        >>> layers = [EGNNLayer(8), EGNNLayer(8)]
        >>> Z, h = torch.randn(4, 3, 1), torch.randn(4, 8)  # positions only (m = 1)
        >>> Z2, h2 = run_coordinate_layers(layers, Z, h, torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]]))
        >>> tuple(Z2.shape), tuple(h2.shape)
        ((4, 3, 1), (4, 8))
    """
    x, v = Z[..., 0], (Z[..., 1] if Z.shape[-1] > 1 else None)
    for layer in layers:
        x, h, v = layer(x, h, edge_index, edge_attr, v)
    return (torch.stack([x, v], -1) if v is not None else x.unsqueeze(-1)), h


class RadialBlock(nn.ModuleList):
    r"""A stack of coordinate-form layers with the call convention of :class:`~eghn.nn.EMMP`
    and :class:`~eghn.nn.EPool`, ``(Z, h, edge_index, batch, num_graphs, edge_attr)``.

    .. math::
        (Z', h') = \mathrm{layer}_L \circ \dots \circ \mathrm{layer}_1 (Z, h),
        \qquad Z = [x, v]

    with every layer of the form ``(x, h, edge_index, edge_attr, vel) -> (x', h', v')``
    (:class:`~eghn.nn.EGNNLayer`, the relaxed radial EMMP of paper Section 3.4, or
    :class:`~eghn.nn.PlainMPLayer`); see :func:`run_coordinate_layers`. The layers are the
    items of the list (``block[k]``). ``batch`` and ``num_graphs`` are part of the convention
    only: these layers need no per-graph quantity.

    Shapes:
        - Z: :math:`(N, n, m)` with :math:`m \in \{1, 2\}`, h: :math:`(N, c)`,
          edge_index: :math:`(2, E)`, batch: :math:`(N,)`, edge_attr: :math:`(E, d)`
        - output: ``(Z', h')`` of shapes :math:`(N, n, m)` and :math:`(N, c)`

    Example:
        >>> import torch
        >>> from eghn.nn import EGNNLayer, RadialBlock
        >>> block = RadialBlock(EGNNLayer(8, velocity=True) for _ in range(2))
        >>> Z, h = torch.randn(5, 3, 2), torch.randn(5, 8)
        >>> ei = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]])
        >>> Z2, h2 = block(Z, h, ei, torch.zeros(5, dtype=torch.long), 1)
        >>> tuple(Z2.shape), tuple(h2.shape), len(block)
        ((5, 3, 2), (5, 8), 2)
    """

    def forward(self, Z: Tensor, h: Tensor, edge_index: Tensor, batch: Tensor | None = None,
                num_graphs: int | None = None, edge_attr: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return run_coordinate_layers(self, Z, h, edge_index, edge_attr)
