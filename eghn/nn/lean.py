r"""MLP chains as single autograd nodes, and edge MLPs that keep nothing edge-sized.

:func:`run_chain` evaluates one MLP, optionally followed by *heads* (MLPs applied to its
output, e.g. :math:`\phi_x(m_{ij})` after :math:`m_{ij} = \phi_e(\dots)`), as one autograd node
with a hand-written backward pass: the same tensors are kept as autograd would keep, but a
chain of a dozen operations costs one node instead of a dozen. :func:`edge_chain` does the same
for an edge MLP whose first layer acts on ``[h_i, h_j, r_ij]``: that layer runs per node and
is gathered per edge, and on large edge sets (:func:`set_edge_recompute`) nothing edge-sized
is kept at all -- the backward pass recomputes the edge activations, so that the memory of a
layer grows with the nodes rather than the edges (activation checkpointing of the edge MLPs).

Values and gradients are those of the plain modules (the same operations in the same order);
``tests/test_lean.py`` checks both.

Supported activations: ``SiLU``, ``ReLU``, ``GELU`` (exact) and ``Tanh``. Anything else in
a chain (dropout, normalisation) makes :func:`chain_spec` return ``None`` and the caller runs
the modules as usual. The backward pass is not itself differentiable (no double backward).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = ["ChainSpec", "chain_spec", "edge_chain", "pair_linear", "run_chain", "run_modules", "set_edge_recompute"]

_Act = tuple[Callable[[Tensor], Tensor], Callable[[Tensor, Tensor], Tensor]]


def _relu_backward(g: Tensor, x: Tensor) -> Tensor:
    return torch.ops.aten.threshold_backward(g, x, 0)


def _tanh_backward(g: Tensor, x: Tensor) -> Tensor:
    return torch.ops.aten.tanh_backward(g, torch.tanh(x))


def _identity(x: Tensor) -> Tensor:
    return x


def _identity_backward(g: Tensor, x: Tensor) -> Tensor:
    return g


def _act(mod: nn.Module) -> _Act | None:
    """(forward, backward(grad, pre-activation)) of a supported activation module."""
    if type(mod) is nn.SiLU:
        return F.silu, torch.ops.aten.silu_backward
    if type(mod) is nn.ReLU:
        return F.relu, _relu_backward
    if type(mod) is nn.GELU and mod.approximate == "none":
        return F.gelu, torch.ops.aten.gelu_backward
    if type(mod) is nn.Tanh:
        return torch.tanh, _tanh_backward
    return None


@dataclass(frozen=True)
class ChainSpec:
    """An MLP as a list of linear layers with one activation between (and maybe around) them.

    ``act_first``: the chain's input is a pre-activation (the first module is the activation);
    ``act_last``: the output goes through the activation.
    """

    linears: tuple[nn.Linear, ...]
    act: _Act
    act_first: bool
    act_last: bool


def chain_spec(modules: Sequence[nn.Module]) -> ChainSpec | None:
    """Describe ``modules`` (``[act,] Linear, act, Linear, ... [, act]``) or return ``None``.

    Modules with forward hooks (e.g. ``torch.nn.utils.prune``) also give ``None``: the chain
    reads the weights directly and would bypass the hooks.
    """
    mods = list(modules)
    if any(m._forward_hooks or m._forward_pre_hooks for m in mods):
        return None
    linears, acts, act_first, act_last = [], [], False, False
    expect_linear = True
    for k, mod in enumerate(mods):
        if isinstance(mod, nn.Linear):
            if not expect_linear and linears:
                return None  # two linears in a row
            linears.append(mod)
            expect_linear = False
        else:
            a = _act(mod)
            if a is None or (expect_linear and k > 0):
                return None
            acts.append(mod)
            if k == 0:
                act_first = True
            elif k == len(mods) - 1:
                act_last = True
            expect_linear = True
    if not linears or any(type(a) is not type(acts[0]) for a in acts):
        return None
    act = _act(acts[0]) if acts else (_identity, _identity_backward)
    return ChainSpec(tuple(linears), act, act_first, act_last)


def _forward(x: Tensor, spec: ChainSpec, params: Sequence[Tensor | None], posts: list[Tensor] | None = None
             ) -> tuple[Tensor, list[Tensor]]:
    """Run one chain; returns the output and the pre-activations (and appends the activation
    outputs to ``posts`` when given, so that a backward pass need not recompute them)."""
    fwd = spec.act[0]
    pres, cur = [], x
    for k in range(len(spec.linears)):
        W, b = params[2 * k], params[2 * k + 1]
        if k > 0 or spec.act_first:
            pres.append(cur)
            cur = fwd(cur)
            if posts is not None:
                posts.append(cur)
        cur = torch.addmm(b, cur, W.t()) if b is not None else cur @ W.t()
    if spec.act_last:
        pres.append(cur)
        cur = fwd(cur)
        if posts is not None:
            posts.append(cur)
    return cur, pres


def _backward(g: Tensor, x: Tensor, pres: Sequence[Tensor], posts: Sequence[Tensor], spec: ChainSpec,
              params: Sequence[Tensor | None], need_input_grad: bool) -> tuple[Tensor | None, list[Tensor | None]]:
    """Backward pass of one chain from its pre-activations and activation outputs."""
    bwd = spec.act[1]
    grads: list[Tensor | None] = [None] * len(params)
    p = len(pres) - 1
    if spec.act_last:
        g = bwd(g, pres[p])
        p -= 1
    for k in reversed(range(len(spec.linears))):
        W, b = params[2 * k], params[2 * k + 1]
        has_act = k > 0 or spec.act_first
        inp = posts[p] if has_act else x
        grads[2 * k] = g.t() @ inp
        if b is not None:
            grads[2 * k + 1] = g.sum(0)
        if k == 0 and not spec.act_first and not need_input_grad:
            return None, grads
        g = g @ W
        if has_act:
            g = bwd(g, pres[p])
            p -= 1
    return g, grads


def _split(params: Sequence[Tensor | None], specs: Sequence[ChainSpec]) -> list[Sequence[Tensor | None]]:
    out, at = [], 0
    for spec in specs:
        c = 2 * len(spec.linears)
        out.append(params[at:at + c])
        at += c
    return out


def _chain_forward(x: Tensor, specs: Sequence[ChainSpec], params: Sequence[Tensor | None],
                   all_posts: list[list[Tensor]] | None = None
                   ) -> tuple[tuple[Tensor, ...], list[list[Tensor]], Tensor | None]:
    """Outputs ``(main(x), *heads)``, the pre-activations of every chain, and ``main(x)`` when
    the heads need it and it cannot be recomputed from a pre-activation (else ``None``).
    With ``all_posts`` (an empty list), the activation outputs of every chain are kept too."""
    psplit = _split(params, specs)
    if all_posts is not None:
        all_posts.extend([] for _ in specs)
    y, pres = _forward(x, specs[0], psplit[0], None if all_posts is None else all_posts[0])
    outs, all_pres = [y], [pres]
    for k, (spec, ps) in enumerate(zip(specs[1:], psplit[1:]), start=1):
        out, hp = _forward(y, spec, ps, None if all_posts is None else all_posts[k])
        outs.append(out)
        all_pres.append(hp)
    keep_y = y if len(specs) > 1 and not specs[0].act_last else None
    return tuple(outs), all_pres, keep_y


def _chain_backward(grads: Sequence[Tensor | None], x: Tensor, all_pres: Sequence[Sequence[Tensor]],
                    all_posts: Sequence[Sequence[Tensor]], y_kept: Tensor | None, specs: Sequence[ChainSpec],
                    params: Sequence[Tensor | None], need_input_grad: bool
                    ) -> tuple[Tensor | None, list[Tensor | None]]:
    psplit = _split(params, specs)
    gy = grads[0]
    head_grads: list[list[Tensor | None]] = []
    if len(specs) > 1:
        y = y_kept if y_kept is not None else all_posts[0][-1]  # the heads' input, main(x)
        for spec, hp, po, ps, g in zip(specs[1:], all_pres[1:], all_posts[1:], psplit[1:], grads[1:]):
            if g is None:
                head_grads.append([None] * len(ps))
                continue
            gin, hg = _backward(g.contiguous(), y, hp, po, spec, ps, True)
            head_grads.append(hg)
            gy = gin if gy is None else gy + gin
    if gy is None:
        gx, main_grads = None, [None] * len(psplit[0])
    else:
        gx, main_grads = _backward(gy.contiguous(), x, all_pres[0], all_posts[0], specs[0], psplit[0],
                                   need_input_grad)
    return gx, main_grads + [t for hg in head_grads for t in hg]


class _Chain(torch.autograd.Function):
    """Keeps the input, the pre-activations and the activation outputs (what autograd would keep)
    in one autograd node."""

    @staticmethod
    def forward(ctx, x: Tensor, specs: tuple[ChainSpec, ...], *params: Tensor | None) -> tuple[Tensor, ...]:
        ctx.set_materialize_grads(False)  # unused outputs give None, so unused heads get no gradient
        all_posts: list[list[Tensor]] = []
        outs, all_pres, y_kept = _chain_forward(x, specs, params, all_posts)
        ctx.specs, ctx.sizes, ctx.n_params = specs, [len(p) for p in all_pres], len(params)
        ctx.has_y = y_kept is not None
        flat = [t for p in all_pres for t in p] + [t for p in all_posts for t in p]
        ctx.save_for_backward(x, *flat, *([y_kept] if ctx.has_y else []), *params)
        return outs

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        saved = list(ctx.saved_tensors)
        x = saved[0]
        params = saved[len(saved) - ctx.n_params:]
        rest = saved[1:len(saved) - ctx.n_params]
        y_kept = rest.pop() if ctx.has_y else None
        all_pres, all_posts, at = [], [], 0
        for n in ctx.sizes:
            all_pres.append(rest[at:at + n])
            at += n
        for n in ctx.sizes:
            all_posts.append(rest[at:at + n])
            at += n
        gx, pgrads = _chain_backward(grads, x, all_pres, all_posts, y_kept, ctx.specs, params,
                                     ctx.needs_input_grad[0])
        return (gx, None, *pgrads)


def _pair(Pi: Tensor, Pj: Tensor, i: Tensor, j: Tensor, rest: Tensor | None, Wr: Tensor | None,
          b: Tensor | None) -> Tensor:
    y = Pi.index_select(0, i)
    y += Pj.index_select(0, j)
    if rest is not None:
        y.addmm_(rest, Wr.t())
    if b is not None:
        y += b
    return y


class PairLinear(torch.autograd.Function):
    """``a_ij = Pi[i] + Pj[j] + rest W_r^T + b`` as one autograd node that keeps nothing
    edge-sized but ``rest`` (used by :func:`pair_linear`)."""

    @staticmethod
    def forward(ctx, Pi: Tensor, Pj: Tensor, i: Tensor, j: Tensor, rest: Tensor | None, Wr: Tensor | None,
                b: Tensor | None) -> Tensor:
        ctx.save_for_backward(i, j, rest, Wr)
        ctx.n_nodes, ctx.has_bias = Pi.shape[0], b is not None
        return _pair(Pi, Pj, i, j, rest, Wr, b)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, ...]:
        i, j, rest, Wr = ctx.saved_tensors
        return _pair_backward(ctx, g, i, j, rest, Wr, ctx.has_bias)


def _pair_backward(ctx, g: Tensor, i: Tensor, j: Tensor, rest: Tensor | None, Wr: Tensor | None, has_bias: bool
                   ) -> tuple[Tensor | None, ...]:
    need = ctx.needs_input_grad
    gPi = g.new_zeros(ctx.n_nodes, g.shape[1]).index_add_(0, i, g) if need[0] else None
    gPj = g.new_zeros(ctx.n_nodes, g.shape[1]).index_add_(0, j, g) if need[1] else None
    g_rest = g @ Wr if rest is not None and need[4] else None
    gWr = g.t() @ rest if rest is not None and need[5] else None
    gb = g.sum(0) if has_bias and need[6] else None
    return gPi, gPj, None, None, g_rest, gWr, gb


class _EdgeChain(torch.autograd.Function):
    r"""First layer from node projections, :math:`a_{ij} = P^{(i)}_i + P^{(j)}_j + W_r r_{ij} + b`,
    then the chain and its heads. Nothing edge-sized except the edge inputs :math:`r_{ij}` is
    kept: the backward pass recomputes the edge activations (activation checkpointing of the
    edge MLP, at the cost of one more evaluation of it)."""

    @staticmethod
    def forward(ctx, Pi: Tensor, Pj: Tensor, i: Tensor, j: Tensor, rest: Tensor | None, Wr: Tensor | None,
                b: Tensor | None, specs: tuple[ChainSpec, ...], *params: Tensor | None) -> tuple[Tensor, ...]:
        ctx.set_materialize_grads(False)
        outs, _, _ = _chain_forward(_pair(Pi, Pj, i, j, rest, Wr, b), specs, params)
        ctx.specs, ctx.n_nodes = specs, Pi.shape[0]
        ctx.save_for_backward(Pi, Pj, i, j, rest, Wr, b, *params)
        return outs

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        Pi, Pj, i, j, rest, Wr, b, *params = ctx.saved_tensors
        all_posts: list[list[Tensor]] = []
        _, all_pres, y_kept = _chain_forward(_pair(Pi, Pj, i, j, rest, Wr, b), ctx.specs, params, all_posts)
        g, pgrads = _chain_backward(grads, all_pres[0][0], all_pres, all_posts, y_kept, ctx.specs, params, True)
        if g is None:
            return (None,) * 8 + tuple(pgrads)
        return (*_pair_backward(ctx, g, i, j, rest, Wr, b is not None), None, *pgrads)


_EDGE_RECOMPUTE: bool | str = "auto"
_AUTO_THRESHOLD = 1 << 22  # elements of one edge activation (16 MB in float32)


def set_edge_recompute(mode: bool | str = "auto") -> bool | str:
    """Choose when :func:`edge_chain` recomputes edge activations in the backward pass.

    ``True``: always (least memory: nothing edge-sized is kept); ``False``: never (the
    pre-activations are kept, no extra work); ``"auto"`` (default): when one edge activation
    has at least 2^22 elements (e.g. 65,536 edges at width 64), where memory, not the extra
    matrix products, is what limits a training step. Returns the previous mode. Training
    configurations set it with ``train.recompute_edges``.
    """
    global _EDGE_RECOMPUTE
    if mode not in (True, False, "auto") or not isinstance(mode, (bool, str)):
        raise ValueError(f"edge recompute mode must be True, False or 'auto', got {mode!r}")
    previous, _EDGE_RECOMPUTE = _EDGE_RECOMPUTE, mode
    return previous


def _recompute(elements: int) -> bool:
    if _EDGE_RECOMPUTE == "auto":
        return elements >= _AUTO_THRESHOLD
    return bool(_EDGE_RECOMPUTE)


def _params(spec: ChainSpec) -> list[Tensor | None]:
    out: list[Tensor | None] = []
    for lin in spec.linears:
        out += [lin.weight, lin.bias]
    return out


def _autocast_dtype(t: Tensor) -> torch.dtype | None:
    """The autocast dtype active for ``t``'s device, or ``None``."""
    dev = t.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return None


