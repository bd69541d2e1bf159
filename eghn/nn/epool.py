r"""E-Pool: equivariant pooling of particles into K clusters (paper Eq. 7-11)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .emmp import EMMP
from .mlp import MLP
from .pool_ops import cluster_batch, reduce_clusters

__all__ = ["EPool", "PoolOutput"]


@dataclass
class PoolOutput:
    r"""Result of :class:`EPool`.

    Attributes:
        scores: soft assignment :math:`S`, shape ``(N, K)``, rows sum to 1 (invariant).
        log_scores: :math:`\log S` (``log_softmax`` of the score logits), shape ``(N, K)``; finite
            even where :math:`S` underflows to 0.
        Z: cluster matrices :math:`Z^{high}`, shape ``(G K, n, m)`` (equivariant).
        h: cluster features :math:`h^{high}`, shape ``(G K, c)`` (invariant).
        batch: graph id of each cluster, shape ``(G K,)``.
        num_graphs: ``G``.

    Example:
        >>> import torch
        >>> from eghn.nn import PoolOutput
        >>> from eghn.nn.pool_ops import cluster_batch, reduce_clusters
        >>> S = torch.full((4, 2), 0.5)
        >>> batch = torch.zeros(4, dtype=torch.long)
        >>> x = torch.arange(4.0).view(4, 1, 1)
        >>> out = PoolOutput(scores=S, log_scores=S.log(), Z=reduce_clusters(S, x, batch, 1),
        ...                  h=reduce_clusters(S, torch.ones(4, 2), batch, 1), batch=cluster_batch(1, 2), num_graphs=1)
        >>> out.Z.flatten().tolist(), out.batch.tolist()
        ([1.5, 1.5], [0, 0])
    """

    scores: Tensor
    log_scores: Tensor
    Z: Tensor
    h: Tensor
    batch: Tensor
    num_graphs: int


class EPool(nn.Module):
    r"""Equivariant pooling layer (paper Section 3.2, Eq. 7-11).

    .. math::
        Z'_i, h'_i &= \mathrm{EMMP}_{local}(Z_i, h_i) && \text{(Eq. 7)} \\
        s_i &= \mathrm{softmax}\big(\mathrm{MLP}(h'_i)\big) \in \mathbb{R}^K && \text{(Eq. 8)} \\
        Z^{high}_k &= \frac{\sum_i s_{ik} Z'_i}{\sum_i s_{ik}}, \quad
        h^{high}_k = \frac{\sum_i s_{ik} h_i}{\sum_i s_{ik}} && \text{(Eq. 9-10)} \\
        A^{high} &= S^\top A S && \text{(Eq. 11)}

    The internal EMMP runs over :math:`\mathcal{A}_{local}` in the general matrix form. Sums
    run over the nodes of each graph separately; every graph gets ``K`` clusters, so ``K``
    must not exceed the size of any graph. :math:`A^{high}` is computed by
    :func:`eghn.nn.pool_ops.pool_adjacency` (the *connect* step).

    The weights :math:`s_{ik} / \sum_i s_{ik}` of Eq. 9-10 are computed in log space from the
    score logits (:func:`eghn.nn.pool_ops.cluster_weights`): they sum to 1 over each graph's
    nodes for any scores, including clusters whose total score underflows, so cluster
    positions are always affine combinations of particle positions (translation equivariance
    in floating point, not only on paper).

    Args:
        channels: vector channels :math:`m` of :math:`Z`.
        node_dim: width of input node features.
        hidden: width of the internal EMMP and score MLP.
        clusters: number of clusters :math:`K`.
        edge_dim: attributes of the local edges.
        layers: number of internal EMMP layers.
        message_form: ``"paper"`` or ``"bounded"``: the matrix messages of the internal EMMPs
            (:class:`~eghn.nn.EMMP`, ``message_form``; ``"bounded"`` is a stabiliser).
        score_bound: ``None`` (default: the paper's Eq. 8) or a bound :math:`c > 0` on the score
            logits, :math:`s_i = \mathrm{softmax}(c \tanh(\mathrm{MLP}(h'_i) / c))`. A
            stabiliser, not the paper's equation: no score can come closer to 0 or 1 than
            :math:`e^{-2c}` allows, so the softmax never saturates and a cluster that empties
            still receives a gradient (the Training stability page).
        message_layers: replacements for the internal EMMPs (ablations); each is called as
            ``layer(Z, h, edge_index, batch, num_graphs, edge_attr) -> (Z', h')`` and must
            output ``hidden`` features (e.g. a one-layer :class:`~eghn.nn.RadialBlock`).

    The call convention, ``(Z, h, edge_index, batch, num_graphs, edge_attr)``, is that of
    :class:`~eghn.nn.EMMP` and :class:`~eghn.nn.RadialBlock`; the keyword ``Z_in`` (the input of
    the block that precedes the pooling) is part of it for pooling forms that look at it (the
    released code's, :class:`~eghn.nn.released.ReleasedPool`); E-Pool does not use it.

    Shapes:
        - Z: :math:`(N, n, m)`, h: :math:`(N, c)`, edge_index: :math:`(2, E_l)`, batch: :math:`(N,)`,
          Z_in: :math:`(N, n, m)` (ignored)
        - output: :class:`PoolOutput` with scores :math:`(N, K)`, Z :math:`(G K, n, m)`,
          h :math:`(G K, c)`

    Example:
        >>> import torch
        >>> from eghn.nn import EPool
        >>> torch.manual_seed(0) and None
        >>> pool = EPool(channels=2, node_dim=4, hidden=8, clusters=2)
        >>> Z, h = torch.randn(6, 3, 2), torch.randn(6, 4)
        >>> ring = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
        >>> out = pool(Z, h, ring, torch.zeros(6, dtype=torch.long), 1)
        >>> tuple(out.scores.shape), tuple(out.Z.shape), tuple(out.h.shape), out.batch.tolist()
        ((6, 2), (2, 3, 2), (2, 4), [0, 0])
    """

    def __init__(self, channels: int, node_dim: int, hidden: int, clusters: int, edge_dim: int = 0, *,
                 layers: int = 1, position_channels: Sequence[int] = (0,), normalize: bool = True,
                 aggr: str = "sum", act: str = "silu", message_layers: Sequence[nn.Module] | None = None,
                 message_form: str = "paper", score_bound: float | None = None) -> None:
        super().__init__()
        if clusters < 1:
            raise ValueError(f"E-Pool needs at least one cluster, got K = {clusters}")
        if score_bound is not None and not (isinstance(score_bound, (int, float)) and 0 < score_bound < float("inf")):
            raise ValueError(f"score_bound must be None or a positive number, got {score_bound!r}")
        self.clusters = clusters
        self.score_bound = None if score_bound is None else float(score_bound)
        if message_layers is not None:
            self.emmps = nn.ModuleList(message_layers)
            layers = len(self.emmps)
        else:
            self.emmps = nn.ModuleList(
                EMMP(channels, node_dim if k == 0 else hidden, hidden, edge_dim,
                     position_channels=position_channels, normalize=normalize, aggr=aggr, act=act,
                     message_form=message_form)
                for k in range(layers)
            )
        self.score = MLP(hidden if layers else node_dim, hidden, clusters, layers=2, act=act)

    def select_log(self, Z: Tensor, h: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int,
                   edge_attr: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Internal EMMP (Eq. 7) and log-scores (Eq. 8): returns ``(Z', log S)``."""
        hp = h
        for layer in self.emmps:
            Z, hp = layer(Z, hp, edge_index, batch, num_graphs, edge_attr)
        logits = self.score(hp)
        if self.score_bound is not None:
            logits = self.score_bound * torch.tanh(logits / self.score_bound)
        return Z, torch.log_softmax(logits, dim=-1)

    def select(self, Z: Tensor, h: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int,
               edge_attr: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Internal EMMP (Eq. 7) and scores (Eq. 8): returns ``(Z', S)``."""
        Z, log_S = self.select_log(Z, h, edge_index, batch, num_graphs, edge_attr)
        return Z, log_S.exp()

    def forward(self, Z: Tensor, h: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int,
                edge_attr: Tensor | None = None, *, Z_in: Tensor | None = None) -> PoolOutput:
        if not torch.compiler.is_compiling():  # EGHN.validate_input checks it before a compiled region
            sizes = torch.bincount(batch, minlength=num_graphs)
            if bool((sizes < self.clusters).any()):
                small = int(sizes.min())
                raise ValueError(f"E-Pool with K = {self.clusters} clusters needs at least K nodes per graph, "
                                 f"but a graph of the batch has only {small}")
        Zp, log_S = self.select_log(Z, h, edge_index, batch, num_graphs, edge_attr)
        S = log_S.exp()
        return PoolOutput(
            scores=S,
            log_scores=log_S,
            Z=reduce_clusters(S, Zp, batch, num_graphs, log_scores=log_S),
            h=reduce_clusters(S, h, batch, num_graphs, log_scores=log_S),
            batch=cluster_batch(num_graphs, self.clusters, Z.device),
            num_graphs=num_graphs,
        )
