r"""Numerical equivariance checks for any model or layer acting on a :class:`~eghn.data.Graph`.

A function ``fn(graph) -> outputs`` is E(n)-equivariant when, for every orthogonal
:math:`Q` (det :math:`\pm 1`), translation :math:`t` and node permutation :math:`P`,

.. math:: f(P, Q, t \cdot G) = P, Q, t \cdot f(G),

where each output transforms according to its *kind* (``position``, ``vector`` or
``invariant``, optionally ``:fixed``; the table is on :func:`equivariance_error`'s page).

The error reported is relative: :math:`\max |f(Tg) - T f(g)| / \max(|T f(g)|, 1)`, per
transformation type. Default tolerances depend on the dtype (:data:`TOLERANCES`).

Non-finite outputs never pass: a NaN or infinity in :math:`f(g)` or :math:`f(Tg)` makes the
error of that check ``nan`` (:func:`equivariance_error`), and :func:`assert_equivariant` fails
naming the transformation (or the untransformed input) that produced it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from ..data.graph import Graph

__all__ = [
    "TOLERANCES",
    "assert_equivariant",
    "equivariance_error",
    "random_orthogonal",
    "random_permutation",
    "random_rotation_about_axis",
    "randomize_parameters",
]

#: Relative tolerances per dtype, the defaults of :func:`assert_equivariant`. float64 is the
#: paper-proof check (``1e-9``); float32 budget: a few hundred ulps of accumulated error through a
#: deep network (EGHN with L = 2 on graphs of at most 40 nodes stays within it:
#: ``tests/test_testing.py``). The error is relative to the largest transformed output, so a
#: translation by :math:`t` is judged against the rounding of coordinates of size :math:`|t|`;
#: the same budgets hold for coordinate scales ``1e-3`` to ``1e5`` and translations up to ``1e5``
#: once coordinates are standardised (``tests/test_units.py``).
TOLERANCES: dict[torch.dtype, float] = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 1e-2,
                                        torch.bfloat16: 5e-2}

_KINDS = ("position", "vector", "invariant")


def random_orthogonal(n: int, det: int | None = None, *, generator: torch.Generator | None = None,
                      dtype: torch.dtype = torch.float64) -> Tensor:
    """A Haar-random orthogonal ``(n, n)`` matrix; ``det=+1`` (rotation), ``-1`` (with reflection)
    or ``None`` (either).

    Example:
        >>> import torch
        >>> Q = random_orthogonal(3, det=-1, generator=torch.Generator().manual_seed(0))
        >>> torch.allclose(Q @ Q.T, torch.eye(3, dtype=Q.dtype)), round(float(torch.linalg.det(Q)), 6)
        (True, -1.0)
    """
    A = torch.randn(n, n, generator=generator, dtype=torch.float64)
    Q, R = torch.linalg.qr(A)
    Q = Q * torch.sign(torch.diagonal(R)).unsqueeze(0)
    if det is not None:
        if det not in (1, -1):
            raise ValueError("det must be +1, -1 or None")
        if torch.det(Q).sign().item() != det:
            Q[:, 0] = -Q[:, 0]
    return Q.to(dtype)


def random_rotation_about_axis(n: int, axis: int, *, generator: torch.Generator | None = None,
                               dtype: torch.dtype = torch.float64, det: int = 1) -> Tensor:
    """A random orthogonal matrix fixing coordinate axis ``axis`` (e.g. the vertical axis of
    motion-capture data, whose models are only equivariant about it).

    Example:
        >>> import torch
        >>> Q = random_rotation_about_axis(3, 1, generator=torch.Generator().manual_seed(0))
        >>> Q[1].tolist(), Q[:, 1].tolist()
        ([0.0, 1.0, 0.0], [0.0, 1.0, 0.0])
    """
    others = [k for k in range(n) if k != axis]
    Q = torch.eye(n, dtype=torch.float64)
    sub = random_orthogonal(n - 1, det, generator=generator)
    Q[torch.tensor(others).unsqueeze(1), torch.tensor(others).unsqueeze(0)] = sub
    return Q.to(dtype)


def random_permutation(n: int, *, generator: torch.Generator | None = None) -> Tensor:
    """A random permutation of ``range(n)`` (int64).

    Example:
        >>> import torch
        >>> sorted(random_permutation(5, generator=torch.Generator().manual_seed(0)).tolist())
        [0, 1, 2, 3, 4]
    """
    return torch.randperm(n, generator=generator)


def _flatten(out: Any, spec: Mapping[str, str] | str | None) -> dict[str, tuple[Tensor, str]]:
    """Turn a model's output into ``{name: (tensor, kind)}`` following ``spec``."""
    from ..models.base import ModelOutput

    if isinstance(out, Tensor):
        kind = spec if isinstance(spec, str) else "position"
        return {"output": (out, kind)}
    if isinstance(out, ModelOutput):
        spec = spec or {"pos": "position"}
        items = {"pos": out.pos, **{f"aux.{k}": v for k, v in out.aux.items()}}
    elif isinstance(out, Mapping):
        items = dict(out)
    elif isinstance(out, (tuple, list)):
        items = {str(k): v for k, v in enumerate(out)}
    else:
        raise TypeError(f"cannot check outputs of type {type(out).__name__}")
    if spec is None or isinstance(spec, str):
        raise ValueError("outputs with several entries need an `outputs` mapping {name: kind}")
    result = {}
    for name, kind in spec.items():
        if name not in items:
            raise KeyError(f"output {name!r} not found; available: {sorted(items)}")
        result[name] = (items[name], kind)
    return result


