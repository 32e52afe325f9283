"""Karman vortex street behind a cylinder: the wake flow of solver-in-the-loop (Um et al.
2020; PBDL book ch. 18, "Reducing numerical errors with deep learning").

    u_t + (u . grad) u = -grad p + nu lap u,   div u = 0,   nu = re_factor / Re,

in the channel x in (0, width), y in (0, length) (book: 100 x 200), with the flow along
**+y as in the book** (our x axis is horizontal; states [B, C, nx, ny] with nx = 32
cells across and ny = 64 along the flow by default: the book's ``SOURCE_RES = [64, 32]``
in its (y, x) order). Boundaries: an inflow strip ``y <= inflow_depth`` whose faces are
held at (u, v) = (0, inflow_speed) every substep (a :class:`VelocityRegion`; the book's
``HardGeometryMask(Box(y=(None, 5)))``), inflow (0, inflow_speed) at y = 0 (or, with
``inflow_profile=parabolic`` and no strip, the parabola 4 inflow_speed x (W - x) / W^2
across the channel), an open top (outflow, p = 0), no-slip ("sticky") walls at x = 0
and x = width, and a cylinder (cell mask of the disc ``obstacle_centre``,
``obstacle_radius``; book: centre (50, 50), radius 10). An optional passive ``marker``
(``marker=true``) is fed at rate 1 in the box x in (25, 75), y in (5, 10)
(visualization only, as in the book).

Viscosity: the book sets ``diffusivity = dt res^2 / Re_phiflow`` with dt = 1,
res = 32 and ``Re_phiflow = Re / RE_FAC_SOL``, ``RE_FAC_SOL = 10 / 128^2``, i.e.
nu = 32^2 * 10 / 128^2 / Re = 0.625 / Re (``re_factor``). It is a physical viscosity
here: the same nu at every resolution (``refined``), so the 4x finer reference solves
the same equations. Re is the trajectory parameter (``re`` or per trajectory from
``re_range``, log-uniform or uniform); the solver gets nu from :meth:`Karman.viscosity`.

Initial state: the wake needs time to develop, so the data do not start from the
initial condition. ``initial_state`` is the uniform inflow velocity in the fluid plus a
small random transverse bump behind the cylinder (amplitude ``perturbation`` times a
random factor in [-1, 1]: it breaks the symmetry, so shedding starts early and with a
trajectory-dependent phase); ``burn_in`` describes the simulation that ``pbdl generate``
runs from it before frame 0: ``warmup`` time units (plus a random whole number of steps
in [0, ``warmup_jitter``]) with the book's scheme (semi-Lagrangian, explicit diffusion,
``warmup_substeps`` substeps per dt, times the refinement factor on a ``refined``
problem) at the problem's own resolution. Frame 0 is the state after the burn-in; the
stored frames span ``t_end`` after it.
"""

from __future__ import annotations

import dataclasses
import enum
import math

import torch
from torch import Tensor

from pbdl_cli.numerics.geometry import (
    Boundary,
    Profile,
    Side,
    VelocityRegion,
    box_mask,
    parabola,
    sphere_mask,
)
from pbdl_cli.problems.base import PROBLEMS, BurnIn, Grid, Params, Problem
from pbdl_cli.problems.flow import FlowSetup, coarsen_state
from pbdl_cli.registry import PluginConfig

#: the book's viscosity mapping: nu = dt res^2 RE_FAC_SOL / Re with dt = 1, res = 32
BOOK_RE_FACTOR = 32**2 * 10 / 128**2  # 0.625


class ReSampling(str, enum.Enum):
    log = "log"
    uniform = "uniform"


