"""What every model in :mod:`eghn` returns, and the checks its entry point runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..data.graph import Graph

__all__ = ["ModelOutput", "check_input"]


@dataclass
class ModelOutput:
    """Prediction of a dynamics model.

    Attributes:
        pos: predicted positions of every particle, shape ``(N, n)``; E(n)-equivariant for the
            equivariant models.
        aux: extra, model-specific results. Keys used across the package:
            ``"reg_loss"`` (a scalar tensor added to the training loss, e.g. EGHN's
            weighted connectivity loss, Eq. 16) and, for EGHN, ``"scores"`` (one ``(N_l, K_l)``
            score matrix per pooling level) and ``"connectivity_loss"``.

    Example:
        >>> import torch
        >>> from eghn.models import ModelOutput
        >>> out = ModelOutput(pos=torch.zeros(4, 3), aux={"reg_loss": torch.tensor(0.1)})
        >>> tuple(out.pos.shape), sorted(out.aux)
        ((4, 3), ['reg_loss'])
    """

    pos: Tensor
    aux: dict[str, Any] = field(default_factory=dict)


def check_input(graph: Graph, *, need_vel: bool = False, node_dim: int | None = None,
                edge_dim: int | None = None, dim: int | None = None, model: nn.Module | None = None) -> Graph:
    """Validate a graph at a model's public entry point; raise ``ValueError`` with a clear message.

    With ``model``, the graph's floating dtype must be that of the model's parameters. Inside a
    region traced by ``torch.compile`` nothing is checked (the checks read tensor values, which
    breaks the graph): :class:`eghn.train.compiled.CompiledForward` checks before it enters it.

    Example:
        >>> import torch
        >>> from eghn.data import Graph
        >>> from eghn.models.base import check_input
        >>> g = Graph(pos=torch.randn(3, 3), edge_index=torch.tensor([[0, 1], [1, 0]]))
        >>> check_input(g, dim=3) is g
        True
        >>> check_input(g, need_vel=True)
        Traceback (most recent call last):
            ...
        ValueError: this model needs velocities: Graph.vel is None
    """
    if torch.compiler.is_compiling():
        return graph
    if not isinstance(graph, Graph):
        raise TypeError(f"expected an eghn.data.Graph, got {type(graph).__name__}")
    graph.validate()
    if model is not None:
        want = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
        if want is not None and graph.pos.dtype != want:
            raise ValueError(f"the graph is {str(graph.pos.dtype).removeprefix('torch.')} but the model is "
                             f"{str(want).removeprefix('torch.')}; convert one of them, e.g. "
                             f"graph.to(dtype={want}) or model.to({graph.pos.dtype})")
    if need_vel and graph.vel is None:
        raise ValueError("this model needs velocities: Graph.vel is None")
    if dim is not None and graph.dim != dim:
        raise ValueError(f"this model was built for {dim}-dimensional systems, got n = {graph.dim}")
    if node_dim is not None and graph.h.shape[1] != node_dim:
        raise ValueError(f"this model expects {node_dim} node features, got Graph.h with {graph.h.shape[1]}")
    if edge_dim is not None:
        got = 0 if graph.edge_attr is None else graph.edge_attr.shape[1]
        if got != edge_dim:
            raise ValueError(f"this model expects {edge_dim} edge features, got Graph.edge_attr with {got}")
    return graph