def _apply(y: Tensor, kind: str, Q: Tensor | None, t: Tensor | None, perm: Tensor | None, batch: Tensor) -> Tensor:
    base, _, fixed = kind.partition(":")
    if base not in _KINDS or fixed not in ("", "fixed"):
        raise ValueError(f"unknown output kind {kind!r}; use one of {_KINDS}, optionally with ':fixed'")
    if base in ("position", "vector") and Q is not None:
        y = torch.einsum("ij,nj...->ni...", Q.to(y), y)
    if base == "position" and t is not None:
        shift = t.to(y).unsqueeze(0) if t.dim() == 1 else t.to(y)[batch]  # (1 or N, n)
        y = y + shift.view(*shift.shape, *([1] * (y.dim() - 2)))
    if perm is not None and fixed != "fixed":
        y = y[perm]
    return y


def _rel(a: Tensor, b: Tensor) -> float:
    """Relative error of ``a`` against ``b``; ``nan`` when either holds a NaN or an infinity."""
    if a.shape != b.shape:
        raise AssertionError(f"output shapes differ after the transformation: {tuple(a.shape)} vs {tuple(b.shape)}")
    if not a.numel():
        return 0.0
    if not (bool(torch.isfinite(a).all()) and bool(torch.isfinite(b).all())):
        return math.nan
    scale = max(float(b.abs().max()), 1.0)
    return float((a - b).abs().max()) / scale


def _nonfinite(outputs: Mapping[str, tuple[Tensor, str]]) -> list[str]:
    return [name for name, (y, _) in outputs.items() if y.is_floating_point() and not bool(torch.isfinite(y).all())]


def _names(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _worse(a: float, b: float) -> float:
    """``max`` that keeps ``nan`` (Python's ``max(0.0, nan)`` is ``0.0``)."""
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)


