"""Simulator of charged rigid complexes (the paper's M-complex systems, Section 4.1).

``N`` charged particles are grouped into ``M`` rigid complexes; every pair of particles
interacts through a Coulomb force and each complex moves as one rigid body. A system is
named by ``(M, N/M, J)``: ``M`` complexes, average complex size ``N/M`` and ``J`` system
types (each type fixes the sizes of its ``M`` complexes; every trajectory picks one type
uniformly at random).

This module re-implements the facts of the generator published with the paper:

* **Complex sizes.** The candidate sizes are ``{2, ..., 2 * avg - 2}`` with weights
  proportional to ``reversed(candidates) + 4`` where the first three weights are set equal
  to the second one; each of the ``J`` system types draws its ``M`` sizes once, without
  replacement (:func:`sample_complex_sizes`).
* **Initial state.** ``n`` = total number of particles, ``loc_std = (n / 5)^(1/3) + 0.5``,
  charges uniform in ``{+1, -1}``, complex centres uniform in ``[-loc_std, loc_std]^3``,
  each redrawn (at most 20 draws, the last one is kept) until it lies ``>= 1.6`` from every
  earlier centre; ``r = (min centre distance) / 1.6``; particle ``i`` of a complex sits at
  ``centre + u_i (U[0, 1) / 2 + 0.6) r`` with ``u_i`` a uniformly random direction. Velocities
  are ``N(0, I)`` rescaled to norm ``VELOCITY_NORM = 0.5``; a complex keeps the mean velocity ``v_c`` of its
  particles and the mean ``w`` of their angular velocities ``r_i x (v_i - v_c) / |r_i|^2``.
  (The published code stores ``w x r_i`` -- without ``v_c`` -- as the initial particle
  velocities; those are never written to the trajectory because the first frame is taken
  after the first step, so the quirk does not change the data.) Particles are assigned to
  complexes in random order.
* **Forces.** :math:`f_i = \\sum_{j \\ne i} c_i c_j (x_i - x_j) / |x_i - x_j|^3`, every
  component clipped to ``+-100`` (``0.1 / dt``). Pairs inside one complex are included (they
  only matter through the clipping and the ``"paper"`` update below).
* **The "paper" rigid-body update** (``integrator="paper"``), per complex and step ``dt``:
  ``a_c = mean_i(f_i) / n_c`` (the mean force divided once more by the size),
  ``v_c += dt a_c``, ``x_c += dt v_c``; ``J = (1/3) sum_i |r_i,perp|^2`` with ``r_i,perp``
  the part of ``r_i = x_i - x_c`` perpendicular to the current ``w``;
  ``w += dt (sum_i r_i x f_i) / J``; the particles rotate about the centre by the angle
  ``|w| dt`` around ``w / |w|`` and ``v_i = v_c + w x r_i``. These quirks shape the data
  distribution behind the paper's Table 1, so they are kept.
* **Sampling.** ``dt = 0.001``, 5000 steps, a frame after steps 1, 101, 201, ... (50
  frames); a dataset sample is frame 10 -> frame 25 (1500 steps). A trajectory whose final
  state has a velocity component ``> 5`` is rejected and redrawn from scratch (system type
  included), as in the published code; ``velocity_check="abs"`` instead rejects
  ``|v| > 5`` at any recorded frame or the final state.

``integrator="exact"`` is a physically exact alternative: each complex is a rigid body of
unit-mass particles with its full inertia tensor, integrated by a symplectic splitting
(velocity-Verlet kicks of centre momentum and angular momentum, a free-rotor drift split
into rotations about the principal axes, Dullweber--Reich--Leimkuhler; a two-particle
complex, a linear rotor, turns exactly about its angular momentum). It conserves linear
and angular momentum to round-off when the clipping is off and keeps the energy error
bounded (``O(dt^2)``); intra-complex pairs are left out of its forces (they cancel exactly
for a rigid body).

Two implementations integrate the ``"paper"`` update (``backend=``): a PyTorch one,
vectorised over a batch of trajectories (float64; complexes of different total size are
padded with masked particles of charge 0), which also runs the ``"exact"`` integrator and
works on ``device="cuda"``; and a compiled CPU kernel (:mod:`eghn.data.mcomplex_cpu`, needs
``numba``), which integrates one trajectory at a time without padding and is the default on
CPU when ``numba`` is installed. They agree to round-off (``<= 1e-11`` after 400 steps,
tested); over 5000 steps the chaotic dynamics amplifies round-off in trajectories with close
encounters (measured on 20 (5,5), J=5 trajectories: 18 agree to ``<= 1e-5`` at the last
frame, 2 differ by ``O(1)`` at the last frames), so the two backends give statistically identical
datasets, not bit-identical ones. Every trajectory draws its random numbers from its own
stream ``SeedSequence(seed, spawn_key=(1, stream, index))``, so the result is deterministic
for a seed and backend (bit-for-bit on CPU). With the compiled kernel a trajectory does not
depend on which others are generated with it (``workers``, ``chunk_size``, ``index_offset``
give bit-identical results); with PyTorch it does, up to round-off from a different padding.
On CUDA the atomic adds of ``index_add_`` make repeated runs agree only to round-off.

Speed: ``python benchmarks/bench_mcomplex.py`` times full 5000-step trajectories of the paper
integrator for every paper configuration (rejected trajectories redrawn and counted as work),
by wall-clock and by CPU time, against the published generator's time per trajectory; the
Benchmarks page of the documentation shows its latest result file
(``benchmarks/results/simulator.json``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "BACKENDS",
    "INTEGRATORS",
    "MComplexTrajectories",
    "complex_size_weights",
    "coulomb_forces",
    "draw_initial_state",
    "sample_complex_sizes",
    "simulate_mcomplex",
]

INTEGRATORS = ("paper", "exact")
BACKENDS = ("auto", "torch", "compiled")
PAPER_DT = 0.001
PAPER_STEPS = 5000
PAPER_SAMPLE_EVERY = 100
PAPER_FORCE_CLIP = 100.0
PAPER_MAX_VELOCITY = 5.0
MIN_CENTRE_DISTANCE = 1.6
MAX_CENTRE_DRAWS = 20
VELOCITY_NORM = 0.5


# ---------------------------------------------------------------------------- configuration
def check_config(n_complex: int, avg_size: int, n_types: int) -> None:
    """Raise ``ValueError`` unless ``(M, N/M, J)`` can be sampled by the published rule."""
    for name, v in (("n_complex (M)", n_complex), ("avg_size (N/M)", avg_size), ("n_types (J)", n_types)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {v!r}")
    if n_complex < 1:
        raise ValueError(f"n_complex (M) must be >= 1, got {n_complex}")
    if avg_size < 2:
        raise ValueError(f"avg_size (N/M) must be >= 2 (a complex has at least 2 particles), got {avg_size}")
    if n_types < 1:
        raise ValueError(f"n_types (J) must be >= 1, got {n_types}")
    n_cand = 2 * avg_size - 3
    if n_complex > n_cand:
        raise ValueError(
            f"cannot draw M={n_complex} distinct complex sizes from the {n_cand} candidates "
            f"{{2, ..., {2 * avg_size - 2}}} of avg_size={avg_size}; use M <= 2 * avg_size - 3"
        )


def complex_size_weights(avg_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate complex sizes and their sampling probabilities (published rule).

    Returns ``(sizes, probs)``: ``sizes = [2, ..., 2 * avg_size - 2]`` and probabilities
    proportional to ``sizes[::-1] + 4`` with the first three weights set to the second.

    Example:
        >>> sizes, p = complex_size_weights(5)
        >>> sizes.tolist(), (p * 63).round().astype(int).tolist()
        ([2, 3, 4, 5, 6, 7, 8], [11, 11, 11, 9, 8, 7, 6])
    """
    if avg_size < 2:
        raise ValueError(f"avg_size (N/M) must be >= 2, got {avg_size}")
    sizes = np.arange(2, 2 * avg_size - 1, dtype=np.int64)
    w = (sizes[::-1] + 4).astype(np.float64)
    if w.size >= 2:
        w[0] = w[1]
    if w.size >= 3:
        w[2] = w[1]
    return sizes, w / w.sum()


