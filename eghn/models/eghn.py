r"""EGHN: the equivariant graph U-Net of paper Section 3.4."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor, nn

from ..data.graph import Graph
from ..data.units import scale_advice
from ..nn.connectivity import connectivity_loss_dense
from ..nn.egnn import EGNNLayer
from ..nn.epool import EPool
from ..nn.eunpool import EUnPool
from ..nn.plain_mp import PlainMPLayer
from ..nn.pool_ops import dense_to_edges, log_cluster_mass, pool_adjacency
from ..nn.radial_block import RadialBlock
from ..nn.released import (
    ReleasedPool,
    ReleasedUnPool,
    connectivity_loss_released,
    dense_to_full_edges,
    released_egnn_layer,
)
from ._checks import check_clusters, check_int, check_number
from .base import ModelOutput, check_input
from .registry import register

__all__ = ["EGHN"]


def _empty_edges(device: torch.device) -> Tensor:
    return torch.empty(2, 0, dtype=torch.long, device=device)


def _nonfinite_message(g: Graph, model: nn.Module) -> str:
    """Why EGHN's output is not finite, as far as can be told: weights, or coordinate scale."""
    bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        return (f"EGHN produced non-finite positions (NaN/inf): {len(bad)} parameter tensors are not finite "
                f"(first: {bad[0]}); the weights were corrupted, e.g. by a diverged training step")
    advice = scale_advice(g)
    dtype = str(g.pos.dtype).removeprefix("torch.")
    if advice:
        return f"EGHN produced non-finite positions (NaN/inf) in {dtype}: {advice}"
    return (f"EGHN produced non-finite positions (NaN/inf) in {dtype} from finite weights and inputs at "
            "unit scale: an activation overflowed (eghn.train.diagnose.first_nonfinite names the first "
            "non-finite module)")


_OLD_POOL_LAYER = re.compile(r"(pools\.\d+\.emmps\.\d+\.)layer\.")


def _rename_old_keys(state_dict, prefix, *_args) -> None:
    """Weights saved before E-Pool's ablation layers became one-layer blocks (``...emmps.K.layer.*``,
    eghn 0.1.0) load under their new names (``...emmps.K.0.*``)."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        new = prefix + _OLD_POOL_LAYER.sub(r"\g<1>0.", key[len(prefix):])
        if new != key:
            state_dict[new] = state_dict.pop(key)


def _empty_mass(S: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    r""":math:`\frac{1}{G}\sum_{g,k}\max(0, 1 - \sum_{i \in g} s_{ik})` of one level's scores
    ``S`` :math:`(N, K)` (rows of graph ``batch[i]``): the score mass missing from clusters that
    hold less than one particle's worth."""
    mass = S.new_zeros(num_graphs, S.shape[1]).index_add(0, batch, S)
    return torch.relu(1.0 - mass).sum(1).mean()


