"""Damped harmonic oscillator (an ODE: time only, no space).

    m u'' + mu u' + k u = 0,    u(0) = u0,  u'(0) = v0,    t in [0, t_end]

With delta = mu / (2 m) and omega0 = sqrt(k / m) the solution is under-damped
(delta < omega0), critically damped (delta = omega0) or over-damped (delta > omega0);
``reference`` evaluates the closed form of each. The defaults m = 1, mu = 4, k = 400
(delta = 2, omega0 = 20) are the PINN teaching example of B. Moseley ("So, what is a
physics-informed neural network?", 2021): 10 noise-free observations in t in [0, 0.36]
(``observations``), from which a plain network cannot extrapolate to t = 1 but a PINN can.

One channel ``u``; the grid has no spatial dimensions, so states are [B, 1], trajectories
[B, T, 1] and point coordinates x [N, 0].
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from pbdl_cli.errors import PbdlError
from pbdl_cli.problems.base import (
    PROBLEMS,
    Grid,
    Observations,
    Params,
    PluginConfig,
    Problem,
    check_time_grid,
)
from pbdl_cli.utils.seeding import generator


@dataclasses.dataclass
class OscillatorConfig(PluginConfig):
    """Configuration of :class:`Oscillator` (``problem.<key>``).

    Attributes:
        m, mu, k: mass, damping coefficient and spring constant.
        u0, v0: initial displacement u(0) and velocity u'(0).
        t_end: final time.
        dt: output interval (stored frames).
        observe_n: number of observations (0: none).
        observe_t_max: the observations lie at linspace(0, observe_t_max, observe_n).
        observe_noise: standard deviation of Gaussian noise added to them.
        observe_seed: seed of that noise.
    """

    m: float = 1.0
    mu: float = 4.0
    k: float = 400.0
    u0: float = 1.0
    v0: float = 0.0
    t_end: float = 1.0
    dt: float = 0.01
    observe_n: int = 10
    observe_t_max: float = 0.36
    observe_noise: float = 0.0
    observe_seed: int = 0

    def __post_init__(self) -> None:
        if self.m <= 0 or self.mu < 0 or self.k < 0:
            raise ValueError("need m > 0, mu >= 0 and k >= 0")
        check_time_grid(self.t_end, self.dt)
        if self.observe_n < 0 or self.observe_noise < 0:
            raise ValueError("observe_n and observe_noise must be >= 0")
        if not 0 <= self.observe_t_max <= self.t_end:
            raise ValueError("observe_t_max must lie in [0, t_end]")


def damped_oscillation(t: Tensor, m: float, mu: float, k: float, u0: float, v0: float) -> Tensor:
    """Exact solution of m u'' + mu u' + k u = 0, u(0) = u0, u'(0) = v0 at times t (any shape).

    u = e^(-delta t) [u0 C(t) + (v0 + delta u0) S(t)] with
        C = cos(w t),  S = sin(w t) / w,    w = sqrt(omega0^2 - delta^2)   (under-damped)
        C = 1,         S = t                                               (critical)
        C = cosh(g t), S = sinh(g t) / g,   g = sqrt(delta^2 - omega0^2)   (over-damped)
    The over-damped case is written with exp(+-g t - delta t) <= 1 and expm1, so that it
    neither overflows for large g nor cancels for small g.
    """
    delta, omega2 = mu / (2 * m), k / m
    a, b = u0, v0 + delta * u0
    if delta**2 < omega2:
        w = math.sqrt(omega2 - delta**2)
        return torch.exp(-delta * t) * (a * torch.cos(w * t) + b * torch.sin(w * t) / w)
    if delta**2 == omega2:
        return torch.exp(-delta * t) * (a + b * t)
    g = math.sqrt(delta**2 - omega2)
    slow, fast = torch.exp((g - delta) * t), torch.exp(-(g + delta) * t)
    return a * (slow + fast) / 2 + b * slow * (-torch.expm1(-2 * g * t)) / (2 * g)


@PROBLEMS.register("oscillator")
class Oscillator(Problem):
    """Damped harmonic oscillator m u'' + mu u' + k u = 0 (an ODE in t)."""

    Config = OscillatorConfig
    config: OscillatorConfig
    fields = ("u",)
    default_solver = None

    @property
    def grid(self) -> Grid:
        return Grid(lower=(), upper=(), shape=(), bc="none")

    @property
    def t_end(self) -> float:
        return self.config.t_end

    @property
    def dt(self) -> float:
        return self.config.dt

    def slug(self) -> str:
        c = self.config
        return f"m{c.m:g}_mu{c.mu:g}_k{c.k:g}"

    # -- parameters and initial states ------------------------------------------------------
    def sample_params(self, n: int, generator: torch.Generator) -> Params:
        """The configured constants m, mu, k for every trajectory ([n] float64 each)."""
        c = self.config
        return {
            name: torch.full((n,), value, dtype=torch.float64)
            for name, value in (("m", c.m), ("mu", c.mu), ("k", c.k))
        }

    def initial_state(self, params: Params, generator: torch.Generator) -> Tensor:
        """u(0) = u0: [B, 1] float64."""
        return torch.full((params["m"].shape[0], 1), self.config.u0, dtype=torch.float64)

    def initial_function(self, x: Tensor, params: Params) -> Tensor:
        """u(0) = u0 at points x [N, 0] -> [N, 1]."""
        return torch.full((x.shape[0], 1), self.config.u0, dtype=x.dtype, device=x.device)

    def initial_rate(self, x: Tensor, params: Params) -> Tensor | None:
        """u'(0) = v0 at points x [N, 0] -> [N, 1] (the second initial condition)."""
        return torch.full((x.shape[0], 1), self.config.v0, dtype=x.dtype, device=x.device)

    # -- physics -----------------------------------------------------------------------------
    def pde_residual(self, u: Tensor, x: Tensor, t: Tensor, params: Params) -> Tensor:
        """m u_tt + mu u_t + k u by automatic differentiation in t: [N, 1]."""
        ones = torch.ones_like(u)
        (u_t,) = torch.autograd.grad(u, t, ones, create_graph=True)
        (u_tt,) = torch.autograd.grad(u_t, t, ones, create_graph=True)
        return params["m"] * u_tt + params["mu"] * u_t + params["k"] * u

    def reference(self, t: Tensor, params: Params, x: Tensor | None = None) -> Tensor | None:
        """The closed form of :func:`damped_oscillation`: [B, T, 1] float64."""
        c = self.config
        t = t.to(torch.float64).cpu()
        rows = [
            damped_oscillation(t, float(m), float(mu), float(k), c.u0, c.v0)
            for m, mu, k in zip(params["m"], params["mu"], params["k"], strict=True)
        ]
        return torch.stack(rows)[:, :, None]

    def observations(self, params: Params) -> Observations | None:
        """u at ``observe_n`` times linspace(0, observe_t_max) (+ noise): x [N, 0], t, u [N, 1].

        Times on the output grid also get their frame index (cell 0).
        """
        c = self.config
        if c.observe_n == 0:
            return None
        if params["m"].shape[0] != 1:
            raise PbdlError("oscillator observations describe one trajectory (B = 1)")
        t = torch.linspace(0, c.observe_t_max, c.observe_n, dtype=torch.float64)
        u = self.reference(t, params)[0]  # [N, 1]
        if c.observe_noise:
            noise = torch.randn(
                u.shape, generator=generator(c.observe_seed, "observations"), dtype=torch.float64
            )
            u = u + c.observe_noise * noise
        frame = torch.round(t / c.dt)
        on_grid = torch.allclose(frame * c.dt, t, rtol=0, atol=1e-9)
        return Observations(
            x=torch.zeros(c.observe_n, 0, dtype=torch.float64),
            t=t[:, None],
            u=u,
            frame=frame.long() if on_grid else None,
            cell=torch.zeros(c.observe_n, dtype=torch.long) if on_grid else None,
        )
