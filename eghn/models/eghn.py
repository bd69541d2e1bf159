r"""EGHN: the equivariant graph U-Net of paper Section 3.4."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..data.graph import Graph
from ..nn.connectivity import connectivity_loss_dense
from ..nn.egnn import EGNNLayer
from ..nn.epool import EPool
from ..nn.eunpool import EUnPool
from ..nn.plain_mp import PlainMPLayer
from ..nn.pool_ops import dense_to_edges, pool_adjacency
from .base import ModelOutput, check_input
from .registry import register

__all__ = ["EGHN"]


def _empty_edges(device: torch.device) -> Tensor:
    return torch.empty(2, 0, dtype=torch.long, device=device)


class _OnZ(nn.Module):
    """Give a layer with the ``(x, h, edge_index, edge_attr, vel)`` signature the EMMP one,
    ``(Z, h, edge_index, batch, num_graphs, edge_attr)``, so it can replace E-Pool's EMMP."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, Z: Tensor, h: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int,
                edge_attr: Tensor | None = None) -> tuple[Tensor, Tensor]:
        v = Z[..., 1] if Z.shape[-1] > 1 else None
        x, h, v = self.layer(Z[..., 0], h, edge_index, edge_attr, v)
        return (torch.stack([x, v], -1) if v is not None else x.unsqueeze(-1)), h


