"""Physics-informed neural network (Raissi, Perdikaris & Karniadakis 2019; PBDL book ch. 10-11).

A network u_theta(x, t) is trained to make the PDE residual R = problem.pde_residual
vanish at collocation points, with derivatives from automatic differentiation:

    L = w_pde mean(R^2) + w_ic mean((u(x, 0) - u0(x))^2) + w_bc mean(boundary error^2)

Initial and boundary conditions are either soft (the loss terms above, on ``n_initial``
and ``n_boundary`` points) or hard: the output transform

    u(x, t) = u0(x) + (t / t_end) (1 - x^2) N_theta(x, t)     (homogeneous Dirichlet walls)

satisfies both exactly, which leaves only the residual to learn. Collocation points are
uniform random, Latin hypercube or scrambled Sobol samples of [-1, 1] x [0, t_end], fixed
or redrawn every ``resample_every`` steps.

Shapes: the network maps [N, 2] points (x, t scaled to [-1, 1]) to [N, C].
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import torch
from torch import Tensor, nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods import METHODS
from pbdl_cli.methods.base import Method
from pbdl_cli.models import MODELS
from pbdl_cli.problems.base import PluginConfig, Problem
from pbdl_cli.utils.seeding import derive_seed


class Sampler(str, enum.Enum):
    uniform = "uniform"
    lhs = "lhs"
    sobol = "sobol"


class Constraints(str, enum.Enum):
    hard = "hard"
    soft = "soft"


@dataclasses.dataclass
class PINNConfig(PluginConfig):
    """Options of ``pinn`` (``method.<key>``).

    Attributes:
        constraints: hard (output transform, exact IC and walls) or soft (loss terms).
        n_collocation: residual points in the space-time domain.
        sampler: uniform, lhs or sobol.
        resample_every: draw new collocation points every n steps (0: keep them).
        n_initial, n_boundary: points of the soft IC and boundary terms.
        w_pde, w_ic, w_bc: loss weights.
        eval_nx, eval_nt: resolution of the validation grid (rel. L2 against the reference).
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
    eval_nx: int = 256
    eval_nt: int = 51
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_collocation < 1 or self.n_initial < 1 or self.n_boundary < 1:
            raise ValueError("point counts must be >= 1")
        if self.resample_every < 0:
            raise ValueError("resample_every must be >= 0")