def equivariance_error(
    fn: Callable[[Graph], Any],
    graph: Graph,
    *,
    outputs: Mapping[str, str] | str | None = None,
    checks: tuple[str, ...] = ("rotation", "reflection", "translation", "permutation"),
    trials: int = 2,
    rotation_axis: int | None = None,
    seed: int = 0,
    translation_scale: float = 10.0,
    report: dict[str, str] | None = None,
) -> dict[str, float]:
    r"""Largest relative equivariance error of ``fn`` on ``graph`` for each kind of transformation.

    .. rubric:: Output kinds

    How each output of ``fn`` must transform (``outputs`` names the kind of each):

    ============== ======================== ===================== ================
    kind           rotation / reflection    translation            permutation
    ============== ======================== ===================== ================
    ``position``   :math:`y Q^\top` (dim 1) :math:`+ t`            rows permuted
    ``vector``     :math:`y Q^\top` (dim 1) none                   rows permuted
    ``invariant``  none                     none                   rows permuted
    ============== ======================== ===================== ================

    Append ``":fixed"`` (e.g. ``"vector:fixed"``) for outputs not indexed by nodes (cluster
    quantities, graph-level scalars): they are not permuted. Outputs with a spatial axis carry it
    at dimension 1 (``(N, n)`` or ``(N, n, m)``).

    Args:
        fn: model or layer, ``fn(graph)`` returning a tensor, a :class:`~eghn.models.ModelOutput`,
            a tuple or a mapping of tensors.
        graph: the (batched) input. Its positions/targets are rotated and translated and its
            velocities rotated; ``h`` and edge attributes are left unchanged.
        outputs: kind of each output (*Output kinds* above), one string for all or a mapping of
            output name to kind. A plain tensor defaults to
            ``"position"``; a ``ModelOutput`` to ``{"pos": "position"}``.
        checks: subset of ``"rotation"`` (det +1), ``"reflection"`` (det -1),
            ``"translation"`` and ``"permutation"`` (nodes reordered, edges remapped).
        trials: random transformations per check.
        rotation_axis: restrict rotations/reflections to those fixing this coordinate axis.
        seed: seed of the random transformations.
        translation_scale: standard deviation of each component of the random translations.
        report: if given, filled with ``{check: message}`` for every check whose output held a
            NaN or an infinity (key ``"input"`` for the untransformed graph).

    Returns:
        ``{check: error}`` for each requested check; ``nan`` where an output was not finite.

    Example:
        >>> import torch
        >>> from eghn.testing.strategies import random_graph
        >>> g = random_graph(6, node_dim=1)
        >>> err = equivariance_error(lambda gr: gr.pos - gr.pos.mean(0), g, outputs="vector")
        >>> sorted(err), max(err.values()) < 1e-12
        (['permutation', 'reflection', 'rotation', 'translation'], True)
    """
    if not math.isfinite(translation_scale) or translation_scale < 0:
        raise ValueError(f"translation_scale must be finite and >= 0, got {translation_scale}")
    gen = torch.Generator().manual_seed(seed)
    n = graph.dim
    notes = report if report is not None else {}
    with torch.no_grad():
        ref = _flatten(fn(graph), outputs)
        bad_ref = _nonfinite(ref)
        if bad_ref:
            notes["input"] = f"non-finite (NaN/inf) values in {_names(bad_ref)} on the untransformed input"
        errors: dict[str, float] = {}
        for check in checks:
            worst = math.nan if bad_ref else 0.0
            for _ in range(trials):
                Q = t = perm = None
                if check in ("rotation", "reflection"):
                    det = 1 if check == "rotation" else -1
                    if rotation_axis is None:
                        Q = random_orthogonal(n, det, generator=gen, dtype=graph.pos.dtype)
                    else:
                        Q = random_rotation_about_axis(n, rotation_axis, generator=gen,
                                                       dtype=graph.pos.dtype, det=det)
                    g2 = graph.transform(rotation=Q)
                elif check == "translation":
                    t = (torch.randn(n, generator=gen, dtype=torch.float64) * translation_scale).to(graph.pos.dtype)
                    if rotation_axis is not None:
                        t[rotation_axis] = 0
                    g2 = graph.transform(translation=t)
                elif check == "permutation":
                    perm = random_permutation(graph.num_nodes, generator=gen)
                    g2 = graph.permute(perm)
                else:
                    raise ValueError(f"unknown check {check!r}")
                out = _flatten(fn(g2), outputs)
                bad = _nonfinite(out)
                if bad and check not in notes:
                    notes[check] = f"non-finite (NaN/inf) values in {_names(bad)} after the {check}"
                for name, (y, kind) in ref.items():
                    expected = _apply(y, kind, Q, t, perm, graph.batch)
                    worst = _worse(worst, _rel(out[name][0], expected))
            errors[check] = worst
    return errors


