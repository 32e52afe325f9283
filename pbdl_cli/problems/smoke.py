"""Buoyant smoke plume in a closed box (PBDL book §3.7, "Navier-Stokes forward
simulation", and ch. 16, "Differentiable fluid simulations").

    u_t + (u . grad) u = -grad p + nu lap u + xi s e_y,   div u = 0,
    s_t + u . grad s = inflow,

on the box ``[0, Lx] x [0, Ly]`` with zero velocity on all four walls (no-slip; the
pressure gets Neumann conditions) and a zero-gradient marker s (``marker``, PhiFlow's
``extrapolation.BOUNDARY``). The marker starts at 0 and every output step of size ``dt``
adds ``inflow_amount`` inside the disc ``|x - c| <= inflow_radius`` (a hard cell mask:
cells whose centre lies in the disc, as PhiFlow samples a ``Sphere`` on a grid; 52 cells
for the book's default, which gives the book's mean marker 0.008125 after one step).
Buoyancy pushes the fluid up with ``xi s``.

Fields ``u``, ``v`` (staggered: u on the left faces, v on the bottom faces, see
:mod:`pbdl_cli.numerics.mac`) and ``marker``; the initial state is at rest and empty.

**Inflow semantics.** The book adds ``INFLOW`` once per step (not ``dt * INFLOW``):
``smoke = advect(smoke) + INFLOW``. ``ns_mac`` adds ``h * rate`` every substep h, so the
problem passes the source rate ``inflow_amount / dt``: one output step then adds exactly
``inflow_amount`` (with one substep, as the book's scheme, right after the advection).

**Inflow position.** Every trajectory has its own centre (parameters ``inflow_x``,
``inflow_y``): ``inflow_center`` for all of them, or ``inflow_centers[i % len]`` for
trajectory i (the four simulations of the book's ch. 16), plus a uniform random offset
of up to ``±inflow_jitter`` per axis (datasets of plumes from different positions).

The book's scheme (E3) is ``ns_mac`` with ``solver.advection=semi_lagrangian
solver.scalar_advection=semi_lagrangian solver.substeps=1`` (``experiment=smoke_plume``);
ch. 16 uses MacCormack for the marker, no viscosity, and ``dt = 1`` on a 32 x 40 box
(``experiment=smoke_dp``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from pbdl_cli.numerics.geometry import Boundary, Kind
from pbdl_cli.problems.base import PROBLEMS, Grid, Params, Problem, check_time_grid
from pbdl_cli.problems.flow import FlowSetup, coarsen_state
from pbdl_cli.registry import PluginConfig


@dataclasses.dataclass
class SmokeConfig(PluginConfig):
    """Configuration of :class:`Smoke` (``problem.<key>``); defaults: the book's §3.7.

    Attributes:
        resolution: cells ``[nx, ny]``.
        domain: box size ``[Lx, Ly]`` (lower corner at the origin).
        nu: kinematic viscosity.
        buoyancy: Boussinesq factor xi (force ``xi * marker`` along +y).
        inflow_center: centre ``[x, y]`` of the inflow disc.
        inflow_centers: per-trajectory centres ``[[x, y], ...]`` (trajectory i gets entry
            ``i % len``); empty: ``inflow_center`` for every trajectory.
        inflow_jitter: uniform random offset of the centre, up to ``± [jx, jy]`` per
            trajectory (0: none).
        inflow_radius: radius of the inflow disc.
        inflow_amount: marker added inside the disc per output step ``dt`` (the book's
            ``+ INFLOW``; the source rate is ``inflow_amount / dt``).
        t_end: final time.
        dt: output interval (one stored frame, one book step).
    """

    resolution: list[int] = dataclasses.field(default_factory=lambda: [32, 40])
    domain: list[float] = dataclasses.field(default_factory=lambda: [80.0, 100.0])
    nu: float = 0.01
    buoyancy: float = 1.0
    inflow_center: list[float] = dataclasses.field(default_factory=lambda: [30.0, 15.0])
    inflow_centers: list[Any] = dataclasses.field(default_factory=list)
    inflow_jitter: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.0])
    inflow_radius: float = 10.0
    inflow_amount: float = 0.2
    t_end: float = 30.0
    dt: float = 1.5

    def __post_init__(self) -> None:
        if len(self.resolution) != 2 or min(self.resolution) < 2:
            raise ValueError("resolution must be [nx, ny] with at least 2 cells per axis")
        if len(self.domain) != 2 or min(self.domain) <= 0:
            raise ValueError("domain must be [Lx, Ly] > 0")
        if self.nu < 0:
            raise ValueError("nu must be >= 0")
        if self.inflow_radius <= 0:
            raise ValueError("inflow_radius must be > 0")
        if len(self.inflow_jitter) != 2 or min(self.inflow_jitter) < 0:
            raise ValueError("inflow_jitter must be >= 0")
        for centre in [self.inflow_center, *self.inflow_centers]:
            if not isinstance(centre, list | tuple) or len(centre) != 2:
                raise ValueError(f"an inflow centre is [x, y], got {centre}")
            if not all(isinstance(v, int | float) for v in centre):
                raise ValueError(f"an inflow centre is two numbers, got {centre}")
        check_time_grid(self.t_end, self.dt)


@PROBLEMS.register("smoke")
class Smoke(Problem):
    """Buoyant smoke plume in a closed box (book §3.7 and ch. 16)."""

    Config = SmokeConfig
    config: SmokeConfig
    fields = ("u", "v", "marker")
    default_solver = "ns_mac"

    @property
    def grid(self) -> Grid:
        c = self.config
        shape = (int(c.resolution[0]), int(c.resolution[1]))
        upper = (float(c.domain[0]), float(c.domain[1]))
        return Grid(lower=(0.0, 0.0), upper=upper, shape=shape, bc="dirichlet")

    @property
    def t_end(self) -> float:
        return self.config.t_end

    @property
    def dt(self) -> float:
        return self.config.dt

    def slug(self) -> str:
        c = self.config
        nx, ny = c.resolution
        return f"{nx}x{ny}_nu{c.nu:g}_b{c.buoyancy:g}_in{c.inflow_amount:g}"

    def refined(self, factor: int) -> Smoke:
        nx, ny = self.config.resolution
        return Smoke(dataclasses.replace(self.config, resolution=[nx * factor, ny * factor]))

    def coarsen(self, state: Tensor, factor: int) -> Tensor:
        """Face averages of the velocity, cell averages of the marker (:func:`coarsen_state`)."""
        return coarsen_state(state, factor)

    # -- parameters and initial state ----------------------------------------------------
    def sample_params(self, n: int, generator: torch.Generator) -> Params:
        c = self.config
        kw = {"dtype": torch.float64}
        if c.inflow_centers:
            table = torch.tensor([list(p) for p in c.inflow_centers], **kw)
            centres = table[torch.arange(n) % len(table)]
        else:
            centres = torch.tensor([list(c.inflow_center)], **kw).expand(n, 2).clone()
        jitter = torch.tensor(list(c.inflow_jitter), **kw)
        if bool((jitter > 0).any()):
            centres = centres + (2 * torch.rand(n, 2, generator=generator, **kw) - 1) * jitter
        return {
            "nu": torch.full((n,), c.nu, **kw),
            "inflow_x": centres[:, 0].contiguous(),
            "inflow_y": centres[:, 1].contiguous(),
        }

    def initial_state(self, params: Params, generator: torch.Generator) -> Tensor:
        batch = params["inflow_x"].shape[0]
        return torch.zeros(batch, 3, *self.grid.shape, dtype=torch.float64)

    def inflow_mask(self, params: Params) -> Tensor:
        """Inflow cells of every trajectory: 0/1 float64 [B, nx, ny] (cell centre in disc)."""
        x = self.grid.cell_centres(0)[None, :, None]
        y = self.grid.cell_centres(1)[None, None, :]
        cx = params["inflow_x"].detach().cpu().to(torch.float64)[:, None, None]
        cy = params["inflow_y"].detach().cpu().to(torch.float64)[:, None, None]
        inside = (x - cx) ** 2 + (y - cy) ** 2 <= self.config.inflow_radius**2
        return inside.to(torch.float64)

    # -- the flow protocol ---------------------------------------------------------------
    def flow_setup(self, params: Params) -> FlowSetup:
        c = self.config
        rate = self.inflow_mask(params) * (c.inflow_amount / c.dt)
        return FlowSetup(
            boundary=Boundary.closed(Kind.no_slip),
            buoyancy=float(c.buoyancy),
            sources={"marker": rate},
        )
