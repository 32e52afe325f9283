"""1D viscous Burgers equation.

    u_t + u u_x = nu u_xx,    x in [-1, 1],  t in [0, t_end]

with periodic or homogeneous Dirichlet (u(±1) = 0) boundaries. One channel ``u``; states
are ``[B, 1, nx]`` on the cell centres ``x_i = -1 + (i + 1/2) dx``, ``dx = 2 / nx``.

Initial conditions (``ic``):
    sine:  u0 = -A sin(pi x) (Raissi et al. 2019; PBDL book ch. 3.6, 11, 14). Its exact
           solution follows from the Cole-Hopf transformation (``reference``); it is the
           same for both boundary conditions because -sin(pi x) is odd about x = ±1.
    sines: a random sum of ``ic_modes`` sines with random amplitudes and phases,
           rescaled to max |u0| = A; Dirichlet uses sin(k pi (x + 1) / 2), which vanish at
           the walls.
    grf:   a Gaussian random field with spectrum (kappa^2 + tau^2)^(-alpha) (as in the
           FNO Burgers data of Li et al. 2021), rescaled to pointwise standard deviation A.

Random initial states are continuous functions sampled at the cell centres: the same
seed gives the same function at every resolution (for ``grf``, up to the modes the grid
cannot represent), so datasets at different nx are consistent with each other.

The viscosity is ``nu`` for every trajectory, or drawn log-uniformly from ``nu_range``.

The defaults are the benchmark of Raissi et al. (2019) and the book's ch. 10-11 in every
stage: -sin(pi x), walls at x = ±1, nu = 0.01/pi, t in [0, 1], 256 cells and frames of
dt = 0.01 (the grid on which a PINN's prediction is compared with the exact solution).
Datasets of varied trajectories choose a random ``ic`` and/or ``nu_range``, e.g.
``experiment=burgers_sines``.
"""

from __future__ import annotations

import dataclasses
import enum
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

#: where the peak of a random sum of sines is measured (independent of nx)
_PEAK_GRID = torch.linspace(-1.0, 1.0, 8193, dtype=torch.float64)
#: mode numbers used for the variance of the infinite GRF series
_SERIES_MODES = torch.arange(1, 2**16 + 1, dtype=torch.float64)


class BoundaryCondition(str, enum.Enum):
    periodic = "periodic"
    dirichlet = "dirichlet"


class InitialCondition(str, enum.Enum):
    sine = "sine"
    sines = "sines"
    grf = "grf"


@dataclasses.dataclass
class BurgersConfig(PluginConfig):
    """Configuration of :class:`Burgers` (keys are ``problem.<key>`` on the command line).

    Attributes:
        nx: number of cells on [-1, 1].
        nu: viscosity used for every trajectory (when ``nu_range`` is null).
        nu_range: ``[lo, hi]``: draw nu log-uniformly per trajectory instead.
        bc: ``periodic`` or ``dirichlet`` (u = 0 at x = ±1).
        ic: initial condition family: ``sine``, ``sines`` or ``grf``.
        ic_amplitude: A in the formulas of the module docstring.
        ic_modes: number of sine modes of the ``sines`` family.
        grf_alpha, grf_tau: spectrum exponent and length-scale parameter of ``grf``.
        t_end: final time.
        dt: output interval (stored frames); the solver substeps internally.
        observe_t: times at which the solution is observed (inverse problems, e.g. the
            book's ``[0.5]``); each must be an output frame ``k dt``. Empty: none.
        observe_n: observed cells per observed time, drawn without replacement (0: all).
        observe_noise: standard deviation of Gaussian noise added to the observations.
        observe_seed: seed of the cell choice and the noise.
    """

    nx: int = 256
    nu: float = 0.0031830988618379067  # 0.01 / pi, correctly rounded
    nu_range: list[float] | None = None
    bc: BoundaryCondition = BoundaryCondition.dirichlet
    ic: InitialCondition = InitialCondition.sine
    ic_amplitude: float = 1.0
    ic_modes: int = 3
    grf_alpha: float = 2.5
    grf_tau: float = 7.0
    t_end: float = 1.0
    dt: float = 0.01
    observe_t: list[float] = dataclasses.field(default_factory=list)
    observe_n: int = 0
    observe_noise: float = 0.0
    observe_seed: int = 0

    def __post_init__(self) -> None:
        if self.nx < 4:
            raise ValueError("nx must be >= 4")
        if self.nu <= 0:
            raise ValueError("nu must be > 0")
        if self.nu_range is not None and (
            len(self.nu_range) != 2 or not 0 < self.nu_range[0] <= self.nu_range[1]
        ):
            raise ValueError("nu_range must be [lo, hi] with 0 < lo <= hi")
        if self.ic_modes < 1:
            raise ValueError("ic_modes must be >= 1")
        check_time_grid(self.t_end, self.dt)
        n = round(self.t_end / self.dt)
        for t in self.observe_t:
            k = round(t / self.dt)
            if not 0 <= k <= n or not math.isclose(k * self.dt, t, rel_tol=1e-9, abs_tol=1e-12):
                raise ValueError(
                    f"observe_t={t} is not an output time (a multiple of dt={self.dt} "
                    f"in [0, {self.t_end}])"
                )
        if not 0 <= self.observe_n <= self.nx:
            raise ValueError(f"observe_n must be in [0, nx={self.nx}] (0: every cell)")
        if self.observe_noise < 0:
            raise ValueError("observe_noise must be >= 0")


