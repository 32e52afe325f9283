"""Decaying 2D Taylor-Green vortex: a verification problem for incompressible solvers.

    u_t + (u . grad) u = -grad p + nu lap u,   div u = 0,   (x, y) in [0, 2 pi]^2 periodic,

    u(x, y, t) =  A sin x cos y exp(-2 nu t),
    v(x, y, t) = -A cos x sin y exp(-2 nu t),
    p(x, y, t) = A^2 / 4 (cos 2x + cos 2y) exp(-4 nu t),

an exact solution of the Navier-Stokes equations: the advection term is a gradient
that the pressure balances, so the vortex only decays, its kinetic energy as
exp(-4 nu t). States are ``[B, 2, n, n]`` in the staggered layout of
:mod:`pbdl_cli.numerics.mac`: ``u`` sampled exactly at the left faces
(x = i dx, y = (j + 1/2) dy) and ``v`` at the bottom faces (x = (i + 1/2) dx, y = j dy).
``reference`` returns the exact solution on the same faces for every output time.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from pbdl_cli.numerics.geometry import Boundary
from pbdl_cli.problems.base import PROBLEMS, Grid, Params, Problem, check_time_grid
from pbdl_cli.problems.flow import FlowSetup, coarsen_state
from pbdl_cli.registry import PluginConfig


@dataclasses.dataclass
class TaylorGreenConfig(PluginConfig):
    """Configuration of :class:`TaylorGreen` (``problem.<key>``).

    Attributes:
        n: cells per axis on [0, 2 pi].
        nu: viscosity.
        amplitude: A in the module docstring.
        t_end: final time.
        dt: output interval (stored frames).
    """

    n: int = 32
    nu: float = 0.1
    amplitude: float = 1.0
    t_end: float = 1.0
    dt: float = 0.1

    def __post_init__(self) -> None:
        if self.n < 4:
            raise ValueError("n must be >= 4")
        if self.nu < 0:
            raise ValueError("nu must be >= 0")
        check_time_grid(self.t_end, self.dt)


@PROBLEMS.register("taylor_green")
class TaylorGreen(Problem):
    """Decaying Taylor-Green vortex on the periodic box [0, 2 pi]^2 (exact solution)."""

    Config = TaylorGreenConfig
    config: TaylorGreenConfig
    fields = ("u", "v")
    default_solver = "ns_mac"

    @property
    def grid(self) -> Grid:
        n = self.config.n
        return Grid(lower=(0.0, 0.0), upper=(2 * math.pi, 2 * math.pi), shape=(n, n), bc="periodic")

    @property
    def t_end(self) -> float:
        return self.config.t_end

    @property
    def dt(self) -> float:
        return self.config.dt

    def slug(self) -> str:
        c = self.config
        return f"n{c.n}_nu{c.nu:g}_A{c.amplitude:g}"

    def refined(self, factor: int) -> TaylorGreen:
        return TaylorGreen(dataclasses.replace(self.config, n=self.config.n * factor))

    def coarsen(self, state: Tensor, factor: int) -> Tensor:
        """Face averages of a finer MAC state (see :func:`coarsen_state`)."""
        return coarsen_state(state, factor)

    def flow_setup(self, params: Params) -> FlowSetup:
        return FlowSetup(boundary=Boundary.periodic())

    def sample_params(self, n: int, generator: torch.Generator) -> Params:
        return {"nu": torch.full((n,), self.config.nu, dtype=torch.float64)}

    def initial_state(self, params: Params, generator: torch.Generator) -> Tensor:
        t = torch.zeros(1, dtype=torch.float64)
        return self.exact(t, params["nu"])[:, 0]

    def exact(self, t: Tensor, nu: Tensor) -> Tensor:
        """Exact staggered state at times ``t`` [T] for viscosities ``nu`` [B]:
        [B, T, 2, n, n] float64."""
        n, h, a = self.config.n, 2 * math.pi / self.config.n, self.config.amplitude
        i = torch.arange(n, dtype=torch.float64)
        edge, centre = i * h, (i + 0.5) * h
        # u at (edge_i, centre_j), v at (centre_i, edge_j)
        u = torch.sin(edge)[:, None] * torch.cos(centre)[None, :]
        v = -torch.cos(centre)[:, None] * torch.sin(edge)[None, :]
        shape = torch.stack([u, v])  # [2, n, n]
        decay = torch.exp(-2 * nu.to(torch.float64).cpu()[:, None] * t.to(torch.float64)[None, :])
        return a * decay[:, :, None, None, None] * shape

    def reference(self, t: Tensor, params: Params, x: Tensor | None = None) -> Tensor | None:
        return self.exact(t, params["nu"])

    def kinetic_energy(self, state: Tensor) -> Tensor:
        """0.5 * integral of u^2 + v^2 over the box, per sample: [B] (or [B, T])."""
        h = 2 * math.pi / self.config.n
        return 0.5 * state.square().sum(dim=(-3, -2, -1)) * h * h
