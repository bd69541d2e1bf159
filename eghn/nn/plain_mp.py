r"""A non-equivariant message-passing layer on raw coordinates, for the ablations of Table 4."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .mlp import MLP, pair_linear
from .scatter import aggregate

__all__ = ["PlainMPLayer"]


class PlainMPLayer(nn.Module):
    r"""Message passing that treats coordinates as ordinary features (not equivariant).

    .. math::
        m_{ij} &= \phi_e(h_i, h_j, x_i, x_j, v_i, v_j, a_{ij}), \qquad
        [\Delta x_i, \Delta v_i] = \phi_x\big(\textstyle\sum_j m_{ij}\big) \\
        x'_i &= x_i + \Delta x_i, \quad v'_i = v_i + \Delta v_i, \quad
        h'_i = h_i + \phi_h\big(h_i, \textstyle\sum_j m_{ij}\big)

    It has the call signature of :class:`~eghn.nn.EGNNLayer`, so EGHN can swap it in for the
    "EMMP replaced by MPNN" ablation (paper Table 4).

    Shapes:
        - x, vel: :math:`(N, n)`, h: :math:`(N, \text{hidden})`, edge_index: :math:`(2, E)`
        - output: ``(x', h', v')`` with the same shapes

    Example:
        >>> import torch
        >>> from eghn.nn import PlainMPLayer
        >>> layer = PlainMPLayer(hidden=8)
        >>> x, h, v = torch.randn(4, 3), torch.randn(4, 8), torch.randn(4, 3)
        >>> x2, h2, v2 = layer(x, h, torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]]), vel=v)
        >>> tuple(x2.shape), tuple(h2.shape), tuple(v2.shape)
        ((4, 3), (4, 8), (4, 3))
    """

    def __init__(self, hidden: int, edge_dim: int = 0, *, dim: int = 3, velocity: bool = True,
                 act: str = "silu") -> None:
        super().__init__()
        self.dim, self.velocity, self.edge_dim = dim, velocity, edge_dim
        k = 2 if velocity else 1
        self.node_in = nn.Linear(hidden + k * dim, hidden)
        self.phi_e = MLP(2 * hidden + edge_dim, hidden, hidden, layers=2, act=act, act_last=True)
        self.phi_x = MLP(hidden, hidden, k * dim, layers=2, act=act)
        self.phi_h = MLP(2 * hidden, hidden, hidden, layers=2, act=act)

    def forward(self, x: Tensor, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                vel: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        if x.shape[1] != self.dim:
            raise ValueError(f"this layer was built for n = {self.dim}, got positions of dimension {x.shape[1]}")
        coords = [x, vel] if self.velocity else [x]
        u = self.node_in(torch.cat([h, *coords], -1))
        rest = edge_attr if self.edge_dim else None
        m = self.phi_e.rest(pair_linear(self.phi_e[0], u, edge_index[0], edge_index[1], rest))
        agg = aggregate(m, edge_index[0], x.shape[0], "mean")
        delta = self.phi_x(agg)
        x = x + delta[:, : self.dim]
        if self.velocity:
            vel = vel + delta[:, self.dim :]
        return x, h + self.phi_h(torch.cat([h, agg], -1)), vel
