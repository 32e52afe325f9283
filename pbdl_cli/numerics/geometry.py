"""Flow geometry on a 2D box: the boundary conditions of its four sides and regions.

What a flow problem prescribes and the MAC-grid numerics (:mod:`pbdl_cli.numerics.mac`)
enforce: the kind of each side (:class:`Kind`, :class:`Side`, :class:`Boundary`, an
inflow's :class:`Profile`),
axis-aligned boxes of faces with a prescribed velocity (:class:`VelocityRegion`), and
cell masks of discs and boxes (:func:`sphere_mask`, :func:`box_mask`, bool
``[1, nx, ny]``) for obstacles and source regions.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Sequence

import torch
from torch import Tensor


class Kind(str, enum.Enum):
    """Boundary condition of one side of the box."""

    periodic = "periodic"
    no_slip = "no_slip"
    free_slip = "free_slip"
    inflow = "inflow"
    outflow = "outflow"


_NO_VELOCITY = (Kind.periodic, Kind.free_slip, Kind.outflow)


class Profile(str, enum.Enum):
    """Shape of an inflow velocity along its side (s from the side's start, H its length):
    ``uniform`` (the velocity everywhere) or ``parabolic``, the fully developed channel
    flow 4 s (H - s) / H^2 times the velocity (peak at mid-side, mean 2/3 of it, as
    the inflow of the Schaefer-Turek cylinder benchmark)."""

    uniform = "uniform"
    parabolic = "parabolic"


def parabola(s: Tensor, length: float) -> Tensor:
    """4 s (H - s) / H^2 at the points ``s`` (0 outside [0, H])."""
    return (4 * s * (length - s) / length**2).clamp(min=0)


def parabola_mean(lo: Tensor, hi: Tensor, length: float) -> Tensor:
    """Mean of 4 s (H - s) / H^2 over each interval [lo, hi] (exact: a face's flux)."""

    def primitive(s: Tensor) -> Tensor:
        return 4 * (length * s**2 / 2 - s**3 / 3) / length**2

    return (primitive(hi) - primitive(lo)) / (hi - lo)


@dataclasses.dataclass(frozen=True)
class Side:
    """One side: its kind and a velocity ``(u, v)``.

    ``inflow``: the prescribed velocity of the boundary faces (both components).
    ``no_slip``: the velocity of the wall itself, tangential only (a moving wall, e.g.
    the lid of a driven cavity: the tangential ghost is ``2 u_wall - inside``); its
    normal component must be 0, which :class:`Boundary` checks (it knows the axis).
    ``free_slip``, ``outflow`` and ``periodic`` sides take no velocity.
    ``profile`` (inflow only): :class:`Profile` of the velocity along the side; a
    ``parabolic`` inflow's boundary faces hold the face means of the parabola (their
    fluxes add up to exactly 2/3 of the peak velocity times the side length).
    """

    kind: Kind = Kind.no_slip
    velocity: tuple[float, float] = (0.0, 0.0)
    profile: Profile = Profile.uniform

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Kind(self.kind))
        object.__setattr__(self, "profile", Profile(self.profile))
        if self.profile is not Profile.uniform and self.kind is not Kind.inflow:
            raise ValueError(
                f"a {self.profile.value} profile needs an inflow side, not {self.kind.value}"
            )
        velocity = tuple(float(v) for v in self.velocity)
        if len(velocity) != 2 or not all(math.isfinite(v) for v in velocity):
            raise ValueError(f"Side velocity must be two finite numbers (u, v), not {velocity}")
        object.__setattr__(self, "velocity", velocity)
        if self.kind in _NO_VELOCITY and any(velocity):
            raise ValueError(
                f"a {self.kind.value} side takes no velocity (got {velocity}); "
                "use no_slip for a moving wall or inflow for a prescribed velocity"
            )


@dataclasses.dataclass(frozen=True)
class Boundary:
    """Boundary conditions of the four sides; periodic sides come in pairs."""

    x_lo: Side = Side()
    x_hi: Side = Side()
    y_lo: Side = Side()
    y_hi: Side = Side()

    def __post_init__(self) -> None:
        for a, b in ((self.x_lo, self.x_hi), (self.y_lo, self.y_hi)):
            if (a.kind is Kind.periodic) != (b.kind is Kind.periodic):
                raise ValueError("periodic sides must come in pairs (x_lo with x_hi, ...)")
        for name in ("x_lo", "x_hi", "y_lo", "y_hi"):
            side, axis = getattr(self, name), int(name[0] == "y")
            along = (self.x_lo, self.y_lo)[1 - axis]
            if side.profile is not Profile.uniform and along.kind is Kind.periodic:
                raise ValueError(
                    f"the {side.profile.value} inflow {name} needs walls at its ends, "
                    f"not a periodic {'xy'[1 - axis]} axis"
                )
            if side.kind is Kind.no_slip and side.velocity[axis] != 0:
                raise ValueError(
                    f"the no_slip wall {name} can only move along itself: its normal "
                    f"velocity {'uv'[axis]} = {side.velocity[axis]:g} must be 0 "
                    "(use inflow for flow through a side)"
                )

    @classmethod
    def periodic(cls) -> Boundary:
        p = Side(Kind.periodic)
        return cls(p, p, p, p)

    @classmethod
    def closed(cls, kind: Kind | str = Kind.no_slip) -> Boundary:
        w = Side(Kind(kind))
        return cls(w, w, w, w)

    def side(self, axis: int, upper: bool) -> Side:
        return ((self.x_lo, self.x_hi), (self.y_lo, self.y_hi))[axis][int(upper)]

    @property
    def periodic_axes(self) -> tuple[bool, bool]:
        return (self.x_lo.kind is Kind.periodic, self.y_lo.kind is Kind.periodic)

    @property
    def has_outflow(self) -> bool:
        return any(s.kind is Kind.outflow for s in (self.x_lo, self.x_hi, self.y_lo, self.y_hi))


@dataclasses.dataclass(frozen=True, eq=False)
class VelocityRegion:
    """Faces of the MAC grid whose velocity is prescribed: an axis-aligned box.

    Every face whose position (u: left faces, v: bottom faces, see
    :mod:`pbdl_cli.numerics.mac`) lies in ``lower <= (x, y) <= upper`` (``None``:
    unbounded on that side) is *fixed* like a wall or inflow face: it is set to its
    component of ``velocity`` after advection and forces, diffusion leaves it alone (its
    value is a neighbour of the free faces) and the projection keeps it (the pressure
    sees it as a Neumann face). It therefore holds its value exactly at the end of every
    substep, and acts as a volume source/sink of fluid for its neighbours (e.g. the
    inflow strip of the Karman wake, PBDL book ch. 18: ``Box(y=(None, 5))`` with
    velocity ``(0, 1)``). Obstacles take precedence (their faces stay 0).

    Attributes:
        lower, upper: box corners ``(x, y)``; ``None`` entries are unbounded.
        velocity: ``(u, v)`` floats, or a tensor [2] or [B, 2] (per trajectory, may
            require grad: gradients flow into it; the overwritten faces of the state get
            zero gradient).
    """

    lower: tuple[float | None, float | None] = (None, None)
    upper: tuple[float | None, float | None] = (None, None)
    velocity: tuple[float, float] | Tensor = (0.0, 0.0)

    def __post_init__(self) -> None:
        if len(self.lower) != 2 or len(self.upper) != 2:
            raise ValueError("VelocityRegion lower/upper must be (x, y) pairs")
        for lo, hi in zip(self.lower, self.upper, strict=True):
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"VelocityRegion: lower {self.lower} > upper {self.upper}")
        v = self.velocity
        if isinstance(v, Tensor):
            if v.shape[-1:] != (2,) or v.dim() > 2:
                raise ValueError("VelocityRegion.velocity tensor must be [2] or [B, 2]")
        elif len(v) != 2:
            raise ValueError("VelocityRegion.velocity must be (u, v)")

    @property
    def geometry(self) -> tuple[tuple[float | None, ...], tuple[float | None, ...]]:
        """What decides which faces are fixed (a hashable key; the velocity does not)."""
        return (tuple(self.lower), tuple(self.upper))

    def contains(self, x: Tensor, y: Tensor) -> Tensor:
        """Bool mask of the points (x, y) inside the box (bounds included)."""
        inside = torch.ones_like(x, dtype=torch.bool)
        for coord, lo, hi in ((x, self.lower[0], self.upper[0]), (y, self.lower[1], self.upper[1])):
            if lo is not None:
                inside = inside & (coord >= lo)
            if hi is not None:
                inside = inside & (coord <= hi)
        return inside

    def component(self, axis: int, *, device: torch.device, dtype: torch.dtype) -> Tensor:
        """Velocity component ``axis`` as [B or 1, 1, 1]."""
        v = self.velocity
        if isinstance(v, Tensor):
            return v.to(device=device, dtype=dtype).reshape(-1, 2)[:, axis].view(-1, 1, 1)
        return torch.full((1, 1, 1), float(v[axis]), device=device, dtype=dtype)