def sample_complex_sizes(n_complex: int, avg_size: int, n_types: int,
                         seed: int | np.random.Generator = 0) -> np.ndarray:
    """Complex sizes of every system type, shape ``(J, M)`` (published rule).

    Each row is drawn once, without replacement, from :func:`complex_size_weights`.
    With an integer ``seed`` the stream ``SeedSequence(seed, spawn_key=(0,))`` is used, the
    one :func:`simulate_mcomplex` uses.

    Example:
        >>> from eghn.data.mcomplex_sim import sample_complex_sizes
        >>> sample_complex_sizes(3, 5, 2, seed=0).tolist()  # J = 2 system types of M = 3 complexes
        [[8, 3, 6], [2, 4, 5]]
    """
    check_config(n_complex, avg_size, n_types)
    rng = seed if isinstance(seed, np.random.Generator) else _rng(seed, (0,))
    sizes, p = complex_size_weights(avg_size)
    return np.stack([rng.choice(sizes, size=n_complex, replace=False, p=p) for _ in range(n_types)])


def _rng(seed: int, key: tuple[int, ...]) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=key))


# ---------------------------------------------------------------------------- initial state
@dataclass
class InitialState:
    """Random draws of one trajectory (before the rigid-body bookkeeping)."""

    system_type: int
    charge: np.ndarray     # (n,) +-1
    complex_id: np.ndarray  # (n,) in [0, M)
    pos: np.ndarray        # (n, 3)
    vel: np.ndarray        # (n, 3) raw N(0, I) velocities rescaled to norm 0.5


