"""Burgers solver of the PBDL book, chapter 3.6: explicit diffusion, then semi-Lagrangian
self-advection (operator splitting, first order in time).

One substep of size h on cell-centred values u_i [B, 1, N]:

    v_i     = u_i + h nu (u_{i+1} - 2 u_i + u_{i-1}) / dx^2          (diffuse.explicit)
    u_i^new = v(x_i - h v_i)    (linear interpolation of v)           (advect.semi_lagrangian)

This is the scheme PhiFlow runs for ``diffuse.explicit(v, NU, DT)`` followed by
``advect.semi_lagrangian(v, v, DT)`` on a periodic ``CenteredGrid``; with one substep per
output interval (``solver.substeps=1``) it reproduces the book's numbers. Dirichlet walls
use the odd reflection (u = 0 on the wall faces), see :mod:`pbdl_cli.solvers.boundary`.

Stability: explicit diffusion needs nu h / dx^2 <= 1/2 (``diffusion_number``); the
semi-Lagrangian step is stable for any Courant number, which ``cfl`` can still cap for
accuracy. Accuracy: first order in h, plus O(dx^2) and O(dx^2 / h) interpolation errors.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from pbdl_cli.problems.base import Params, Problem
from pbdl_cli.solvers import SOLVERS
from pbdl_cli.solvers.base import Solver, SolverConfig
from pbdl_cli.solvers.boundary import extend


@dataclasses.dataclass
class BurgersSemiLagrangianConfig(SolverConfig):
    """Options of ``burgers_sl`` (``solver.<key>``).

    Attributes:
        diffusion_number: largest nu h / dx^2 of a substep (explicit diffusion is stable up
            to 0.5).
        cfl: optional cap on the Courant number max|u| h / dx (null: no cap; the
            semi-Lagrangian step is unconditionally stable).
    """

    diffusion_number: float = 0.45
    cfl: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.diffusion_number <= 0.5:
            raise ValueError("diffusion_number must be in (0, 0.5]")
        if self.cfl is not None and self.cfl <= 0:
            raise ValueError("cfl must be > 0 (or null)")


@SOLVERS.register("burgers_sl")
class BurgersSemiLagrangian(Solver):
    """Explicit diffusion + semi-Lagrangian advection (PBDL book ch. 3.6), first order."""

    Config = BurgersSemiLagrangianConfig
    config: BurgersSemiLagrangianConfig
    problems = ("burgers",)

    def __init__(self, config: BurgersSemiLagrangianConfig, problem: Problem) -> None:
        super().__init__(config, problem)
        self.dx = self.grid.spacing[0]
        self.periodic = self.grid.is_periodic
        self.n = self.grid.shape[0]

    def stable_dt(self, state: Tensor, params: Params) -> Tensor:
        nu = params["nu"].to(torch.float64)
        limit = self.config.diffusion_number * self.dx**2 / nu
        if self.config.cfl is not None:
            speed = state.abs().flatten(1).amax(dim=1).to(torch.float64).to(nu.device)
            limit = torch.minimum(limit, self.config.cfl * self.dx / speed)
        return limit

    def substep(self, state: Tensor, dt: Tensor, params: Params, context: Any) -> Tensor:
        h = dt.view(-1, 1, 1)
        nu = params["nu"].to(state.dtype).view(-1, 1, 1)
        # explicit diffusion on the periodic / odd extension
        ext = extend(state, self.periodic)
        lap = (ext.roll(-1, -1) - 2 * ext + ext.roll(1, -1)) / self.dx**2
        v = state + h * nu * lap[..., : self.n]
        # semi-Lagrangian self-advection: sample v at the departure points x_i - h v_i
        ext = extend(v, self.periodic)
        m = ext.shape[-1]
        pos = torch.arange(self.n, device=state.device, dtype=state.dtype) - h * v / self.dx
        left = torch.floor(pos)
        w = pos - left  # differentiable in v; the cell index itself is piecewise constant
        i0 = left.to(torch.int64).remainder(m)
        i1 = (i0 + 1).remainder(m)
        return (1 - w) * ext.gather(-1, i0) + w * ext.gather(-1, i1)
