r"""E-UnPool: equivariant unpooling from clusters back to particles (paper Eq. 12-15)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .invariants import center, gram, position_mask
from .mlp import MLP, activation
from .pool_ops import unpool

__all__ = ["EUnPool"]


class EUnPool(nn.Module):
    r"""Equivariant unpooling layer (paper Section 3.3, Eq. 12-15).

    .. math::
        Z^{agg}_i &= \textstyle\sum_k s_{ik} Z^{high}_k, \quad
        h^{agg}_i = \textstyle\sum_k s_{ik} h^{high}_k && \text{(Eq. 12)} \\
        \hat Z_i &= [Z^{low}_i - \bar Z^{low},\; Z^{agg}_i - \bar Z^{agg}] && \text{(Eq. 13)} \\
        H_i,\, h^{out}_i &= \mathrm{MLP}\big(\hat Z_i^\top \hat Z_i,\, h^{low}_i,\, h^{agg}_i\big)
            && \text{(Eq. 14)} \\
        Z^{out}_i &= \hat Z_i H_i + Z^{agg}_i && \text{(Eq. 15)}

    :math:`S` and the low-level system come from the matching :class:`EPool` (skip connection).
    Rows of :math:`S` sum to one, so :math:`Z^{agg}` translates with the input.

    Initialisation: the matrix head starts at :math:`H_i = [I_m; -I_m]` (a learnable bias),
    so that a fresh layer returns :math:`Z^{low}_i - \bar Z^{low} + \bar Z^{agg}`, i.e. the
    low-level system itself up to the (small) shift of its centroid by the pooling EMMP, in
    the same way every EGNN/EMMP layer starts near the identity. With :math:`H_i \approx 0` a
    fresh network would instead place every particle on the centre of its clusters.

    The keywords ``Z_in`` (the input of the low-level block whose output is :math:`Z^{low}`)
    and ``Z_high_in`` (the input of the cluster-level block whose output is :math:`Z^{high}`)
    belong to the call convention for unpooling forms that use them (the released code's,
    :class:`~eghn.nn.released.ReleasedUnPool`); E-UnPool does not.

    Shapes:
        - Z_low: :math:`(N, n, m)`, h_low: :math:`(N, c)`, Z_high: :math:`(G K, n, m)`,
          h_high: :math:`(G K, c)`, S: :math:`(N, K)`, batch: :math:`(N,)`,
          Z_in: :math:`(N, n, m)`, Z_high_in: :math:`(G K, n, m)` (both ignored)
        - output: ``(Z_out, h_out)`` of shapes :math:`(N, n, m)` and :math:`(N, \text{hidden})`

    Example:
        >>> import torch
        >>> from eghn.nn import EUnPool
        >>> torch.manual_seed(0) and None
        >>> unpool = EUnPool(channels=2, node_dim=8, hidden=8)
        >>> S = torch.softmax(torch.randn(6, 2), -1)  # 6 particles, K = 2 clusters
        >>> Z_out, h_out = unpool(torch.randn(6, 3, 2), torch.randn(6, 8), torch.randn(2, 3, 2), torch.randn(2, 8), S,
        ...                       torch.zeros(6, dtype=torch.long), 1)
        >>> tuple(Z_out.shape), tuple(h_out.shape)
        ((6, 3, 2), (6, 8))
    """

    def __init__(self, channels: int, node_dim: int, hidden: int, *, position_channels: Sequence[int] = (0,),
                 normalize: bool = True, act: str = "silu") -> None:
        super().__init__()
        self.channels, self.position_channels, self.normalize = channels, tuple(position_channels), normalize
        self.phi = MLP(4 * channels**2 + 2 * node_dim, hidden, hidden, layers=2, act=act, act_last=True)
        self.to_H = nn.Sequential(nn.Linear(hidden, hidden), activation(act),
                                  nn.Linear(hidden, 2 * channels * channels))
        nn.init.xavier_uniform_(self.to_H[-1].weight, gain=0.001)
        eye = torch.eye(channels)
        with torch.no_grad():
            self.to_H[-1].bias.copy_(torch.cat([eye, -eye], 0).flatten())
        self.to_h = nn.Linear(hidden, hidden)

    def forward(self, Z_low: Tensor, h_low: Tensor, Z_high: Tensor, h_high: Tensor, S: Tensor, batch: Tensor,
                num_graphs: int, *, Z_in: Tensor | None = None, Z_high_in: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        m = self.channels
        mask = position_mask(m, self.position_channels, Z_low)
        Z_agg = unpool(S, Z_high, batch)  # Eq. 12
        h_agg = unpool(S, h_high, batch)
        Zhat = torch.cat([center(Z_low, batch, num_graphs, mask), center(Z_agg, batch, num_graphs, mask)], -1)
        inv = gram(Zhat, self.normalize)  # (N, 2m, 2m)
        y = self.phi(torch.cat([inv.flatten(1), h_low, h_agg], -1))  # Eq. 14
        H, h_out = self.to_H(y), self.to_h(y)
        return torch.bmm(Zhat, H.view(-1, 2 * m, m)) + Z_agg, h_out  # Eq. 15
