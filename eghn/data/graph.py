"""The graph type every model and dataset in :mod:`eghn` speaks.

A :class:`Graph` holds one physical system, or a batch of systems of *different* sizes
stacked node-wise without padding (the PyTorch Geometric convention). Every per-graph
quantity (centroid, pooled adjacency, cluster count) is computed through the ``batch``
vector, so nothing leaks from one system into another.

Conventions
-----------
* ``edge_index[0]`` is the receiving node ``i``, ``edge_index[1]`` the sending node ``j``;
  the message :math:`m_{ij}` is aggregated at ``i``. Undirected interactions are listed in
  both directions.
* ``pos``, ``vel`` and ``target`` transform under E(n) as ``x -> x Q^T + t`` (velocities
  without ``t``); ``h`` and edge attributes are invariant.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Graph", "collate"]


def _check_finite(name: str, t: Tensor | None) -> None:
    if t is not None and t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"Graph.{name} contains NaN or inf values")


def _check_edges(name: str, edge_index: Tensor | None, edge_attr: Tensor | None, n: int) -> None:
    attr_name = name.replace("index", "attr")
    if edge_index is None:
        if edge_attr is not None:
            raise ValueError(f"Graph.{attr_name} is given but Graph.{name} is None")
        return
    if edge_index.dtype != torch.long:
        raise TypeError(f"Graph.{name} must be an int64 (torch.long) tensor, got {edge_index.dtype}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"Graph.{name} must have shape (2, E), got {tuple(edge_index.shape)}")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= n):
        raise ValueError(
            f"Graph.{name} refers to node {int(edge_index.max())} (or a negative index) "
            f"but the graph has {n} nodes (valid indices 0..{n - 1})"
        )
    if edge_attr is not None:
        if edge_attr.dim() != 2 or edge_attr.shape[0] != edge_index.shape[1]:
            raise ValueError(
                f"Graph.{attr_name} must have shape (E, d) with E = {edge_index.shape[1]}, "
                f"got {tuple(edge_attr.shape)}"
            )
        _check_finite(attr_name, edge_attr)


@dataclass
class Graph:
    """One system, or a batch of systems, of ``N`` particles in ``n`` dimensions.

    Args:
        pos: particle positions :math:`x_i`.
        h: invariant node features :math:`h_i`; defaults to a column of ones.
        vel: optional velocities :math:`v_i`.
        edge_index: :math:`\\mathcal{A}_{global}` (interaction edges), ``edge_index[0]`` =
            receiver ``i``, ``edge_index[1]`` = sender ``j``.
        edge_attr: optional invariant attributes of the global edges.
        local_edge_index: :math:`\\mathcal{A}_{local}` (bonds, sticks, bones); optional.
        local_edge_attr: optional attributes of the local edges.
        target: optional ground-truth positions the model should predict.
        batch: graph id of every node (``None`` for a single graph).
        num_graphs: number of graphs; inferred from ``batch`` when omitted.

    Shapes:
        - pos, vel, target: :math:`(N, n)`
        - h: :math:`(N, c)`
        - edge_index: :math:`(2, E)`, edge_attr: :math:`(E, d)`
        - local_edge_index: :math:`(2, E_l)`, local_edge_attr: :math:`(E_l, d_l)`
        - batch: :math:`(N,)`, int64, values in ``[0, num_graphs)``

    Example:
        >>> import torch
        >>> from eghn.data import Graph
        >>> g = Graph(pos=torch.zeros(3, 2), edge_index=torch.tensor([[0, 1], [1, 0]]))
        >>> g.num_nodes, g.dim, g.num_graphs, tuple(g.h.shape)
        (3, 2, 1, (3, 1))
    """

    pos: Tensor
    h: Tensor | None = None
    vel: Tensor | None = None
    edge_index: Tensor | None = None
    edge_attr: Tensor | None = None
    local_edge_index: Tensor | None = None
    local_edge_attr: Tensor | None = None
    target: Tensor | None = None
    batch: Tensor | None = None
    num_graphs: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.pos, Tensor) or self.pos.dim() != 2:
            shape = tuple(self.pos.shape) if isinstance(self.pos, Tensor) else type(self.pos).__name__
            raise ValueError(f"Graph.pos must be a tensor of shape (N, n), got {shape}")
        n_nodes = self.pos.shape[0]
        if self.h is None:
            self.h = self.pos.new_ones(n_nodes, 1)
        if self.edge_index is None:
            self.edge_index = torch.empty(2, 0, dtype=torch.long, device=self.pos.device)
        if self.batch is None:
            self.batch = torch.zeros(n_nodes, dtype=torch.long, device=self.pos.device)
            if self.num_graphs is None:
                self.num_graphs = 1
        elif self.num_graphs is None:
            self.num_graphs = int(self.batch.max()) + 1 if self.batch.numel() else 0

    # ------------------------------------------------------------------ properties
    @property
    def num_nodes(self) -> int:
        """Total number of particles ``N`` (over all graphs of a batch)."""
        return int(self.pos.shape[0])

    @property
    def dim(self) -> int:
        """Spatial dimension ``n``."""
        return int(self.pos.shape[1])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def nodes_per_graph(self) -> Tensor:
        """Number of nodes of every graph, shape ``(num_graphs,)``."""
        return torch.bincount(self.batch, minlength=self.num_graphs)

    # ------------------------------------------------------------------ validation
    def validate(self) -> Graph:
        """Raise a clear error for inconsistent shapes, NaN/inf, bad indices or empty graphs.

        Returns ``self`` so it can be chained. Public entry points (models, datasets) call it.
        """
        n_nodes, dim = self.pos.shape
        if n_nodes == 0:
            raise ValueError("Graph is empty: it has no nodes")
        if dim < 1:
            raise ValueError("Graph.pos must have at least one spatial dimension")
        if not self.pos.is_floating_point():
            raise TypeError(f"Graph.pos must be a floating-point tensor, got {self.pos.dtype}")
        for name in ("vel", "target"):
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != (n_nodes, dim):
                raise ValueError(
                    f"Graph.{name} must have the shape of pos {(n_nodes, dim)}, got {tuple(t.shape)}"
                )
        if self.h.dim() != 2 or self.h.shape[0] != n_nodes:
            raise ValueError(f"Graph.h must have shape (N={n_nodes}, c), got {tuple(self.h.shape)}")
        for name in ("pos", "vel", "target", "h"):
            _check_finite(name, getattr(self, name))
        _check_edges("edge_index", self.edge_index, self.edge_attr, n_nodes)
        _check_edges("local_edge_index", self.local_edge_index, self.local_edge_attr, n_nodes)
        if self.batch.dtype != torch.long or self.batch.shape != (n_nodes,):
            raise ValueError(f"Graph.batch must be an int64 tensor of shape ({n_nodes},)")
        if int(self.batch.min()) < 0 or int(self.batch.max()) >= self.num_graphs:
            raise ValueError(f"Graph.batch values must lie in [0, num_graphs={self.num_graphs})")
        counts = self.nodes_per_graph()
        if bool((counts == 0).any()):
            empty = torch.nonzero(counts == 0).flatten().tolist()
            raise ValueError(f"graphs {empty} of the batch have no nodes")
        for name in ("edge_index", "local_edge_index"):
            ei = getattr(self, name)
            if ei is not None and ei.numel() and bool((self.batch[ei[0]] != self.batch[ei[1]]).any()):
                raise ValueError(f"Graph.{name} has edges joining two different graphs of the batch")
        return self

    # ------------------------------------------------------------------ conversions
    def replace(self, **changes) -> Graph:
        """A shallow copy with some fields replaced (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Graph:
        """Move every tensor to ``device``; cast floating-point tensors to ``dtype``.

        As with :meth:`torch.Tensor.to`, ``g.to(torch.float64)`` casts without moving.
        """
        if isinstance(device, torch.dtype):
            device, dtype = None, device
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                v = v.to(device=device, dtype=dtype if (dtype is not None and v.is_floating_point()) else None)
            out[f.name] = v
        return Graph(**out)

    def transform(self, rotation: Tensor | None = None, translation: Tensor | None = None) -> Graph:
        """Apply :math:`x \\mapsto x Q^\\top + t` to positions/targets and :math:`v \\mapsto v Q^\\top`.

        ``rotation`` is ``(n, n)`` (one for all graphs) or ``(G, n, n)`` (one per graph);
        ``translation`` is ``(n,)`` or ``(G, n)``. Invariant features are left alone.
        """
        def rot(x: Tensor | None) -> Tensor | None:
            if x is None or rotation is None:
                return x
            if rotation.dim() == 2:
                return x @ rotation.T.to(x)
            return torch.einsum("nij,nj->ni", rotation.to(x)[self.batch], x)

        def shift(x: Tensor | None) -> Tensor | None:
            if x is None or translation is None:
                return x
            t = translation.to(x)
            return x + (t if t.dim() == 1 else t[self.batch])

        return self.replace(pos=shift(rot(self.pos)), vel=rot(self.vel), target=shift(rot(self.target)))

    def permute(self, perm: Tensor) -> Graph:
        """Reorder nodes: node ``k`` of the result is node ``perm[k]`` of ``self``.

        Edge lists are remapped so that the result describes the same system.
        """
        perm = perm.to(self.pos.device)
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(perm.numel(), device=perm.device)

        def take(x: Tensor | None) -> Tensor | None:
            return None if x is None else x[perm]

        return self.replace(
            pos=self.pos[perm], h=self.h[perm], vel=take(self.vel), target=take(self.target),
            batch=self.batch[perm],
            edge_index=inv[self.edge_index],
            local_edge_index=None if self.local_edge_index is None else inv[self.local_edge_index],
        )

    def unbatch(self) -> list[Graph]:
        """Split a batch back into its graphs (inverse of :func:`collate`)."""
        graphs = []
        for g in range(self.num_graphs):
            mask = self.batch == g
            idx = torch.nonzero(mask).flatten()
            new_id = torch.full((self.num_nodes,), -1, dtype=torch.long, device=self.pos.device)
            new_id[idx] = torch.arange(idx.numel(), device=idx.device)
            fields: dict[str, Tensor | None] = {
                name: (None if getattr(self, name) is None else getattr(self, name)[idx])
                for name in ("pos", "h", "vel", "target")
            }
            for name in ("edge_index", "local_edge_index"):
                ei, ea = getattr(self, name), getattr(self, name.replace("index", "attr"))
                if ei is None:
                    fields[name] = fields[name.replace("index", "attr")] = None
                    continue
                keep = mask[ei[0]]
                fields[name] = new_id[ei[:, keep]]
                fields[name.replace("index", "attr")] = None if ea is None else ea[keep]
            graphs.append(Graph(**fields))
        return graphs


def collate(graphs: Sequence[Graph]) -> Graph:
    """Stack graphs of possibly different sizes into one batched :class:`Graph`.

    Node tensors are concatenated, edge indices offset by the number of preceding nodes and
    ``batch`` records which graph each node came from. Optional fields must be present in
    all graphs or in none.

    Example:
        >>> import torch
        >>> from eghn.data import Graph, collate
        >>> a = Graph(pos=torch.zeros(2, 3), edge_index=torch.tensor([[0], [1]]))
        >>> b = Graph(pos=torch.ones(3, 3), edge_index=torch.tensor([[2], [0]]))
        >>> batch = collate([a, b])
        >>> batch.edge_index.tolist(), batch.batch.tolist()
        ([[0, 4], [1, 2]], [0, 0, 1, 1, 1])
    """
    graphs = list(graphs)
    if not graphs:
        raise ValueError("collate() needs at least one graph")
    dims = {g.dim for g in graphs}
    if len(dims) != 1:
        raise ValueError(f"cannot batch graphs of different spatial dimensions {sorted(dims)}")
    out: dict[str, object] = {}
    for name in ("pos", "h", "vel", "target"):
        vals = [getattr(g, name) for g in graphs]
        present = [v is not None for v in vals]
        if any(present) and not all(present):
            raise ValueError(f"Graph.{name} is set in some graphs of the batch but not in others")
        out[name] = torch.cat(vals, 0) if all(present) else None
    sizes = [g.num_nodes for g in graphs]
    offsets = torch.tensor([0, *sizes[:-1]]).cumsum(0).tolist()
    for name in ("edge_index", "local_edge_index"):
        vals = [getattr(g, name) for g in graphs]
        attrs = [getattr(g, name.replace("index", "attr")) for g in graphs]
        if all(v is None for v in vals):
            out[name] = None
            out[name.replace("index", "attr")] = None
            continue
        if any(v is None for v in vals):
            raise ValueError(f"Graph.{name} is set in some graphs of the batch but not in others")
        out[name] = torch.cat([v + o for v, o in zip(vals, offsets)], 1)
        if any(a is not None for a in attrs):
            if any(a is None for a in attrs):
                raise ValueError(f"Graph.{name.replace('index', 'attr')} is set in some graphs but not in others")
            out[name.replace("index", "attr")] = torch.cat(attrs, 0)
        else:
            out[name.replace("index", "attr")] = None
    device = graphs[0].pos.device
    out["batch"] = torch.repeat_interleave(
        torch.arange(len(graphs), device=device), torch.tensor(sizes, device=device)
    )
    out["num_graphs"] = len(graphs)
    return Graph(**out)
