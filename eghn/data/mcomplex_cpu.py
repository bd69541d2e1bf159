"""Compiled CPU kernel of the M-complex "paper" integrator (optional, needs ``numba``).

The PyTorch integrator of :mod:`eghn.data.mcomplex_sim` runs some forty small tensor
operations per time step, so on a CPU it is bound by per-operation overhead rather than by
arithmetic. This module integrates the same equations (the published rigid-body update,
quirks included; see :mod:`eghn.data.mcomplex_sim`) one trajectory at a time in a single
``numba``-compiled loop, with no padding: one ``(n, n)`` pair loop per step plus ``O(n)``
per-complex bookkeeping. The arithmetic is the same as the PyTorch path up to the order of
floating-point operations (round-off; the chaotic dynamics amplifies it over 5000 steps, as
it does a change of padding on the PyTorch path).

:func:`available` says whether ``numba`` can be imported; :func:`run_paper` compiles on first
use (cached on disk by ``numba``).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["available", "run_paper", "warm_up"]

try:  # optional dependency
    import numba
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None

_KERNEL = None


def available() -> bool:
    """True when ``numba`` is importable (the compiled CPU path can be used).

    Example:
        >>> from eghn.data import mcomplex_cpu
        >>> isinstance(mcomplex_cpu.available(), bool)
        True
    """
    return numba is not None


def _paper_kernel(x0, v0, q, cid, node_ptr, n_complex, dt, n_steps, sample_every, clip,
                  out_x, out_v, v_end):  # pragma: no cover - compiled by numba
    """Integrate every trajectory of ``node_ptr`` in turn, writing ``out_x``/``out_v``/``v_end``.

    Shapes: x0, v0 ``(N, 3)``; q, cid ``(N,)``; node_ptr ``(B + 1,)``; out_x, out_v
    ``(N, F, 3)``; v_end ``(N, 3)``. ``clip <= 0`` turns the force clipping off.
    """
    tiny = 2.2250738585072014e-308
    n_traj = node_ptr.shape[0] - 1
    n_max = 0
    for b in range(n_traj):
        n_max = max(n_max, node_ptr[b + 1] - node_ptr[b])
    m = n_complex
    r = np.empty((3, n_max))
    xs = np.empty((3, n_max))
    f = np.empty((3, n_max))
    qq = np.empty(n_max)
    cc = np.empty(n_max, dtype=np.int64)
    count = np.empty(m)
    count2 = np.empty(m)
    xc = np.empty((3, m))
    vc = np.empty((3, m))
    wc = np.empty((3, m))
    fs = np.empty((3, m))
    tq = np.empty((3, m))
    inertia = np.empty(m)
    axis = np.empty((3, m))
    cth = np.empty(m)
    sth = np.empty(m)
    for b in range(n_traj):
        a0 = node_ptr[b]
        n = node_ptr[b + 1] - a0
        # ---- centre state: centre, centre velocity, mean angular velocity, r = x - x_c
        count[:] = 0.0
        xc[:, :] = 0.0
        vc[:, :] = 0.0
        wc[:, :] = 0.0
        for i in range(n):
            k = cid[a0 + i]
            cc[i] = k
            qq[i] = q[a0 + i]
            count[k] += 1.0
            for d in range(3):
                xc[d, k] += x0[a0 + i, d]
                vc[d, k] += v0[a0 + i, d]
        for k in range(m):
            count2[k] = count[k] * count[k]
            for d in range(3):
                xc[d, k] /= count[k]
                vc[d, k] /= count[k]
        for i in range(n):
            k = cc[i]
            rx = x0[a0 + i, 0] - xc[0, k]
            ry = x0[a0 + i, 1] - xc[1, k]
            rz = x0[a0 + i, 2] - xc[2, k]
            ux = v0[a0 + i, 0] - vc[0, k]
            uy = v0[a0 + i, 1] - vc[1, k]
            uz = v0[a0 + i, 2] - vc[2, k]
            r2 = rx * rx + ry * ry + rz * rz
            r[0, i], r[1, i], r[2, i] = rx, ry, rz
            wc[0, k] += (ry * uz - rz * uy) / r2
            wc[1, k] += (rz * ux - rx * uz) / r2
            wc[2, k] += (rx * uy - ry * ux) / r2
        for k in range(m):
            for d in range(3):
                wc[d, k] /= count[k]
        frame = 0
        for step in range(n_steps):
            # ---- Coulomb forces, every pair (intra-complex pairs included), clipped
            for i in range(n):
                k = cc[i]
                for d in range(3):
                    xs[d, i] = xc[d, k] + r[d, i]
            for i in range(n):
                xi, yi, zi = xs[0, i], xs[1, i], xs[2, i]
                gx = 0.0
                gy = 0.0
                gz = 0.0
                for j in range(n):  # branch-free (vectorises); the j == i term adds exactly 0
                    dx = xi - xs[0, j]
                    dy = yi - xs[1, j]
                    dz = zi - xs[2, j]
                    d2 = dx * dx + dy * dy + dz * dz + (1.0 if j == i else 0.0)
                    s = qq[j] / (d2 * math.sqrt(d2))
                    gx += dx * s
                    gy += dy * s
                    gz += dz * s
                gx *= qq[i]
                gy *= qq[i]
                gz *= qq[i]
                if clip > 0.0:
                    gx = min(max(gx, -clip), clip)
                    gy = min(max(gy, -clip), clip)
                    gz = min(max(gz, -clip), clip)
                f[0, i], f[1, i], f[2, i] = gx, gy, gz
            # ---- per-complex sums: force, torque, inertia about the current w
            fs[:, :] = 0.0
            tq[:, :] = 0.0
            inertia[:] = 0.0
            for i in range(n):
                k = cc[i]
                rx, ry, rz = r[0, i], r[1, i], r[2, i]
                gx, gy, gz = f[0, i], f[1, i], f[2, i]
                fs[0, k] += gx
                fs[1, k] += gy
                fs[2, k] += gz
                tq[0, k] += ry * gz - rz * gy
                tq[1, k] += rz * gx - rx * gz
                tq[2, k] += rx * gy - ry * gx
                wx, wy, wz = wc[0, k], wc[1, k], wc[2, k]
                wn2 = max(wx * wx + wy * wy + wz * wz, tiny)
                p = (rx * wx + ry * wy + rz * wz) / wn2
                px = rx - p * wx
                py = ry - p * wy
                pz = rz - p * wz
                inertia[k] += px * px + py * py + pz * pz
            for k in range(m):
                ik = inertia[k] / 3.0
                wn2 = 0.0
                for d in range(3):
                    vc[d, k] += dt * fs[d, k] / count2[k]
                    xc[d, k] += dt * vc[d, k]
                    wc[d, k] += dt * tq[d, k] / ik
                    wn2 += wc[d, k] * wc[d, k]
                wn = math.sqrt(wn2)
                theta = wn * dt
                inv = 1.0 / max(wn, tiny)
                for d in range(3):
                    axis[d, k] = wc[d, k] * inv
                cth[k] = math.cos(theta)
                sth[k] = math.sin(theta)
            # ---- rotate every particle about its centre (Rodrigues)
            for i in range(n):
                k = cc[i]
                ax, ay, az = axis[0, k], axis[1, k], axis[2, k]
                c, s = cth[k], sth[k]
                rx, ry, rz = r[0, i], r[1, i], r[2, i]
                dot = (ax * rx + ay * ry + az * rz) * (1.0 - c)
                r[0, i] = rx * c + (ay * rz - az * ry) * s + ax * dot
                r[1, i] = ry * c + (az * rx - ax * rz) * s + ay * dot
                r[2, i] = rz * c + (ax * ry - ay * rx) * s + az * dot
            last = step == n_steps - 1
            record = step % sample_every == 0
            if record or last:
                for i in range(n):
                    k = cc[i]
                    rx, ry, rz = r[0, i], r[1, i], r[2, i]
                    wx, wy, wz = wc[0, k], wc[1, k], wc[2, k]
                    vx = vc[0, k] + (wy * rz - wz * ry)
                    vy = vc[1, k] + (wz * rx - wx * rz)
                    vz = vc[2, k] + (wx * ry - wy * rx)
                    if record:
                        out_x[a0 + i, frame, 0] = xc[0, k] + rx
                        out_x[a0 + i, frame, 1] = xc[1, k] + ry
                        out_x[a0 + i, frame, 2] = xc[2, k] + rz
                        out_v[a0 + i, frame, 0] = vx
                        out_v[a0 + i, frame, 1] = vy
                        out_v[a0 + i, frame, 2] = vz
                    if last:
                        v_end[a0 + i, 0] = vx
                        v_end[a0 + i, 1] = vy
                        v_end[a0 + i, 2] = vz
                if record:
                    frame += 1


def _kernel():
    global _KERNEL
    if _KERNEL is None:
        if numba is None:
            raise RuntimeError("the compiled M-complex kernel needs numba (pip install numba)")
        # error_model="numpy": x / 0 gives inf/nan (rejected later) instead of raising, and lets
        # the pair loop vectorise; "reassoc"/"contract" allow SIMD sums and FMAs (round-off only;
        # no "nnan"/"ninf", so non-finite values still propagate to the rejection check)
        opts = dict(nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
        try:
            _KERNEL = numba.njit(cache=True, **opts)(_paper_kernel)
        except RuntimeError:  # no writable cache location: compile on every start instead
            _KERNEL = numba.njit(**opts)(_paper_kernel)
    return _KERNEL


def run_paper(x0: np.ndarray, v0: np.ndarray, charge: np.ndarray, complex_id: np.ndarray,
              node_ptr: np.ndarray, n_complex: int, dt: float, n_steps: int, sample_every: int,
              clip: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integrate node-concatenated trajectories with the published rigid-body update.

    Trajectory ``b`` owns particles ``node_ptr[b]:node_ptr[b + 1]``; its complexes are
    ``complex_id`` in ``[0, n_complex)``. A frame is recorded after steps ``0, sample_every,
    ...`` (0-based), as on the PyTorch path.

    Shapes:
        x0, v0: ``(N, 3)``; charge, complex_id: ``(N,)``; node_ptr: ``(B + 1,)``.
        Returns positions and velocities ``(N, F, 3)`` with ``F = ceil(n_steps / sample_every)``
        and the final velocities ``(N, 3)``.

    Example:
        Two opposite charges in one complex, 4 steps, a frame every 2. The first call compiles
        the numba kernel, so the run is skipped when the docs are tested.

        >>> import numpy as np
        >>> from eghn.data.mcomplex_cpu import run_paper
        >>> x0, charge = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), np.array([1.0, -1.0])
        >>> x, v, v_end = run_paper(x0, np.zeros((2, 3)), charge, np.zeros(2, dtype=np.int64), np.array([0, 2]),
        ...                         1, 1e-3, 4, 2, None)  # doctest: +SKIP
        >>> x.shape, v.shape, v_end.shape, bool(np.allclose(x[:, 0], x0))  # doctest: +SKIP
        ((2, 2, 3), (2, 2, 3), (2, 3), True)
    """
    n = x0.shape[0]
    n_frames = -(-n_steps // sample_every)
    out_x = np.empty((n, n_frames, 3))
    out_v = np.empty((n, n_frames, 3))
    v_end = np.empty((n, 3))
    _kernel()(np.ascontiguousarray(x0, dtype=np.float64), np.ascontiguousarray(v0, dtype=np.float64),
              np.ascontiguousarray(charge, dtype=np.float64), np.ascontiguousarray(complex_id, dtype=np.int64),
              np.ascontiguousarray(node_ptr, dtype=np.int64), int(n_complex), float(dt), int(n_steps),
              int(sample_every), -1.0 if clip is None else float(clip), out_x, out_v, v_end)
    return out_x, out_v, v_end


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernel now, e.g. before starting threads.

    Example:
        Compiles the numba kernel, so it is skipped when the docs are tested.

        >>> from eghn.data.mcomplex_cpu import warm_up
        >>> warm_up()  # doctest: +SKIP
    """
    run_paper(np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), np.zeros((2, 3)), np.array([1.0, -1.0]),
              np.zeros(2, dtype=np.int64), np.array([0, 2]), 1, 1e-3, 1, 1, None)
