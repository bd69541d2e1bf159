"""GMN baseline (Huang et al., ICLR 2022): equivariant graph mechanics networks with constraints."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..data.graph import Graph
from ..nn.gmn import GMNLayer
from ._common import MLP
from .base import ModelOutput, check_input
from .registry import register

__all__ = ["GMN", "objects_from_local_edges", "sticks_from_local_edges"]


def objects_from_local_edges(local_edge_index: Tensor | None, num_nodes: int, hinges: bool = False
                             ) -> tuple[Tensor, Tensor]:
    """Greedy decomposition of the local edges into disjoint hinges and sticks.

    Local edges are read as undirected bonds, in their stored order. With ``hinges=True`` every
    node, in order of first appearance, that is still free and has two free bonded neighbours
    becomes the pivot of a hinge with the first two of them (in bond order). The remaining
    bonds become sticks when both end points are free. The result depends only on the order of
    the edge list, which :meth:`Graph.permute` and :func:`collate` preserve, so the
    decomposition is permutation-equivariant and the same for a graph alone or in a batch.

    Shapes:
        - local_edge_index: :math:`(2, E_l)` -> hinges :math:`(H, 3)` (pivot, arm, arm) and
          sticks :math:`(S, 2)`, node ids (int64)

    Example:
        >>> import torch
        >>> from eghn.models.gmn import objects_from_local_edges
        >>> chain = torch.tensor([[0, 1, 1, 2, 3], [1, 0, 2, 1, 4]])  # bonds 0-1, 1-2 (both ways) and 3-4
        >>> hinges, sticks = objects_from_local_edges(chain, 5, hinges=True)
        >>> hinges.tolist(), sticks.tolist()
        ([[1, 0, 2]], [[3, 4]])
    """
    empty = (torch.empty(0, 3, dtype=torch.long), torch.empty(0, 2, dtype=torch.long))
    if local_edge_index is None or local_edge_index.numel() == 0:
        return empty
    bonds = [(a, b) for a, b in local_edge_index.t().tolist() if a != b]
    used = bytearray(num_nodes)
    hinge_list: list[tuple[int, int, int]] = []
    if hinges:
        nbrs: dict[int, list[int]] = {}
        for a, b in bonds:
            nbrs.setdefault(a, []).append(b)
            nbrs.setdefault(b, []).append(a)
        for p in nbrs:  # insertion order = order of first appearance
            if used[p]:
                continue
            free: list[int] = []
            for q in nbrs[p]:
                if not used[q] and q not in free:
                    free.append(q)
                    if len(free) == 2:
                        break
            if len(free) == 2:
                used[p] = used[free[0]] = used[free[1]] = 1
                hinge_list.append((p, free[0], free[1]))
    sticks = []
    for a, b in bonds:
        if not used[a] and not used[b]:
            used[a] = used[b] = 1
            sticks.append((a, b))
    return (torch.tensor(hinge_list, dtype=torch.long).view(-1, 3),
            torch.tensor(sticks, dtype=torch.long).view(-1, 2))


def sticks_from_local_edges(local_edge_index: Tensor | None, num_nodes: int) -> Tensor:
    """Only sticks: ``objects_from_local_edges(..., hinges=False)[1]``, shape ``(S, 2)``.

    Example:
        >>> import torch
        >>> from eghn.models.gmn import sticks_from_local_edges
        >>> sticks_from_local_edges(torch.tensor([[0, 1, 1, 2, 3], [1, 0, 2, 1, 4]]), 5).tolist()
        [[0, 1], [3, 4]]
    """
    return objects_from_local_edges(local_edge_index, num_nodes, hinges=False)[1]


def _ortho_equivariant(mlp: nn.Module, X: Tensor) -> Tensor:
    r"""GMN's orthogonality-equivariant function :math:`X\,\phi(\mathrm{nrm}(X^\top X))`.

    Shapes:
        - X: :math:`(B, n, k)` -> :math:`(B, n)` (``mlp`` maps ``k*k -> k``)
    """
    inv = X.transpose(1, 2) @ X
    inv = inv / (torch.linalg.matrix_norm(inv).view(-1, 1, 1) + 1e-8)
    return (X @ mlp(inv.flatten(1)).unsqueeze(-1)).squeeze(-1)


def _rotate_arm(omega: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
    """``r' = exp(omega) r`` and the arm's velocity ``omega r'``: ``(B, n, n), (B, n) -> (B, n) x 2``."""
    r = (torch.linalg.matrix_exp(omega) @ r.unsqueeze(-1)).squeeze(-1)
    return r, (omega @ r.unsqueeze(-1)).squeeze(-1)


