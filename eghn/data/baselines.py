"""Trivial predictors of :math:`x_T` from :math:`(x_0, v_0)`: the scale against which a trained
model's error is read.

* **hold still**: :math:`\\hat x_T = x_0`;
* **linear extrapolation**: :math:`\\hat x_T = x_0 + t\\,v_0` with one scalar :math:`t` fitted by
  least squares on a training split, :math:`t = \\sum (x_T - x_0) \\cdot v_0 / \\sum v_0 \\cdot v_0`.

Both are equivariant, so they are fair references for an equivariant model. Errors are the
mean squared error per coordinate, as the paper reports.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit_linear_extrapolation", "hold_still_mse", "linear_extrapolation_mse"]


def _as64(*arrays) -> list[np.ndarray]:
    out = [np.asarray(a, dtype=np.float64) for a in arrays]
    if len({a.shape for a in out}) != 1 or out[0].ndim < 2 or out[0].size == 0:
        raise ValueError(f"x0, v0 and xT must share one non-empty shape (..., n), got {[a.shape for a in out]}")
    if not all(np.isfinite(a).all() for a in out):
        raise ValueError("x0, v0 and xT must be finite")
    return out


def fit_linear_extrapolation(x0, v0, xt) -> float:
    """The least-squares :math:`t` of :math:`x_T \\approx x_0 + t\\,v_0`.

    Shapes:
        - x0, v0, xt: :math:`(..., n)` (any leading shape, e.g. ``(S, N, 3)`` or ``(N_total, 3)``)

    Example:
        >>> import numpy as np
        >>> from eghn.data.baselines import fit_linear_extrapolation
        >>> x0, v0 = np.zeros((4, 3)), np.ones((4, 3))
        >>> fit_linear_extrapolation(x0, v0, x0 + 2.5 * v0)
        2.5
    """
    x0, v0, xt = _as64(x0, v0, xt)
    denom = float((v0 * v0).sum())
    if denom == 0.0:
        raise ValueError("the velocities are all zero; cannot fit the linear extrapolation")
    return float(((xt - x0) * v0).sum() / denom)


def linear_extrapolation_mse(t: float, x0, v0, xt) -> float:
    """MSE per coordinate of :math:`x_0 + t\\,v_0` against :math:`x_T` (shapes as above).

    Example:
        >>> import numpy as np
        >>> from eghn.data.baselines import linear_extrapolation_mse
        >>> x0, v0 = np.zeros((4, 3)), np.ones((4, 3))
        >>> linear_extrapolation_mse(2.0, x0, v0, x0 + 3.0 * v0)
        1.0
    """
    x0, v0, xt = _as64(x0, v0, xt)
    return float(((x0 + t * v0 - xt) ** 2).mean())


def hold_still_mse(x0, xt) -> float:
    """MSE per coordinate of :math:`x_0` against :math:`x_T`.

    Example:
        >>> import numpy as np
        >>> from eghn.data.baselines import hold_still_mse
        >>> hold_still_mse(np.zeros((4, 3)), np.full((4, 3), 2.0))
        4.0
    """
    x0, _, xt = _as64(x0, x0, xt)
    return float(((x0 - xt) ** 2).mean())