def _cast(t: Tensor | None, dtype: torch.dtype | None) -> Tensor | None:
    if t is None or dtype is None or not t.is_floating_point() or t.dtype == dtype:
        return t
    return t.to(dtype)


def _no_autocast(t: Tensor, dtype: torch.dtype | None):
    """Under autocast, inputs and weights are cast to the autocast dtype *before* entering the
    hand-written autograd nodes (as autocast would cast them for each matrix product), and the
    nodes run with autocast off so that forward and backward see one dtype."""
    return torch.autocast(t.device.type, enabled=False) if dtype is not None else contextlib.nullcontext()


def run_chain(x: Tensor, main: ChainSpec, *heads: ChainSpec) -> tuple[Tensor, ...]:
    """Evaluate ``main(x)`` and every ``head(main(x))``; returns ``(main(x), *heads)``.

    ``x`` may have any leading shape ``(*, in)``. Without gradients this is the plain
    forward pass. Works under :func:`torch.autocast` (matrix products in the autocast dtype).
    """
    lead = x.shape[:-1]
    specs = (main, *heads)
    dt = _autocast_dtype(x)
    x2 = _cast(x.reshape(-1, x.shape[-1]), dt)
    params = [_cast(t, dt) for spec in specs for t in _params(spec)]
    with _no_autocast(x, dt):
        if torch.is_grad_enabled():
            outs = _Chain.apply(x2, specs, *params)
        else:
            outs = _chain_forward(x2, specs, params)[0]
    return tuple(o.reshape(*lead, o.shape[-1]) for o in outs)


