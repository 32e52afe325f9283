"""Advection on a MAC grid: semi-Lagrangian and MacCormack.

Semi-Lagrangian (first order): a quantity q at a grid point x is replaced by its value
at the departure point, q^{n+1}(x) = q^n(x - dt u(x)), with u sampled at x (one Euler
backtrace) and q interpolated bilinearly (:meth:`MacGrid.sample_centred`,
:meth:`MacGrid.sample_faces`).

MacCormack (Selle, Fedkiw, Kim, Liu & Rossignac 2008, "An unconditionally stable
MacCormack method"): a forward step q1 = SL(q, dt), a backward step q0 = SL(q1, -dt)
with the same velocity, and the correction

    q^{n+1} = q1 + (q - q0) / 2,

second order in space and time for smooth fields. The limiter clamps q^{n+1} to the min
and max of the four values the forward step interpolated from, so no new extrema appear.

Cell-centred scalars use the velocity interpolated to the centres; each velocity
component is advected on its own faces by the velocity sampled there (self-advection).
Shapes: scalars [B, nx, ny]; velocity components in unique-face form (see
:mod:`pbdl_cli.numerics.mac`); ``dt`` a float or [B] tensor.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import torch
from torch import Tensor

from pbdl_cli.numerics.mac import MacGrid

Sampler = Callable[..., Tensor | tuple[Tensor, Tensor, Tensor]]


class Scheme(str, enum.Enum):
    semi_lagrangian = "semi_lagrangian"
    maccormack = "maccormack"


def _step(dt: Tensor | float, like: Tensor) -> Tensor | float:
    return dt.view(-1, 1, 1).to(like.dtype) if isinstance(dt, Tensor) else dt


def advect_points(
    q: Tensor,
    sample: Sampler,
    x: Tensor,
    y: Tensor,
    u: Tensor,
    v: Tensor,
    dt: Tensor | float,
    scheme: Scheme | str = Scheme.semi_lagrangian,
    *,
    limiter: bool = True,
) -> Tensor:
    """Advect ``q`` (defined at the points x, y) by the velocity (u, v) given there.

    ``sample(values, x, y, bounds=...)`` interpolates a field like ``q`` at points.
    """
    h = _step(dt, q)
    xd, yd = x - h * u, y - h * v
    if Scheme(scheme) is Scheme.semi_lagrangian:
        return sample(q, xd, yd)
    forward, lo, hi = sample(q, xd, yd, bounds=True)
    back = sample(forward, x + h * u, y + h * v)
    corrected = forward + 0.5 * (q - back)
    if limiter:
        corrected = torch.minimum(torch.maximum(corrected, lo), hi)
    return corrected


def advect_centred(
    mac: MacGrid,
    q: Tensor,
    fx: Tensor,
    fy: Tensor,
    dt: Tensor | float,
    scheme: Scheme | str = Scheme.semi_lagrangian,
    *,
    limiter: bool = True,
) -> Tensor:
    """Advect a cell-centred scalar q [B, nx, ny] by the staggered velocity (fx, fy)."""
    u, v = mac.to_centres(fx, fy)
    x, y = (c.expand_as(q) for c in mac.centres())
    return advect_points(q, mac.sample_centred, x, y, u, v, dt, scheme, limiter=limiter)


def advect_velocity(
    mac: MacGrid,
    fx: Tensor,
    fy: Tensor,
    dt: Tensor | float,
    scheme: Scheme | str = Scheme.semi_lagrangian,
    *,
    limiter: bool = True,
) -> tuple[Tensor, Tensor]:
    """Self-advection of the staggered velocity: each component on its own faces, both
    with the old velocity. Fixed faces are reset by the caller (``mac.apply_bc``)."""
    out = []
    for axis, f in ((0, fx), (1, fy)):
        x, y = (c.expand_as(f) for c in mac.face_positions(axis))
        u, v = mac.velocity_at(fx, fy, x, y)

        def sample(values: Tensor, px: Tensor, py: Tensor, bounds: bool = False, axis=axis):
            return mac.sample_faces(values, axis, px, py, bounds=bounds)

        out.append(advect_points(f, sample, x, y, u, v, dt, scheme, limiter=limiter))
    return out[0], out[1]


def max_speed(fx: Tensor, fy: Tensor) -> Tensor:
    """max(|u|, |v|) per sample [B] (for CFL limits)."""
    return torch.maximum(fx.abs().flatten(1).amax(1), fy.abs().flatten(1).amax(1))
