"""Tensor Field Network baseline (Thomas et al., 2018), built on e3nn."""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from ..data.graph import Graph
from ._common import scatter_mean
from ._equivariant import MemoryEstimator, PointConvolution, e3nn_build_options, edge_geometry, make_gate, run_guarded
from .base import ModelOutput, check_input
from .registry import register

__all__ = ["TFN"]


@register("tfn")
class TFN(MemoryEstimator, nn.Module):
    r"""Tensor Field Network: SE(3)/O(3)-equivariant point convolutions on spherical harmonics.

    Node features are e3nn irreps: the input is ``c x 0e`` (the invariant features ``h``) plus
    ``1 x 1o`` (the velocity). Each of the first ``layers - 1`` layers does, for every node,

    .. math::
        f_i \leftarrow \mathrm{Gate}\Big(W_{self} f_i + W_{mix}\,\frac{1}{\deg i}\sum_j
            \big(R(\lVert x_{ij}\rVert, a_{ij}) \odot (f_j \otimes Y(\hat x_{ij}))\big)\Big)

    (:class:`~eghn.models._equivariant.PointConvolution`: channel-wise tensor-product filters
    whose weights come from a radial MLP on a Gaussian basis of the edge length and the edge
    attributes; ``W_self``/``W_mix`` are e3nn self-interaction linears). The last layer's
    convolution outputs one ``1o`` vector per node, added to the position:
    :math:`x_i' = x_i + \Delta_i`. Features of degree ``l`` carry parity :math:`(-1)^l`, so the
    model is E(3)-equivariant *including reflections*. It is defined for ``n = 3`` only.

    Defaults (TFN setting of the EGNN paper's N-body experiments): degree ``lmax = 2``, width 32
    channels per degree, 4 layers, SiLU; radial MLP of width 32 on 16 Gaussians over
    ``[0, max_radius = 10]`` (set ``max_radius`` to the data's interaction range).

    Memory: every edge stores its spherical harmonics, radial weights and tensor-product
    output, so memory grows as ``O(E * width * lmax^2)``; :meth:`estimate_memory` gives an
    estimate and an out-of-memory failure is re-raised as
    :class:`~eghn.models._common.ModelOutOfMemoryError` quoting it. ``memory_limit`` (bytes)
    makes the model refuse inputs whose estimate exceeds it before allocating anything.

    Args:
        node_dim: number of invariant node features ``c``.
        edge_dim: number of global-edge attributes ``d``.
        local_edge_dim: ignored.
        hidden: channels per degree (default 32).
        layers: number of convolution layers (default 4).
        act: scalar activation of the gates and radial MLPs (default ``"silu"``).
        lmax: highest degree of hidden features and spherical harmonics (default 2).
        num_basis: number of radial basis functions (default 16).
        max_radius: end of the radial basis (default ``10.0``).
        radial_hidden: width of the radial MLP (default 32).
        memory_limit: optional cap (bytes) on the estimated memory of a forward+backward pass.

    Shapes:
        - graph.pos, graph.vel: :math:`(N, 3)`; graph.h: :math:`(N, c)`; graph.edge_attr: :math:`(E, d)`
        - output ``pos``: :math:`(N, 3)`

    Example:
        >>> import torch
        >>> from eghn.data import Graph
        >>> from eghn.models.tfn import TFN
        >>> torch.manual_seed(0) and None
        >>> ring = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
        >>> g = Graph(pos=torch.randn(4, 3), vel=torch.randn(4, 3), edge_index=ring)
        >>> model = TFN(node_dim=1, hidden=4, layers=2, lmax=1)
        >>> tuple(model(g).pos.shape)
        (4, 3)
    """

    def __init__(self, node_dim: int, edge_dim: int = 0, local_edge_dim: int = 0, hidden: int = 32,
                 layers: int = 4, act: str = "silu", lmax: int = 2, num_basis: int = 16,
                 max_radius: float = 10.0, radial_hidden: int = 32, memory_limit: float | None = None) -> None:
        super().__init__()
        if lmax < 1 or layers < 1:
            raise ValueError(f"TFN needs lmax >= 1 and layers >= 1, got lmax={lmax}, layers={layers}")
        self.node_dim, self.edge_dim = node_dim, edge_dim
        self.num_basis, self.max_radius, self.memory_limit = num_basis, max_radius, memory_limit
        with e3nn_build_options():
            self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
            irreps = o3.Irreps(f"{node_dim}x0e + 1x1o")
            self.irreps_in = irreps
            self.convs, self.self_int, self.gates = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
            for k in range(layers):
                last = k == layers - 1
                if last:
                    target, gate = o3.Irreps("1x1o"), None
                else:
                    gate = make_gate(hidden, lmax, act)
                    target = gate.irreps_in
                self.convs.append(PointConvolution(irreps, self.irreps_sh, target, num_basis + edge_dim,
                                                   radial_hidden, act))
                self.self_int.append(o3.Linear(irreps, target))
                self.gates.append(gate if gate is not None else nn.Identity())
                irreps = target if gate is None else gate.irreps_out

    def _forward_impl(self, graph: Graph) -> torch.Tensor:
        recv, send = graph.edge_index
        sh, scalars = edge_geometry(graph, self.irreps_sh, self.num_basis, self.max_radius)
        f = torch.cat([graph.h, graph.vel], -1)
        for conv, self_int, gate in zip(self.convs, self.self_int, self.gates):
            msg = scatter_mean(conv.edge_tp(f[send], sh, scalars), recv, graph.num_nodes)
            f = gate(self_int(f) + conv.out_linear(msg))
        return graph.pos + f

    def forward(self, graph: Graph) -> ModelOutput:
        check_input(graph, need_vel=True, node_dim=self.node_dim, edge_dim=self.edge_dim, model=self)
        if graph.dim != 3:
            raise ValueError(f"TFN is defined for 3-dimensional systems only (spherical harmonics), "
                             f"got n = {graph.dim}")
        return run_guarded(self, "TFN", graph)