def _skew(a: Tensor, b: Tensor) -> Tensor:
    """:math:`a b^T - b a^T` per row: ``(S, n), (S, n) -> (S, n, n)``."""
    return a.unsqueeze(-1) * b.unsqueeze(-2) - b.unsqueeze(-1) * a.unsqueeze(-2)


@register("gmn")
class GMN(nn.Module):
    r"""Graph Mechanics Network: multi-channel messages + constraint-aware forward kinematics.

    Every layer has two parts.

    1. **Forces** by multi-channel equivariant message passing over :math:`Z_i = [x_i, v_i]
       \in \mathbb{R}^{n\times 2}` (a :class:`eghn.nn.GMNLayer`, GMN's orthogonality-equivariant
       form :math:`Z_{ij}\,\sigma(Z_{ij}^\top Z_{ij}, h_i, h_j, a_{ij})` with
       :math:`Z_{ij} = Z_i - Z_j`). The generalised force on particle ``i`` is the position
       channel of the aggregated message, :math:`f_i = (C\sum_j Z_{ij} H_{ij})_{:,0}`; the
       layer also updates :math:`h`.
    2. **Generalised-coordinate update** per object (forward kinematics, as in the paper):

       * isolated particle: :math:`v_i' = \phi_v(h_i) v_i + f_i`, :math:`x_i' = x_i + v_i'`;
       * stick ``(a, b)`` (a pair joined by a local edge, see :func:`sticks_from_local_edges`):
         generalised coordinates are the centre :math:`x_c = (x_a + x_b)/2`, its velocity
         :math:`v_c`, the half-bond :math:`r = (x_a - x_b)/2` and the angular velocity, kept as
         the skew matrix :math:`\Omega = (u r^\top - r u^\top)/\lVert r\rVert^2` with
         :math:`u = (v_a - v_b)/2`. The centre acceleration is an orthogonality-equivariant
         function of the two forces, :math:`\ddot x_c = F\,\phi_a(\mathrm{nrm}(F^\top F))`,
         :math:`F = [f_a, f_b]`; the angular acceleration is the torque over the moment of
         inertia, :math:`B = \sum_k (f_k r_k^\top - r_k f_k^\top)/J`,
         :math:`J = \sum_k\lVert r_k\rVert^2`. Then
         :math:`v_c' = \phi_v(h_c) v_c + \ddot x_c`, :math:`x_c' = x_c + v_c'`,
         :math:`\Omega' = \phi_\omega(h_c)\Omega + B`, :math:`r' = \exp(\Omega') r` and the
         particles are recovered by forward kinematics: :math:`x_{a,b}' = x_c' \pm r'`,
         :math:`v_{a,b}' = v_c' \pm \Omega' r'`. The stick length is preserved exactly.

       * hinge ``(p, a, b)`` (a pivot bonded to two arms; ``objects="hinges"``): the pivot moves
         like a particle with the acceleration
         :math:`\ddot x_p = \tfrac13\sum_{q\in\{p,a,b\}} X_q\,\phi_h(\mathrm{nrm}(X_q^\top X_q))`,
         :math:`X_q = [f_q, x_q - x_p, v_q - v_p]`; each arm :math:`r_q = x_q - x_p` turns about
         the pivot with :math:`\Omega_q' = \phi_\omega(h_q)\Omega_q + ((f_q - \ddot x_p) r_q^\top -
         r_q (f_q - \ddot x_p)^\top)/\lVert r_q\rVert^2`, :math:`r_q' = \exp(\Omega_q') r_q`,
         :math:`x_q' = x_p' + r_q'`, :math:`v_q' = v_p' + \Omega_q' r_q'`. Arm lengths are kept.

    Objects come from the local edges (:func:`objects_from_local_edges`): ``objects="sticks"``
    (default) pairs bonded particles greedily into sticks; ``"hinges"`` first forms hinges, then
    sticks from the remaining bonds; ``"none"`` treats every particle as isolated. Particles in
    no object are isolated.

    Differences from the published model (documented simplifications): the angular velocity
    and torque are written as skew-symmetric matrices and the rotation as a matrix exponential
    instead of 3-D cross products and Rodrigues' formula (identical in 3-D, and it makes the
    model work in any dimension ``n``); forces come from the multi-channel message on
    :math:`[x, v]` of :class:`~eghn.nn.GMNLayer` rather than EGNN's position-only message; the
    objects are found greedily from the local edges, whereas the paper's datasets list them.
    Equivariant under E(n) including reflections (:math:`\Omega \mapsto Q\Omega Q^\top`).

    Defaults (GMN paper, simulation settings): width 64, 4 layers, SiLU, mean aggregation.

    Args:
        node_dim: number of invariant node features ``c``.
        edge_dim: number of global-edge attributes ``d``.
        local_edge_dim: ignored (local edges define the sticks).
        hidden: width (default 64).
        layers: number of GMN layers (default 4).
        act: activation name (default ``"silu"``).
        objects: ``"sticks"`` (default), ``"hinges"`` (hinges, then sticks) or ``"none"``.

    Shapes:
        - graph.pos, graph.vel: :math:`(N, n)`; graph.h: :math:`(N, c)`;
          graph.edge_index: :math:`(2, E)`; graph.local_edge_index: :math:`(2, E_l)`
        - output ``pos``: :math:`(N, n)`; ``aux["sticks"]``: :math:`(S, 2)`;
          ``aux["hinges"]``: :math:`(H, 3)`

    Example:
        >>> import torch
        >>> from eghn.data import Graph
        >>> from eghn.models import GMN
        >>> from eghn.testing import equivariance_error
        >>> torch.manual_seed(0) and None
        >>> ring = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
        >>> g = Graph(pos=torch.randn(6, 3), vel=torch.randn(6, 3), edge_index=ring,
        ...           local_edge_index=ring).to(torch.float64)
        >>> model = GMN(node_dim=1, hidden=16, layers=2).double()
        >>> tuple(model(g).pos.shape)
        (6, 3)
        >>> max(equivariance_error(model, g).values()) < 1e-9
        True
    """

    def __init__(self, node_dim: int, edge_dim: int = 0, local_edge_dim: int = 0, hidden: int = 64,
                 layers: int = 4, act: str = "silu", objects: str = "sticks") -> None:
        super().__init__()
        if objects not in ("sticks", "hinges", "none"):
            raise ValueError(f"objects must be 'sticks', 'hinges' or 'none', got {objects!r}")
        self.node_dim, self.edge_dim, self.objects = node_dim, edge_dim, objects
        self.embed = nn.Linear(node_dim, hidden)
        self.layers = nn.ModuleList(
            GMNLayer(2, hidden, edge_dim, normalize=True, aggr="mean", feat_aggr="sum", act=act)
            for _ in range(layers))
        self.phi_v = nn.ModuleList(MLP(hidden, hidden, 1, act=act) for _ in range(layers))
        self.phi_w = nn.ModuleList(MLP(hidden, hidden, 1, act=act) for _ in range(layers))
        self.phi_c = nn.ModuleList(MLP(hidden, hidden, hidden, act=act) for _ in range(layers))
        self.phi_a = nn.ModuleList(MLP(4, hidden, 2, act=act) for _ in range(layers))
        self.phi_hinge = nn.ModuleList(MLP(9, hidden, 3, act=act) for _ in range(layers if objects == "hinges" else 0))

    def _stick_update(self, k: int, x: Tensor, v: Tensor, f: Tensor, h: Tensor, sticks: Tensor,
                      x_out: Tensor, v_out: Tensor) -> tuple[Tensor, Tensor]:
        """Update the sticks from the layer-input state ``x, v``; write them into ``x_out, v_out``."""
        a, b = sticks[:, 0], sticks[:, 1]
        xc, vc = (x[a] + x[b]) / 2, (v[a] + v[b]) / 2
        r, u = (x[a] - x[b]) / 2, (v[a] - v[b]) / 2
        r2 = (r * r).sum(-1, keepdim=True).clamp_min(1e-12)
        omega = _skew(u, r) / r2.unsqueeze(-1)
        # torque / inertia: r_a = r, r_b = -r, J = 2 |r|^2
        torque = _skew(f[a] - f[b], r) / (2 * r2).unsqueeze(-1)
        acc = _ortho_equivariant(self.phi_a[k], torch.stack([f[a], f[b]], -1)) / 2
        hc = self.phi_c[k](h[a]) + self.phi_c[k](h[b])
        vc = self.phi_v[k](hc) * vc + acc
        xc = xc + vc
        omega = self.phi_w[k](hc).unsqueeze(-1) * omega + torque
        r, w_r = _rotate_arm(omega, r)
        x_out = x_out.index_copy(0, a, xc + r).index_copy(0, b, xc - r)
        v_out = v_out.index_copy(0, a, vc + w_r).index_copy(0, b, vc - w_r)
        return x_out, v_out

    def _hinge_update(self, k: int, x: Tensor, v: Tensor, f: Tensor, h: Tensor, hinges: Tensor,
                      x_out: Tensor, v_out: Tensor) -> tuple[Tensor, Tensor]:
        """Update the hinges (pivot ``p``, arms ``a``, ``b``) from the layer-input state."""
        p = hinges[:, 0]
        xp, vp = x[p], v[p]
        # pivot acceleration: mean of X_q phi(X_q^T X_q) over q in {p, a, b}, X_q = [f_q, x_q - x_p, v_q - v_p]
        acc = sum(_ortho_equivariant(self.phi_hinge[k], torch.stack([f[q], x[q] - xp, v[q] - vp], -1))
                  for q in hinges.t()) / 3
        hc = sum(self.phi_c[k](h[q]) for q in hinges.t())
        vp = self.phi_v[k](hc) * vp + acc
        xp = xp + vp
        x_out, v_out = x_out.index_copy(0, p, xp), v_out.index_copy(0, p, vp)
        for q in (hinges[:, 1], hinges[:, 2]):
            r, u = x[q] - x[p], v[q] - v[p]
            r2 = (r * r).sum(-1, keepdim=True).clamp_min(1e-12).unsqueeze(-1)
            omega = self.phi_w[k](h[q]).unsqueeze(-1) * _skew(u, r) / r2 + _skew(f[q] - acc, r) / r2
            r, w_r = _rotate_arm(omega, r)
            x_out, v_out = x_out.index_copy(0, q, xp + r), v_out.index_copy(0, q, vp + w_r)
        return x_out, v_out

    def forward(self, graph: Graph) -> ModelOutput:
        check_input(graph, need_vel=True, node_dim=self.node_dim, edge_dim=self.edge_dim, model=self)
        n_nodes = graph.num_nodes
        hinges, sticks = objects_from_local_edges(
            graph.local_edge_index if self.objects != "none" else None, n_nodes, hinges=self.objects == "hinges")
        hinges, sticks = hinges.to(graph.pos.device), sticks.to(graph.pos.device)
        x, v, h = graph.pos, graph.vel, self.embed(graph.h)
        for k, layer in enumerate(self.layers):
            Z = torch.stack([x, v], -1)
            Z_new, h_new = layer(Z, h, graph.edge_index, graph.edge_attr)
            f = Z_new[..., 0] - x
            v_iso = self.phi_v[k](h) * v + f
            x_new, v_new = x + v_iso, v_iso
            if sticks.numel():
                x_new, v_new = self._stick_update(k, x, v, f, h, sticks, x_new, v_new)
            if hinges.numel():
                x_new, v_new = self._hinge_update(k, x, v, f, h, hinges, x_new, v_new)
            x, v, h = x_new, v_new, h_new
        return ModelOutput(pos=x, aux={"sticks": sticks, "hinges": hinges})