@dataclasses.dataclass
class KarmanConfig(PluginConfig):
    """Configuration of :class:`Karman` (``problem.<key>``); see the module docstring.

    Attributes:
        nx: cells across the channel (x, the book's 32).
        ny: cells along the flow (y, the book's 64).
        width: channel width (x extent).
        length: channel length (y extent).
        re: Reynolds number of every trajectory (when ``re_range`` is null).
        re_range: ``[lo, hi]``: draw Re per trajectory (``re_sampling``) instead.
        re_sampling: ``log`` (log-uniform) or ``uniform``.
        re_factor: nu = re_factor / Re (the book's 0.625).
        obstacle_centre: cylinder centre (x, y).
        obstacle_radius: cylinder radius.
        inflow_speed: v of the inflow strip and the bottom side (the peak of a
            parabolic profile).
        inflow_depth: the strip is y <= inflow_depth.
        inflow_profile: ``uniform`` (the book) or ``parabolic``: the bottom side's v is
            4 inflow_speed x (W - x) / W^2 across the channel (a developed channel
            flow, the Schaefer-Turek inflow; mean 2/3 inflow_speed); needs
            inflow_depth = 0 (the strip would hold a uniform velocity).
        t_end: time covered by the stored frames (after the burn-in).
        dt: output interval (the book's 1).
        warmup: burn-in time before frame 0 (a whole multiple of dt).
        warmup_jitter: up to this many extra burn-in steps, drawn per trajectory.
        warmup_substeps: substeps per dt of the burn-in (times the refinement factor).
        perturbation: amplitude of the initial transverse velocity bump.
        marker: add the passive ``marker`` channel (fed in x in (25, 75), y in (5, 10)).
    """

    nx: int = 32
    ny: int = 64
    width: float = 100.0
    length: float = 200.0
    re: float = 500.0
    re_range: list[float] | None = None
    re_sampling: ReSampling = ReSampling.log
    re_factor: float = BOOK_RE_FACTOR
    obstacle_centre: list[float] = dataclasses.field(default_factory=lambda: [50.0, 50.0])
    obstacle_radius: float = 10.0
    inflow_speed: float = 1.0
    inflow_depth: float = 5.0
    inflow_profile: Profile = Profile.uniform
    t_end: float = 100.0
    dt: float = 1.0
    warmup: float = 100.0
    warmup_jitter: int = 0
    warmup_substeps: int = 1
    perturbation: float = 0.1
    marker: bool = False

    def __post_init__(self) -> None:
        if self.nx < 4 or self.ny < 4:
            raise ValueError("nx and ny must be >= 4")
        if self.width <= 0 or self.length <= 0:
            raise ValueError("width and length must be > 0")
        if self.re <= 0 or self.re_factor < 0:
            raise ValueError("re must be > 0 and re_factor >= 0")
        if self.re_range is not None and (
            len(self.re_range) != 2 or not 0 < self.re_range[0] <= self.re_range[1]
        ):
            raise ValueError("re_range must be [lo, hi] with 0 < lo <= hi")
        self.re_sampling = ReSampling(self.re_sampling)
        if len(self.obstacle_centre) != 2 or self.obstacle_radius < 0:
            raise ValueError("obstacle_centre must be [x, y] and obstacle_radius >= 0")
        if self.dt <= 0 or self.t_end <= 0:
            raise ValueError("dt and t_end must be > 0")
        for key in ("t_end", "warmup"):
            value = getattr(self, key)
            k = round(value / self.dt)
            if value < 0 or not math.isclose(k * self.dt, value, rel_tol=1e-9, abs_tol=1e-12):
                raise ValueError(f"{key}={value} must be a whole multiple of dt={self.dt}")
        if self.warmup_jitter < 0 or self.warmup_substeps < 1:
            raise ValueError("warmup_jitter must be >= 0 and warmup_substeps >= 1")
        if self.perturbation < 0:
            raise ValueError("perturbation must be >= 0")
        self.inflow_profile = Profile(self.inflow_profile)
        if self.inflow_profile is Profile.parabolic and self.inflow_depth != 0:
            raise ValueError(
                "inflow_profile=parabolic needs inflow_depth=0 "
                "(the inflow strip holds a uniform velocity)"
            )


