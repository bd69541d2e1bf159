"""Linear dynamics baseline: :math:`x' = x + t\\,v` with one learned scalar ``t``."""

from __future__ import annotations

import torch
from torch import nn

from ..data.graph import Graph
from .base import ModelOutput, check_input
from .registry import register

__all__ = ["LinearDynamics"]


@register("linear")
class LinearDynamics(nn.Module):
    """Constant-velocity extrapolation :math:`x_i' = x_i + t\\,v_i` with a learned time step ``t``.

    The only parameter is the scalar ``t`` (initialised to ``t0``, default 1). The model is
    E(n)-equivariant, reflections included, for every ``t``. ``node_dim``, ``edge_dim``,
    ``local_edge_dim``, ``hidden``, ``layers`` and ``act`` are accepted so that one config
    builds any registered model, and ignored.

    Shapes:
        - graph.pos, graph.vel: :math:`(N, n)`
        - output ``pos``: :math:`(N, n)`

    Example:
        >>> import torch
        >>> from eghn.data import Graph
        >>> from eghn.models import LinearDynamics
        >>> from eghn.testing import equivariance_error
        >>> torch.manual_seed(0) and None
        >>> ring = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
        >>> g = Graph(pos=torch.randn(6, 3), vel=torch.randn(6, 3), edge_index=ring,
        ...           local_edge_index=ring).to(torch.float64)
        >>> model = LinearDynamics().double()
        >>> tuple(model(g).pos.shape)
        (6, 3)
        >>> max(equivariance_error(model, g).values()) < 1e-9
        True
    """

    def __init__(self, node_dim: int = 1, edge_dim: int = 0, local_edge_dim: int = 0, hidden: int = 64,
                 layers: int = 4, act: str = "silu", t0: float = 1.0) -> None:
        super().__init__()
        self.t = nn.Parameter(torch.tensor(float(t0)))

    def forward(self, graph: Graph) -> ModelOutput:
        check_input(graph, need_vel=True, model=self)
        return ModelOutput(pos=graph.pos + self.t.to(graph.pos.dtype) * graph.vel)