def pair_linear(linear: nn.Linear, h: Tensor, i: Tensor, j: Tensor, rest: Tensor | None = None) -> Tensor:
    r"""``linear(cat([h[i], h[j], rest], -1))`` without building the per-edge concatenation.

    The weight is split into the blocks acting on :math:`h_i`, :math:`h_j` and the edge
    features; the node blocks are applied once per *node* and gathered, so an edge-level matrix
    product of width ``2c + d`` shrinks to one of width ``d`` (fewer FLOPs), and the only
    edge-sized tensor created is the result. Same function, same gradients.

    Shapes:
        - h: :math:`(N, c)`, i, j: :math:`(E,)`, rest: :math:`(E, d)` -> :math:`(E, \text{out})`
    """
    Pi, Pj, rest, Wr, b, _, dt = _pair_parts(linear, h, rest, ())
    with _no_autocast(h, dt):
        if torch.is_grad_enabled():
            return PairLinear.apply(Pi, Pj, i, j, rest, Wr, b)
        return _pair(Pi, Pj, i, j, rest, Wr, b)


def _pair_parts(first: nn.Linear, h: Tensor, rest: Tensor | None, specs: Sequence[ChainSpec]):
    c = h.shape[1]
    W = first.weight
    Pi, Pj = h @ W[:, :c].t(), h @ W[:, c:2 * c].t()  # (N, out) each; autocast applies here
    has_rest = rest is not None and rest.shape[1] > 0
    dt = _autocast_dtype(h)
    Wr = _cast(W[:, 2 * c:], dt) if has_rest else None
    rest = _cast(rest, dt) if has_rest else None
    params = [_cast(t, dt) for spec in specs for t in _params(spec)]
    return _cast(Pi, dt), _cast(Pj, dt), rest, Wr, _cast(first.bias, dt), params, dt


