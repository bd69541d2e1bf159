r"""One coordinate-form layer (EGNN, plain MPNN) as an EMMP, for E-Pool's ablations."""

from __future__ import annotations

from torch import Tensor, nn

from .radial_block import run_coordinate_layers

__all__ = ["RadialEMMP"]


class RadialEMMP(nn.Module):
    r"""The layer ``layer`` of the coordinate form ``(x, h, edge_index, edge_attr, vel)``
    (:class:`~eghn.nn.EGNNLayer`: the radial EMMP; :class:`~eghn.nn.PlainMPLayer`) with the
    call convention of :class:`~eghn.nn.EMMP`, so that it can stand for one internal EMMP of
    :class:`~eghn.nn.EPool` (``message_layers``; the ablations of paper Table 4):

    .. math::
        Z = [x, v] \;\mapsto\; Z' = [x', v'], \qquad (x', h', v') = \mathrm{layer}(x, h, v)

    A one-layer :class:`~eghn.nn.RadialBlock` computes the same; this module keeps the layer
    under the name ``layer``.

    Shapes:
        - Z: :math:`(N, n, m)` with :math:`m \in \{1, 2\}`, h: :math:`(N, c)`,
          edge_index: :math:`(2, E)`, batch: :math:`(N,)`, edge_attr: :math:`(E, d)`
        - output: ``(Z', h')`` of shapes :math:`(N, n, m)` and :math:`(N, c)`

    Example:
        >>> import torch
        >>> from eghn.nn import EGNNLayer, RadialEMMP
        >>> layer = RadialEMMP(EGNNLayer(8, velocity=True))
        >>> Z, h = torch.randn(4, 3, 2), torch.randn(4, 8)  # Z = [x, v]
        >>> Z2, h2 = layer(Z, h, torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]]))
        >>> tuple(Z2.shape), tuple(h2.shape)
        ((4, 3, 2), (4, 8))
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, Z: Tensor, h: Tensor, edge_index: Tensor, batch: Tensor | None = None,
                num_graphs: int | None = None, edge_attr: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return run_coordinate_layers([self.layer], Z, h, edge_index, edge_attr)
