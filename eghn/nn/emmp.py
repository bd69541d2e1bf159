r"""Equivariant Matrix Message Passing (EMMP), paper Eq. 3-6."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .edge_mlp import edge_mlp
from .invariants import center, gram, position_mask
from .mlp import MLP, activation
from .scatter import aggregate, gather

__all__ = ["EMMP", "EMMPMessage", "EMMPUpdate"]


class EMMPMessage(nn.Module):
    r"""The default message MLP :math:`\phi` of Eq. 4.

    Maps :math:`h_i`, :math:`h_j`, the invariant :math:`\hat Z_{ij}^\top \hat Z_{ij}` and the edge
    attributes to the matrix :math:`H_{ij} \in \mathbb{R}^{2m \times m}` and the invariant
    message :math:`h_{ij}`. A replacement message function (Theorem 1) implements the same
    call signature ``(inv, h, edge_index, edge_attr) -> (H, msg)``.

    Shapes:
        - inv: :math:`(E, 2m, 2m)`, h: :math:`(N, c)`, edge_index: :math:`(2, E)`,
          edge_attr: :math:`(E, d)`
        - output: ``H`` :math:`(E, 2m, m)`, ``msg`` :math:`(E, \text{hidden})`

    Example:
        >>> import torch
        >>> from eghn.nn import EMMPMessage
        >>> msg = EMMPMessage(channels=2, node_dim=4, hidden=8)
        >>> inv, h = torch.randn(3, 4, 4), torch.randn(5, 4)  # inv: (E, 2m, 2m)
        >>> H, m = msg(inv, h, torch.tensor([[0, 1, 2], [1, 2, 3]]), None)
        >>> tuple(H.shape), tuple(m.shape)
        ((3, 4, 2), (3, 8))
    """

    def __init__(self, channels: int, node_dim: int, hidden: int, edge_dim: int = 0, act: str = "silu") -> None:
        super().__init__()
        self.channels, self.edge_dim = channels, edge_dim
        self.phi = MLP(2 * node_dim + 4 * channels**2 + edge_dim, hidden, hidden, layers=2, act=act,
                       act_last=True)
        self.to_H = nn.Sequential(nn.Linear(hidden, hidden), activation(act),
                                  nn.Linear(hidden, 2 * channels * channels, bias=False))
        nn.init.xavier_uniform_(self.to_H[-1].weight, gain=0.001)

    def forward(self, inv: Tensor, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None
                ) -> tuple[Tensor, Tensor]:
        rest = inv.flatten(1)
        if self.edge_dim:
            if edge_attr is None:
                raise ValueError(f"this EMMP expects {self.edge_dim} edge features, got none")
            rest = torch.cat([rest, edge_attr], -1)
        # phi(h_i, h_j, Zhat^T Zhat, e_ij) and the H head; first layer applied per node, edge
        # activations recomputed on large edge sets (eghn.nn.edge_mlp)
        msg, H = edge_mlp(self.phi[0], h, edge_index[0], edge_index[1], rest, list(self.phi)[1:], self.to_H)
        H = H.view(-1, 2 * self.channels, self.channels)
        return H, msg


class EMMPUpdate(nn.Module):
    r"""Node update of Eq. 6: :math:`h'_i = h_i + \phi_h(h_i, \sum_j h_{ij})` (residual optional).

    Example:
        >>> import torch
        >>> from eghn.nn import EMMPUpdate
        >>> update = EMMPUpdate(node_dim=8, msg_dim=8, hidden=8)
        >>> tuple(update(torch.randn(5, 8), torch.randn(5, 8)).shape), update.residual
        ((5, 8), True)
    """

    def __init__(self, node_dim: int, msg_dim: int, hidden: int, act: str = "silu", residual: bool = True) -> None:
        super().__init__()
        self.residual = residual and node_dim == hidden
        self.phi_h = MLP(node_dim + msg_dim, hidden, hidden, layers=2, act=act)

    def forward(self, h: Tensor, agg: Tensor) -> Tensor:
        out = self.phi_h(torch.cat([h, agg], -1))
        return h + out if self.residual else out


class EMMP(nn.Module):
    r"""Equivariant Matrix Message Passing (paper Eq. 3-6).

    For every edge :math:`(i, j)` (``i`` receives):

    .. math::
        \hat Z_{ij} &= [Z_i - \bar Z,\; Z_j - \bar Z] \in \mathbb{R}^{n \times 2m}
            && \text{(Eq. 3)} \\
        H_{ij},\, h_{ij} &= \phi\big(\hat Z_{ij}^\top \hat Z_{ij},\, h_i,\, h_j,\, e_{ij}\big)
            && \text{(Eq. 4)} \\
        M_{ij} &= \hat Z_{ij} H_{ij} && \text{(Eq. 5)} \\
        Z'_i &= Z_i + \textstyle\sum_j M_{ij}, \qquad
        h'_i = \phi_h\big(h_i, \textstyle\sum_j h_{ij}\big) && \text{(Eq. 6)}

    :math:`\bar Z` is the per-graph mean of the position channels (zero for the other channels,
    e.g. velocities), so translations act on position channels only. With ``normalize=True``
    the invariant :math:`\hat Z^\top \hat Z` is divided by its Frobenius norm before
    :math:`\phi`. The message and update functions can be replaced (``message=``,
    ``update=``): Theorem 1 is exactly such a replacement (see :func:`eghn.nn.emmp_from_egnn`).

    Args:
        channels: number :math:`m` of vector channels of :math:`Z`.
        node_dim: width :math:`c` of the input node features.
        hidden: width of messages and output node features.
        edge_dim: number of edge attributes (0 for none).
        position_channels: indices of the channels that are positions (centred, translated).
        normalize: divide the Gram invariant by its Frobenius norm.
        aggr: ``"sum"`` (paper) or ``"mean"`` aggregation of the matrix messages.
        feat_aggr: ``"sum"`` or ``"mean"`` aggregation of :math:`h_{ij}`.
        message_form: ``"paper"`` (default): :math:`M_{ij} = \hat Z_{ij} H_{ij}` (Eq. 5).
            ``"bounded"`` (a stabiliser, not the paper's equation):
            :math:`M_{ij} = \hat Z_{ij} \tanh(H_{ij}) / (1 + \lVert \hat Z_{ij}\rVert_F)`,
            every entry of :math:`\tanh(H_{ij})` in :math:`(-1, 1)`, so that
            :math:`\lVert M_{ij}\rVert_F < \sqrt{2m^2}` for any input and any weights. Both forms are
            E(n)-equivariant (:math:`\lVert \hat Z_{ij}\rVert_F` is invariant) and agree to first
            order near the initialisation (:math:`H \approx 0`) for small :math:`\hat Z`.

    Shapes:
        - Z: :math:`(N, n, m)`, h: :math:`(N, c)`, edge_index: :math:`(2, E)`,
          batch: :math:`(N,)`, edge_attr: :math:`(E, d)`
        - output: ``(Z', h')`` of shapes :math:`(N, n, m)` and :math:`(N, \text{hidden})`

    Example:
        >>> import torch
        >>> from eghn.nn import EMMP
        >>> layer = EMMP(channels=2, node_dim=4, hidden=8)
        >>> Z, h = torch.randn(5, 3, 2), torch.randn(5, 4)
        >>> ei = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]])
        >>> Z2, h2 = layer(Z, h, ei, torch.zeros(5, dtype=torch.long), 1)
        >>> tuple(Z2.shape), tuple(h2.shape)
        ((5, 3, 2), (5, 8))
    """

    def __init__(self, channels: int, node_dim: int, hidden: int, edge_dim: int = 0, *,
                 position_channels: Sequence[int] = (0,), normalize: bool = True, aggr: str = "sum",
                 feat_aggr: str = "sum", act: str = "silu", residual: bool = True,
                 message: nn.Module | None = None, update: nn.Module | None = None,
                 message_form: str = "paper") -> None:
        super().__init__()
        if channels < 1:
            raise ValueError("EMMP needs at least one vector channel")
        if message_form not in ("paper", "bounded"):
            raise ValueError(f"message_form must be 'paper' or 'bounded', got {message_form!r}")
        self.message_form = message_form
        self.channels, self.hidden, self.edge_dim = channels, hidden, edge_dim
        self.position_channels = tuple(position_channels)
        self.normalize, self.aggr, self.feat_aggr = normalize, aggr, feat_aggr
        self.message = message if message is not None else EMMPMessage(channels, node_dim, hidden, edge_dim, act)
        self.update = update if update is not None else EMMPUpdate(node_dim, hidden, hidden, act, residual)

    def forward(self, Z: Tensor, h: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int,
                edge_attr: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if Z.dim() != 3 or Z.shape[2] != self.channels:
            raise ValueError(f"EMMP expects Z of shape (N, n, {self.channels}), got {tuple(Z.shape)}")
        n_nodes = Z.shape[0]
        mask = position_mask(self.channels, self.position_channels, Z)
        Zc = center(Z, batch, num_graphs, mask)
        i, j = edge_index
        Zhat = torch.cat([gather(Zc, i), gather(Zc, j)], dim=-1)  # (E, n, 2m), Eq. 3
        inv = gram(Zhat, self.normalize)  # (E, 2m, 2m)
        H, msg = self.message(inv, h, edge_index, edge_attr)  # Eq. 4
        if self.message_form == "bounded":
            norm = Zhat.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1)  # finite gradient at 0
            M = torch.bmm(Zhat, torch.tanh(H)) / (1.0 + norm)
        else:
            M = torch.bmm(Zhat, H)  # (E, n, m), Eq. 5
        Z = Z + aggregate(M, i, n_nodes, self.aggr)  # Eq. 6
        h = self.update(h, aggregate(msg, i, n_nodes, self.feat_aggr))
        return Z, h
