"""Radial Field baseline (Köhler, Klein and Noé, 2019), velocity variant as used for N-body."""

from __future__ import annotations

import torch
from torch import nn

from ..data.graph import Graph
from ._common import MLP, scatter_mean, scatter_sum
from .base import ModelOutput, check_input
from .registry import register

__all__ = ["RadialField"]


@register("rf")
class RadialField(nn.Module):
    """Radial Field network: coordinates move along :math:`x_i - x_j` by a learned radial weight.

    Per layer (``C = 1/deg(i)`` for ``aggregation="mean"``, ``C = 1`` for ``"sum"``)::

        w_ij = phi_e(||x_i - x_j||, a_ij)                       (scalar; tanh-bounded)
        u_i = phi_v(||v_i||) v_i + C sum_j (x_i - x_j) w_ij     (v_i: the input velocity)
        x_i <- x_i + u_i

    i.e. the radial vector field of Köhler et al. (2019) plus a velocity term whose gain depends
    only on the speed (the velocity form of Satorras et al., Eq. 7, with the input ``v``), as in
    the N-body "RF" baseline of the EGNN paper. Nothing but distances, speeds and edge
    attributes enters the MLPs, so the model is E(n)-equivariant, reflections
    included, in any dimension ``n``; node features ``h`` are not used (Radial Field has none).

    Defaults (EGNN paper's N-body RF setting): width 64, 4 layers, SiLU, mean aggregation.

    Args:
        node_dim: accepted for a uniform constructor; unused.
        edge_dim: number of global-edge attributes ``d`` fed to ``phi_e``.
        local_edge_dim: ignored.
        hidden: MLP width (default 64).
        layers: number of radial-field layers (default 4).
        act: activation name (default ``"silu"``).
        aggregation: ``"mean"`` (default) or ``"sum"`` over the receiver's edges.

    Shapes:
        - graph.pos, graph.vel: :math:`(N, n)`; graph.edge_attr: :math:`(E, d)`
        - output ``pos``: :math:`(N, n)`

    Example:
        >>> import torch
        >>> from eghn.data import Graph
        >>> from eghn.models import RadialField
        >>> from eghn.testing import equivariance_error
        >>> torch.manual_seed(0) and None
        >>> ring = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
        >>> g = Graph(pos=torch.randn(6, 3), vel=torch.randn(6, 3), edge_index=ring,
        ...           local_edge_index=ring).to(torch.float64)
        >>> model = RadialField(node_dim=1, hidden=16, layers=2).double()
        >>> tuple(model(g).pos.shape)
        (6, 3)
        >>> max(equivariance_error(model, g).values()) < 1e-9
        True
    """

    def __init__(self, node_dim: int = 1, edge_dim: int = 0, local_edge_dim: int = 0, hidden: int = 64,
                 layers: int = 4, act: str = "silu", aggregation: str = "mean") -> None:
        super().__init__()
        if aggregation not in ("mean", "sum"):
            raise ValueError(f"aggregation must be 'mean' or 'sum', got {aggregation!r}")
        self.edge_dim, self.aggregation = edge_dim, aggregation
        self.phi_e = nn.ModuleList(
            nn.Sequential(MLP(1 + edge_dim, hidden, 1, act=act), nn.Tanh()) for _ in range(layers))
        self.phi_v = nn.ModuleList(MLP(1, hidden, 1, act=act) for _ in range(layers))

    def forward(self, graph: Graph) -> ModelOutput:
        check_input(graph, need_vel=True, edge_dim=self.edge_dim, model=self)
        recv, send = graph.edge_index
        agg = scatter_mean if self.aggregation == "mean" else scatter_sum
        x, v = graph.pos, graph.vel
        speed = torch.sqrt((v**2).sum(-1, keepdim=True) + 1e-12)
        for phi_e, phi_v in zip(self.phi_e, self.phi_v):
            diff = x[recv] - x[send]
            dist = torch.sqrt((diff**2).sum(-1, keepdim=True) + 1e-12)
            feats = [dist] + ([graph.edge_attr] if self.edge_dim else [])
            w = phi_e(torch.cat(feats, -1))
            x = x + phi_v(speed) * v + agg(diff * w, recv, graph.num_nodes)
        return ModelOutput(pos=x)