# -- obstacle masks ---------------------------------------------------------------------
def _cell_centres(
    shape: Sequence[int], lower: Sequence[float], upper: Sequence[float]
) -> tuple[Tensor, Tensor]:
    axes = [
        lo + (torch.arange(n, dtype=torch.float64) + 0.5) * (hi - lo) / n
        for n, lo, hi in zip(shape, lower, upper, strict=True)
    ]
    return torch.meshgrid(*axes, indexing="ij")


def sphere_mask(
    shape: Sequence[int],
    lower: Sequence[float],
    upper: Sequence[float],
    centre: Sequence[float],
    radius: float,
) -> Tensor:
    """Cells whose centre lies inside the disc: bool [1, nx, ny]."""
    x, y = _cell_centres(shape, lower, upper)
    return (((x - centre[0]) ** 2 + (y - centre[1]) ** 2) <= radius**2)[None]


def box_mask(
    shape: Sequence[int],
    lower: Sequence[float],
    upper: Sequence[float],
    box_lower: Sequence[float],
    box_upper: Sequence[float],
) -> Tensor:
    """Cells whose centre lies inside the axis-aligned box: bool [1, nx, ny]."""
    x, y = _cell_centres(shape, lower, upper)
    inside = (x >= box_lower[0]) & (x <= box_upper[0]) & (y >= box_lower[1]) & (y <= box_upper[1])
    return inside[None]
