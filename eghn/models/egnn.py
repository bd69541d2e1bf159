"""EGNN baseline (Satorras, Hoogeboom and Welling, 2021), velocity variant (EGNN-vel)."""

from __future__ import annotations

from torch import nn

from ..data.graph import Graph
from ..nn.egnn import EGNNLayer
from .base import ModelOutput, check_input
from .registry import register

__all__ = ["EGNN"]


@register("egnn")
class EGNN(nn.Module):
    r"""EGNN-vel: a stack of :class:`eghn.nn.EGNNLayer` on the global edges.

    With :math:`h^0_i = W_{in} h_i` and the *input* velocity :math:`v_i` fed to every layer
    (Satorras et al., Eq. 7, as in the original N-body code)::

        m_ij   = phi_e(h_i, h_j, ||x_i - x_j||^2, a_ij)
        x_i'   = x_i + C sum_j clamp((x_i - x_j) phi_x(m_ij), -100, 100) + phi_v(h_i) v_i
        h_i'   = h_i + phi_h(h_i, sum_j m_ij)

    with :math:`C = 1/\deg(i)` (``coord_aggr="mean"``, as in the original code). The output is
    the position after the last layer. E(n)-equivariant, reflections included, in any
    dimension ``n``, as long as the clamp (a safeguard against divergence copied from the
    original code) does not trigger.

    Defaults (EGNN paper, N-body): width 64, 4 layers, SiLU, clamp 100.

    Args:
        node_dim: number of invariant node features ``c``.
        edge_dim: number of global-edge attributes ``d``.
        local_edge_dim: ignored.
        hidden: width of :math:`h` and of the messages (default 64).
        layers: number of EGNN layers (default 4).
        act: activation name (default ``"silu"``).
        clamp: bound on each per-edge coordinate message (default 100; ``None`` disables).
        coord_aggr: ``"mean"`` (default) or ``"sum"``: the constant :math:`C`.

    Shapes:
        - graph.pos, graph.vel: :math:`(N, n)`; graph.h: :math:`(N, c)`;
          graph.edge_attr: :math:`(E, d)`
        - output ``pos``: :math:`(N, n)`

    Example:
        >>> import torch
        >>> from eghn.data import Graph
        >>> from eghn.models import EGNN
        >>> from eghn.testing import equivariance_error
        >>> torch.manual_seed(0) and None
        >>> ring = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
        >>> g = Graph(pos=torch.randn(6, 3), vel=torch.randn(6, 3), edge_index=ring,
        ...           local_edge_index=ring).to(torch.float64)
        >>> model = EGNN(node_dim=1, hidden=16, layers=2).double()
        >>> tuple(model(g).pos.shape)
        (6, 3)
        >>> max(equivariance_error(model, g).values()) < 1e-9
        True
    """

    def __init__(self, node_dim: int, edge_dim: int = 0, local_edge_dim: int = 0, hidden: int = 64,
                 layers: int = 4, act: str = "silu", clamp: float | None = 100.0,
                 coord_aggr: str = "mean") -> None:
        super().__init__()
        self.node_dim, self.edge_dim = node_dim, edge_dim
        self.embed = nn.Linear(node_dim, hidden)
        self.layers = nn.ModuleList(
            EGNNLayer(hidden, edge_dim, velocity=True, act=act, coord_aggr=coord_aggr, feat_aggr="sum",
                      clamp=clamp, residual=True)
            for _ in range(layers))

    def forward(self, graph: Graph) -> ModelOutput:
        check_input(graph, need_vel=True, node_dim=self.node_dim, edge_dim=self.edge_dim, model=self)
        x, h = graph.pos, self.embed(graph.h)
        for layer in self.layers:
            x, h, _ = layer(x, h, graph.edge_index, graph.edge_attr, vel=graph.vel)
        return ModelOutput(pos=x)