@PROBLEMS.register("karman")
class Karman(Problem):
    """Flow past a cylinder in a channel (Karman vortex street), flow along +y."""

    Config = KarmanConfig
    config: KarmanConfig
    default_solver = "ns_mac"

    def __init__(self, config: KarmanConfig, refine: int = 1) -> None:
        super().__init__(config)
        #: how much finer than the configured grid this problem is (``refined``)
        self.refine = refine

    @property
    def fields(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("u", "v", "marker") if self.config.marker else ("u", "v")

    @property
    def grid(self) -> Grid:
        c = self.config
        return Grid(lower=(0.0, 0.0), upper=(c.width, c.length), shape=(c.nx, c.ny), bc="dirichlet")

    @property
    def t_end(self) -> float:
        return self.config.t_end

    @property
    def dt(self) -> float:
        return self.config.dt

    def slug(self) -> str:
        c = self.config
        re = f"re{c.re_range[0]:g}-{c.re_range[1]:g}" if c.re_range else f"re{c.re:g}"
        return f"{c.nx}x{c.ny}_{re}"

    def refined(self, factor: int) -> Karman:
        """The same channel with ``factor`` times more cells per axis (same nu, times and
        geometry; the burn-in takes ``factor`` times more substeps)."""
        c = self.config
        config = dataclasses.replace(c, nx=c.nx * factor, ny=c.ny * factor)
        return Karman(config, refine=self.refine * factor)

    def coarsen(self, state: Tensor, factor: int) -> Tensor:
        """Face (flux) averages of the velocity, cell averages of the marker
        (:func:`coarsen_state`)."""
        return coarsen_state(state, factor)

    # -- the flow ---------------------------------------------------------------------
    def viscosity(self, params: Params) -> Tensor:
        """nu = re_factor / Re per trajectory [B]."""
        return self.config.re_factor / params["re"]

    def obstacle(self) -> Tensor:
        """The cylinder's cell mask [1, nx, ny]."""
        c, g = self.config, self.grid
        return sphere_mask(g.shape, g.lower, g.upper, c.obstacle_centre, c.obstacle_radius)

    def flow_setup(self, params: Params) -> FlowSetup:
        c, g = self.config, self.grid
        wall = Side("no_slip")
        inflow = (0.0, float(c.inflow_speed))
        if c.inflow_profile is Profile.uniform:
            boundary = Boundary(wall, wall, Side("inflow", inflow), Side("outflow"))
            regions: tuple[VelocityRegion, ...] = (
                VelocityRegion(upper=(None, c.inflow_depth), velocity=inflow),
            )
        else:  # the side alone: no strip (inflow_depth = 0)
            bottom = Side("inflow", inflow, profile=c.inflow_profile)
            boundary = Boundary(wall, wall, bottom, Side("outflow"))
            regions = ()
        sources = {}
        if c.marker:
            box = box_mask(g.shape, g.lower, g.upper, (25.0, c.inflow_depth), (75.0, 10.0))
            sources["marker"] = box.to(torch.float64)
        return FlowSetup(
            boundary=boundary,
            obstacle=self.obstacle(),
            velocity_regions=regions,
            sources=sources,
        )

    def sample_params(self, n: int, generator: torch.Generator) -> Params:
        c = self.config
        if c.re_range is None:
            return {"re": torch.full((n,), float(c.re), dtype=torch.float64)}
        lo, hi = c.re_range
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        if c.re_sampling is ReSampling.log:
            re = torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u)
        else:
            re = lo + (hi - lo) * u
        return {"re": re}

    def initial_state(self, params: Params, generator: torch.Generator) -> Tensor:
        """The state before the burn-in (:meth:`burn_in`): uniform inflow velocity in the
        fluid plus a random transverse bump behind the cylinder; [B, C, nx, ny] float64."""
        c, g = self.config, self.grid
        batch = params["re"].shape[0]
        state = torch.zeros(batch, len(self.fields), *g.shape, dtype=torch.float64)
        state[:, 1] = c.inflow_speed
        # u faces: x = i dx, y = centre
        dx, dy = g.spacing
        if c.inflow_profile is Profile.parabolic:  # v faces: x = centre
            xc = (torch.arange(g.shape[0], dtype=torch.float64) + 0.5) * dx
            state[:, 1] = c.inflow_speed * parabola(xc, c.width)[:, None]
        x = torch.arange(g.shape[0], dtype=torch.float64) * dx
        y = (torch.arange(g.shape[1], dtype=torch.float64) + 0.5) * dy
        xc, yc = c.obstacle_centre
        r = max(c.obstacle_radius, dx)
        bump = torch.exp(-((x[:, None] - xc) ** 2 + (y[None, :] - yc - 2 * r) ** 2) / r**2)
        amplitude = c.perturbation * (2 * torch.rand(batch, generator=generator) - 1)
        state[:, 0] = amplitude.double()[:, None, None] * bump
        solid = self.obstacle()[0]
        state[:, 0] = state[:, 0].masked_fill(solid | solid.roll(1, 0), 0.0)
        state[:, 1] = state[:, 1].masked_fill(solid | solid.roll(1, 1), 0.0)
        return state

    def burn_in(self, params: Params, generator: torch.Generator) -> BurnIn | None:
        """``warmup / dt`` steps plus a random whole number in [0, ``warmup_jitter``] per
        trajectory, with the book's scheme (``ns_mac``, semi-Lagrangian, explicit
        diffusion, exact ``direct`` pressure solve, ``warmup_substeps`` times the
        refinement factor substeps per dt) in single precision."""
        c = self.config
        base = round(c.warmup / c.dt)
        batch = params["re"].shape[0]
        jitter = torch.randint(0, c.warmup_jitter + 1, (batch,), generator=generator)
        if base == 0 and c.warmup_jitter == 0:
            return None
        solver = {
            "name": "ns_mac",
            "advection": "semi_lagrangian",
            "scalar_advection": "semi_lagrangian",
            "diffusion": "explicit",
            "pressure": "direct",
            "substeps": c.warmup_substeps * self.refine,
        }
        return BurnIn(steps=base + jitter, solver=solver, dtype=torch.float32)
