"""Physics-informed neural network (Raissi, Perdikaris & Karniadakis 2019; PBDL book ch. 10-11).

A network u_theta(x, t) is trained to make the PDE residual R = problem.pde_residual
vanish at collocation points, with derivatives from automatic differentiation:

    L = w_pde mean(R^2) + w_ic mean((u(x, 0) - u0(x))^2) + w_bc mean(boundary error^2)
        + w_obs mean((u(x_i, t_i) - u_i)^2)

The last term fits the problem's observations (``problem.observations``: inverse problems,
sparse measurements) where it has any. Terms of weight 0 are not computed, so e.g.
``w_ic=0`` needs no closed-form initial state.

Initial and boundary conditions are either soft (the loss terms above, on ``n_initial``
and ``n_boundary`` points) or hard: the output transform

    u(x, t) = u0(x) + (t / t_end) (1 - x^2) N_theta(x, t)     (homogeneous Dirichlet walls)

satisfies both exactly, which leaves only the residual to learn. Collocation points are
uniform random, Latin hypercube or scrambled Sobol samples of [-1, 1] x [0, t_end], fixed
or redrawn every ``resample_every`` steps.

Besides 1D problems it handles time-only ones (ODEs: the network sees t only, no
boundary term; for second-order ODEs the soft initial term also fits u_t(0) where the
problem provides ``initial_rate``) and static ones (no time input, no initial term).

Shapes: the network maps [N, F] points (x and t scaled to [-1, 1], F = D + 1, or D for
static problems) to [N, C].
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import torch
from torch import Tensor, nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods.base import METHODS, MethodConfig
from pbdl_cli.methods.points import CoordinateMethod
from pbdl_cli.models.base import MODELS
from pbdl_cli.problems.base import Observations, Problem
from pbdl_cli.utils.seeding import derive_seed


class Sampler(str, enum.Enum):
    uniform = "uniform"
    lhs = "lhs"
    sobol = "sobol"


class Constraints(str, enum.Enum):
    hard = "hard"
    soft = "soft"


@dataclasses.dataclass
class PINNConfig(MethodConfig):
    """Options of ``pinn`` (``method.<key>``).

    Attributes:
        constraints: hard (output transform, exact IC and walls) or soft (loss terms).
        n_collocation: residual points in the space-time domain.
        sampler: uniform, lhs or sobol.
        resample_every: draw new collocation points every n steps (0: keep them).
        n_initial, n_boundary: points of the soft IC and boundary terms.
        w_pde, w_ic, w_bc: loss weights (0: the term is not computed).
        w_obs: weight of the fit to the problem's observations (where it has any).
        eval_nx, eval_nt: resolution of the validation grid (rel. L2 against the
            reference); 0: the output grid's.
        seed: seed of the point samplers.
    """

    constraints: Constraints = Constraints.hard
    n_collocation: int = 4096
    sampler: Sampler = Sampler.sobol
    resample_every: int = 0
    n_initial: int = 256
    n_boundary: int = 256
    w_pde: float = 1.0
    w_ic: float = 1.0
    w_bc: float = 1.0
    w_obs: float = 1.0
    eval_nx: int = 256
    eval_nt: int = 51
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_collocation < 1 or self.n_initial < 1 or self.n_boundary < 1:
            raise ValueError("point counts must be >= 1")
        if self.resample_every < 0:
            raise ValueError("resample_every must be >= 0")
        if min(self.w_pde, self.w_ic, self.w_bc, self.w_obs) < 0:
            raise ValueError("loss weights must be >= 0")
        if self.eval_nx < 0 or self.eval_nt < 0:
            raise ValueError("eval_nx and eval_nt must be >= 0")


@METHODS.register("pinn")
class PINN(CoordinateMethod):
    """Physics-informed network: PDE residual by autodiff at collocation points."""

    Config = PINNConfig
    config: PINNConfig

    def __init__(
        self, config: PINNConfig, *, problem: Problem, device: torch.device, dtype: torch.dtype
    ) -> None:
        super().__init__(config, problem=problem, device=device, dtype=dtype)
        grid = problem.grid
        if self.num_spatial_dims > 1:
            raise PbdlError("pinn supports problems with at most one spatial dimension so far")
        self.hard = config.constraints is Constraints.hard
        if self.hard and (self.num_spatial_dims == 0 or self.static):
            kind = "static" if self.static else "time-only"
            raise PbdlError(
                f"method.constraints=hard needs an initial state and walls; problem "
                f"'{problem.name}' is {kind}: use method.constraints=soft"
            )
        if self.hard and grid.bc != "dirichlet":
            raise PbdlError(
                "method.constraints=hard needs walls (problem.bc=dirichlet); use "
                "method.constraints=soft for periodic problems"
            )
        if self.num_spatial_dims:
            self.lower, self.upper = grid.lower[0], grid.upper[0]
        self.t_end = problem.t_end
        # the terms this run computes (hard constraints make ic and bc exact)
        self.use_pde = config.w_pde > 0
        self.use_ic = not self.hard and not self.static and config.w_ic > 0
        self.use_bc = (
            not self.hard
            and self.num_spatial_dims == 1
            and grid.bc in ("periodic", "dirichlet")
            and config.w_bc > 0
        )
        if self.hard or self.use_ic:  # fails early if the problem has no closed-form u0
            x0 = torch.zeros(1, self.num_spatial_dims, dtype=torch.float64)
            problem.initial_function(x0, self.params)
        observed = problem.observations(self.params) if config.w_obs > 0 else None
        self.observations: Observations | None = None
        if observed is not None and len(observed):
            self.observations = Observations(
                x=self.to_device(observed.x),
                t=self.to_device(observed.t),
                u=self.to_device(observed.u),
            )
        if not (self.use_pde or self.use_ic or self.use_bc or self.observations is not None):
            raise PbdlError(
                "every loss term of pinn is off (weight 0 or not applicable); set "
                "method.w_pde, w_ic, w_bc or w_obs > 0"
            )
        self.points, self._round = self._collocation(0), 0

    # -- model --------------------------------------------------------------------------------
    def build_model(self, model_config: Any) -> nn.Module:
        torch.manual_seed(derive_seed(self.config.seed, "model") % 2**31)
        model = MODELS.build(
            model_config, in_features=self.in_features, out_features=self.problem.num_channels
        )
        return model.to(self.device, self.dtype)

    def evaluate(self, model: nn.Module, x: Tensor, t: Tensor | None) -> Tensor:
        """u(x, t) at points x [N, D], t [N, 1] (physical units) -> [N, C]."""
        columns = self.scale(x, t)
        out = model(torch.cat(columns, dim=-1) if len(columns) > 1 else columns[0])
        if self.hard:
            u0 = self.problem.initial_function(x, self._params_on_device)
            out = u0 + (t / self.t_end) * (1 - columns[0] ** 2) * out
        return out

    # -- points --------------------------------------------------------------------------------
    def _unit_samples(self, n: int, round_: int) -> Tensor:
        seed = derive_seed(self.config.seed, "collocation", round_) % 2**31
        dim = self.in_features
        if self.config.sampler is Sampler.sobol:
            engine = torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed)
            return engine.draw(n, dtype=torch.float64)
        g = torch.Generator().manual_seed(seed)
        if self.config.sampler is Sampler.lhs:
            strata = torch.stack([torch.randperm(n, generator=g) for _ in range(dim)], dim=1)
            return (strata + torch.rand(n, dim, generator=g, dtype=torch.float64)) / n
        return torch.rand(n, dim, generator=g, dtype=torch.float64)

    def _collocation(self, round_: int) -> tuple[Tensor, Tensor] | None:
        """Collocation points x [N, D], t [N, 1] of round ``round_`` (None: no residual term);
        both require grad, except t of static problems (zeros)."""
        if not self.use_pde:
            return None
        u = self.to_device(self._unit_samples(self.config.n_collocation, round_))
        d = self.num_spatial_dims
        x = self.lower + (self.upper - self.lower) * u[:, :1] if d else u[:, :0]
        t = torch.zeros_like(u[:, :1]) if self.static else self.t_end * u[:, d:]
        return x.requires_grad_(True), t.requires_grad_(not self.static)

    # -- training ------------------------------------------------------------------------------
    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        c = self.config
        terms: dict[str, Tensor] = {}
        if self.use_pde:
            round_ = step // c.resample_every if c.resample_every else 0
            if round_ != self._round:  # derived from the step, so a resumed run gets the same
                self.points, self._round = self._collocation(round_), round_
            x, t = self.points
            u = self.evaluate(model, x, t)
            residual = self.problem.pde_residual(u, x, t, self._params_on_device)
            terms["pde"] = residual.square().mean()
        if self.use_ic:
            terms["ic"] = self._initial_term(model)
        if self.use_bc:
            terms["bc"] = self._boundary_term(model)
        if self.observations is not None:
            obs = self.observations
            terms["obs"] = (self.evaluate(model, obs.x, obs.t) - obs.u).square().mean()
        weights = {"pde": c.w_pde, "ic": c.w_ic, "bc": c.w_bc, "obs": c.w_obs}
        terms["loss"] = sum(weights[k] * v for k, v in terms.items())
        return terms

    def _initial_term(self, model: nn.Module) -> Tensor:
        """mean (u(x, 0) - u0(x))^2 on ``n_initial`` points (+ the same for u_t(x, 0) where
        the problem has an ``initial_rate``: second order in time)."""
        kw = {"device": self.device, "dtype": self.dtype}
        if self.num_spatial_dims:
            x0 = torch.linspace(self.lower, self.upper, self.config.n_initial, **kw)[:, None]
        else:
            x0 = torch.zeros(1, 0, **kw)
        rate = self.problem.initial_rate(x0, self._params_on_device)
        t0 = torch.zeros(x0.shape[0], 1, **kw).requires_grad_(rate is not None)
        u0 = self.evaluate(model, x0, t0)
        ic = (u0 - self.problem.initial_function(x0, self._params_on_device)).square().mean()
        if rate is not None:
            (u_t,) = torch.autograd.grad(u0, t0, torch.ones_like(u0), create_graph=True)
            ic = ic + (u_t - rate).square().mean()
        return ic

    def _boundary_term(self, model: nn.Module) -> Tensor:
        """Periodicity u(a, t) = u(b, t) or walls u(a, t) = u(b, t) = 0 (mean square)."""
        kw = {"device": self.device, "dtype": self.dtype}
        tb = torch.linspace(0, self.t_end, self.config.n_boundary, **kw)[:, None]
        left = self.evaluate(model, torch.full_like(tb, self.lower), tb)
        right = self.evaluate(model, torch.full_like(tb, self.upper), tb)
        if self.problem.grid.is_periodic:
            return (left - right).square().mean()
        return (left.square().mean() + right.square().mean()) / 2