def draw_initial_state(rng: np.random.Generator, type_sizes: np.ndarray) -> InitialState:
    """Draw system type, charges, complex membership, positions and raw velocities.

    Args:
        rng: the trajectory's random stream.
        type_sizes: ``(J, M)`` complex sizes of every system type.

    Example:
        >>> import numpy as np
        >>> from eghn.data.mcomplex_sim import draw_initial_state
        >>> state = draw_initial_state(np.random.default_rng(0), np.array([[2, 3]]))
        >>> state.pos.shape, sorted(state.complex_id.tolist()), round(float(np.linalg.norm(state.vel[0])), 6)
        ((5, 3), [0, 0, 1, 1, 1], 0.5)
    """
    n_types, n_complex = type_sizes.shape
    j = int(rng.integers(n_types))
    sizes = type_sizes[j]
    n = int(sizes.sum())
    loc_std = (n / 5.0) ** (1.0 / 3.0) + 0.5
    charge = rng.choice(np.array([1.0, -1.0]), size=n)
    complex_id = rng.permutation(np.repeat(np.arange(n_complex), sizes))
    cand = rng.uniform(-loc_std, loc_std, size=(n_complex, MAX_CENTRE_DRAWS, 3))
    centres = np.empty((n_complex, 3))
    centres[0] = cand[0, 0]
    for i in range(1, n_complex):
        d = np.sqrt(((cand[i][:, None, :] - centres[None, :i]) ** 2).sum(-1))  # (draws, i)
        ok = (d >= MIN_CENTRE_DISTANCE).all(1)
        centres[i] = cand[i, int(np.argmax(ok)) if ok.any() else MAX_CENTRE_DRAWS - 1]
    if n_complex > 1:
        dc = np.sqrt(((centres[:, None] - centres[None]) ** 2).sum(-1))
        scale = dc[np.triu_indices(n_complex, 1)].min() / MIN_CENTRE_DISTANCE
    else:
        scale = 1.0  # the published code divides 1e10 by 1.6 here; one complex gets r = 1
    vel = rng.standard_normal((n, 3))
    vel *= VELOCITY_NORM / np.linalg.norm(vel, axis=1, keepdims=True)
    direction = rng.standard_normal((n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    radius = (rng.random(n) / 2.0 + 0.6) * scale
    pos = centres[complex_id] + direction * radius[:, None]
    return InitialState(j, charge, complex_id, pos, vel)


# ---------------------------------------------------------------------------- physics
def _cross(a: Tensor, b: Tensor) -> Tensor:
    """Cross product of component-major vectors ``(3, ...)``."""
    return torch.linalg.cross(a, b, dim=0)


def coulomb_forces(x: Tensor, qq: Tensor, pair_pad: Tensor, clip: float | None) -> Tensor:
    """Coulomb forces :math:`f_i = \\sum_j q_{ij} (x_i - x_j) / |x_i - x_j|^3`, clipped.

    Vectors are stored component-major (``x[k]`` is the ``k``-th coordinate of every particle),
    which keeps every elementwise operation on long contiguous arrays.

    Args:
        x: positions of ``B`` systems of ``n`` (padded) particles.
        qq: pair weights ``c_i c_j`` (zero on the diagonal, for padded particles and for
            excluded pairs).
        pair_pad: 1 where ``qq`` is structurally zero (diagonal / padding), else 0; added to
            the squared distance to avoid ``0 / 0``.
        clip: clip every force component to ``[-clip, clip]`` (``None``: no clipping).

    Shapes:
        x: ``(3, B, n)``; qq, pair_pad: ``(B, n, n)``; returns ``(3, B, n)``.

    Example:
        >>> import torch
        >>> from eghn.data.mcomplex_sim import coulomb_forces
        >>> x = torch.tensor([[0.0, 2.0], [0.0, 0.0], [0.0, 0.0]]).view(3, 1, 2)  # two charges 2 apart on the x axis
        >>> qq = torch.tensor([[0.0, -1.0], [-1.0, 0.0]]).view(1, 2, 2)  # opposite charges
        >>> f = coulomb_forces(x, qq, torch.eye(2).view(1, 2, 2), clip=None)
        >>> f[0, 0].tolist()  # x components: they attract with 1 / r^2
        [0.25, -0.25]
    """
    d = x.unsqueeze(3) - x.unsqueeze(2)  # d[:, b, i, j] = x_i - x_j
    r2 = (d * d).sum(0).add_(pair_pad)
    s = torch.rsqrt(r2).div_(r2).mul_(qq)
    f = (d.mul_(s)).sum(-1)
    if clip is not None:
        f = f.clamp_(-clip, clip)
    return f


class _Batch:
    """Padded batch of ``B`` trajectories, shared by both integrators.

    Per-particle vectors are ``(3, N)`` with ``N = B * n_max`` (component-major, flat);
    per-complex vectors are ``(3, K)`` with ``K = B * M``.
    """

    def __init__(self, states: list[InitialState], n_complex: int, device: torch.device,
                 exclude_intra: bool):
        b = len(states)
        n_max = max(s.charge.shape[0] for s in states)
        q = np.zeros((b, n_max))
        cid = np.zeros((b, n_max), dtype=np.int64)
        mask = np.zeros((b, n_max), dtype=bool)
        x = np.zeros((b, n_max, 3))
        v = np.zeros((b, n_max, 3))
        for k, s in enumerate(states):
            n = s.charge.shape[0]
            q[k, :n], cid[k, :n], mask[k, :n], x[k, :n], v[k, :n] = s.charge, s.complex_id, True, s.pos, s.vel
        kw = {"device": device, "dtype": torch.float64}
        self.B, self.n_max, self.M, self.K = b, n_max, n_complex, b * n_complex
        self.mask = torch.as_tensor(mask.reshape(-1), device=device)  # (N,)
        flat = cid + np.arange(b)[:, None] * n_complex
        self.g = torch.as_tensor(flat.reshape(-1), device=device)  # gather index (padded -> complex 0 of b)
        self.s = torch.as_tensor(np.where(mask, flat, self.K).reshape(-1), device=device)  # scatter, pad->K
        self.count = self.seg_sum(torch.ones(1, b * n_max, **kw))  # (1, K)
        qt = torch.as_tensor(q, **kw)
        mt = torch.as_tensor(mask, device=device)
        ct = torch.as_tensor(cid, device=device)
        both = mt.unsqueeze(1) & mt.unsqueeze(2)
        valid = both & ~torch.eye(n_max, dtype=torch.bool, device=device)
        if exclude_intra:
            valid &= ct.unsqueeze(1) != ct.unsqueeze(2)
        self.qq = qt.unsqueeze(1) * qt.unsqueeze(2) * valid
        self.pair_pad = (~both).to(torch.float64) + torch.eye(n_max, **kw)
        self.x0 = torch.as_tensor(x.reshape(-1, 3).T.copy(), **kw)  # (3, N)
        self.v0 = torch.as_tensor(v.reshape(-1, 3).T.copy(), **kw)

    def seg_sum(self, t: Tensor) -> Tensor:
        """Sum per-particle ``(k, N)`` over every complex -> ``(k, K)`` (padding dropped)."""
        out = t.new_zeros(t.shape[0], self.K + 1)
        return out.index_add_(1, self.s, t)[:, : self.K]

    def per_node(self, t: Tensor) -> Tensor:
        """Per-complex ``(k, K)`` -> per-particle ``(k, N)``."""
        return t.index_select(1, self.g)

    def forces(self, x: Tensor, clip: float | None) -> Tensor:
        return coulomb_forces(x.view(3, self.B, self.n_max), self.qq, self.pair_pad, clip).view(3, -1)

    def centre_state(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Centre, centre velocity, mean angular velocity (all ``(3, K)``) and ``r`` ``(3, N)``."""
        xc = self.seg_sum(self.x0) / self.count
        vc = self.seg_sum(self.v0) / self.count
        r = (self.x0 - self.per_node(xc)) * self.mask
        rel = self.v0 - self.per_node(vc)
        r2 = torch.where(self.mask, (r * r).sum(0), 1.0)
        wc = self.seg_sum(_cross(r, rel) / r2) / self.count
        return xc, vc, wc, r


def _run_paper(batch: _Batch, dt: float, n_steps: int, sample_every: int, clip: float | None,
               on_frame) -> Tensor:
    xc, vc, wc, r = batch.centre_state()
    tiny = torch.finfo(torch.float64).tiny
    count2 = batch.count * batch.count
    for step in range(n_steps):
        f = batch.forces(batch.per_node(xc) + r, clip)
        vc = vc + dt * batch.seg_sum(f) / count2
        xc = xc + dt * vc
        wg = batch.per_node(wc)
        wn2 = (wg * wg).sum(0).clamp_min_(tiny)
        r_perp = r - (r * wg).sum(0) / wn2 * wg
        inertia = batch.seg_sum((r_perp * r_perp).sum(0, keepdim=True)) / 3.0
        wc = wc + dt * batch.seg_sum(_cross(r, f)) / inertia
        wn = (wc * wc).sum(0, keepdim=True).sqrt_()
        theta = wn * dt
        g = batch.per_node(torch.cat((wc / wn.clamp_min(tiny), theta.cos(), theta.sin())))
        axis, c, s = g[:3], g[3], g[4]
        r = r * c + _cross(axis, r) * s + axis * ((axis * r).sum(0) * (1.0 - c))
        if step % sample_every == 0 or step == n_steps - 1:
            x = batch.per_node(xc) + r
            v = batch.per_node(vc) + _cross(batch.per_node(wc), r)
            on_frame(step, x, v)
    return v


def _run_exact(batch: _Batch, dt: float, n_steps: int, sample_every: int, clip: float | None,
               on_frame) -> Tensor:
    xc, vc, wc, r = batch.centre_state()
    mass = batch.count  # (1, K), unit-mass particles
    eye = torch.eye(3, dtype=torch.float64, device=r.device)
    per_node = (r * r).sum(0)[:, None, None] * eye - r.T.unsqueeze(-1) * r.T.unsqueeze(-2)  # (N, 3, 3)
    inertia_t = batch.seg_sum(per_node.reshape(-1, 9).T).T.reshape(-1, 3, 3)  # (K, 3, 3)
    moments, axes = torch.linalg.eigh(inertia_t)
    axes = axes * torch.where(torch.linalg.det(axes) < 0, -1.0, 1.0)[:, None, None]
    e = [axes[:, :, k].T.contiguous() for k in range(3)]  # principal axes in space frame, (3, K)
    big = moments.amax(-1, keepdim=True)
    inv_moment = torch.where(moments > 1e-9 * big, 1.0 / moments.clamp_min(1e-300),
                             torch.zeros_like(moments)).T.contiguous()  # (3, K)
    ang_mom = torch.einsum("kij,jk->ik", inertia_t, wc)  # L = I w, (3, K)
    body = torch.stack([(r * batch.per_node(ek)).sum(0) for ek in e])  # (3, N) body coordinates
    linear = inv_moment[0] == 0  # two-particle complexes: no moment about their axis
    linear_any = bool(linear.any())

    def positions(xc: Tensor, e: list[Tensor]) -> tuple[Tensor, Tensor]:
        ex = batch.per_node(torch.cat(e))  # (9, N)
        rr = body[0] * ex[0:3] + body[1] * ex[3:6] + body[2] * ex[6:9]
        return batch.per_node(xc) + rr, rr

    def kick(x: Tensor, rr: Tensor, vc: Tensor, ang_mom: Tensor, h: float) -> tuple[Tensor, Tensor]:
        f = batch.forces(x, clip) * batch.mask
        sums = batch.seg_sum(torch.cat((f, _cross(rr, f))))
        return vc + h * sums[:3] / mass, ang_mom + h * sums[3:]

    def omega(e: list[Tensor], ang_mom: Tensor) -> Tensor:
        return sum((ek * ang_mom).sum(0) * inv_moment[k] * ek for k, ek in enumerate(e))

    x, rr = positions(xc, e)
    schedule = ((0, 0.5), (1, 0.5), (2, 1.0), (1, 0.5), (0, 0.5))
    for step in range(n_steps):
        vc, ang_mom = kick(x, rr, vc, ang_mom, 0.5 * dt)
        xc = xc + dt * vc
        if linear_any:  # linear rotor: exact free motion = rotation about L by |L| dt / I
            lnorm = (ang_mom * ang_mom).sum(0).sqrt()
            u = ang_mom / lnorm.clamp_min(1e-300)
            phi = lnorm * inv_moment[1] * dt
            c, s = phi.cos(), phi.sin()
            e_lin = [ek * c + _cross(u, ek) * s + u * ((u * ek).sum(0) * (1.0 - c)) for ek in e]
        for k, frac in schedule:  # free rotor: exact rotations about the body axes (DRL splitting)
            a, b = (k + 1) % 3, (k + 2) % 3
            theta = frac * dt * (e[k] * ang_mom).sum(0) * inv_moment[k]
            c, s = theta.cos(), theta.sin()
            e[a], e[b] = c * e[a] + s * e[b], c * e[b] - s * e[a]
        if linear_any:
            e = [torch.where(linear, el, ek) for el, ek in zip(e_lin, e)]
        x, rr = positions(xc, e)
        vc, ang_mom = kick(x, rr, vc, ang_mom, 0.5 * dt)
        if step % sample_every == 0 or step == n_steps - 1:
            v = batch.per_node(vc) + _cross(batch.per_node(omega(e, ang_mom)), rr)
            on_frame(step, x, v)
    return v


# ---------------------------------------------------------------------------- results
@dataclass
class MComplexTrajectories:
    """Simulated trajectories, node-concatenated (systems have different sizes).

    Trajectory ``t`` owns particles ``node_ptr[t]:node_ptr[t + 1]``.

    Shapes:
        - pos, vel: ``(N_total, F, 3)`` float64, ``F`` = number of frames
        - charge: ``(N_total,)`` (+-1), complex_id: ``(N_total,)`` in ``[0, M)``
        - node_ptr: ``(T + 1,)``; system_type, draws: ``(T,)``
        - type_sizes: ``(J, M)`` complex sizes of every system type

    Example:
        >>> from eghn.data import simulate_mcomplex
        >>> tr = simulate_mcomplex(2, 3, 1, 3, seed=0, n_steps=300)
        >>> len(tr), tr.num_frames, tr.trajectory(0)["pos"].shape
        (3, 3, (3, 6, 3))
    """

    pos: np.ndarray
    vel: np.ndarray
    charge: np.ndarray
    complex_id: np.ndarray
    node_ptr: np.ndarray
    system_type: np.ndarray
    draws: np.ndarray
    type_sizes: np.ndarray
    config: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.node_ptr.shape[0] - 1)

    @property
    def num_frames(self) -> int:
        return int(self.pos.shape[1])

    def trajectory(self, t: int) -> dict[str, np.ndarray]:
        """Arrays of trajectory ``t``: pos/vel ``(F, n, 3)``, charge and complex_id ``(n,)``."""
        if not -len(self) <= t < len(self):
            raise IndexError(f"trajectory {t} out of range for {len(self)} trajectories")
        t %= len(self)
        a, b = int(self.node_ptr[t]), int(self.node_ptr[t + 1])
        return {"pos": self.pos[a:b].transpose(1, 0, 2), "vel": self.vel[a:b].transpose(1, 0, 2),
                "charge": self.charge[a:b], "complex_id": self.complex_id[a:b],
                "system_type": int(self.system_type[t])}


def _rejected_compiled(x: np.ndarray, v: np.ndarray, v_end: np.ndarray, node_ptr: np.ndarray,
                       max_velocity: float | None, velocity_check: str) -> np.ndarray:
    """Rejection flags ``(B,)`` of node-concatenated trajectories (same rule as the torch path).

    Shapes:
        x, v: ``(N, F, 3)``; v_end: ``(N, 3)``; node_ptr: ``(B + 1,)``.
    """
    node_bad = ~(np.isfinite(x).all((1, 2)) & np.isfinite(v).all((1, 2)))
    if max_velocity is not None:
        if velocity_check == "abs":
            node_bad |= (np.abs(v_end) > max_velocity).any(1) | (np.abs(v) > max_velocity).any((1, 2))
        else:
            node_bad |= (v_end > max_velocity).any(1)
    return np.logical_or.reduceat(node_bad, node_ptr[:-1])


def _simulate_chunk_compiled(states: list[InitialState], n_complex: int, dt: float, n_steps: int,
                             sample_every: int, force_clip: float | None, max_velocity: float | None,
                             velocity_check: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Paper integrator through the compiled CPU kernel: ``(x, v, node_ptr, rejected)``."""
    from eghn.data import mcomplex_cpu

    node_ptr = np.concatenate([[0], np.cumsum([st.charge.shape[0] for st in states])]).astype(np.int64)
    x, v, v_end = mcomplex_cpu.run_paper(
        np.concatenate([st.pos for st in states]), np.concatenate([st.vel for st in states]),
        np.concatenate([st.charge for st in states]), np.concatenate([st.complex_id for st in states]),
        node_ptr, n_complex, dt, n_steps, sample_every, force_clip)
    return x, v, node_ptr, _rejected_compiled(x, v, v_end, node_ptr, max_velocity, velocity_check)


def _simulate_rounds(pending, rngs, draws, results, type_sizes, n_complex, integrator, device, chunk, dt,
                     n_steps, sample_every, force_clip, max_velocity, velocity_check, max_rounds, bar,
                     compiled=False) -> None:
    """Integrate ``pending`` trajectories chunk by chunk, redrawing rejected ones."""
    run = _run_paper if integrator == "paper" else _run_exact
    rounds = 0
    while pending:
        rounds += 1
        if rounds > max_rounds:
            raise RuntimeError(f"{len(pending)} trajectories were still rejected after {max_rounds} rounds; "
                               f"raise max_velocity or max_rounds")
        rejected: list[int] = []
        drawn = {i: draw_initial_state(rngs[i], type_sizes) for i in pending}
        draws[pending] += 1
        order = sorted(pending, key=lambda i: (drawn[i].charge.shape[0], i))  # similar sizes: less padding
        for start in range(0, len(order), chunk):
            ids = order[start:start + chunk]
            states = [drawn.pop(i) for i in ids]
            if compiled:
                x, v, ptr, bad_np = _simulate_chunk_compiled(states, n_complex, dt, n_steps, sample_every,
                                                             force_clip, max_velocity, velocity_check)
                for k, (i, s) in enumerate(zip(ids, states)):
                    if bad_np[k]:
                        rejected.append(i)
                    else:
                        results[i] = (x[ptr[k]:ptr[k + 1]], v[ptr[k]:ptr[k + 1]], s.charge, s.complex_id,
                                      s.system_type)
                if bar is not None:
                    bar.update(len(ids) - int(bad_np.sum()))
                continue
            batch = _Batch(states, n_complex, device, exclude_intra=integrator == "exact")
            frames_x, frames_v = [], []
            nb, nm = len(ids), batch.n_max
            pad = ~batch.mask.view(nb, nm)
            bad = torch.zeros(nb, dtype=torch.bool, device=device)

            def on_frame(step: int, x: Tensor, v: Tensor, frames_x=frames_x, frames_v=frames_v) -> None:
                if step % sample_every == 0:
                    frames_x.append(x)
                    frames_v.append(v)

            def exceeds(v: Tensor, absolute: bool, nb=nb, nm=nm, pad=pad) -> Tensor:
                over = ((v.abs() if absolute else v) > max_velocity).view(3, nb, nm).any(0)
                return (over & ~pad).any(1)

            v_end = run(batch, dt, n_steps, sample_every, force_clip, on_frame)
            xs = torch.stack(frames_x, 1).view(3, -1, nb, nm)  # (3, F, B, n_max)
            vs = torch.stack(frames_v, 1).view(3, -1, nb, nm)
            if max_velocity is not None:
                bad |= exceeds(v_end, velocity_check == "abs")
                if velocity_check == "abs":
                    bad |= ((vs.abs() > max_velocity).any(1).any(0) & ~pad).any(1)
            bad |= ~torch.isfinite(xs).all(0).all(0).all(-1) | ~torch.isfinite(vs).all(0).all(0).all(-1)
            xs = xs.permute(2, 3, 1, 0).cpu().numpy()  # (B, n_max, F, 3)
            vs = vs.permute(2, 3, 1, 0).cpu().numpy()
            bad_np = bad.cpu().numpy()
            for k, (i, s) in enumerate(zip(ids, states)):
                if bad_np[k]:
                    rejected.append(i)
                    continue
                n = s.charge.shape[0]
                results[i] = (xs[k, :n], vs[k, :n], s.charge, s.complex_id, s.system_type)
            if bar is not None:
                bar.update(len(ids) - int(bad_np.sum()))
        pending = sorted(rejected)


def _concat(parts: list[MComplexTrajectories], config: dict[str, Any]) -> MComplexTrajectories:
    """Join blocks of trajectories (in order)."""
    offsets = np.cumsum([0] + [int(p.node_ptr[-1]) for p in parts[:-1]])
    return MComplexTrajectories(
        pos=np.concatenate([p.pos for p in parts]), vel=np.concatenate([p.vel for p in parts]),
        charge=np.concatenate([p.charge for p in parts]), complex_id=np.concatenate([p.complex_id for p in parts]),
        node_ptr=np.concatenate([[0]] + [p.node_ptr[1:] + o for p, o in zip(parts, offsets)]).astype(np.int64),
        system_type=np.concatenate([p.system_type for p in parts]), draws=np.concatenate([p.draws for p in parts]),
        type_sizes=parts[0].type_sizes, config=config,
    )


def _auto_chunk(n_max: int, device: torch.device) -> int:
    """Trajectories per batch: on CPU keep the pair arrays cache-sized (measured best at
    ~35k pairs per batch), on a GPU make batches large to amortise kernel launches."""
    if device.type == "cuda":
        return int(max(16, min(16384, 20_000_000 // max(n_max * n_max, 1))))
    return int(max(8, min(2048, 35_000 // max(n_max * n_max, 1))))


def simulate_mcomplex(
    n_complex: int,
    avg_size: int,
    n_types: int,
    n_trajectories: int,
    *,
    seed: int = 0,
    stream: int = 0,
    integrator: str = "paper",
    dt: float = PAPER_DT,
    n_steps: int = PAPER_STEPS,
    sample_every: int = PAPER_SAMPLE_EVERY,
    force_clip: float | None = PAPER_FORCE_CLIP,
    max_velocity: float | None = PAPER_MAX_VELOCITY,
    velocity_check: str = "paper",
    type_sizes: np.ndarray | None = None,
    device: str | torch.device = "cpu",
    chunk_size: int | None = None,
    max_rounds: int = 100,
    progress: bool = False,
    num_threads: int | None = 1,
    workers: int = 1,
    index_offset: int = 0,
    backend: str = "auto",
) -> MComplexTrajectories:
    """Simulate ``n_trajectories`` trajectories of the ``(M, N/M, J)`` charged-complex system.

    Args:
        n_complex: ``M``, complexes per system.
        avg_size: ``N/M``, average complex size (candidate sizes ``2 .. 2 * avg_size - 2``).
        n_types: ``J``, number of system types (1: "single system", 5: "multiple systems").
        n_trajectories: number of accepted trajectories to return.
        seed: master seed; the system types use stream ``(0,)``, trajectory ``i`` of
            ``stream`` uses ``(1, stream, i)`` (:class:`MComplexDataset` uses stream 0/1/2
            for train/val/test).
        integrator: ``"paper"`` (published rigid-body update, quirks included) or ``"exact"``.
        dt, n_steps, sample_every: time step, number of steps, record a frame after steps
            ``1, 1 + sample_every, ...``.
        force_clip: clip every force component to ``+-force_clip`` (``None``: off).
        max_velocity: reject and redraw trajectories whose velocity exceeds it (``None``: off).
        velocity_check: ``"paper"`` (any component of the final state ``> max_velocity``)
            or ``"abs"`` (any ``|component| > max_velocity`` at a recorded frame or the end).
        type_sizes: optional ``(J, M)`` complex sizes overriding :func:`sample_complex_sizes`.
        device: torch device for the integration.
        chunk_size: trajectories integrated at once (default: chosen from the system size).
        max_rounds: give up (``RuntimeError``) after this many redraw rounds.
        progress: show a tqdm progress bar (trajectories accepted).
        num_threads: torch CPU threads during the call (restored afterwards); the default 1
            is fastest here because the per-step arrays are small (``None``: leave as is).
        workers: parallel workers integrating blocks of trajectories (threads for the compiled
            backend, processes for torch on CPU); the result does not depend on it (every
            trajectory has its own random stream; bit-for-bit with the compiled backend).
        index_offset: trajectory ``i`` uses stream index ``index_offset + i`` (generate a
            split in pieces).
        backend: ``"torch"`` (vectorised PyTorch, any device), ``"compiled"`` (the ``numba``
            kernel of :mod:`eghn.data.mcomplex_cpu`; ``"paper"`` integrator on CPU only) or
            ``"auto"`` (``"compiled"`` where it applies and ``numba`` is installed, else
            ``"torch"``). Both give the same trajectories up to round-off.

    Returns:
        :class:`MComplexTrajectories` with ``F = ceil(n_steps / sample_every)`` frames.

    Example:
        >>> tr = simulate_mcomplex(3, 3, 1, 2, seed=0, n_steps=300)
        >>> len(tr), tr.num_frames, tr.pos.shape, tr.type_sizes.shape
        (2, 3, (18, 3, 3), (1, 3))
    """
    check_config(n_complex, avg_size, n_types)
    if integrator not in INTEGRATORS:
        raise ValueError(f"integrator must be one of {INTEGRATORS}, got {integrator!r}")
    if velocity_check not in ("paper", "abs"):
        raise ValueError(f"velocity_check must be 'paper' or 'abs', got {velocity_check!r}")
    for name, v in (("n_trajectories", n_trajectories), ("stream", stream), ("index_offset", index_offset)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    for name, v in (("n_steps", n_steps), ("sample_every", sample_every), ("max_rounds", max_rounds),
                    ("workers", workers)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive finite number, got {dt!r}")
    if force_clip is not None and not force_clip > 0:
        raise ValueError(f"force_clip must be positive or None, got {force_clip!r}")
    if max_velocity is not None and not max_velocity > 0:
        raise ValueError(f"max_velocity must be positive or None, got {max_velocity!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    device = torch.device(device)
    from eghn.data import mcomplex_cpu

    can_compile = integrator == "paper" and device.type == "cpu"
    if backend == "compiled" and not can_compile:
        raise ValueError("backend='compiled' supports only integrator='paper' on device='cpu'")
    if backend == "compiled" and not mcomplex_cpu.available():
        raise ValueError("backend='compiled' needs numba (pip install numba)")
    compiled = backend == "compiled" or (backend == "auto" and can_compile and mcomplex_cpu.available())
    if type_sizes is None:
        type_sizes = sample_complex_sizes(n_complex, avg_size, n_types, seed)
    else:
        type_sizes = np.asarray(type_sizes, dtype=np.int64)
        if type_sizes.shape != (n_types, n_complex) or (type_sizes < 1).any():
            raise ValueError(f"type_sizes must be a positive integer array of shape (J={n_types}, "
                             f"M={n_complex}), got {type_sizes.tolist()}")
    n_frames = -(-n_steps // sample_every)
    n_max = int(type_sizes.sum(1).max())
    chunk = chunk_size or _auto_chunk(n_max, device)
    config = {
        "n_complex": int(n_complex), "avg_size": int(avg_size), "n_types": int(n_types),
        "n_trajectories": int(n_trajectories), "seed": int(seed), "stream": int(stream),
        "integrator": integrator, "dt": float(dt), "n_steps": int(n_steps),
        "sample_every": int(sample_every), "force_clip": force_clip, "max_velocity": max_velocity,
        "velocity_check": velocity_check, "type_sizes": type_sizes.tolist(),
        "backend": "compiled" if compiled else "torch",  # provenance: the two agree up to round-off
    }
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n_trajectories, unit="traj", desc=f"M-complex ({n_complex},{avg_size},{n_types})")
    if workers > 1 and n_trajectories > 1:
        kw = dict(seed=seed, stream=stream, integrator=integrator, dt=dt, n_steps=n_steps,
                  sample_every=sample_every, force_clip=force_clip, max_velocity=max_velocity,
                  velocity_check=velocity_check, type_sizes=type_sizes, device=str(device), chunk_size=chunk,
                  max_rounds=max_rounds, num_threads=num_threads, backend="compiled" if compiled else "torch")
        block = max(1, min(chunk, -(-n_trajectories // workers)))
        starts = list(range(0, n_trajectories, block))
        parts: dict[int, MComplexTrajectories] = {}
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed

        if compiled:  # the compiled kernel releases the GIL: threads, no process start-up (~8 s each)
            mcomplex_cpu.warm_up()
            kw["num_threads"] = None  # leave torch's global thread setting alone inside threads
            executor = ThreadPoolExecutor(workers)
        else:
            executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            with executor as pool:
                futs = {pool.submit(simulate_mcomplex, n_complex, avg_size, n_types,
                                    min(block, n_trajectories - a), index_offset=index_offset + a, **kw): a
                        for a in starts}
                for fut in as_completed(futs):
                    parts[futs[fut]] = fut.result()
                    if bar is not None:
                        bar.update(len(parts[futs[fut]]))
        finally:
            if bar is not None:
                bar.close()
        return _concat([parts[a] for a in starts], config)
    rngs = [_rng(seed, (1, stream, index_offset + i)) for i in range(n_trajectories)]
    draws = np.zeros(n_trajectories, dtype=np.int64)
    results: list[tuple | None] = [None] * n_trajectories
    pending = list(range(n_trajectories))
    old_threads = torch.get_num_threads()
    if num_threads is not None and device.type == "cpu":
        torch.set_num_threads(num_threads)
    try:
        _simulate_rounds(pending, rngs, draws, results, type_sizes, n_complex, integrator, device, chunk, dt,
                         n_steps, sample_every, force_clip, max_velocity, velocity_check, max_rounds, bar,
                         compiled)
    finally:
        torch.set_num_threads(old_threads)
        if bar is not None:
            bar.close()
    sizes = np.array([r[2].shape[0] for r in results], dtype=np.int64)
    node_ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    empty = np.zeros((0, n_frames, 3))
    return MComplexTrajectories(
        pos=np.concatenate([r[0] for r in results]) if results else empty,
        vel=np.concatenate([r[1] for r in results]) if results else empty.copy(),
        charge=np.concatenate([r[2] for r in results]).astype(np.int8) if results else np.zeros(0, np.int8),
        complex_id=np.concatenate([r[3] for r in results]).astype(np.int64) if results else np.zeros(0, np.int64),
        node_ptr=node_ptr,
        system_type=np.array([r[4] for r in results], dtype=np.int64),
        draws=draws,
        type_sizes=type_sizes,
        config=config,
    )
