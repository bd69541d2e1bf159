"""e3nn building blocks shared by the TFN and SE(3)-Transformer baselines.

* :func:`degree_irreps`: ``mul`` channels of every degree ``l <= lmax`` with the parity
  :math:`(-1)^l` of the spherical harmonics of a polar vector (so parity is tracked and the
  networks are O(3)-, not only SO(3)-, equivariant);
* :class:`PointConvolution`: the TFN point convolution: a per-edge tensor product of sender
  features with the edge's spherical harmonics, with channel-wise ("uvu") path weights produced
  by a radial MLP on a basis expansion of the edge length (and the edge attributes);
* :func:`make_gate`: the gated nonlinearity :class:`e3nn.nn.Gate`;
* :class:`MemoryEstimator`: measures the bytes a model saves for backward on small probe graphs
  and extrapolates linearly in the number of nodes and edges.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import e3nn
import torch
from e3nn import o3
from e3nn.math import soft_one_hot_linspace
from e3nn.nn import FullyConnectedNet, Gate
from torch import Tensor, nn

from ..data.graph import Graph
from ._common import ModelOutOfMemoryError, activation, oom_guard
from .base import ModelOutput

__all__ = [
    "MemoryEstimator",
    "PointConvolution",
    "degree_irreps",
    "e3nn_build_options",
    "edge_geometry",
    "make_gate",
    "run_guarded",
]


@contextlib.contextmanager
def e3nn_build_options() -> Iterator[None]:
    """Build e3nn modules without TorchScript compilation or einsum-path search.

    Both only cost construction time here (seconds per tensor product on a small CPU) and gave
    no measurable speed-up of our forward passes; the global e3nn defaults are restored after.
    """
    old = e3nn.get_optimization_defaults()
    e3nn.set_optimization_defaults(jit_script_fx=False, optimize_einsums=False)
    try:
        yield
    finally:
        e3nn.set_optimization_defaults(**old)


def degree_irreps(mul: int, lmax: int, lmin: int = 0) -> o3.Irreps:
    """``mul x 0e + mul x 1o + mul x 2e + ...`` up to degree ``lmax``."""
    return o3.Irreps([(mul, (l, (-1) ** l)) for l in range(lmin, lmax + 1)])


def make_gate(mul: int, lmax: int, act: str) -> Gate:
    """Gate: ``mul`` scalars through ``act``; ``mul`` channels of each degree ``1..lmax`` gated by
    sigmoids of ``mul * lmax`` extra scalars. Its ``irreps_in`` is what the convolution must output."""
    gated = degree_irreps(mul, lmax, lmin=1)
    return Gate(f"{mul}x0e", [activation(act)], f"{gated.num_irreps}x0e", [torch.sigmoid], gated)


def edge_geometry(graph: Graph, irreps_sh: o3.Irreps, num_basis: int, max_radius: float
                  ) -> tuple[Tensor, Tensor]:
    """Spherical harmonics of :math:`x_i - x_j` and the scalar edge features for the radial MLP.

    Returns ``sh`` of shape ``(E, irreps_sh.dim)`` and ``scalars`` of shape
    ``(E, num_basis + d)``: a Gaussian basis of :math:`\\lVert x_i - x_j\\rVert` on
    ``[0, max_radius]`` (e3nn's :func:`soft_one_hot_linspace`) followed by the edge attributes.
    """
    recv, send = graph.edge_index
    vec = graph.pos[recv] - graph.pos[send]
    sh = o3.spherical_harmonics(irreps_sh, vec, normalize=True, normalization="component")
    length = vec.norm(dim=-1)
    basis = soft_one_hot_linspace(length, 0.0, max_radius, num_basis, basis="gaussian", cutoff=False)
    parts = [basis.to(vec.dtype)] + ([graph.edge_attr] if graph.edge_attr is not None else [])
    return sh, torch.cat(parts, -1)


class PointConvolution(nn.Module):
    """TFN point convolution :math:`\\sum_{l_f} R^{(l_i,l_f,l_o)}_c(r_{ij})\\, Y^{(l_f)}(\\hat r_{ij})
    \\otimes f^{(l_i)}_{j,c}`, per edge, followed by a channel-mixing linear map.

    As in Thomas et al. (2018) the radial filters act channel by channel (e3nn ``"uvu"`` paths);
    channels are mixed by the self-interaction :class:`e3nn.o3.Linear` ``out_linear``.

    Shapes:
        - feats_send: :math:`(E, \\text{irreps\\_in.dim})`, sh: :math:`(E, \\text{irreps\\_sh.dim})`,
          edge_scalars: :math:`(E, s)`
        - :meth:`edge_tp` output: :math:`(E, \\text{irreps\\_mid.dim})`;
          ``out_linear`` maps ``irreps_mid -> irreps_out``
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_out: o3.Irreps, scalar_dim: int,
                 radial_hidden: int, act: str) -> None:
        super().__init__()
        self.irreps_in, self.irreps_sh, self.irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_sh), \
            o3.Irreps(irreps_out)
        wanted = {ir for _, ir in self.irreps_out}
        mid, instructions = [], []
        for i1, (mul, ir1) in enumerate(self.irreps_in):
            for i2, (_, ir2) in enumerate(self.irreps_sh):
                for ir_out in ir1 * ir2:
                    if ir_out in wanted:
                        instructions.append((i1, i2, len(mid), "uvu", True))
                        mid.append((mul, ir_out))
        if not mid:
            raise ValueError(f"no tensor-product path from {self.irreps_in} x {self.irreps_sh} "
                             f"to {self.irreps_out}")
        self.irreps_mid = o3.Irreps(mid)
        self.tp = o3.TensorProduct(self.irreps_in, self.irreps_sh, self.irreps_mid, instructions,
                                   shared_weights=False, internal_weights=False)
        self.radial = FullyConnectedNet([scalar_dim, radial_hidden, radial_hidden, self.tp.weight_numel],
                                        activation(act))
        self.out_linear = o3.Linear(self.irreps_mid, self.irreps_out)

    def _apply(self, fn, *args, **kwargs):
        """After ``.to()``/``.double()``: refill the Wigner-3j constants at the new precision.

        e3nn computes them once in the default dtype; casting float32 constants to float64 would
        leave a ~1e-8 equivariance error in double precision.
        """
        out = super()._apply(fn, *args, **kwargs)
        with torch.no_grad():
            for name, buf in self.tp.named_buffers():
                leaf = name.rsplit(".", 1)[-1]
                if leaf.startswith("_w3j_") and buf.is_floating_point():
                    l1, l2, l3 = (int(v) for v in leaf[len("_w3j_"):].split("_"))
                    buf.copy_(o3.wigner_3j(l1, l2, l3, dtype=torch.float64).to(buf))
        return out

    def edge_tp(self, feats_send: Tensor, sh: Tensor, edge_scalars: Tensor) -> Tensor:
        """Per-edge tensor product with radial weights, before channel mixing: ``(E, irreps_mid.dim)``."""
        return self.tp(feats_send, sh, self.radial(edge_scalars))


