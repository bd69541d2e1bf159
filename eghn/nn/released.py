r"""The pieces in which the authors' released EGHN code differs from the paper's equations.

:class:`~eghn.models.EGHN` uses them when built with ``egnn_form``, ``pool_form``,
``cluster_graph``, ``unpool_form`` or ``conn_loss`` set to ``"released"`` (all at once:
:meth:`EGHN.released <eghn.models.EGHN.released>`). :class:`ReleasedPool` and
:class:`ReleasedUnPool` have the call conventions of :class:`~eghn.nn.EPool` and
:class:`~eghn.nn.EUnPool`, so that EGHN calls either form the same way. Every function here is
written from the mathematics of the released model, which ``docs/fidelity.rst`` sets beside the
paper's equations:

* **EGNN layers** (:func:`released_egnn_layer`): no residual on :math:`h`, the aggregated
  coordinate update clamped to :math:`\pm 100`, the input velocity in every layer of a block
  and a biased coordinate head.

* **Pooling network** (:class:`ReleasedPool`): ``layers`` message layers
  (:class:`EdgeGramLayer`) on the local edges over three vectors per particle,
  :math:`[x_i - \bar x,\; x'_i - x_i,\; v_i]` (input position about the graph mean, the
  displacement made by the encoder block, input velocity), then a score network
  :math:`\mathrm{Linear}(c, 8c)\text{-}\tanh\text{-}\mathrm{Linear}(8c, K)` and a softmax. Only
  the scores are used: the clusters average the *input* positions and velocities
  (:func:`reduce_released`), not the vectors of the pooling network.
* **Cluster graph** (:func:`dense_to_full_edges`): every ordered pair of clusters of a graph,
  self-loops included, with the raw entry of :math:`S^\top A S` as its one edge feature.
* **Unpooling** (:class:`ReleasedUnPool`): the particle moves with its clusters,
  :math:`x^{out}_i = \sum_k s_{ik} X'_k + \sum_c \alpha_{ic} u_{ic}` with the vectors
  :math:`u_i = [\sum_k s_{ik}(X'_k - X_k),\; x_i - \sum_k s_{ik} X_k,\; v_i - \sum_k s_{ik}
  V_k,\; x'_i - x_i]` and coefficients :math:`\alpha_i` from an MLP of their normalised Gram
  matrix, :math:`h_i` and :math:`\sum_k s_{ik} h^{high}_k` (:class:`GramScalarNet`).
* **Connectivity loss** (:func:`connectivity_loss_released`): :math:`\lVert \mathrm{rownorm}_2
  (S^\top A S) - I\rVert_F`, rows scaled to unit Euclidean norm, Frobenius norm not squared.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .egnn import EGNNLayer
from .epool import PoolOutput
from .mlp import MLP
from .pool_ops import cluster_batch, reduce_clusters, unpool
from .scatter import gather, scatter_mean, scatter_sum

__all__ = [
    "EdgeGramLayer",
    "GramScalarNet",
    "ReleasedPool",
    "ReleasedUnPool",
    "connectivity_loss_released",
    "dense_to_full_edges",
    "reduce_released",
    "released_egnn_layer",
]


def _normalized_gram(A: Tensor, B: Tensor) -> Tensor:
    r""":math:`A^\top B` per row, flattened and scaled to unit Euclidean norm: ``(E, n, a), (E, n, b) -> (E, a b)``."""
    return F.normalize(torch.bmm(A.transpose(1, 2), B).flatten(1), p=2, dim=-1)


class EdgeGramLayer(nn.Module):
    r"""A message layer of the released code's pooling network.

    .. math::
        m_{ij} &= \phi\big(\mathrm{n}(Z_j^\top Z_i),\, h_i,\, h_j,\, e_{ij}\big) \\
        Z'_i &= Z_i + \tfrac{1}{\deg i} \textstyle\sum_j Z_j\, \psi(m_{ij}) \\
        h'_i &= h_i + \phi_h\big(h_i, \textstyle\sum_j m_{ij}\big)

    :math:`\mathrm{n}` flattens the :math:`m \times m` matrix and scales it to unit norm;
    :math:`\psi(m_{ij})` is an :math:`m \times m` matrix. ``Z`` holds translation-invariant
    vectors (the caller centres the positions), so no centring is done here.

    Shapes:
        - Z: :math:`(N, n, m)`, h: :math:`(N, c)`, edge_index: :math:`(2, E)`, edge_attr: :math:`(E, d)`
        - output: ``(Z', h')`` with the same shapes

    Example:
        >>> import torch
        >>> from eghn.nn.released import EdgeGramLayer
        >>> layer = EdgeGramLayer(channels=3, hidden=8)
        >>> U, h = torch.randn(4, 3, 3), torch.randn(4, 8)
        >>> U2, h2 = layer(U, h, torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]]))
        >>> tuple(U2.shape), tuple(h2.shape)
        ((4, 3, 3), (4, 8))
    """

    def __init__(self, channels: int, hidden: int, edge_dim: int = 0, act: str = "silu") -> None:
        super().__init__()
        self.channels, self.edge_dim = channels, edge_dim
        self.phi = MLP(channels * channels + 2 * hidden + edge_dim, hidden, hidden, layers=2, act=act, act_last=True)
        self.to_H = MLP(hidden, hidden, channels * channels, layers=2, act=act)
        self.phi_h = MLP(2 * hidden, hidden, hidden, layers=2, act=act)

    def forward(self, Z: Tensor, h: Tensor, edge_index: Tensor, batch: Tensor | None = None,
                num_graphs: int | None = None, edge_attr: Tensor | None = None) -> tuple[Tensor, Tensor]:
        i, j = edge_index
        n_nodes, m = Z.shape[0], self.channels
        Zi, Zj = gather(Z, i), gather(Z, j)
        parts = [_normalized_gram(Zj, Zi), gather(h, i), gather(h, j)]
        if self.edge_dim:
            if edge_attr is None:
                raise ValueError(f"this layer expects {self.edge_dim} edge features, got none")
            parts.append(edge_attr)
        msg = self.phi(torch.cat(parts, -1))
        M = torch.bmm(Zj, self.to_H(msg).view(-1, m, m))
        Z = Z + scatter_mean(M, i, n_nodes)
        h = h + self.phi_h(torch.cat([h, scatter_sum(msg, i, n_nodes)], -1))
        return Z, h


class ReleasedPool(nn.Module):
    r"""Pooling of the released code, with the call convention of :class:`~eghn.nn.EPool`.

    The scores look at the block that precedes the pooling: from its input :math:`Z^{in} =
    [x, v]` and output :math:`Z = [x', v']`, the vectors :math:`U_i = [x_i - \bar x,\;
    x'_i - x_i,\; v_i]` (``v`` only with velocities) pass through :class:`EdgeGramLayer` s
    with :math:`h`; then

    .. math::
        S &= \mathrm{softmax}\big(\mathrm{Linear}(8c, K)(\tanh(\mathrm{Linear}(c, 8c)(h'))\big) \\
        Z^{high}_k &= \frac{\sum_i s_{ik} Z^{in}_i}{\sum_i s_{ik}}, \quad
        h^{high}_k = \frac{\sum_i s_{ik} h_i}{\sum_i s_{ik}}

    i.e. the clusters average the block's *input* positions and velocities and its output
    features. ``mass_floor=None`` normalises the weights in log space as E-Pool does
    (:func:`~eghn.nn.pool_ops.cluster_weights`); a number divides by
    :math:`\max(\sum_i s_{ik}, \text{mass\_floor})` as the released code does
    (:func:`reduce_released`).

    Args:
        channels: vectors per particle the message layers see (3 with velocities, else 2).
        hidden: width :math:`c` of :math:`h`.
        clusters: number of clusters :math:`K`.
        edge_dim: attributes of the edges.
        layers: number of :class:`EdgeGramLayer` s.
        width: factor of the hidden width of the score network.
        mass_floor: ``None`` or the floor of the cluster masses.

    Shapes:
        - Z: :math:`(N, n, m)` (the block's output), h: :math:`(N, c)`, edge_index: :math:`(2, E)`,
          batch: :math:`(N,)`, edge_attr: :math:`(E, d)`, Z_in: :math:`(N, n, m)` (the block's input)
        - output: :class:`~eghn.nn.PoolOutput` with scores :math:`(N, K)`, Z :math:`(G K, n, m)`,
          h :math:`(G K, c)`

    Example:
        >>> import torch
        >>> from eghn.nn.released import ReleasedPool
        >>> torch.manual_seed(0) and None
        >>> pool = ReleasedPool(channels=3, hidden=8, clusters=2, layers=1)
        >>> Z_in, Z = torch.randn(6, 3, 2), torch.randn(6, 3, 2)  # the block's input and output [x, v]
        >>> ring = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
        >>> out = pool(Z, torch.randn(6, 8), ring, torch.zeros(6, dtype=torch.long), 1, Z_in=Z_in)
        >>> tuple(out.scores.shape), tuple(out.Z.shape), tuple(out.h.shape)
        ((6, 2), (2, 3, 2), (2, 8))
    """

    def __init__(self, channels: int, hidden: int, clusters: int, edge_dim: int = 0, *, layers: int = 3,
                 act: str = "silu", width: int = 8, mass_floor: float | None = None) -> None:
        super().__init__()
        if clusters < 1:
            raise ValueError(f"pooling needs at least one cluster, got K = {clusters}")
        if mass_floor is not None and not mass_floor > 0:
            raise ValueError(f"mass_floor must be None or positive, got {mass_floor!r}")
        self.clusters, self.mass_floor = clusters, mass_floor
        self.layers = nn.ModuleList(EdgeGramLayer(channels, hidden, edge_dim, act) for _ in range(layers))
        self.score = nn.Sequential(nn.Linear(hidden, width * hidden), nn.Tanh(), nn.Linear(width * hidden, clusters))

    def log_scores(self, U: Tensor, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        r""":math:`\log S` from the vectors ``U`` (``log_softmax`` of the logits; finite where :math:`S`
        underflows)."""
        for layer in self.layers:
            U, h = layer(U, h, edge_index, edge_attr=edge_attr)
        return torch.log_softmax(self.score(h), dim=-1)

    def forward(self, Z: Tensor, h: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int,
                edge_attr: Tensor | None = None, *, Z_in: Tensor | None = None) -> PoolOutput:
        if Z_in is None:
            raise ValueError("ReleasedPool needs the input of the preceding block (Z_in=)")
        x_in = Z_in[..., 0]
        vecs = [x_in - gather(scatter_mean(x_in, batch, num_graphs), batch), Z[..., 0] - x_in]
        if Z_in.shape[-1] > 1:
            vecs.append(Z_in[..., 1])
        log_S = self.log_scores(torch.stack(vecs, -1), h, edge_index, edge_attr)
        S = log_S.exp()
        if self.mass_floor is None:
            Z_high = reduce_clusters(S, Z_in, batch, num_graphs, log_scores=log_S)
            h_high = reduce_clusters(S, h, batch, num_graphs, log_scores=log_S)
        else:
            Z_high = reduce_released(S, Z_in, batch, num_graphs, eps=self.mass_floor)
            h_high = reduce_released(S, h, batch, num_graphs, eps=self.mass_floor)
        return PoolOutput(scores=S, log_scores=log_S, Z=Z_high, h=h_high,
                          batch=cluster_batch(num_graphs, self.clusters, Z.device), num_graphs=num_graphs)


def reduce_released(S: Tensor, x: Tensor, batch: Tensor, num_graphs: int, eps: float = 1e-5) -> Tensor:
    r"""Cluster means :math:`\sum_i s_{ik} x_i / \max(\sum_i s_{ik}, \epsilon)` per graph (the
    released code's floor :math:`\epsilon = 10^{-5}`).

    Shapes:
        - S: :math:`(N, K)`, x: :math:`(N, *)`, batch: :math:`(N,)` -> :math:`(G K, *)`

    Example:
        >>> import torch
        >>> from eghn.nn.released import reduce_released
        >>> S = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # the second cluster gets no mass
        >>> reduce_released(S, torch.tensor([[1.0], [3.0]]), torch.zeros(2, dtype=torch.long), 1).flatten().tolist()
        [2.0, 0.0]
    """
    n_nodes, k = S.shape
    flat = x.reshape(n_nodes, -1)
    total = scatter_sum(S.unsqueeze(-1) * flat.unsqueeze(1), batch, num_graphs)  # (G, K, F)
    mass = scatter_sum(S, batch, num_graphs).clamp_min(eps)  # (G, K)
    return (total / mass.unsqueeze(-1)).reshape(num_graphs * k, *x.shape[1:])


def dense_to_full_edges(A: Tensor) -> tuple[Tensor, Tensor]:
    r"""All ordered pairs :math:`(k, l)` of the clusters of each graph, self-loops included,
    with the raw weight :math:`A_{kl}` as edge feature.

    Shapes:
        - A: :math:`(G, K, K)` -> edge_index :math:`(2, G K^2)`, edge_attr :math:`(G K^2, 1)`

    Example:
        >>> import torch
        >>> from eghn.nn.released import dense_to_full_edges
        >>> edge_index, edge_attr = dense_to_full_edges(torch.tensor([[[2.0, 1.0], [1.0, 3.0]]]))
        >>> edge_index.tolist(), edge_attr.flatten().tolist()
        ([[0, 0, 1, 1], [0, 1, 0, 1]], [2.0, 1.0, 1.0, 3.0])
    """
    g, k, _ = A.shape
    kk = torch.arange(k, device=A.device)
    base = (torch.arange(g, device=A.device) * k).view(-1, 1)
    rows = (base + kk.repeat_interleave(k)).flatten()
    cols = (base + kk.repeat(k)).flatten()
    return torch.stack([rows, cols]), A.reshape(-1, 1)


def connectivity_loss_released(A_high: Tensor) -> Tensor:
    r""":math:`\lVert \mathrm{rownorm}_2(A) - I\rVert_F`, mean over graphs: rows scaled to unit
    Euclidean norm, the Frobenius norm *not* squared (the released code's cut loss).

    Shapes:
        - A_high: :math:`(G, K, K)` -> scalar

    Example:
        >>> import torch
        >>> from eghn.nn.released import connectivity_loss_released
        >>> float(connectivity_loss_released(torch.eye(3).unsqueeze(0)))
        0.0
    """
    rows = F.normalize(A_high, p=2, dim=-1)
    eye = torch.eye(A_high.shape[-1], dtype=A_high.dtype, device=A_high.device)
    return torch.linalg.matrix_norm(rows - eye).mean()


class GramScalarNet(nn.Module):
    r"""An O(n)-equivariant map of ``vectors`` vectors and ``scalars`` invariants to one vector
    and ``hidden`` invariants:

    .. math::
        y = \phi\big(\mathrm{n}(U^\top U),\, s\big), \qquad u^{out} = U \psi(y), \qquad s^{out} = \chi(y)

    with :math:`U \in \mathbb{R}^{n \times \text{vectors}}` and :math:`\mathrm{n}` the
    flattening scaled to unit norm.

    Shapes:
        - U: :math:`(N, n, \text{vectors})`, s: :math:`(N, \text{scalars})`
        - output: ``(u, s')`` of shapes :math:`(N, n)` and :math:`(N, \text{hidden})`

    Example:
        >>> import torch
        >>> from eghn.nn.released import GramScalarNet
        >>> net = GramScalarNet(vectors=4, scalars=16, hidden=8)
        >>> u, s = net(torch.randn(5, 3, 4), torch.randn(5, 16))
        >>> tuple(u.shape), tuple(s.shape)
        ((5, 3), (5, 8))
    """

    def __init__(self, vectors: int, scalars: int, hidden: int, act: str = "silu") -> None:
        super().__init__()
        self.phi = MLP(vectors * vectors + scalars, hidden, hidden, layers=2, act=act, act_last=True)
        self.to_coef = MLP(hidden, hidden, vectors, layers=2, act=act)
        self.to_h = MLP(hidden, hidden, hidden, layers=2, act=act)

    def forward(self, U: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        y = self.phi(torch.cat([_normalized_gram(U, U), s], -1))
        return torch.bmm(U, self.to_coef(y).unsqueeze(-1)).squeeze(-1), self.to_h(y)


class ReleasedUnPool(nn.Module):
    r"""The released code's unpooling (see the module docstring), with the call convention of
    :class:`~eghn.nn.EUnPool`.

    With the low-level block's input :math:`Z^{in} = [x, v]` (``Z_in``) and output :math:`x'`
    (``Z_low``), and the cluster-level block's input :math:`[X, V]` (``Z_high_in``: the pooled
    clusters at the top level, the output of the unpooling above at the others) and output
    :math:`X'` (``Z_high``):

    .. math::
        x^{out}_i = \textstyle\sum_k s_{ik} X'_k + \sum_c \alpha_{ic} u_{ic}, \qquad
        Z^{out}_i = [x^{out}_i, v_i]

    with :math:`u_i = [\sum_k s_{ik}(X'_k - X_k),\; x_i - \sum_k s_{ik} X_k,\; v_i - \sum_k
    s_{ik} V_k,\; x'_i - x_i]` (no velocity terms without velocities) and :math:`\alpha_i`,
    :math:`h^{out}_i` from :class:`GramScalarNet` s of the Gram matrix of :math:`u_i`,
    :math:`h^{low}_i` and :math:`\sum_k s_{ik} h^{high}_k`. The output keeps the input
    velocity :math:`v_i`.

    With ``layers > 1`` the :class:`GramScalarNet` s are stacked: layer :math:`l` sees the
    vectors of layer :math:`l-1` plus the vector it returned and its invariants; the last
    vector is the correction.

    Args:
        velocity: the systems carry velocities (four vectors per particle, else three).
        hidden: width of :math:`h`.
        layers: number of :class:`GramScalarNet` s.

    Shapes:
        - Z_low, Z_in: :math:`(N, n, m)`, h_low: :math:`(N, c)`, Z_high, Z_high_in:
          :math:`(G K, n, m)`, h_high: :math:`(G K, c)`, S: :math:`(N, K)`, batch: :math:`(N,)`
          (:math:`m = 2` with velocities, else 1)
        - output: ``(Z_out, h_out)`` of shapes :math:`(N, n, m)` and :math:`(N, c)`

    Example:
        >>> import torch
        >>> from eghn.nn.released import ReleasedUnPool
        >>> torch.manual_seed(0) and None
        >>> unpool = ReleasedUnPool(hidden=8)
        >>> S = torch.softmax(torch.randn(6, 2), -1)
        >>> Z_out, h_out = unpool(torch.randn(6, 3, 2), torch.randn(6, 8), torch.randn(2, 3, 2), torch.randn(2, 8), S,
        ...                       torch.zeros(6, dtype=torch.long), 1, Z_in=torch.randn(6, 3, 2),
        ...                       Z_high_in=torch.randn(2, 3, 2))
        >>> tuple(Z_out.shape), tuple(h_out.shape)
        ((6, 3, 2), (6, 8))
    """

    def __init__(self, hidden: int, *, velocity: bool = True, layers: int = 1, act: str = "silu") -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"the unpooling needs at least one layer, got {layers}")
        n_vec = 4 if velocity else 3
        self.velocity = velocity
        self.nets = nn.ModuleList(GramScalarNet(n_vec + k, 2 * hidden if k == 0 else hidden, hidden, act)
                                  for k in range(layers))

    def positions(self, x_low: Tensor, v_low: Tensor | None, nf_low: Tensor, h_low: Tensor, X_high: Tensor,
                  V_high: Tensor | None, X_new: Tensor, h_new: Tensor, S: Tensor, batch: Tensor
                  ) -> tuple[Tensor, Tensor]:
        r"""``(x_out, h_out)`` from the input positions ``x_low`` and velocities ``v_low`` of the
        particles, their displacement ``nf_low`` by the block, their features ``h_low``, the
        clusters' pooled positions ``X_high`` and velocities ``V_high`` and their positions
        ``X_new`` and features ``h_new`` after the cluster-level block.

        Shapes:
            - x_low, nf_low: :math:`(N, n)`, v_low: :math:`(N, n)` or ``None``, h_low: :math:`(N, c)`,
              X_high, X_new: :math:`(G K, n)`, V_high: :math:`(G K, n)` or ``None``,
              h_new: :math:`(G K, c)`, S: :math:`(N, K)`
            - output: :math:`(N, n)` and :math:`(N, c)`
        """
        vecs = [unpool(S, X_new - X_high, batch), x_low - unpool(S, X_high, batch)]
        if self.velocity:
            if v_low is None or V_high is None:
                raise ValueError("ReleasedUnPool(velocity=True) needs velocities")
            vecs.append(v_low - unpool(S, V_high, batch))
        vecs.append(nf_low)
        s = torch.cat([h_low, unpool(S, h_new, batch)], -1)
        for net in self.nets:
            u, s = net(torch.stack(vecs, -1), s)
            vecs.append(u)
        return unpool(S, X_new, batch) + u, s

    def forward(self, Z_low: Tensor, h_low: Tensor, Z_high: Tensor, h_high: Tensor, S: Tensor, batch: Tensor,
                num_graphs: int, *, Z_in: Tensor | None = None, Z_high_in: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        if Z_in is None or Z_high_in is None:
            raise ValueError("ReleasedUnPool needs the inputs of the low-level block (Z_in=) and of the "
                             "cluster-level block (Z_high_in=)")
        x_in = Z_in[..., 0]
        v_in = Z_in[..., 1] if self.velocity else None
        x, h = self.positions(x_in, v_in, Z_low[..., 0] - x_in, h_low, Z_high_in[..., 0],
                              Z_high_in[..., 1] if self.velocity else None, Z_high[..., 0], h_high, S, batch)
        return (torch.stack([x, v_in], -1) if v_in is not None else x.unsqueeze(-1)), h


def released_egnn_layer(hidden: int, edge_dim: int = 0, *, velocity: bool = True, act: str = "silu"
                        ) -> EGNNLayer:
    r"""An EGNN layer as the released code has it: :class:`~eghn.nn.EGNNLayer` without the
    residual on :math:`h`, the aggregated coordinate update clamped to :math:`\pm 100`, the input
    velocity passed on unchanged (every layer of a block sees it) and a biased coordinate head:

    .. math::
        x'_i = x_i + \phi_v(h_i) v_i + \mathrm{clamp}_{100}\big(\tfrac{1}{\deg i}
        \textstyle\sum_j (x_i - x_j)\phi_x(m_{ij})\big), \quad v'_i = v_i, \quad
        h'_i = \phi_h\big(h_i, \textstyle\sum_j m_{ij}\big)

    Shapes:
        - as :class:`~eghn.nn.EGNNLayer`

    Example:
        >>> from eghn.nn.released import released_egnn_layer
        >>> layer = released_egnn_layer(8)
        >>> layer.residual, layer.clamp, layer.clamp_mode, layer.velocity_update
        (False, 100.0, 'sum', False)
    """
    return EGNNLayer(hidden, edge_dim, velocity=velocity, act=act, residual=False, clamp=100.0, clamp_mode="sum",
                     velocity_update=False, coord_bias=True)
