"""Graphs, batching and the paper's datasets."""

from .graph import Graph, collate
from .mcomplex import MComplexDataset, simulate_mcomplex
from .mocap import MocapDataset, read_amc, read_asf
from .protein import ProteinMDDataset

__all__ = [
    "Graph", "MComplexDataset", "MocapDataset", "ProteinMDDataset", "collate", "read_amc", "read_asf",
    "simulate_mcomplex",
]
