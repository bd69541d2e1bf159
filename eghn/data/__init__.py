"""Graphs, batching, the paper's datasets and your own system from arrays."""

from .arrays import PointCloudDataset
from .graph import Graph, collate
from .mcomplex import MComplexDataset, simulate_mcomplex
from .mocap import MocapDataset, read_amc, read_asf
from .protein import ProteinMDDataset
from .units import LengthScaled, length_scale, standardize_graph

__all__ = [
    "Graph", "LengthScaled", "MComplexDataset", "MocapDataset", "PointCloudDataset", "ProteinMDDataset", "collate",
    "length_scale",
    "read_amc", "read_asf", "simulate_mcomplex", "standardize_graph",
]