@METHODS.register("pinn")
class PINN(Method):
    """Physics-informed network: PDE residual by autodiff at collocation points."""

    Config = PINNConfig
    config: PINNConfig

    def __init__(
        self, config: PINNConfig, *, problem: Problem, device: torch.device, dtype: torch.dtype
    ) -> None:
        super().__init__(config, problem=problem, device=device, dtype=dtype)
        grid = problem.grid
        if grid.num_spatial_dims != 1:
            raise PbdlError("pinn supports 1D problems so far")
        if config.constraints is Constraints.hard and grid.is_periodic:
            raise PbdlError(
                "method.constraints=hard needs walls (problem.bc=dirichlet); use "
                "method.constraints=soft for periodic problems"
            )
        self.lower, self.upper = grid.lower[0], grid.upper[0]
        self.t_end = problem.t_end
        # the physical parameters of the one solution a PINN represents ([1] each)
        self.params = problem.sample_params(1, torch.Generator().manual_seed(config.seed))
        self._params_on_device = {k: v.to(device, dtype) for k, v in self.params.items()}
        problem.initial_function(torch.zeros(1, 1, dtype=torch.float64), self.params)  # check
        self.points, self._round = self._collocation(0), 0
        self._validation: tuple[Tensor, Tensor, Tensor | None] | None = None

    # -- model --------------------------------------------------------------------------------
    def build_model(self, model_config: Any) -> nn.Module:
        torch.manual_seed(derive_seed(self.config.seed, "model") % 2**31)
        model = MODELS.build(model_config, in_features=2, out_features=self.problem.num_channels)
        return model.to(self.device, self.dtype)

    def evaluate(self, model: nn.Module, x: Tensor, t: Tensor) -> Tensor:
        """u(x, t) at points x, t [N, 1] (physical units) -> [N, C]."""
        xs = 2 * (x - self.lower) / (self.upper - self.lower) - 1
        ts = 2 * t / self.t_end - 1
        out = model(torch.cat([xs, ts], dim=-1))
        if self.config.constraints is Constraints.hard:
            u0 = self.problem.initial_function(x, self._params_on_device)
            out = u0 + (t / self.t_end) * (1 - xs**2) * out
        return out

    # -- points --------------------------------------------------------------------------------
    def _unit_samples(self, n: int, round_: int) -> Tensor:
        seed = derive_seed(self.config.seed, "collocation", round_) % 2**31
        if self.config.sampler is Sampler.sobol:
            engine = torch.quasirandom.SobolEngine(2, scramble=True, seed=seed)
            return engine.draw(n, dtype=torch.float64)
        g = torch.Generator().manual_seed(seed)
        if self.config.sampler is Sampler.lhs:
            strata = torch.stack([torch.randperm(n, generator=g) for _ in range(2)], dim=1)
            return (strata + torch.rand(n, 2, generator=g, dtype=torch.float64)) / n
        return torch.rand(n, 2, generator=g, dtype=torch.float64)

    def _collocation(self, round_: int) -> tuple[Tensor, Tensor]:
        u = self._unit_samples(self.config.n_collocation, round_).to(self.device, self.dtype)
        x = self.lower + (self.upper - self.lower) * u[:, :1]
        return x.requires_grad_(True), (self.t_end * u[:, 1:]).requires_grad_(True)

    # -- training ------------------------------------------------------------------------------
    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        c = self.config
        round_ = step // c.resample_every if c.resample_every else 0
        if round_ != self._round:  # derived from the step, so a resumed run gets the same
            self.points, self._round = self._collocation(round_), round_
        x, t = self.points
        u = self.evaluate(model, x, t)
        residual = self.problem.pde_residual(u, x, t, self._params_on_device)
        terms = {"pde": residual.square().mean()}
        if c.constraints is Constraints.soft:
            terms |= self._soft_terms(model)
        weights = {"pde": c.w_pde, "ic": c.w_ic, "bc": c.w_bc}
        terms["loss"] = sum(weights[k] * v for k, v in terms.items())
        return terms

    def _soft_terms(self, model: nn.Module) -> dict[str, Tensor]:
        c = self.config
        kw = {"device": self.device, "dtype": self.dtype}
        x0 = torch.linspace(self.lower, self.upper, c.n_initial, **kw)[:, None]
        u0 = self.evaluate(model, x0, torch.zeros_like(x0))
        ic = (u0 - self.problem.initial_function(x0, self._params_on_device)).square().mean()
        tb = torch.linspace(0, self.t_end, c.n_boundary, **kw)[:, None]
        left = self.evaluate(model, torch.full_like(tb, self.lower), tb)
        right = self.evaluate(model, torch.full_like(tb, self.upper), tb)
        if self.problem.grid.is_periodic:
            bc = (left - right).square().mean()
        else:
            bc = (left.square().mean() + right.square().mean()) / 2
        return {"ic": ic, "bc": bc}

    # -- evaluation ----------------------------------------------------------------------------
    @torch.no_grad()
    def on_grid(self, model: nn.Module, xs: Tensor, ts: Tensor) -> Tensor:
        """u on the tensor grid ``ts`` [T] x ``xs`` [X]: [1, T, C, X] float64 on the CPU."""
        tt, xx = torch.meshgrid(ts, xs, indexing="ij")
        x, t = xx.reshape(-1, 1), tt.reshape(-1, 1)
        values = torch.cat(
            [
                self.evaluate(model, xc.to(self.device, self.dtype), tc.to(self.device, self.dtype))
                for xc, tc in zip(x.split(65536), t.split(65536), strict=True)
            ]
        )
        values = values.double().cpu().reshape(len(ts), len(xs), -1)  # [T, X, C]
        return values.permute(0, 2, 1)[None]

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Relative L2 error against the problem's reference on an eval_nt x eval_nx grid."""
        if self._validation is None:
            xs = torch.linspace(self.lower, self.upper, self.config.eval_nx, dtype=torch.float64)
            ts = torch.linspace(0, self.t_end, self.config.eval_nt, dtype=torch.float64)
            self._validation = (xs, ts, self.problem.reference(ts, self.params, x=xs))
        xs, ts, exact = self._validation
        if exact is None:
            return {}
        prediction = self.on_grid(model, xs, ts)
        return {"rel_l2": float((prediction - exact).norm() / exact.norm())}

    def predict(self, model: nn.Module) -> Tensor:
        return self.on_grid(model, self.problem.grid.cell_centres(), self.problem.times())
