"""SE(3)-Transformer baseline (Fuchs et al., 2020), built on e3nn."""

from __future__ import annotations

import math

import torch
from e3nn import o3
from torch import Tensor, nn

from ..data.graph import Graph
from ._common import scatter_softmax, scatter_sum
from ._equivariant import MemoryEstimator, PointConvolution, e3nn_build_options, edge_geometry, make_gate, run_guarded
from .base import ModelOutput, check_input
from .registry import register

__all__ = ["EquivariantAttention", "SE3Transformer"]


def _head_index(irreps: o3.Irreps, heads: int) -> Tensor:
    """Head id of every component of an ``irreps`` feature vector (channels split evenly)."""
    ids = []
    for mul, ir in irreps:
        if mul % heads:
            raise ValueError(f"{heads} heads do not divide the {mul} channels of {ir} in {irreps}")
        per = mul // heads
        ids += [u // per for u in range(mul) for _ in range(ir.dim)]
    return torch.tensor(ids, dtype=torch.long)


class EquivariantAttention(nn.Module):
    r"""One SE(3)-equivariant graph self-attention block.

    .. math::
        q_i = W_Q f_i, \quad k_{ij} = \mathrm{TP}_K(f_j, Y(\hat x_{ij}); R_K(r_{ij})), \quad
        v_{ij} = \mathrm{TP}_V(f_j, Y(\hat x_{ij}); R_V(r_{ij})) \\
        \alpha_{ij}^{(h)} = \operatorname{softmax}_{j \in \mathcal N(i)}
            \frac{\langle q_i^{(h)}, k_{ij}^{(h)}\rangle}{\sqrt{d_h}}, \qquad
        f_i' = W_{self} f_i + \sum_j \alpha_{ij}^{(h)} v_{ij}^{(h)}

    Keys and values are TFN point convolutions (:class:`PointConvolution`); the score is the
    dot product of equal irreps, invariant because e3nn's representations are orthogonal; the
    softmax runs over each receiver's edges by scatter. Heads split the channels of every degree.

    Shapes:
        - f: :math:`(N, \text{irreps\_in.dim})`, sh: :math:`(E, \cdot)`, scalars: :math:`(E, s)`
        - output: :math:`(N, \text{irreps\_value.dim})`

    Example:
        >>> import torch
        >>> from e3nn import o3
        >>> from eghn.models.se3_transformer import EquivariantAttention
        >>> irreps_in, irreps_sh = o3.Irreps("2x0e + 1x1o"), o3.Irreps.spherical_harmonics(1)
        >>> hidden = o3.Irreps("4x0e + 4x1o")
        >>> att = EquivariantAttention(irreps_in, irreps_sh, hidden, hidden, scalar_dim=3, radial_hidden=8,
        ...                            act="silu", heads=2)
        >>> edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
        >>> out = att(torch.randn(3, irreps_in.dim), torch.randn(3, irreps_sh.dim), torch.randn(3, 3), edge_index)
        >>> tuple(out.shape)  # 4 scalars and 4 vectors per node
        (3, 16)
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_key: o3.Irreps,
                 irreps_value: o3.Irreps, scalar_dim: int, radial_hidden: int, act: str, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.key_conv = PointConvolution(irreps_in, irreps_sh, irreps_key, scalar_dim, radial_hidden, act)
        self.value_conv = PointConvolution(irreps_in, irreps_sh, irreps_value, scalar_dim, radial_hidden, act)
        self.query = o3.Linear(irreps_in, irreps_key)
        self.self_int = o3.Linear(irreps_in, irreps_value)
        self.register_buffer("key_head", _head_index(o3.Irreps(irreps_key), heads), persistent=False)
        self.register_buffer("value_head", _head_index(o3.Irreps(irreps_value), heads), persistent=False)
        self.scale = 1.0 / math.sqrt(o3.Irreps(irreps_key).dim / heads)

    def forward(self, f: Tensor, sh: Tensor, scalars: Tensor, edge_index: Tensor) -> Tensor:
        recv, send = edge_index
        n_nodes = f.shape[0]
        fs = f[send]
        k = self.key_conv.out_linear(self.key_conv.edge_tp(fs, sh, scalars))
        v = self.value_conv.out_linear(self.value_conv.edge_tp(fs, sh, scalars))
        qk = self.query(f)[recv] * k  # (E, key_dim)
        scores = qk.new_zeros(qk.shape[0], self.heads).index_add_(1, self.key_head, qk) * self.scale
        alpha = scatter_softmax(scores, recv, n_nodes)  # (E, H)
        return self.self_int(f) + scatter_sum(alpha[:, self.value_head] * v, recv, n_nodes)


@register("se3_transformer")
class SE3Transformer(MemoryEstimator, nn.Module):
    r"""SE(3)-Transformer: equivariant graph attention on spherical-harmonic features.

    Node features are e3nn irreps (input ``c x 0e`` for ``h`` and ``1 x 1o`` for the velocity).
    ``layers - 1`` blocks of :class:`EquivariantAttention` followed by an e3nn ``Gate`` update the
    features with ``hidden`` channels of every degree ``0..lmax`` (parity :math:`(-1)^l`); a
    final attention block outputs one ``1o`` vector per node, added to the position. Parity is
    tracked, so the model is E(3)-equivariant *including reflections*; ``n = 3`` only.

    Documented simplifications with respect to Fuchs et al.: the radial filters of keys and
    values are channel-wise (TFN-style ``uvu`` paths followed by a channel-mixing linear map)
    instead of one radial function per (input, output) channel pair, which cuts per-edge memory
    from :math:`O(c^2)` to :math:`O(c)`; the nonlinearity is e3nn's gate instead of the norm
    nonlinearity; there is no layer normalisation.

    Defaults (N-body setting quoted by the EGHN paper): degree ``lmax = 3``, width 64 channels
    per degree, 4 layers, 1 attention head (our choice), SiLU; radial MLP of width 32 on 16
    Gaussians over ``[0, max_radius = 10]``. At these defaults the model is heavy (see
    :meth:`estimate_memory`); ``memory_limit`` (bytes) makes it refuse inputs whose estimate is
    larger, and real out-of-memory failures are re-raised as
    :class:`~eghn.models._common.ModelOutOfMemoryError` with the estimate.

    Args:
        node_dim: number of invariant node features ``c``.
        edge_dim: number of global-edge attributes ``d``.
        local_edge_dim: ignored.
        hidden: channels per degree (default 64).
        layers: number of attention blocks (default 4).
        act: scalar activation (default ``"silu"``).
        lmax: highest degree (default 3).
        heads: attention heads (default 1); must divide ``hidden``.
        num_basis, max_radius, radial_hidden: radial basis and MLP (defaults ``16``, ``10.0``, ``32``).
        memory_limit: optional cap (bytes) on the estimated memory of a forward+backward pass.

    Shapes:
        - graph.pos, graph.vel: :math:`(N, 3)`; graph.h: :math:`(N, c)`; graph.edge_attr: :math:`(E, d)`
        - output ``pos``: :math:`(N, 3)`

    Example:
        >>> import torch
        >>> from eghn.data import Graph
        >>> from eghn.models.se3_transformer import SE3Transformer
        >>> torch.manual_seed(0) and None
        >>> ring = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
        >>> g = Graph(pos=torch.randn(4, 3), vel=torch.randn(4, 3), edge_index=ring)
        >>> model = SE3Transformer(node_dim=1, hidden=4, layers=2, lmax=1, heads=2)
        >>> tuple(model(g).pos.shape)
        (4, 3)
    """

    def __init__(self, node_dim: int, edge_dim: int = 0, local_edge_dim: int = 0, hidden: int = 64,
                 layers: int = 4, act: str = "silu", lmax: int = 3, heads: int = 1, num_basis: int = 16,
                 max_radius: float = 10.0, radial_hidden: int = 32, memory_limit: float | None = None) -> None:
        super().__init__()
        if lmax < 1 or layers < 1:
            raise ValueError(f"SE3Transformer needs lmax >= 1 and layers >= 1, got lmax={lmax}, layers={layers}")
        self.node_dim, self.edge_dim = node_dim, edge_dim
        self.num_basis, self.max_radius, self.memory_limit = num_basis, max_radius, memory_limit
        with e3nn_build_options():
            self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
            irreps = o3.Irreps(f"{node_dim}x0e + 1x1o")
            irreps_key = o3.Irreps([(hidden, (l, (-1) ** l)) for l in range(lmax + 1)])
            self.blocks, self.gates = nn.ModuleList(), nn.ModuleList()
            for k in range(layers):
                last = k == layers - 1
                gate = None if last else make_gate(hidden, lmax, act)
                value = o3.Irreps("1x1o") if gate is None else gate.irreps_in
                self.blocks.append(EquivariantAttention(irreps, self.irreps_sh, irreps_key, value,
                                                        num_basis + edge_dim, radial_hidden, act,
                                                        1 if last else heads))
                self.gates.append(nn.Identity() if gate is None else gate)
                irreps = value if gate is None else gate.irreps_out

    def _forward_impl(self, graph: Graph) -> Tensor:
        sh, scalars = edge_geometry(graph, self.irreps_sh, self.num_basis, self.max_radius)
        f = torch.cat([graph.h, graph.vel], -1)
        for block, gate in zip(self.blocks, self.gates):
            f = gate(block(f, sh, scalars, graph.edge_index))
        return graph.pos + f

    def forward(self, graph: Graph) -> ModelOutput:
        check_input(graph, need_vel=True, node_dim=self.node_dim, edge_dim=self.edge_dim, model=self)
        if graph.dim != 3:
            raise ValueError(f"SE3Transformer is defined for 3-dimensional systems only (spherical "
                             f"harmonics), got n = {graph.dim}")
        return run_guarded(self, "SE3Transformer", graph)