class MemoryEstimator:
    """Mixin: estimate forward+backward memory from probe runs (``estimate_memory``).

    The bytes of all distinct tensors a forward pass saves for backward are measured on three
    small probe graphs (``saved_tensors_hooks``) and fitted as ``c0 + a N + b E``; every operation
    of these models is per node or per edge, so the fit extrapolates exactly to other sizes.
    The estimate of the peak is ``1.5 x activations + 4 x parameters`` (gradients, optimizer
    state and backward transients), which is an order-of-magnitude guide, not a guarantee.
    """

    node_dim: int
    edge_dim: int
    _mem_coeffs: dict

    def _probe(self, n_nodes: int, n_edges: int, dtype: torch.dtype, device: torch.device) -> int:
        gen = torch.Generator().manual_seed(n_nodes * 1000 + n_edges)
        pairs = torch.tensor([(i, j) for i in range(n_nodes) for j in range(n_nodes) if i != j])
        pick = pairs[torch.randperm(len(pairs), generator=gen)[:n_edges]].t().contiguous()
        g = Graph(pos=torch.randn(n_nodes, 3, generator=gen), vel=torch.randn(n_nodes, 3, generator=gen),
                  h=torch.randn(n_nodes, self.node_dim, generator=gen), edge_index=pick,
                  edge_attr=torch.randn(n_edges, self.edge_dim, generator=gen) if self.edge_dim else None)
        g = g.to(device=device, dtype=dtype)
        seen: dict[tuple[int, int], int] = {}

        def pack(t: Tensor) -> Tensor:
            if t.device.type != "meta":
                key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
                seen[key] = t.untyped_storage().nbytes()
            return t

        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            self._forward_impl(g)  # type: ignore[attr-defined]
        return sum(seen.values())

    def estimate_memory(self, num_nodes: int, num_edges: int, dtype: torch.dtype = torch.float32) -> int:
        """Estimated peak bytes of one forward+backward pass on ``num_nodes`` nodes, ``num_edges`` edges."""
        if not hasattr(self, "_mem_coeffs"):
            self._mem_coeffs = {}
        p = next(self.parameters())  # type: ignore[attr-defined]
        key = (p.dtype, p.device.type)
        if key not in self._mem_coeffs:
            b1 = self._probe(6, 12, p.dtype, p.device)
            b2 = self._probe(6, 30, p.dtype, p.device)
            b3 = self._probe(12, 30, p.dtype, p.device)
            per_edge = (b2 - b1) / 18
            per_node = (b3 - b2) / 6
            const = b1 - 6 * per_node - 12 * per_edge
            self._mem_coeffs[key] = (max(const, 0.0), max(per_node, 0.0), max(per_edge, 0.0))
        c0, a, b = self._mem_coeffs[key]
        n_params = sum(q.numel() for q in self.parameters())  # type: ignore[attr-defined]
        item = torch.empty(0, dtype=dtype).element_size()
        scale = item / p.element_size()  # probes ran in the model's dtype
        return int(1.5 * scale * (c0 + a * num_nodes + b * num_edges) + 4 * n_params * item)


def run_guarded(model: MemoryEstimator, name: str, graph: Graph) -> ModelOutput:
    """Run ``model._forward_impl(graph)`` under its ``memory_limit`` and the OOM guard.

    Raises :class:`~eghn.models._common.ModelOutOfMemoryError` (a ``MemoryError``) with the
    estimated need when the estimate exceeds ``model.memory_limit`` (checked before any
    allocation) or when the forward pass actually runs out of CPU/CUDA memory.
    """
    detail = f"N = {graph.num_nodes} nodes, E = {graph.num_edges} edges, dtype {graph.pos.dtype}"

    def estimate() -> int:
        return model.estimate_memory(graph.num_nodes, graph.num_edges, graph.pos.dtype)

    limit = getattr(model, "memory_limit", None)
    if limit is not None and (need := estimate()) > limit:
        raise ModelOutOfMemoryError(
            f"{name} would need about {need / 2**30:.2f} GiB ({detail}), more than its memory_limit "
            f"of {limit / 2**30:.2f} GiB; use smaller batches, fewer edges or smaller widths")
    with oom_guard(name, detail, estimate):
        return ModelOutput(pos=model._forward_impl(graph))  # type: ignore[attr-defined]
