"""Non-equivariant message-passing network (Gilmer et al., 2017): the negative control."""

from __future__ import annotations

import torch
from torch import nn

from ..data.graph import Graph
from ._common import MLP, pair_linear, scatter_sum
from .base import ModelOutput, check_input
from .registry import register

__all__ = ["MPNN"]


@register("mpnn")
class MPNN(nn.Module):
    r"""A standard message-passing neural network on the raw node state :math:`[x_i, v_i, h_i]`.

    Per layer ``l`` (sum aggregation over the receiver's global edges, residual updates)::

        m_ij   = phi_e(f_i, f_j, a_ij)
        f_i   <- f_i + phi_f(f_i, sum_j m_ij)

    with ``f_i^0 = W [x_i, v_i, h_i]``; the output is the decoded position :math:`\phi_{out}(f_i^L)`
    (as the GNN baseline of the EGNN N-body code, which predicts positions directly from the
    node state; ``residual=True`` gives :math:`x_i + \phi_{out}(f_i^L)` instead). Because
    absolute coordinates and velocities enter as ordinary features, the model is *not*
    equivariant to rotations, reflections or translations (only to node permutations): the
    equivariance test battery must flag it. Defaults follow the EGNN paper's N-body MPNN
    baseline: width 64, 4 layers, SiLU.

    Args:
        node_dim: number of invariant node features ``c`` (columns of ``graph.h``).
        edge_dim: number of global-edge attributes ``d`` (0 if ``graph.edge_attr`` is None).
        local_edge_dim: ignored (accepted so that one config builds any model).
        hidden: width of all hidden layers (default 64).
        layers: number of message-passing layers (default 4).
        act: activation name (default ``"silu"``).
        n_dim: spatial dimension ``n`` the model is built for (default 3); checked at entry.
        residual: predict :math:`x_i + \phi_{out}(f_i)` instead of :math:`\phi_{out}(f_i)`.

    Shapes:
        - graph.pos, graph.vel: :math:`(N, n)`; graph.h: :math:`(N, c)`
        - graph.edge_index: :math:`(2, E)`; graph.edge_attr: :math:`(E, d)`
        - output ``pos``: :math:`(N, n)`

    Example:
        >>> import torch
        >>> from eghn.data import Graph
        >>> from eghn.models import MPNN
        >>> from eghn.testing import equivariance_error
        >>> torch.manual_seed(0) and None
        >>> ring = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
        >>> g = Graph(pos=torch.randn(6, 3), vel=torch.randn(6, 3), edge_index=ring,
        ...           local_edge_index=ring).to(torch.float64)
        >>> model = MPNN(node_dim=1, hidden=16, layers=2).double()
        >>> tuple(model(g).pos.shape)
        (6, 3)
        >>> equivariance_error(model, g)["rotation"] > 1e-3  # MPNN sees raw coordinates: not equivariant
        True
    """

    #: the only symmetry it respects (read by the shared test battery)
    symmetries = ("permutation",)

    def __init__(self, node_dim: int, edge_dim: int = 0, local_edge_dim: int = 0, hidden: int = 64,
                 layers: int = 4, act: str = "silu", n_dim: int = 3, residual: bool = False) -> None:
        super().__init__()
        self.node_dim, self.edge_dim, self.n_dim, self.residual = node_dim, edge_dim, n_dim, residual
        self.embed = nn.Linear(2 * n_dim + node_dim, hidden)
        self.edge_mlps = nn.ModuleList(
            MLP(2 * hidden + edge_dim, hidden, hidden, act=act, act_last=True) for _ in range(layers))
        self.node_mlps = nn.ModuleList(MLP(2 * hidden, hidden, hidden, act=act) for _ in range(layers))
        self.out = MLP(hidden, hidden, n_dim, act=act)

    def forward(self, graph: Graph) -> ModelOutput:
        check_input(graph, need_vel=True, node_dim=self.node_dim, edge_dim=self.edge_dim, dim=self.n_dim, model=self)
        recv, send = graph.edge_index
        f = self.embed(torch.cat([graph.pos, graph.vel, graph.h], -1))
        for edge_mlp, node_mlp in zip(self.edge_mlps, self.node_mlps):
            # = edge_mlp(cat[f_i, f_j, a_ij]) without the per-edge concatenation
            m = edge_mlp.rest(pair_linear(edge_mlp[0], f, recv, send, graph.edge_attr if self.edge_dim else None))
            f = f + node_mlp(torch.cat([f, scatter_sum(m, recv, graph.num_nodes)], -1))
        out = self.out(f)
        return ModelOutput(pos=graph.pos + out if self.residual else out)

