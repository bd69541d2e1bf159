r"""EGHN: the equivariant graph U-Net of paper Section 3.4."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..data.graph import Graph
from ..data.units import rms_extent
from ..nn.connectivity import connectivity_loss_dense
from ..nn.egnn import EGNNLayer
from ..nn.epool import EPool
from ..nn.eunpool import EUnPool
from ..nn.plain_mp import PlainMPLayer
from ..nn.pool_ops import cluster_batch, dense_to_edges, pool_adjacency, reduce_clusters
from ..nn.released import (
    ReleasedPool,
    ReleasedUnPool,
    connectivity_loss_released,
    dense_to_full_edges,
    reduce_released,
)
from ..nn.scatter import gather, scatter_mean
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


def _nonfinite_message(g: Graph, model: nn.Module) -> str:
    """Why EGHN's output is not finite, as far as can be told: weights, or coordinate scale."""
    bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        return (f"EGHN produced non-finite positions (NaN/inf): {len(bad)} parameter tensors are not finite "
                f"(first: {bad[0]}); the weights were corrupted, e.g. by a diverged training step")
    with torch.no_grad():
        extent = rms_extent(g)
    return (f"EGHN produced non-finite positions (NaN/inf) in {str(g.pos.dtype).removeprefix('torch.')}. The input "
            f"systems have an RMS extent of {extent:.3g}: EGHN's EGNN layers feed raw squared distances into "
            "their edge MLPs, so coordinates far from unit scale overflow. Standardise lengths first: "
            "eghn.data.LengthScaled(dataset, eghn.data.length_scale(train_dataset)) (what `eghn train` does, "
            "data.length_scale = 'auto'), and multiply predictions by that scale.")


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

    The prediction is the position channel of the final :math:`Z^{out}`; a NaN or infinity in
    it raises ``FloatingPointError`` naming the likely cause (corrupted weights, or coordinates
    far from unit scale: standardise them, see :mod:`eghn.data.units`). The auxiliary record
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
        egnn_form, pool_form, cluster_graph, unpool_form, conn_loss: ``"paper"`` (default: the
            paper's equations) or ``"released"`` (the authors' released code; see
            :mod:`eghn.nn.released` and the Fidelity page of the documentation). ``egnn_form``:
            EGNN layers without the residual on :math:`h`, the aggregated coordinate update
            clamped to :math:`\pm 100`, the input velocity in every layer, a biased coordinate
            head, and a Linear on :math:`h` at the start of every block. ``pool_form``: scores
            from :class:`~eghn.nn.released.ReleasedPool`, clusters averaging the block's
            *input* positions and velocities. ``cluster_graph``: all cluster pairs with
            self-loops, raw :math:`S^\top A S` as edge feature. ``unpool_form``:
            :class:`~eghn.nn.released.ReleasedUnPool`. ``conn_loss``: rows L2-normalised,
            Frobenius norm not squared.
        unpool_layers: stacked networks of the released unpooling (``unpool_form="released"``).
        batch_max_features: indices of input node features divided by their maximum over the
            batch before the embedding (the released code divides the height that way).
        coord_message: ``"paper"`` (default) or ``"bounded"``: the per-edge coordinate message
            of every EGNN layer (:class:`~eghn.nn.EGNNLayer`, ``coord_message``). ``"bounded"``
            is a stabiliser, not the paper's equation (see the Training stability page): it
            caps the distance a layer can move a particle or cluster, which breaks the cubic
            growth of the paper form that makes deep hierarchies diverge.
        pool_message: ``"paper"`` (default) or ``"bounded"``: the matrix messages of E-Pool's
            internal EMMPs (:class:`~eghn.nn.EMMP`, ``message_form``). ``"bounded"`` is a
            stabiliser, not the paper's equation: it caps the move of a particle by one message,
            which in the paper's form grows with :math:`H` without limit and is where the
            divergence of deep hierarchies starts (the Training stability page).
        mass_floor: with ``pool_form="released"``, ``None`` (default) normalises the cluster
            weights in log space like E-Pool (:func:`~eghn.nn.pool_ops.cluster_weights`: affine
            for any scores); a number divides by :math:`\max(\sum_i s_{ik}, \text{mass\_floor})`
            as the released code does with ``1e-5``, which reproduces it bit for bit but breaks
            translation equivariance for a cluster whose total score falls below the floor.

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
                 adjacency: str = "paper", hierarchy: bool = True, dim: int = 3, egnn_form: str = "paper",
                 pool_form: str = "paper", cluster_graph: str = "paper", unpool_form: str = "paper",
                 conn_loss: str = "paper", unpool_layers: int = 1,
                 batch_max_features: Sequence[int] = (), mass_floor: float | None = None,
                 coord_message: str = "paper", pool_message: str = "paper") -> None:
        super().__init__()
        forms = dict(egnn_form=egnn_form, pool_form=pool_form, cluster_graph=cluster_graph,
                     unpool_form=unpool_form, conn_loss=conn_loss)
        for key, val in forms.items():
            if val not in ("paper", "released"):
                raise ValueError(f"{key} must be 'paper' or 'released', got {val!r}")
        if egnn_form == "released" and emmp == "mpnn":
            raise ValueError("egnn_form='released' needs EGNN layers; emmp='mpnn' replaces them")
        if pool_form == "released" and emmp == "egnn":
            raise ValueError("emmp='egnn' replaces E-Pool's EMMPs, which pool_form='released' does not use")
        if coord_message not in ("paper", "bounded"):
            raise ValueError(f"coord_message must be 'paper' or 'bounded', got {coord_message!r}")
        if coord_message != "paper" and (egnn_form == "released" or emmp == "mpnn"):
            raise ValueError("coord_message='bounded' applies to the paper-form EGNN layers only")
        if pool_message not in ("paper", "bounded"):
            raise ValueError(f"pool_message must be 'paper' or 'bounded', got {pool_message!r}")
        if pool_message != "paper" and (pool_form == "released" or emmp != "matrix"):
            raise ValueError("pool_message='bounded' applies to the paper-form E-Pool's matrix EMMPs only")
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
        self.egnn_form, self.pool_form, self.cluster_graph = egnn_form, pool_form, cluster_graph
        self.unpool_form, self.conn_loss = unpool_form, conn_loss
        self.coord_message, self.pool_message = coord_message, pool_message
        if mass_floor is not None and not mass_floor > 0:
            raise ValueError(f"mass_floor must be None or positive, got {mass_floor!r}")
        self.mass_floor = mass_floor
        self.batch_max_features = tuple(int(k) for k in batch_max_features)
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
            if egnn_form == "released":
                return EGNNLayer(hidden, e_dim, velocity=velocity, act=act, residual=False, clamp=100.0,
                                 clamp_mode="sum", velocity_update=False, coord_bias=True)
            return EGNNLayer(hidden, e_dim, velocity=velocity, act=act, coord_message=coord_message)

        def block(n: int, e_dim: int) -> nn.ModuleList:
            return nn.ModuleList(radial(e_dim) for _ in range(n))

        def pool_layers_for(lv: int) -> list[nn.Module] | None:
            if emmp == "matrix":
                return None
            return [_OnZ(radial(int_dims[lv])) for _ in range(pool_layers)]

        def pool(lv: int) -> nn.Module:
            if pool_form == "released":  # vectors [x - mean x, x' - x(, v)]
                return ReleasedPool(m + 1, hidden, clusters[lv], int_dims[lv], layers=pool_layers, act=act)
            return EPool(m, hidden, hidden, clusters[lv], int_dims[lv], layers=pool_layers, normalize=normalize,
                         act=act, message_layers=pool_layers_for(lv), message_form=pool_message)

        def unpool(lv: int) -> nn.Module:
            if unpool_form == "released":
                return ReleasedUnPool(hidden, velocity=velocity, layers=unpool_layers, act=act)
            return EUnPool(m, hidden, hidden, normalize=normalize, act=act)

        self.embed = nn.Linear(node_dim, hidden)
        if egnn_form == "released":  # a Linear on h at the start of every block
            self.enc_linear = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(n_levels))
        self.encoders = nn.ModuleList(block(enc_layers, ext_dims[lv]) for lv in range(n_levels))
        self.pools = nn.ModuleList(pool(lv) for lv in range(n_levels))
        if egnn_form == "released":
            self.dec_linear = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(n_levels))
        self.decoders = nn.ModuleList(block(dec_layers, ext_dims[lv + 1]) for lv in range(n_levels))
        self.unpools = nn.ModuleList(unpool(lv) for lv in range(n_levels))

    @classmethod
    def single_level(cls, node_dim: int, edge_dim: int = 0, local_edge_dim: int = 0, clusters: int = 5,
                     **kwargs) -> EGHN:
        """The paper's equations with one pooling level, width 64, position and velocity
        channels, 3 interaction and 3 pooling layers (as the released code) and 1 layer at cluster
        level (the released code has 3 there; its one "decoder layer" is its unpooling network).
        This is *not* the authors' released model (that is :meth:`released`; on mocap this one has
        252,305 parameters, the released model 362,032)."""
        kw = dict(hidden=64, enc_layers=3, pool_layers=3, dec_layers=1, lam=1.0, velocity=True)
        kw.update(kwargs)
        return cls(node_dim, edge_dim, local_edge_dim, clusters=[clusters], **kw)

    @classmethod
    def published(cls, *args, **kwargs) -> EGHN:
        """Deprecated name of :meth:`single_level` (which is not the authors' configuration)."""
        warnings.warn("EGHN.published is deprecated: it is not the authors' released model. Use "
                      "EGHN.single_level (same model) or EGHN.released (the authors' architecture)",
                      DeprecationWarning, stacklevel=2)
        return cls.single_level(*args, **kwargs)

    @classmethod
    def released(cls, node_dim: int, edge_dim: int = 0, local_edge_dim: int = 0, clusters: int = 5, *,
                 hidden: int = 64, layers: int = 3, pool_layers: int = 3, unpool_layers: int = 1,
                 **kwargs) -> EGHN:
        """The architecture of the authors' released code (github ``hanjq17/EGHN``), every
        difference from the paper's equations switched to ``"released"``: one level of ``clusters``
        clusters, ``layers`` EGNN layers in the encoder block and at cluster level, ``pool_layers``
        layers in the pooling network, ``unpool_layers`` in the unpooling. With the released mocap
        inputs (``MocapDataset(features="released")``: node features ``[|v|, y / 10]``, global and
        local edge features with squared distances) it has the authors' 362,032 parameters at
        width 64; ``batch_max_features=[1]`` divides the height by its batch maximum as their
        training script does (the shipped configs set it). Load weights saved by their code with
        :func:`eghn.models.load_authors_state_dict`."""
        kw = dict(hidden=hidden, enc_layers=layers, pool_layers=pool_layers, dec_layers=layers, lam=1.0,
                  velocity=True, egnn_form="released", pool_form="released", cluster_graph="released",
                  unpool_form="released", conn_loss="released", unpool_layers=unpool_layers)
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
        g = check_input(graph, need_vel=self.velocity, node_dim=self.node_dim, edge_dim=self.edge_dim, model=self)
        if self.local_edge_dim and g.local_edge_attr is None:
            raise ValueError(f"this model expects {self.local_edge_dim} local edge features, got none")
        sizes = g.nodes_per_graph()
        if int(sizes.min()) < self.clusters[0]:
            raise ValueError(f"EGHN with K = {self.clusters[0]} clusters needs at least {self.clusters[0]} "
                             f"nodes in every graph; the smallest graph has {int(sizes.min())}")
        G = g.num_graphs
        Z = torch.stack([g.pos, g.vel], -1) if self.velocity else g.pos.unsqueeze(-1)
        h = g.h
        if self.batch_max_features:
            cols = list(self.batch_max_features)
            h = h.clone()
            h[:, cols] = h[:, cols] / h[:, cols].amax(0)
        h = self.embed(h)
        released_egnn = self.egnn_form == "released"
        batch = g.batch
        ei, ea, gw = g.edge_index, g.edge_attr, None
        lei = g.local_edge_index if g.local_edge_index is not None else _empty_edges(g.pos.device)
        lea = g.local_edge_attr if self.local_edge_dim else None
        lw = None
        skips, scores, conn, level_edges = [], [], [], []
        for lv, (enc, pool) in enumerate(zip(self.encoders, self.pools)):
            ext = (lei, lea) if self.adjacency == "local" else (ei, ea)
            internal = (ei, ea) if self.adjacency == "global" else (lei, lea)
            Z_in = Z
            if released_egnn:
                h = self.enc_linear[lv](h)
            Z, h = self._run(enc, Z, h, *ext)
            if self.pool_form == "released":
                x_in = Z_in[..., 0]
                vecs = [x_in - gather(scatter_mean(x_in, batch, G), batch), Z[..., 0] - x_in]
                if self.velocity:
                    vecs.append(Z_in[..., 1])
                log_S = pool.log_scores(torch.stack(vecs, -1), h, internal[0], internal[1])
                S = log_S.exp()
                if self.mass_floor is None:
                    Z_high = reduce_clusters(S, Z_in, batch, G, log_scores=log_S)
                    h_high = reduce_clusters(S, h, batch, G, log_scores=log_S)
                else:
                    Z_high = reduce_released(S, Z_in, batch, G, eps=self.mass_floor)
                    h_high = reduce_released(S, h, batch, G, eps=self.mass_floor)
                batch_high = cluster_batch(G, self.clusters[lv], g.pos.device)
            else:
                p = pool(Z, h, internal[0], batch, G, internal[1])
                S, Z_high, h_high, batch_high = p.scores, p.Z, p.h, p.batch
            skips.append((Z_in, Z, h, batch))
            A_loc = pool_adjacency(S, lei, batch, G, lw)
            A_glob = pool_adjacency(S, ei, batch, G, gw)
            conn.append(connectivity_loss_released(A_loc) if self.conn_loss == "released"
                        else connectivity_loss_dense(A_loc))
            scores.append(S)
            to_edges = dense_to_full_edges if self.cluster_graph == "released" else dense_to_edges
            ei, ea = to_edges(A_glob)
            lei, lea = to_edges(A_loc)
            gw, lw = ea[:, 0], lea[:, 0]
            level_edges.append((lei, lea) if self.adjacency == "local" else (ei, ea))
            Z, h, batch = Z_high, h_high, batch_high
        for lv in reversed(range(len(self.clusters))):
            Z_top = Z
            if released_egnn:
                h = self.dec_linear[lv](h)
            Z, h = self._run(self.decoders[lv], Z, h, *level_edges[lv])
            Z_in, Z_low, h_low, batch_low = skips[lv]
            if self.unpool_form == "released":
                v_in = Z_in[..., 1] if self.velocity else None
                x, h = self.unpools[lv](Z_in[..., 0], v_in, Z_low[..., 0] - Z_in[..., 0], h_low, Z_top[..., 0],
                                        Z_top[..., 1] if self.velocity else None, Z[..., 0], h, scores[lv],
                                        batch_low)
                Z = torch.stack([x, v_in], -1) if self.velocity else x.unsqueeze(-1)
            else:
                Z, h = self.unpools[lv](Z_low, h_low, Z, h, scores[lv], batch_low, G)
        conn_loss = torch.stack(conn).sum()
        pos = Z[..., 0]
        if not bool(torch.isfinite(pos).all()):
            raise FloatingPointError(_nonfinite_message(g, self))
        return ModelOutput(pos=pos, aux={"scores": scores, "connectivity_loss": conn_loss,
                                                "reg_loss": self.lam * conn_loss})