@register("eghn")
class EGHN(nn.Module):
    r"""Equivariant Graph Hierarchy-based Network (Han et al., NeurIPS 2022).

    An equivariant U-Net over ``L = len(clusters)`` pooling levels. The input system carries
    :math:`Z_i = [x_i, v_i] \in \mathbb{R}^{n \times 2}` (or :math:`[x_i]` with
    ``velocity=False``) and invariant features :math:`h_i`.

    * Encoder, for level :math:`l = 1..L`: ``enc_layers`` external EMMPs in the relaxed
      EGNN form (:class:`~eghn.nn.EGNNLayer`, velocity variant) on :math:`\mathcal{A}_{global}`,
      then :class:`~eghn.nn.EPool` (``pool_layers`` internal EMMPs on :math:`\mathcal{A}_{local}`)
      pooling into :math:`K_l` clusters per graph.
    * Between levels both adjacencies are pooled, :math:`S_l^\top A S_l`, and become dense
      weighted graphs between the clusters of each graph; row-normalised weights are the edge
      features of the next level.
    * Decoder, for :math:`l = L..1`: ``dec_layers`` external EMMPs at level :math:`l`, then
      :class:`~eghn.nn.EUnPool` with the :math:`S_l` and the skip connection of level
      :math:`l - 1`.

    The prediction is the position channel of the final :math:`Z^{out}`. The auxiliary record
    holds the score matrices, the connectivity loss :math:`\sum_l \lVert\mathrm{rownorm}
    (S_l^\top A^{local}_{l-1} S_l) - I\rVert_F^2` (mean over graphs) and ``reg_loss`` =
    ``lam`` times it, so that the training loss is Eq. 16.

    Args:
        node_dim: number of invariant node features of the input graphs.
        edge_dim: number of attributes of the global edges.
        local_edge_dim: number of attributes of the local edges.
        hidden: width of all invariant features.
        clusters: :math:`K_1 \geq K_2 \geq \dots`, one entry per level.
        enc_layers: external EMMPs per encoder block, before each pooling.
        pool_layers: internal EMMPs of each E-Pool (on :math:`\mathcal{A}_{local}`), which
            compute the cluster scores.
        dec_layers: external EMMPs per decoder block, before each unpooling.
        lam: weight :math:`\lambda` of the connectivity loss.
        act: activation of every MLP: ``"silu"`` (default), ``"relu"``, ``"gelu"``,
            ``"tanh"`` or ``"leaky_relu"``.
        velocity: use velocities as a second vector channel.
        normalize: Frobenius-normalise the Gram invariants of EMMP and E-UnPool.
        layers: if given, overrides ``enc_layers``, ``pool_layers`` and ``dec_layers``.
        emmp: ablations of paper Table 4. ``"matrix"`` (default): the paper's model;
            ``"egnn"``: E-Pool's internal EMMP replaced by the radial EGNN form;
            ``"mpnn"``: every EMMP (internal and external) replaced by
            :class:`~eghn.nn.PlainMPLayer`, which is *not* equivariant.
        adjacency: ``"paper"`` (external EMMPs on :math:`\mathcal{A}_{global}`, internal on
            :math:`\mathcal{A}_{local}`), ``"global"`` or ``"local"`` (one edge set for all).
        hierarchy: ``False`` is the "no hierarchy" ablation, :math:`s_i = 1`: a single cluster.
        dim: spatial dimension, needed only by ``emmp="mpnn"`` (its layers see raw coordinates).

    Shapes:
        - input: a :class:`~eghn.data.Graph` with ``N`` nodes in ``n`` dimensions
        - output: :class:`~eghn.models.ModelOutput` with ``pos`` :math:`(N, n)` and ``aux``
          ``{"scores": [(N, K_1), (G K_1, K_2), ...], "connectivity_loss": scalar,
          "reg_loss": scalar}``

    Example:
        >>> import torch
        >>> from eghn.data import Graph
        >>> from eghn.models import EGHN
        >>> torch.manual_seed(0) and None
        >>> ring = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
        >>> g = Graph(pos=torch.randn(6, 3), vel=torch.randn(6, 3), edge_index=ring,
        ...           local_edge_index=ring)
        >>> out = EGHN(node_dim=1, edge_dim=0, hidden=16, clusters=[3, 2])(g)
        >>> tuple(out.pos.shape), [tuple(s.shape) for s in out.aux["scores"]]
        ((6, 3), [(6, 3), (3, 2)])
    """

    def __init__(self, node_dim: int, edge_dim: int = 0, local_edge_dim: int = 0, *, hidden: int = 64,
                 clusters: Sequence[int] = (5, 3), enc_layers: int = 2, pool_layers: int = 2,
                 dec_layers: int = 2, lam: float = 1.0, act: str = "silu", velocity: bool = True,
                 normalize: bool = True, layers: int | None = None, emmp: str = "matrix",
                 adjacency: str = "paper", hierarchy: bool = True, dim: int = 3) -> None:
        super().__init__()
        if emmp not in ("matrix", "egnn", "mpnn"):
            raise ValueError(f"emmp must be 'matrix', 'egnn' or 'mpnn', got {emmp!r}")
        if adjacency not in ("paper", "global", "local"):
            raise ValueError(f"adjacency must be 'paper', 'global' or 'local', got {adjacency!r}")
        clusters = [int(k) for k in ([clusters] if isinstance(clusters, int) else clusters)]
        if not hierarchy:
            clusters = [1]
        if not clusters or any(k < 1 for k in clusters):
            raise ValueError(f"clusters must be a non-empty list of positive integers, got {clusters}")
        if any(b > a for a, b in itertools.pairwise(clusters)):
            raise ValueError(f"cluster counts must not increase from level to level, got {clusters}")
        if layers is not None:
            enc_layers = pool_layers = dec_layers = layers
        self.node_dim, self.edge_dim, self.local_edge_dim = node_dim, edge_dim, local_edge_dim
        self.clusters, self.lam, self.velocity = clusters, lam, velocity
        self.emmp, self.adjacency = emmp, adjacency
        if emmp == "mpnn":
            self.symmetries = ("permutation",)
        m = 2 if velocity else 1
        n_levels = len(clusters)
        # edge feature sizes per level: the input's, then one row-normalised weight
        g_dims = [edge_dim] + [1] * n_levels
        l_dims = [local_edge_dim] + [1] * n_levels
        ext_dims = l_dims if adjacency == "local" else g_dims  # edges of the external EMMPs
        int_dims = g_dims if adjacency == "global" else l_dims  # edges of E-Pool's EMMPs

        def radial(e_dim: int) -> nn.Module:
            if emmp == "mpnn":
                return PlainMPLayer(hidden, e_dim, dim=dim, velocity=velocity, act=act)
            return EGNNLayer(hidden, e_dim, velocity=velocity, act=act)

        def block(n: int, e_dim: int) -> nn.ModuleList:
            return nn.ModuleList(radial(e_dim) for _ in range(n))

        def pool_layers_for(lv: int) -> list[nn.Module] | None:
            if emmp == "matrix":
                return None
            return [_OnZ(radial(int_dims[lv])) for _ in range(pool_layers)]

        self.embed = nn.Linear(node_dim, hidden)
        self.encoders = nn.ModuleList(block(enc_layers, ext_dims[lv]) for lv in range(n_levels))
        self.pools = nn.ModuleList(
            EPool(m, hidden, hidden, clusters[lv], int_dims[lv], layers=pool_layers, normalize=normalize, act=act,
                  message_layers=pool_layers_for(lv))
            for lv in range(n_levels)
        )
        self.decoders = nn.ModuleList(block(dec_layers, ext_dims[lv + 1]) for lv in range(n_levels))
        self.unpools = nn.ModuleList(EUnPool(m, hidden, hidden, normalize=normalize, act=act)
                                     for _ in range(n_levels))

    @classmethod
    def published(cls, node_dim: int, edge_dim: int = 0, local_edge_dim: int = 0, clusters: int = 5,
                  **kwargs) -> EGHN:
        """The configuration of the authors' released code: one level, 3 interaction / 3 pooling /
        1 decoder layers, width 64, position and velocity channels."""
        kw = dict(hidden=64, enc_layers=3, pool_layers=3, dec_layers=1, lam=1.0, velocity=True)
        kw.update(kwargs)
        return cls(node_dim, edge_dim, local_edge_dim, clusters=[clusters], **kw)

    @staticmethod
    def _run(block: nn.ModuleList, Z: Tensor, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None
             ) -> tuple[Tensor, Tensor]:
        x, v = Z[..., 0], (Z[..., 1] if Z.shape[-1] > 1 else None)
        for layer in block:
            x, h, v = layer(x, h, edge_index, edge_attr, v)
        return (torch.stack([x, v], -1) if v is not None else x.unsqueeze(-1)), h

    def forward(self, graph: Graph) -> ModelOutput:
        """Predict every particle's position from ``graph``.

        Args:
            graph: one system or a batch (:func:`~eghn.data.collate`) with ``pos``, ``vel``
                (unless ``velocity=False``), ``h`` of width ``node_dim`` and the edges; it is
                validated first (:meth:`~eghn.data.Graph.validate`).

        Returns:
            :class:`~eghn.models.ModelOutput`: ``pos`` :math:`(N, n)`, the predicted positions,
            and ``aux`` with the score matrices of every level, ``connectivity_loss`` and
            ``reg_loss`` (see the class docstring).
        """
        g = check_input(graph, need_vel=self.velocity, node_dim=self.node_dim, edge_dim=self.edge_dim)
        if self.local_edge_dim and g.local_edge_attr is None:
            raise ValueError(f"this model expects {self.local_edge_dim} local edge features, got none")
        sizes = g.nodes_per_graph()
        if int(sizes.min()) < self.clusters[0]:
            raise ValueError(f"EGHN with K = {self.clusters[0]} clusters needs at least {self.clusters[0]} "
                             f"nodes in every graph; the smallest graph has {int(sizes.min())}")
        G = g.num_graphs
        Z = torch.stack([g.pos, g.vel], -1) if self.velocity else g.pos.unsqueeze(-1)
        h = self.embed(g.h)
        batch = g.batch
        ei, ea, gw = g.edge_index, g.edge_attr, None
        lei = g.local_edge_index if g.local_edge_index is not None else _empty_edges(g.pos.device)
        lea = g.local_edge_attr if self.local_edge_dim else None
        lw = None
        skips, scores, conn, level_edges = [], [], [], []
        for enc, pool in zip(self.encoders, self.pools):
            ext = (lei, lea) if self.adjacency == "local" else (ei, ea)
            Z, h = self._run(enc, Z, h, *ext)
            skips.append((Z, h, batch))
            p = pool(Z, h, *((ei, batch, G, ea) if self.adjacency == "global" else (lei, batch, G, lea)))
            A_loc = pool_adjacency(p.scores, lei, batch, G, lw)
            A_glob = pool_adjacency(p.scores, ei, batch, G, gw)
            conn.append(connectivity_loss_dense(A_loc))
            scores.append(p.scores)
            ei, ea = dense_to_edges(A_glob)
            lei, lea = dense_to_edges(A_loc)
            gw, lw = ea[:, 0], lea[:, 0]
            level_edges.append((lei, lea) if self.adjacency == "local" else (ei, ea))
            Z, h, batch = p.Z, p.h, p.batch
        for lv in reversed(range(len(self.clusters))):
            Z, h = self._run(self.decoders[lv], Z, h, *level_edges[lv])
            Z_low, h_low, batch_low = skips[lv]
            Z, h = self.unpools[lv](Z_low, h_low, Z, h, scores[lv], batch_low, G)
        conn_loss = torch.stack(conn).sum()
        return ModelOutput(pos=Z[..., 0], aux={"scores": scores, "connectivity_loss": conn_loss,
                                                "reg_loss": self.lam * conn_loss})
