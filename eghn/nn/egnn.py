"""The EGNN layer (Satorras et al., 2021): the radial form EGHN uses for its external EMMPs."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .edge_mlp import edge_mlp
from .mlp import MLP, activation
from .scatter import aggregate, gather

__all__ = ["EGNNLayer"]


class EGNNLayer(nn.Module):
    r"""E(n)-equivariant graph convolution of Satorras, Hoogeboom and Welling (2021).

    .. math::
        m_{ij} &= \phi_e\big(h_i, h_j, \lVert x_i - x_j\rVert^2, a_{ij}\big) \\
        v'_i &= \phi_v(h_i)\, v_i + C \sum_{j} (x_i - x_j)\, \phi_x(m_{ij}) \\
        x'_i &= x_i + v'_i \\
        h'_i &= h_i + \phi_h\big(h_i, \textstyle\sum_j m_{ij}\big)

    Without velocities the :math:`\phi_v` term is absent and :math:`x'_i = x_i + C\sum_j
    (x_i - x_j)\phi_x(m_{ij})`. :math:`C` is 1 (``coord_aggr="sum"``) or :math:`1/\deg(i)`
    (``coord_aggr="mean"``, the choice of the original code). In EGHN this is the
    *relaxed* (radial) form of EMMP used on :math:`\mathcal{A}_{global}` (paper Section 3.4);
    by Theorem 1 it is a special case of :class:`~eghn.nn.EMMP`
    (see :func:`eghn.nn.emmp_from_egnn`).

    Args:
        hidden: width of node features :math:`h` and of messages :math:`m_{ij}`.
        edge_dim: number of invariant edge attributes :math:`a_{ij}` (0 for none).
        velocity: use the velocity variant (EGNN-vel).
        coord_aggr: ``"sum"`` or ``"mean"`` for the coordinate update.
        feat_aggr: ``"sum"`` or ``"mean"`` for :math:`\sum_j m_{ij}`.
        clamp: if set, each per-edge coordinate message is clamped to ``[-clamp, clamp]`` as in
            the original code. This is *not* rotation-equivariant when it triggers.
        residual: add :math:`h_i` to the node update.
        clamp_mode: ``"edge"`` clamps every per-edge coordinate message, ``"sum"`` the
            aggregated coordinate update :math:`C\sum_j (x_i - x_j)\phi_x(m_{ij})` (the
            authors' released code, with ``clamp=100``).
        velocity_update: ``True`` returns :math:`v'_i` as above; ``False`` moves the particle by
            the same :math:`\phi_v(h_i) v_i + C\sum_j \dots` but returns the input velocity
            unchanged, so every layer of a block sees the input :math:`v` (the released code).
        coord_bias: give the last layer of :math:`\phi_x` a bias and PyTorch's default
            initialisation (the released code) instead of no bias and a near-zero start.
        coord_message: ``"paper"`` (default): the per-edge coordinate message
            :math:`(x_i - x_j)\,\phi_x(m_{ij})` above. ``"bounded"`` (a stabiliser, not the
            paper's equation): :math:`\frac{x_i - x_j}{1 + \lVert x_i - x_j\rVert}\,
            \tanh\phi_x(m_{ij})`, whose norm is below 1 for any input, so that a layer moves a
            particle by at most :math:`C \deg(i)` (at most 1 with ``coord_aggr="mean"``)
            whatever the scale of its input. The paper form grows like the cube of the coordinate
            scale :math:`s` once :math:`\phi_e` is in its linear regime (:math:`\lVert x_i -
            x_j\rVert \sim s`, :math:`\phi_x(m_{ij}) \sim s^2`), so stacked layers turn one
            outlying distance into an overflow; the bounded form moves it by at most a constant
            per layer. Both are E(n)-equivariant; the two coincide to first order near the
            initialisation (:math:`\phi_x \approx 0`) on unit-scale inputs.

    Shapes:
        - x: :math:`(N, n)`, h: :math:`(N, \text{hidden})`, edge_index: :math:`(2, E)`,
          edge_attr: :math:`(E, \text{edge\_dim})`, vel: :math:`(N, n)`
        - output: ``(x', h', v')`` with the same shapes (``v'`` is ``None`` without velocity)

    Example:
        >>> import torch
        >>> from eghn.nn import EGNNLayer
        >>> torch.manual_seed(0) and None
        >>> layer = EGNNLayer(hidden=8, velocity=True)
        >>> x, h, v = torch.randn(4, 3), torch.randn(4, 8), torch.randn(4, 3)
        >>> ring = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
        >>> x2, h2, v2 = layer(x, h, ring, vel=v)
        >>> tuple(x2.shape), tuple(h2.shape), tuple(v2.shape)
        ((4, 3), (4, 8), (4, 3))
    """

    def __init__(self, hidden: int, edge_dim: int = 0, *, velocity: bool = False, act: str = "silu",
                 coord_aggr: str = "mean", feat_aggr: str = "sum", clamp: float | None = None,
                 residual: bool = True, clamp_mode: str = "edge", velocity_update: bool = True,
                 coord_bias: bool = False, coord_message: str = "paper") -> None:
        super().__init__()
        if clamp_mode not in ("edge", "sum"):
            raise ValueError(f"clamp_mode must be 'edge' or 'sum', got {clamp_mode!r}")
        if coord_message not in ("paper", "bounded"):
            raise ValueError(f"coord_message must be 'paper' or 'bounded', got {coord_message!r}")
        self.coord_message = coord_message
        self.hidden, self.edge_dim, self.velocity = hidden, edge_dim, velocity
        self.coord_aggr, self.feat_aggr, self.clamp, self.residual = coord_aggr, feat_aggr, clamp, residual
        self.clamp_mode, self.velocity_update = clamp_mode, velocity_update
        self.phi_e = MLP(2 * hidden + 1 + edge_dim, hidden, hidden, layers=2, act=act, act_last=True)
        self.phi_x = nn.Sequential(nn.Linear(hidden, hidden), activation(act), nn.Linear(hidden, 1, bias=coord_bias))
        if not coord_bias:
            nn.init.xavier_uniform_(self.phi_x[-1].weight, gain=0.001)
        self.phi_h = MLP(2 * hidden, hidden, hidden, layers=2, act=act)
        self.phi_v = MLP(hidden, hidden, 1, layers=2, act=act) if velocity else None

    def messages(self, x: Tensor, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None) -> tuple[Tensor, Tensor]:
        """Per-edge invariant messages :math:`m_{ij}` and coordinate terms :math:`(x_i-x_j)\\phi_x`."""
        i, j = edge_index
        diff = gather(x, i) - gather(x, j)
        dist2 = (diff * diff).sum(-1, keepdim=True)
        rest = dist2
        if self.edge_dim:
            if edge_attr is None:
                raise ValueError(f"this layer expects {self.edge_dim} edge features, got none")
            rest = torch.cat([dist2, edge_attr], -1)
        # phi_e(h_i, h_j, |x_i - x_j|^2, a_ij) and phi_x(m_ij); the first layer is applied per
        # node, and on large edge sets the backward pass recomputes the edge activations (eghn.nn.edge_mlp)
        m, coef = edge_mlp(self.phi_e[0], h, i, j, rest, list(self.phi_e)[1:], self.phi_x)
        if self.coord_message == "bounded":
            # clamp_min: a finite gradient where two particles coincide
            trans = diff * (torch.tanh(coef) / (1.0 + dist2.clamp_min(1e-12).sqrt()))
        else:
            trans = diff * coef
        if self.clamp is not None and self.clamp_mode == "edge":
            trans = trans.clamp(-self.clamp, self.clamp)
        return m, trans

    def forward(self, x: Tensor, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                vel: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        n_nodes = x.shape[0]
        m, trans = self.messages(x, h, edge_index, edge_attr)
        delta = aggregate(trans, edge_index[0], n_nodes, self.coord_aggr)
        if self.clamp is not None and self.clamp_mode == "sum":
            delta = delta.clamp(-self.clamp, self.clamp)
        if self.velocity:
            if vel is None:
                raise ValueError("EGNNLayer(velocity=True) needs velocities")
            step = self.phi_v(h) * vel + delta
            x = x + step
            if self.velocity_update:
                vel = step
        else:
            x = x + delta
        upd = self.phi_h(torch.cat([h, aggregate(m, edge_index[0], n_nodes, self.feat_aggr)], -1))
        h = h + upd if self.residual else upd
        return x, h, vel
