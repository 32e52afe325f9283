"""2D incompressible Navier-Stokes on a staggered (MAC) grid, with passive scalars.

    u_t + (u . grad) u = -grad p + nu lap u + xi s e_y + g,    div u = 0,
    s_t + u . grad s = source,

for any problem implementing :class:`~pbdl_cli.problems.flow.FlowProblem` (states
``[B, 2 + S, nx, ny]``: u on left faces, v on bottom faces, S cell-centred scalars; see
:mod:`pbdl_cli.numerics.mac`). One substep of size h (operator splitting, first order
in time, as PhiFlow's smoke and Karman examples of the PBDL book, ch. 3.7 and 18):

1. advect the scalars (semi-Lagrangian or MacCormack), add ``h * source``;
2. self-advect the velocity (with the old velocity);
3. add ``h * xi * s`` (s interpolated to the v-faces) and ``h * g``;
4. diffuse with ``params["nu"]`` or the problem's ``viscosity(params)`` (explicit,
   implicit or none);
5. apply walls, inflow, velocity regions and obstacles; project (FFT, DCT, CG or
   direct pressure solve, whose gradient is the adjoint solve).

Substeps: explicit diffusion needs nu h (1/dx^2 + 1/dy^2) <= ``diffusion_number``
(<= 1/2); ``cfl`` optionally caps max|u| h / min(dx, dy) (advection itself is stable for
any Courant number). The last solve's diagnostics are in :attr:`NsMac.last_info`.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from typing import Any

import torch
from torch import Tensor

from pbdl_cli.errors import PbdlError
from pbdl_cli.numerics.advection import Scheme, advect_centred, advect_velocity, max_speed
from pbdl_cli.numerics.diffusion import diffuse_explicit, diffuse_implicit
from pbdl_cli.numerics.mac import MacGrid
from pbdl_cli.numerics.pressure import PressureMethod, PressureSystem, SolveInfo, project
from pbdl_cli.problems.base import Params, Problem
from pbdl_cli.problems.flow import FlowProblem, FlowSetup
from pbdl_cli.solvers.base import SOLVERS, Solver, SolverConfig

log = logging.getLogger("pbdl.solvers.ns_mac")


class Diffusion(str, enum.Enum):
    explicit = "explicit"
    implicit = "implicit"
    none = "none"


@dataclasses.dataclass
class NsMacConfig(SolverConfig):
    """Options of ``ns_mac`` (``solver.<key>``).

    Attributes:
        advection: velocity self-advection scheme (``semi_lagrangian`` or ``maccormack``).
        scalar_advection: scheme for the passive scalars.
        limiter: clamp MacCormack results to the interpolation stencil's min/max.
        diffusion: ``explicit``, ``implicit`` (backward Euler, CG) or ``none``.
        pressure: ``auto``, ``fft`` (periodic), ``dct`` (closed, no obstacles) or ``cg``.
        cg_tol: CG stops when max|div u| <= cg_tol * max|div u*| (relative).
        cg_atol: ... or when max|div u| <= cg_atol (absolute).
        cg_max_iter: CG iteration cap (per solve).
        warm_start: start the pressure CG from the previous pressure (same batch shape).
        cfl: optional cap on max|u| h / min(dx, dy) per substep (null: none).
        diffusion_number: largest nu h (1/dx^2 + 1/dy^2) of explicit diffusion.
    """

    advection: Scheme = Scheme.maccormack
    scalar_advection: Scheme = Scheme.maccormack
    limiter: bool = True
    diffusion: Diffusion = Diffusion.explicit
    pressure: PressureMethod = PressureMethod.auto
    cg_tol: float = 1e-5
    cg_atol: float = 0.0
    cg_max_iter: int = 2000
    warm_start: bool = False
    cfl: float | None = None
    diffusion_number: float = 0.45

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.diffusion_number <= 0.5:
            raise ValueError("diffusion_number must be in (0, 0.5]")
        if self.cfl is not None and self.cfl <= 0:
            raise ValueError("cfl must be > 0 (or null)")
        if self.cg_tol < 0 or self.cg_atol < 0 or self.cg_tol + self.cg_atol == 0:
            raise ValueError("cg_tol and cg_atol must be >= 0, not both 0")
        if self.cg_max_iter < 1:
            raise ValueError("cg_max_iter must be >= 1")


@dataclasses.dataclass
class _Context:
    """What the substeps of one output interval share."""

    mac: MacGrid
    pressure: PressureSystem
    setup: FlowSetup
    nu: Tensor | None  # [B, 1, 1]
    buoyancy: Tensor | None  # [B or 1, 1, 1]
    buoyancy_index: int | None
    sources: dict[int, Tensor]


@SOLVERS.register("ns_mac")
class NsMac(Solver):
    """Incompressible Navier-Stokes on a MAC grid: advection, forces, diffusion, projection."""

    Config = NsMacConfig
    config: NsMacConfig

    @classmethod
    def supports(cls, problem: Problem) -> bool:
        """Flow problems (:class:`FlowProblem`) on a 2D grid with fields u, v first."""
        return (
            isinstance(problem, FlowProblem)
            and problem.grid.num_spatial_dims == 2
            and tuple(problem.fields[:2]) == ("u", "v")
        )

    @classmethod
    def supported(cls) -> str:
        return (
            "2D flow problems, with fields u, v first and a flow_setup(params) method "
            "(the FlowProblem protocol of pbdl_cli.problems.flow), e.g. problem=taylor_green"
        )

    def __init__(self, config: NsMacConfig, problem: Problem) -> None:
        super().__init__(config, problem)
        self.dx, self.dy = self.grid.spacing
        self.scalars = tuple(problem.fields[2:])
        #: diagnostics of the last pressure solve (iterations, residual, divergence)
        self.last_info: SolveInfo | None = None
        self.last_pressure: Tensor | None = None
        self._pressure_cache: dict[Any, PressureSystem] = {}
        self._warned = False

    # -- the scheme ---------------------------------------------------------------------
    def stable_dt(self, state: Tensor, params: Params) -> Tensor:
        batch = state.shape[0]
        limit = torch.full((batch,), float("inf"), dtype=torch.float64, device=state.device)
        nu = self._viscosity(params)
        if self.config.diffusion is Diffusion.explicit and nu is not None:
            nu = nu.to(device=state.device, dtype=torch.float64).expand(batch)
            diff = self.config.diffusion_number / (nu * (1 / self.dx**2 + 1 / self.dy**2))
            limit = torch.minimum(limit, torch.where(nu > 0, diff, limit))
        if self.config.cfl is not None:
            speed = max_speed(state[:, 0], state[:, 1]).to(torch.float64)
            limit = torch.minimum(limit, self.config.cfl * min(self.dx, self.dy) / speed)
        return limit

    def _viscosity(self, params: Params) -> Tensor | None:
        """``params["nu"]``, else the problem's ``viscosity(params)`` (e.g. nu from a
        Reynolds number), else None (no diffusion)."""
        nu = params.get("nu")
        if nu is None and callable(getattr(self.problem, "viscosity", None)):
            nu = self.problem.viscosity(params)  # type: ignore[attr-defined]
        return nu

    def prepare(self, dt: Tensor, params: Params, like: Tensor) -> _Context:
        setup: FlowSetup = self.problem.flow_setup(params)  # type: ignore[attr-defined]
        kw = {"device": like.device, "dtype": like.dtype}
        mac = MacGrid(
            self.grid.shape,
            self.grid.lower,
            self.grid.upper,
            setup.boundary,
            setup.obstacle,
            regions=setup.velocity_regions,
            device=like.device,
            dtype=like.dtype,
        )
        pressure = self._pressure_system(mac, setup, like)
        nu = self._viscosity(params)
        nu = None if nu is None or self.config.diffusion is Diffusion.none else nu
        buoyancy, index = None, None
        if not (isinstance(setup.buoyancy, float | int) and setup.buoyancy == 0):
            if setup.buoyancy_scalar not in self.scalars:
                raise PbdlError(
                    f"buoyancy needs the scalar channel '{setup.buoyancy_scalar}'; "
                    f"problem '{self.problem.name}' has {self.scalars}"
                )
            index = 2 + self.scalars.index(setup.buoyancy_scalar)
            buoyancy = torch.as_tensor(setup.buoyancy, **kw).reshape(-1, 1, 1)
        sources = {}
        for name, rate in setup.sources.items():
            if name not in self.scalars:
                raise PbdlError(f"source for unknown scalar channel '{name}'")
            rate = rate.to(**kw)
            sources[2 + self.scalars.index(name)] = rate if rate.dim() == 3 else rate[None]
        return _Context(
            mac=mac,
            pressure=pressure,
            setup=setup,
            nu=None if nu is None else nu.to(**kw).view(-1, 1, 1),
            buoyancy=buoyancy,
            buoyancy_index=index,
            sources=sources,
        )

    def _pressure_system(self, mac: MacGrid, setup: FlowSetup, like: Tensor) -> PressureSystem:
        """One system per geometry; reused (with its warm start) while it does not change."""
        c = self.config
        regions = tuple(r.geometry for r in setup.velocity_regions)
        key = (like.device, like.dtype, setup.boundary, regions)
        system = self._pressure_cache.get(key)
        if system is not None and _same_mask(system.mac.solid, mac.solid):
            return system
        system = PressureSystem(
            mac,
            c.pressure,
            tol=c.cg_tol,
            atol=c.cg_atol,
            max_iter=c.cg_max_iter,
            warm_start=c.warm_start,
        )
        self._pressure_cache = {key: system}
        return system

    def substep(self, state: Tensor, dt: Tensor, params: Params, context: Any) -> Tensor:
        ctx: _Context = context
        c, mac = self.config, ctx.mac
        h = dt.view(-1, 1, 1)
        fx, fy = mac.extend(state[:, 0], state[:, 1])
        channels = [state[:, k] for k in range(state.shape[1])]
        for k in range(2, state.shape[1]):
            q = advect_centred(mac, channels[k], fx, fy, dt, c.scalar_advection, limiter=c.limiter)
            if k in ctx.sources:
                q = q + h * ctx.sources[k]
            channels[k] = q
        fx, fy = advect_velocity(mac, fx, fy, dt, c.advection, limiter=c.limiter)
        if ctx.buoyancy is not None and ctx.buoyancy_index is not None:
            s = mac.centre_to_faces(channels[ctx.buoyancy_index], 1)
            fy = fy + h * ctx.buoyancy * s
        gx, gy = ctx.setup.body_force
        if gx or gy:
            fx, fy = fx + h * gx, fy + h * gy
        fx, fy = mac.apply_bc(fx, fy)
        if ctx.nu is not None:
            if c.diffusion is Diffusion.explicit:
                fx, fy = diffuse_explicit(mac, fx, fy, ctx.nu, h)
            else:
                fx, fy = diffuse_implicit(
                    mac, fx, fy, ctx.nu, h, tol=c.cg_tol, atol=c.cg_atol, max_iter=c.cg_max_iter
                )
        fx, fy, p, info = project(mac, fx, fy, ctx.pressure)
        self.last_info, self.last_pressure = info, p
        if not self._warned and not bool(info.converged.all()):
            self._warned = True
            log.warning(
                "ns_mac: the pressure solve did not converge for some trajectories "
                "(residual %.3g after %d iterations); raise solver.cg_max_iter or cg_tol",
                float(info.residual.max()),
                int(info.iterations.max()),
            )
        channels[0], channels[1] = mac.crop(fx, fy)
        return torch.stack(channels, dim=1)


def _same_mask(a: Tensor | None, b: Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(torch.equal(a, b))
