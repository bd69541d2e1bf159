r"""The multi-channel GMN-form layer: matrix messages along :math:`Z_i - Z_j`."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .edge_mlp import edge_mlp
from .invariants import gram
from .mlp import MLP, activation
from .scatter import aggregate, gather

__all__ = ["GMNLayer"]


class GMNLayer(nn.Module):
    r"""Multi-channel equivariant message passing in the form used by GMN (Huang et al., 2022).

    .. math::
        Z_{ij} &= Z_i - Z_j \in \mathbb{R}^{n\times m} \\
        m_{ij} &= \phi_e\big(h_i, h_j, \mathrm{nrm}(Z_{ij}^\top Z_{ij}), e_{ij}\big), \qquad
        H_{ij} = \phi_H(m_{ij}) \in \mathbb{R}^{m \times m} \\
        Z'_i &= Z_i + C\textstyle\sum_j Z_{ij} H_{ij}, \qquad
        h'_i = h_i + \phi_h\big(h_i, \textstyle\sum_j m_{ij}\big)

    where nrm divides by the Frobenius norm when ``normalize=True``. Theorem 1 shows this is
    EMMP with :math:`\hat H_{ij} = [H_{ij}; -H_{ij}]` (see :func:`eghn.nn.emmp_from_gmn`).

    Shapes:
        - Z: :math:`(N, n, m)`, h: :math:`(N, \text{hidden})`, edge_index: :math:`(2, E)`,
          edge_attr: :math:`(E, d)`
        - output: ``(Z', h')`` with the same shapes

    Example:
        >>> import torch
        >>> from eghn.nn import GMNLayer
        >>> layer = GMNLayer(channels=2, hidden=8)
        >>> Z, h = torch.randn(4, 3, 2), torch.randn(4, 8)
        >>> Z2, h2 = layer(Z, h, torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]]))
        >>> tuple(Z2.shape), tuple(h2.shape)
        ((4, 3, 2), (4, 8))
    """

    def __init__(self, channels: int, hidden: int, edge_dim: int = 0, *, normalize: bool = True,
                 aggr: str = "mean", feat_aggr: str = "sum", act: str = "silu", residual: bool = True) -> None:
        super().__init__()
        self.channels, self.hidden, self.edge_dim = channels, hidden, edge_dim
        self.normalize, self.aggr, self.feat_aggr, self.residual = normalize, aggr, feat_aggr, residual
        self.phi_e = MLP(2 * hidden + channels**2 + edge_dim, hidden, hidden, layers=2, act=act, act_last=True)
        self.phi_H = nn.Sequential(nn.Linear(hidden, hidden), activation(act),
                                   nn.Linear(hidden, channels * channels, bias=False))
        nn.init.xavier_uniform_(self.phi_H[-1].weight, gain=0.001)
        self.phi_h = MLP(2 * hidden, hidden, hidden, layers=2, act=act)

    def invariant(self, Zij: Tensor) -> Tensor:
        """:math:`Z_{ij}^\\top Z_{ij}` (Frobenius-normalised if requested), shape ``(E, m, m)``."""
        return gram(Zij, self.normalize)

    def edge_function(self, inv: Tensor, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None
                      ) -> tuple[Tensor, Tensor]:
        """``(inv, h, edge_index, e_ij) -> (H_ij (E, m, m), m_ij (E, hidden))``."""
        rest = inv.flatten(1)
        if self.edge_dim:
            if edge_attr is None:
                raise ValueError(f"this layer expects {self.edge_dim} edge features, got none")
            rest = torch.cat([rest, edge_attr], -1)
        m, H = edge_mlp(self.phi_e[0], h, edge_index[0], edge_index[1], rest, list(self.phi_e)[1:], self.phi_H)
        return H.view(-1, self.channels, self.channels), m

    def node_function(self, h: Tensor, agg: Tensor) -> Tensor:
        out = self.phi_h(torch.cat([h, agg], -1))
        return h + out if self.residual else out

    def forward(self, Z: Tensor, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        i, j = edge_index
        Zij = gather(Z, i) - gather(Z, j)
        H, m = self.edge_function(self.invariant(Zij), h, edge_index, edge_attr)
        Z = Z + aggregate(torch.bmm(Zij, H), i, Z.shape[0], self.aggr)
        return Z, self.node_function(h, aggregate(m, i, Z.shape[0], self.feat_aggr))