def run_modules(x: Tensor, main: Sequence[nn.Module], *heads: Sequence[nn.Module]) -> tuple[Tensor, ...]:
    """:func:`run_chain` for module lists; falls back to applying the modules one by one when a
    list is not a plain ``Linear``/activation chain."""
    specs = [chain_spec(m) for m in (main, *heads)]
    if all(s is not None for s in specs):
        return run_chain(x, *specs)
    y = x
    for mod in main:
        y = mod(y)
    outs = [y]
    for head in heads:
        z = y
        for mod in head:
            z = mod(z)
        outs.append(z)
    return tuple(outs)


def edge_chain(first: nn.Linear, h: Tensor, i: Tensor, j: Tensor, rest: Tensor | None,
               main: Sequence[nn.Module], *heads: Sequence[nn.Module]) -> tuple[Tensor, ...]:
    r"""An edge MLP whose first layer sees ``cat([h_i, h_j, rest_ij])``: returns
    ``(y, *heads(y))`` with ``y = main(first(cat([h[i], h[j], rest])))``.

    The first layer is applied per *node* and gathered (fewer FLOPs than an edge-level matrix
    product of width ``2c + d``). On large edge sets (see :func:`set_edge_recompute`) nothing
    edge-sized but ``rest`` is kept for the backward pass, which recomputes the edge
    activations, so the memory of a layer scales with the nodes, not the edges. ``main``
    starts with the activation that follows ``first``.

    Shapes:
        - h: :math:`(N, c)`, i, j: :math:`(E,)`, rest: :math:`(E, d)` or ``None``
        - output: :math:`(E, \cdot)` tensors
    """
    specs = [chain_spec(m) for m in (main, *heads)]
    fused = all(sp is not None for sp in specs)
    if fused and torch.is_grad_enabled() and specs[0].act_first and _recompute(i.shape[0] * first.out_features):
        Pi, Pj, rest, Wr, b, params, dt = _pair_parts(first, h, rest, specs)
        with _no_autocast(h, dt):
            return _EdgeChain.apply(Pi, Pj, i, j, rest, Wr, b, tuple(specs), *params)
    a1 = pair_linear(first, h, i, j, rest)
    return run_chain(a1, *specs) if fused else run_modules(a1, main, *heads)
