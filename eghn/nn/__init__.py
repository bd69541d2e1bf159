"""Layers of EGHN: EMMP (Eq. 3-6), E-Pool (Eq. 7-11), E-UnPool (Eq. 12-15), the connectivity
loss (Eq. 16), the EGNN and GMN forms of Theorem 1 and their conversion to EMMP."""

from .connectivity import connectivity_loss, connectivity_loss_dense
from .edge_mlp import set_edge_recompute
from .egnn import EGNNLayer
from .emmp import EMMP, EMMPMessage, EMMPUpdate
from .epool import EPool, PoolOutput
from .eunpool import EUnPool
from .gmn import GMNLayer
from .mlp import MLP
from .plain_mp import PlainMPLayer
from .pool_ops import dense_to_edges, pool_adjacency, reduce_clusters, unpool
from .radial_block import RadialBlock
from .theorem1 import emmp_from_egnn, emmp_from_gmn

__all__ = [
    "EMMP",
    "MLP",
    "EGNNLayer",
    "EMMPMessage",
    "EMMPUpdate",
    "EPool",
    "EUnPool",
    "GMNLayer",
    "PlainMPLayer",
    "PoolOutput",
    "RadialBlock",
    "connectivity_loss",
    "connectivity_loss_dense",
    "dense_to_edges",
    "emmp_from_egnn",
    "emmp_from_gmn",
    "pool_adjacency",
    "reduce_clusters",
    "set_edge_recompute",
    "unpool",
]
