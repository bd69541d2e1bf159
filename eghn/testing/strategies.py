"""Hypothesis strategies for graphs, orthogonal matrices and permutations.

Requires the ``hypothesis`` package (installed with the ``test`` extra)::

    from hypothesis import given
    from eghn.testing.strategies import graphs

    @given(graphs(dim=3, max_graphs=3))
    def test_something(g): ...
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from ..data.graph import Graph, collate
from .equivariance import random_orthogonal

__all__ = ["graphs", "orthogonal_matrices", "permutations", "random_graph"]


def random_graph(num_nodes: int, *, dim: int = 3, edge_prob: float = 0.5, node_dim: int = 2, edge_dim: int = 0,
                 local_edge_dim: int = 0, velocity: bool = True, target: bool = False,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64) -> Graph:
    """One random graph: Gaussian positions/velocities, an Erdos-Renyi global edge set (both
    directions, no self-loops) and a random spanning path plus extra bonds as local edges.

    Example:
        >>> from eghn.testing.strategies import random_graph
        >>> g = random_graph(5, node_dim=3, edge_dim=2)
        >>> g.num_nodes, tuple(g.h.shape), g.edge_attr.shape[1], g.local_edge_index.shape[1], g.pos.dtype
        (5, (5, 3), 2, 8, torch.float64)
    """
    g = generator or torch.Generator().manual_seed(0)
    pos = torch.randn(num_nodes, dim, generator=g, dtype=torch.float64)
    vel = torch.randn(num_nodes, dim, generator=g, dtype=torch.float64) if velocity else None
    h = torch.randn(num_nodes, node_dim, generator=g, dtype=torch.float64)
    upper = torch.triu(torch.rand(num_nodes, num_nodes, generator=g) < edge_prob, diagonal=1)
    i, j = torch.nonzero(upper, as_tuple=True)
    ei = torch.cat([torch.stack([i, j]), torch.stack([j, i])], 1)
    order = torch.randperm(num_nodes, generator=g)
    a, b = order[:-1], order[1:]
    lei = torch.cat([torch.stack([a, b]), torch.stack([b, a])], 1)

    def attrs(d: int, half: int) -> torch.Tensor | None:
        # symmetric attributes: edge (i, j) and its reverse (j, i) share them
        if not d:
            return None
        x = torch.randn(half, d, generator=g, dtype=torch.float64)
        return torch.cat([x, x], 0)

    tgt = torch.randn(num_nodes, dim, generator=g, dtype=torch.float64) if target else None
    graph = Graph(pos=pos, h=h, vel=vel, edge_index=ei, edge_attr=attrs(edge_dim, i.numel()),
                  local_edge_index=lei, local_edge_attr=attrs(local_edge_dim, a.numel()),
                  target=tgt)
    return graph.to(dtype=dtype)


@st.composite
def graphs(draw, *, dim: int = 3, min_nodes: int = 2, max_nodes: int = 12, min_graphs: int = 1,
           max_graphs: int = 3, node_dim: int = 2, edge_dim: int = 0, local_edge_dim: int = 0,
           velocity: bool = True, target: bool = False, dtype: torch.dtype = torch.float64) -> Graph:
    """Batches of 1 to ``max_graphs`` random graphs of varied sizes and edge densities.

    Example:
        >>> from hypothesis import given, settings
        >>> from eghn.testing.strategies import graphs
        >>> @settings(max_examples=5, derandomize=True, database=None)
        ... @given(graphs(dim=2, max_nodes=6, max_graphs=2))
        ... def check(g):
        ...     assert g.pos.shape[1] == 2 and 1 <= g.num_graphs <= 2
        >>> check()
    """
    sizes = draw(st.lists(st.integers(min_nodes, max_nodes), min_size=min_graphs, max_size=max_graphs))
    probs = draw(st.lists(st.floats(0.2, 1.0), min_size=len(sizes), max_size=len(sizes)))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    parts = [random_graph(n, dim=dim, edge_prob=p, node_dim=node_dim, edge_dim=edge_dim,
                          local_edge_dim=local_edge_dim, velocity=velocity, target=target, generator=gen,
                          dtype=dtype) for n, p in zip(sizes, probs)]
    return collate(parts)


@st.composite
def orthogonal_matrices(draw, n: int = 3, det: int | None = None, dtype: torch.dtype = torch.float64):
    """Haar-random ``(n, n)`` orthogonal matrices (``det`` +1, -1 or either).

    Example:
        >>> import torch
        >>> from hypothesis import given, settings
        >>> from eghn.testing.strategies import orthogonal_matrices
        >>> @settings(max_examples=5, derandomize=True, database=None)
        ... @given(orthogonal_matrices(3, det=-1))
        ... def check(Q):
        ...     assert torch.allclose(Q @ Q.T, torch.eye(3, dtype=Q.dtype)) and torch.det(Q) < 0
        >>> check()
    """
    seed = draw(st.integers(0, 2**31 - 1))
    return random_orthogonal(n, det, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@st.composite
def permutations(draw, n: int):
    """Permutations of ``range(n)`` as int64 tensors.

    Example:
        >>> import torch
        >>> from hypothesis import given, settings
        >>> from eghn.testing.strategies import permutations
        >>> @settings(max_examples=5, derandomize=True, database=None)
        ... @given(permutations(4))
        ... def check(perm):
        ...     assert sorted(perm.tolist()) == [0, 1, 2, 3]
        >>> check()
    """
    return torch.tensor(draw(st.permutations(list(range(n)))), dtype=torch.long)