def _empty_log_mass(log_S: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    r""":math:`\frac{1}{G}\sum_{g,k}\max\big(0, -\log \sum_{i \in g} s_{ik}\big)` of one level's
    log-scores ``log_S`` :math:`(N, K)`: zero exactly where :func:`_empty_mass` is, but its
    gradient on the logit :math:`z_{ik}` is :math:`-w_{ik}(1 - s_{ik})` with :math:`w_{ik}` the
    cluster weight of Eq. 9 (:func:`~eghn.nn.pool_ops.cluster_weights`), which does not vanish
    when the rows of ``S`` saturate: an emptied cluster pulls back the particles that are
    closest to it. The log of the mass is :func:`~eghn.nn.pool_ops.log_cluster_mass`, which
    never underflows."""
    return torch.relu(-log_cluster_mass(log_S, batch, num_graphs)).sum(1).mean()


#: occupancy form -> its term of one level's pooling output, chosen once in ``EGHN.__init__``
_OCCUPANCY_TERMS = {
    "mass": lambda p, batch, num_graphs: _empty_mass(p.scores, batch, num_graphs),
    "log": lambda p, batch, num_graphs: _empty_log_mass(p.log_scores, batch, num_graphs),
}


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

    The model is built from parts that share call conventions, chosen once by the constructor:
    blocks are :class:`~eghn.nn.RadialBlock` s (of :class:`~eghn.nn.EGNNLayer`,
    :func:`~eghn.nn.released.released_egnn_layer` or :class:`~eghn.nn.PlainMPLayer`), called
    ``(Z, h, edge_index, batch, num_graphs, edge_attr)`` like E-Pool and EMMP; the pooling is
    :class:`~eghn.nn.EPool` or :class:`~eghn.nn.released.ReleasedPool`, the unpooling
    :class:`~eghn.nn.EUnPool` or :class:`~eghn.nn.released.ReleasedUnPool`.

    The prediction is the position channel of the final :math:`Z^{out}`; a NaN or infinity in
    it raises ``FloatingPointError`` naming the likely cause (corrupted weights, or coordinates
    far from unit scale: standardise them, see :mod:`eghn.data.units`). The auxiliary record
    holds the score matrices, the connectivity loss :math:`\sum_l \lVert\mathrm{rownorm}
    (S_l^\top A^{local}_{l-1} S_l) - I\rVert_F^2` (mean over graphs) and ``reg_loss`` =
    ``lam`` times it, so that the training loss is Eq. 16.

    .. rubric:: Released forms

    Five options switch one part of the model from the paper's equations (``"paper"``, the
    default of each) to the authors' released code (``"released"``; see
    :mod:`eghn.nn.released` and the Fidelity page of the documentation).
    :meth:`EGHN.released` sets all five.

    .. list-table::
       :header-rows: 1

       * - option
         - what ``"released"`` changes
       * - ``egnn_form``
         - EGNN layers without the residual on :math:`h`, the aggregated coordinate update
           clamped to :math:`\pm 100`, the input velocity in every layer, a biased coordinate
           head, and a Linear on :math:`h` at the start of every block
       * - ``pool_form``
         - scores from :class:`~eghn.nn.released.ReleasedPool`, clusters averaging the
           block's *input* positions and velocities
       * - ``cluster_graph``
         - all cluster pairs with self-loops, raw :math:`S^\top A S` as edge feature
       * - ``unpool_form``
         - :class:`~eghn.nn.released.ReleasedUnPool`
       * - ``conn_loss``
         - rows L2-normalised, Frobenius norm not squared

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
        egnn_form: form of the EGNN layers, ``"paper"`` (default) or ``"released"``: see
            *Released forms* above.
        pool_form: form of the pooling, ``"paper"`` or ``"released"`` (*Released forms*).
        cluster_graph: graph between clusters, ``"paper"`` or ``"released"`` (*Released forms*).
        unpool_form: form of the unpooling, ``"paper"`` or ``"released"`` (*Released forms*).
        conn_loss: form of the connectivity loss, ``"paper"`` or ``"released"`` (*Released forms*).
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
        velocity_update: ``True`` (default, the EGNN-vel equations): every EGNN layer returns
            its step :math:`v'_i = \phi_v(h_i) v_i + \Delta_i` as the next layer's velocity.
            ``False`` (a stabiliser, not the paper's equation, and what the EGNN and EGHN codes
            do): every layer of a block gates the block's input velocity, so the unbounded gate
            :math:`\phi_v` is not multiplied from layer to layer (the Training stability page).
        occupancy_weight: weight :math:`\mu` of the occupancy term
            :math:`\mu \sum_l \frac{1}{G}\sum_{g,k} \max\big(0,\, 1 - \sum_{i \in g} s^{(l)}_{ik}\big)`
            added to ``reg_loss`` (default 0: the paper's objective). A stabiliser, not the
            paper's equation: it is zero while every cluster of every graph holds a score mass
            of at least one particle, and otherwise pushes score mass into the emptiest
            clusters, against the collapse of a level onto fewer clusters than :math:`K` (the
            Training stability page).
        occupancy_form: ``"mass"`` (default: the hinge above, on the score mass) or ``"log"``:
            the hinge on its logarithm,
            :math:`\max\big(0,\, -\log \sum_{i \in g} s^{(l)}_{ik}\big)`, zero for the same
            scores, whose gradient does not vanish once the score rows saturate (the mass
            hinge's gradient on a logit carries a factor :math:`s_{ik}(1 - s_{ik})`, the log
            hinge's a factor :math:`1 - s_{ik}`). Used only when ``occupancy_weight > 0``.
        score_bound: ``None`` (default: the paper's Eq. 8) or a bound :math:`c` on E-Pool's score
            logits (:class:`~eghn.nn.EPool`, ``score_bound``): a stabiliser against saturated
            scores, which pass no gradient back to a cluster that has emptied.
        mass_floor: with ``pool_form="released"``, ``None`` (default) normalises the cluster
            weights in log space like E-Pool (:func:`~eghn.nn.pool_ops.cluster_weights`: affine
            for any scores); a number divides by :math:`\max(\sum_i s_{ik}, \text{mass\_floor})`
            as the released code does with ``1e-5``, which reproduces it bit for bit but breaks
            translation equivariance for a cluster whose total score falls below the floor.

    Shapes:
        - input: a :class:`~eghn.data.Graph` with ``N`` nodes in ``n`` dimensions
        - output: :class:`~eghn.models.ModelOutput` with ``pos`` :math:`(N, n)` and ``aux``
          ``{"scores": [(N, K_1), (G K_1, K_2), ...], "connectivity_loss": scalar,
          "reg_loss": scalar}``, and ``"occupancy_loss": scalar`` when ``occupancy_weight > 0``

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
                 coord_message: str = "paper", pool_message: str = "paper",
                 velocity_update: bool = True, occupancy_weight: float = 0.0,
                 occupancy_form: str = "mass", score_bound: float | None = None) -> None:
        super().__init__()
        self._register_load_state_dict_pre_hook(_rename_old_keys)
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
        if not isinstance(velocity_update, bool):
            raise ValueError(f"velocity_update must be true or false, got {velocity_update!r}")
        if not velocity_update and (egnn_form == "released" or emmp == "mpnn" or not velocity):
            raise ValueError("velocity_update=False applies to the paper-form EGNN layers with velocities only")
        if score_bound is not None and pool_form == "released":
            raise ValueError("score_bound applies to the paper-form E-Pool only")
        if pool_message not in ("paper", "bounded"):
            raise ValueError(f"pool_message must be 'paper' or 'bounded', got {pool_message!r}")
        if pool_message != "paper" and (pool_form == "released" or emmp != "matrix"):
            raise ValueError("pool_message='bounded' applies to the paper-form E-Pool's matrix EMMPs only")
        if emmp not in ("matrix", "egnn", "mpnn"):
            raise ValueError(f"emmp must be 'matrix', 'egnn' or 'mpnn', got {emmp!r}")
        if adjacency not in ("paper", "global", "local"):
            raise ValueError(f"adjacency must be 'paper', 'global' or 'local', got {adjacency!r}")
        clusters = check_clusters(clusters)
        if not hierarchy:
            clusters = [1]
        node_dim, edge_dim, local_edge_dim = (check_int("node_dim", node_dim, 0), check_int("edge_dim", edge_dim, 0),
                                              check_int("local_edge_dim", local_edge_dim, 0))
        hidden, dim = check_int("hidden", hidden), check_int("dim", dim)
        if layers is not None:
            layers = check_int("layers", layers)
        enc_layers, pool_layers = check_int("enc_layers", enc_layers), check_int("pool_layers", pool_layers)
        dec_layers, unpool_layers = check_int("dec_layers", dec_layers), check_int("unpool_layers", unpool_layers)
        lam = check_number("lam", lam)
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
        self.velocity_update = velocity_update
        self.occupancy_weight = check_number("occupancy_weight", occupancy_weight)
        if self.occupancy_weight < 0:
            raise ValueError(f"occupancy_weight must be >= 0, got {occupancy_weight!r}")
        if occupancy_form not in _OCCUPANCY_TERMS:
            raise ValueError(f"occupancy_form must be 'mass' or 'log', got {occupancy_form!r}")
        self.occupancy_form = occupancy_form
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
        # which edge set the external EMMPs (blocks) and E-Pool's internal EMMPs run on
        self._ext_edges = "local" if adjacency == "local" else "global"
        self._int_edges = "global" if adjacency == "global" else "local"
        ext_dims = l_dims if adjacency == "local" else g_dims
        int_dims = g_dims if adjacency == "global" else l_dims

        # the parts, chosen once: every block, pooling and unpooling below has the same call
        # convention whichever form it takes, so forward tests no option
        if emmp == "mpnn":
            layer = partial(PlainMPLayer, hidden, dim=dim, velocity=velocity, act=act)
        elif egnn_form == "released":
            layer = partial(released_egnn_layer, hidden, velocity=velocity, act=act)
        else:
            layer = partial(EGNNLayer, hidden, velocity=velocity, act=act, coord_message=coord_message,
                            velocity_update=velocity_update)
        if pool_form == "released":  # vectors [x - mean x, x' - x(, v)]
            def pool(lv: int) -> nn.Module:
                return ReleasedPool(m + 1, hidden, clusters[lv], int_dims[lv], layers=pool_layers, act=act,
                                    mass_floor=mass_floor)
        else:
            def pool(lv: int) -> nn.Module:
                inner = None if emmp == "matrix" else [RadialBlock([layer(int_dims[lv])]) for _ in range(pool_layers)]
                return EPool(m, hidden, hidden, clusters[lv], int_dims[lv], layers=pool_layers, normalize=normalize,
                             act=act, message_layers=inner, message_form=pool_message, score_bound=score_bound)
        if unpool_form == "released":
            unpool = partial(ReleasedUnPool, hidden, velocity=velocity, layers=unpool_layers, act=act)
        else:
            unpool = partial(EUnPool, m, hidden, hidden, normalize=normalize, act=act)
        # the released code has a Linear on h at the start of every block
        block_linear = partial(nn.Linear, hidden, hidden) if egnn_form == "released" else nn.Identity
        self._connectivity = connectivity_loss_released if conn_loss == "released" else connectivity_loss_dense
        self._cluster_edges = dense_to_full_edges if cluster_graph == "released" else dense_to_edges

        # built in this order (seeded initialisation depends on it)
        self.embed = nn.Linear(node_dim, hidden)
        self.enc_linear = nn.ModuleList(block_linear() for _ in range(n_levels))
        self.encoders = nn.ModuleList(RadialBlock(layer(ext_dims[lv]) for _ in range(enc_layers))
                                      for lv in range(n_levels))
        self.pools = nn.ModuleList(pool(lv) for lv in range(n_levels))
        self.dec_linear = nn.ModuleList(block_linear() for _ in range(n_levels))
        self.decoders = nn.ModuleList(RadialBlock(layer(ext_dims[lv + 1]) for _ in range(dec_layers))
                                      for lv in range(n_levels))
        self.unpools = nn.ModuleList(unpool() for _ in range(n_levels))

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

    def validate_input(self, graph: Graph) -> Graph:
        """The checks of :meth:`forward` on its input (``ValueError`` with a clear message)."""
        g = check_input(graph, need_vel=self.velocity, node_dim=self.node_dim, edge_dim=self.edge_dim, model=self)
        if self.local_edge_dim and g.local_edge_attr is None:
            raise ValueError(f"this model expects {self.local_edge_dim} local edge features, got none")
        sizes = g.nodes_per_graph()
        if int(sizes.min()) < self.clusters[0]:
            raise ValueError(f"EGHN with K = {self.clusters[0]} clusters needs at least {self.clusters[0]} "
                             f"nodes in every graph; the smallest graph has {int(sizes.min())}")
        return g

    def check_output(self, graph: Graph, pos: Tensor) -> None:
        """``FloatingPointError`` (with the likely cause) if the predicted positions are not finite."""
        if not bool(torch.isfinite(pos).all()):
            raise FloatingPointError(_nonfinite_message(graph, self))

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
        # under torch.compile the checks run before the compiled region (eghn.train.compiled)
        g = graph if torch.compiler.is_compiling() else self.validate_input(graph)
        G = g.num_graphs
        Z = torch.stack([g.pos, g.vel], -1) if self.velocity else g.pos.unsqueeze(-1)
        h = g.h
        if self.batch_max_features:
            cols = list(self.batch_max_features)
            h = h.clone()
            h[:, cols] = h[:, cols] / h[:, cols].amax(0)
        h = self.embed(h)
        batch = g.batch
        lei = g.local_edge_index if g.local_edge_index is not None else _empty_edges(g.pos.device)
        lea = g.local_edge_attr if self.local_edge_dim else None
        # both edge sets of the current level, and their weights in the adjacencies (None: 1)
        edges = {"global": (g.edge_index, g.edge_attr), "local": (lei, lea)}
        weights: dict[str, Tensor | None] = {"global": None, "local": None}
        skips, scores, conn, level_edges, empty = [], [], [], [], []
        for enc_linear, enc, pool in zip(self.enc_linear, self.encoders, self.pools):
            (ext_i, ext_a), (int_i, int_a) = edges[self._ext_edges], edges[self._int_edges]
            Z_in = Z
            Z, h = enc(Z, enc_linear(h), ext_i, batch, G, ext_a)
            p = pool(Z, h, int_i, batch, G, int_a, Z_in=Z_in)
            skips.append((Z_in, Z, h, batch))
            A_loc = pool_adjacency(p.scores, edges["local"][0], batch, G, weights["local"])
            A_glob = pool_adjacency(p.scores, edges["global"][0], batch, G, weights["global"])
            conn.append(self._connectivity(A_loc))
            if self.occupancy_weight:
                empty.append(_OCCUPANCY_TERMS[self.occupancy_form](p, batch, G))
            scores.append(p.scores)
            edges = {"global": self._cluster_edges(A_glob), "local": self._cluster_edges(A_loc)}
            weights = {key: attr[:, 0] for key, (_, attr) in edges.items()}
            level_edges.append((*edges[self._ext_edges], p.batch))
            Z, h, batch = p.Z, p.h, p.batch
        for lv in reversed(range(len(self.clusters))):
            ext_i, ext_a, batch_high = level_edges[lv]
            Z_in, Z_low, h_low, batch_low = skips[lv]
            Z_high_in = Z
            Z, h = self.decoders[lv](Z, self.dec_linear[lv](h), ext_i, batch_high, G, ext_a)
            Z, h = self.unpools[lv](Z_low, h_low, Z, h, scores[lv], batch_low, G, Z_in=Z_in, Z_high_in=Z_high_in)
        conn_loss = torch.stack(conn).sum()
        reg_loss = self.lam * conn_loss
        aux = {"scores": scores, "connectivity_loss": conn_loss}
        if empty:
            aux["occupancy_loss"] = torch.stack(empty).sum()
            reg_loss = reg_loss + self.occupancy_weight * aux["occupancy_loss"]
        aux["reg_loss"] = reg_loss
        pos = Z[..., 0]
        if not torch.compiler.is_compiling():
            self.check_output(g, pos)
        return ModelOutput(pos=pos, aux=aux)
