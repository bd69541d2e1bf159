"""Graphs, batching and the paper's datasets."""

from .graph import Graph, collate

__all__ = ["Graph", "collate"]