def assert_equivariant(fn: Callable[[Graph], Any], graph: Graph, *, tolerance: float | None = None,
                       **kwargs: Any) -> dict[str, float]:
    """Raise ``AssertionError`` unless :func:`equivariance_error` stays below ``tolerance``
    for every check.

    Args:
        fn: model or layer, ``fn(graph)`` returning a tensor, a
            :class:`~eghn.models.ModelOutput`, a tuple or a mapping of tensors.
        graph: the (batched) input graph; its dtype selects the default tolerance.
        tolerance: largest relative error accepted; default: the entry of
            :data:`~eghn.testing.TOLERANCES` for ``graph.pos.dtype`` (``1e-4`` for a dtype
            without one).
        **kwargs: passed on to :func:`equivariance_error`: ``outputs``, ``checks``,
            ``trials``, ``rotation_axis``, ``seed``, ``translation_scale``.

    Returns:
        ``{check: error}`` for each check, as :func:`equivariance_error`.

    Raises:
        AssertionError: a check exceeds the tolerance, or an output holds a NaN or an
            infinity; the message names each failing check and its error, or the
            transformation (or the untransformed input) that produced the non-finite values.

    Example:
        >>> import torch
        >>> from eghn.data import Graph
        >>> from eghn.models import EGHN
        >>> from eghn.testing import assert_equivariant
        >>> ring = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 0]])
        >>> g = Graph(pos=torch.randn(6, 3, dtype=torch.float64), vel=torch.randn(6, 3, dtype=torch.float64),
        ...           edge_index=ring, local_edge_index=ring)
        >>> model = EGHN(node_dim=1, hidden=16, clusters=[3]).double()
        >>> errors = assert_equivariant(model, g)   # float64: within TOLERANCES[torch.float64] = 1e-9
        >>> sorted(errors)
        ['permutation', 'reflection', 'rotation', 'translation']
        >>> assert_equivariant(lambda gr: gr.pos * float("nan"), g)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        AssertionError: not equivariant (torch.float64): non-finite (NaN/inf) values in 'output' on the untransformed...
    """
    tol = TOLERANCES.get(graph.pos.dtype, 1e-4) if tolerance is None else tolerance
    notes: dict[str, str] = {}
    errors = equivariance_error(fn, graph, report=notes, **kwargs)
    if notes:
        raise AssertionError(f"not equivariant ({graph.pos.dtype}): " + "; ".join(notes.values()))
    bad = {k: v for k, v in errors.items() if not v <= tol}
    if bad:
        detail = ", ".join(f"{k}: {v:.3e}" for k, v in bad.items())
        raise AssertionError(f"not equivariant within {tol:.1e} ({graph.pos.dtype}): {detail}")
    return errors


def randomize_parameters(module: torch.nn.Module, *, gain: float = 1.0, seed: int = 0) -> torch.nn.Module:
    """Re-draw every parameter of ``module`` (in place) with fan-in-scaled Gaussian noise.

    Freshly initialised layers are close to the identity (their last layers start near zero,
    as in EGNN); checks on such layers prove little. Tests randomise them first so every
    nonlinearity contributes. Returns ``module``.

    Example:
        >>> import torch
        >>> from eghn.nn import EGNNLayer
        >>> from eghn.testing import randomize_parameters
        >>> layer = EGNNLayer(8)
        >>> before = layer.phi_x[-1].weight.abs().max().item()  # starts near zero
        >>> after = randomize_parameters(layer, seed=1).phi_x[-1].weight.abs().max().item()
        >>> before < 0.01 < after
        True
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            fan_in = p.shape[-1] if p.dim() > 1 else 10
            p.copy_((noise * gain / fan_in**0.5).to(p))
    return module