@PROBLEMS.register("burgers")
class Burgers(Problem):
    """1D viscous Burgers equation u_t + u u_x = nu u_xx on [-1, 1]."""

    Config = BurgersConfig
    config: BurgersConfig
    fields = ("u",)
    default_solver = "burgers_spectral"
    variation_hint = (
        "problem.ic=sines or grf and/or problem.nu_range=[lo,hi], e.g. experiment=burgers_sines"
    )

    @property
    def grid(self) -> Grid:
        return Grid(lower=(-1.0,), upper=(1.0,), shape=(self.config.nx,), bc=self.config.bc.value)

    @property
    def t_end(self) -> float:
        return self.config.t_end

    @property
    def dt(self) -> float:
        return self.config.dt

    def refined(self, factor: int) -> Burgers:
        """The same problem with ``nx * factor`` cells (random initial states are the same
        functions at every resolution, see the module docstring)."""
        return Burgers(dataclasses.replace(self.config, nx=self.config.nx * factor))

    def slug(self) -> str:
        c = self.config
        nu = f"nu{c.nu_range[0]:g}-{c.nu_range[1]:g}" if c.nu_range else f"nu{c.nu:g}"
        return f"{c.ic.value}_{c.bc.value}_nx{c.nx}_{nu}"

    # -- parameters and initial states --------------------------------------------------
    def sample_params(self, n: int, generator: torch.Generator) -> Params:
        c = self.config
        if c.nu_range is None:
            nu = torch.full((n,), c.nu, dtype=torch.float64)
        else:
            lo, hi = math.log(c.nu_range[0]), math.log(c.nu_range[1])
            nu = torch.exp(lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64))
        return {"nu": nu}

    def initial_state(self, params: Params, generator: torch.Generator) -> Tensor:
        c = self.config
        batch = params["nu"].shape[0]
        x = self.grid.cell_centres()  # [X] float64
        if c.ic is InitialCondition.sine:
            u = -c.ic_amplitude * torch.sin(math.pi * x).expand(batch, -1)
        elif c.ic is InitialCondition.sines:
            u = self._random_sines(x, batch, generator)
        else:
            u = self._gaussian_random_field(x, batch, generator)
        return u[:, None, :].contiguous()

    def _random_sines(self, x: Tensor, batch: int, generator: torch.Generator) -> Tensor:
        c = self.config
        amp = 2 * torch.rand(batch, c.ic_modes, generator=generator, dtype=torch.float64) - 1
        phase = (
            2 * math.pi * torch.rand(batch, c.ic_modes, generator=generator, dtype=torch.float64)
        )
        # the peak is taken on a fixed fine grid, so the same draw gives the same function
        # at every resolution nx
        peak = self._sines(_PEAK_GRID, amp, phase).abs().amax(dim=-1, keepdim=True)
        return c.ic_amplitude * self._sines(x, amp, phase) / peak.clamp_min(1e-12)

    def _sines(self, x: Tensor, amp: Tensor, phase: Tensor) -> Tensor:
        """sum_k a_k sin(k pi x + phi_k) (periodic) or sum_k a_k sin(k pi (x + 1) / 2)."""
        k = torch.arange(1, amp.shape[1] + 1, dtype=torch.float64)
        if self.grid.is_periodic:
            arg = math.pi * k[None, :, None] * x[None, None, :] + phase[..., None]
        else:  # modes vanishing at x = ±1
            arg = (math.pi / 2) * k[None, :, None] * (x[None, None, :] + 1)
        return (amp[..., None] * torch.sin(arg)).sum(dim=1)

    def _gaussian_random_field(self, x: Tensor, batch: int, generator: torch.Generator) -> Tensor:
        """Fourier (periodic) or sine (Dirichlet) series with N(0, sigma_k^2) coefficients.

        Coefficients are drawn mode by mode, so a finer grid keeps the coarse grid's modes
        and adds higher ones; the scale uses the variance of the infinite series, which
        makes the field independent of nx up to the modes the grid cannot represent.
        """
        c = self.config
        if self.grid.is_periodic:
            kappa = math.pi * torch.arange(1, c.nx // 2 + 1, dtype=torch.float64)  # period 2
            xi = torch.randn(batch, kappa.numel(), 2, generator=generator, dtype=torch.float64)
            sigma = self._grf_sigma(kappa)
            arg = kappa[:, None] * x[None, :]  # [K, X]
            u = (xi[..., 0] * sigma) @ torch.cos(arg) + (xi[..., 1] * sigma) @ torch.sin(arg)
            variance = self._grf_sigma(math.pi * _SERIES_MODES).square().sum()
        else:
            kappa = (math.pi / 2) * torch.arange(1, c.nx + 1, dtype=torch.float64)
            xi = torch.randn(batch, kappa.numel(), generator=generator, dtype=torch.float64)
            u = (xi * self._grf_sigma(kappa)) @ torch.sin(kappa[:, None] * (x[None, :] + 1))
            # spatial mean of the pointwise variance
            variance = self._grf_sigma((math.pi / 2) * _SERIES_MODES).square().sum() / 2
        return c.ic_amplitude * u / variance.sqrt()

    def _grf_sigma(self, kappa: Tensor) -> Tensor:
        return (kappa**2 + self.config.grf_tau**2) ** (-self.config.grf_alpha / 2)

    # -- physics for physical losses -------------------------------------------------------
    def initial_function(self, x: Tensor, params: Params) -> Tensor:
        """-A sin(pi x) at points ``x`` [N, 1] -> [N, 1] (``ic=sine`` only)."""
        if self.config.ic is not InitialCondition.sine:
            raise PbdlError(
                f"problem.ic={self.config.ic.value} is random; a PINN needs a closed-form "
                "initial state: use problem.ic=sine"
            )
        return -self.config.ic_amplitude * torch.sin(math.pi * x)

    def pde_residual(self, u: Tensor, x: Tensor, t: Tensor, params: Params) -> Tensor:
        """u_t + u u_x - nu u_xx by automatic differentiation: [N, 1]."""
        ones = torch.ones_like(u)
        u_t, u_x = torch.autograd.grad(u, (t, x), ones, create_graph=True)
        (u_xx,) = torch.autograd.grad(u_x, x, ones, create_graph=True)
        return u_t + u * u_x - params["nu"] * u_xx

    # -- measurements -------------------------------------------------------------------
    def observations(self, params: Params) -> Observations | None:
        """Exact values at ``observe_n`` random cell centres at each of ``observe_t``.

        The book's inverse setting (ch. 11, 14) observes u at t = 0.5 only and reconstructs
        the rest of the space-time solution. Values come from the Cole-Hopf solution
        (``ic=sine``), plus optional noise.
        """
        c = self.config
        if not c.observe_t:
            return None
        if c.ic is not InitialCondition.sine:
            raise PbdlError(
                "problem.observe_t needs an exact solution to observe: use problem.ic=sine"
            )
        g = torch.Generator().manual_seed(c.observe_seed)
        x_all = self.grid.cell_centres()
        frames, cells = [], []
        for t in c.observe_t:
            idx = torch.randperm(c.nx, generator=g)[: c.observe_n] if c.observe_n else None
            idx = torch.arange(c.nx) if idx is None else idx.sort().values
            frames.append(torch.full_like(idx, round(t / c.dt)))
            cells.append(idx)
        frame, cell = torch.cat(frames), torch.cat(cells)
        t = frame.to(torch.float64) * c.dt
        exact = self.reference(t.unique(), {k: v[:1] for k, v in params.items()})
        assert exact is not None
        lookup = {float(v): i for i, v in enumerate(t.unique().tolist())}
        rows = torch.tensor([lookup[float(v)] for v in t.tolist()])
        u = exact[0, rows, :, cell]  # [N, 1]
        if c.observe_noise:
            u = u + c.observe_noise * torch.randn(u.shape, generator=g, dtype=torch.float64)
        return Observations(x=x_all[cell][:, None], t=t[:, None], u=u, frame=frame, cell=cell)

    # -- exact solution -------------------------------------------------------------------
    def reference(self, t: Tensor, params: Params, x: Tensor | None = None) -> Tensor | None:
        """Cole-Hopf solution for ``ic=sine``: [B, T, 1, X] float64; None otherwise.

        For amplitude A the solution is ``A v(x, A t; nu / A)`` with v the unit-amplitude
        solution, since u -> A u, t -> t / A maps Burgers with viscosity nu / A onto nu.
        """
        c = self.config
        if c.ic is not InitialCondition.sine or c.ic_amplitude <= 0:
            return None
        from pbdl_cli.problems.cole_hopf import burgers_sine_exact

        a = c.ic_amplitude
        x = self.grid.cell_centres() if x is None else x.to(torch.float64)
        t = t.to(torch.float64)
        nu = params["nu"].to(torch.float64).cpu()
        cache: dict[float, Tensor] = {}
        out = []
        for value in nu.tolist():
            if value not in cache:
                cache[value] = a * burgers_sine_exact(x, a * t, value / a)
            out.append(cache[value])
        return torch.stack(out)[:, :, None, :]
