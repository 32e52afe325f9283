"""Differentiable physics: gradients of a physical model's output with respect to its
input, used to optimize or train through it (PBDL book ch. 2, 13-14; Holl, Thuerey &
Koltun 2020).

Time-dependent problems: the unknown is the initial state u0 (a ``field`` model,
[1, C, *spatial]). The solver P rolls it out on the problem's output grid and the loss
compares the simulated states with the problem's observations (``problem.observe_t``):

    L(u0) = w_obs mean_i (P^{k_i}(u0)[c_i] - u_i)^2

where observation i sits at frame k_i and cell c_i. The gradient dL/du0 flows back
through every solver step by automatic differentiation; with ``trainer.optimizer=sgd
trainer.momentum=0`` each training step is the book's plain gradient-descent update
u0 <- u0 - lr dL/du0. Only the steps up to the last observed frame enter the loss;
``predict`` rolls the optimized u0 out over the whole time range.

Static problems (no time, e.g. ``parabola``): a network f(x) (``mlp``) is trained through
the problem's forward operator, L = w_obs mean_i R(f(x_i), x_i)^2 with R =
``problem.pde_residual`` (for the parabola R = P(f(x)) - x = f(x)^2 - x) at the
observation inputs x_i; the observed values are not used, only the physics.

Shapes: the field is [1, C, *spatial]; ``predict`` returns [1, T, C, *spatial].
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods import METHODS
from pbdl_cli.methods.base import Delegating, Method
from pbdl_cli.methods.points import CHUNK
from pbdl_cli.methods.supervised_points import PointSupervised
from pbdl_cli.models import MODELS
from pbdl_cli.problems.base import Observations, PluginConfig, Problem
from pbdl_cli.solvers import Solver, rollout


@dataclasses.dataclass
class DPConfig(PluginConfig):
    """Options of ``dp`` (``method.<key>``).

    Attributes:
        w_obs: weight of the observation misfit (static problems: of the physics loss).
        seed: seed of the initialization (``model.init=normal`` fields, networks).
        batch_size: static problems: observation inputs per step (0: all of them).
        eval_nx, eval_nt: static problems: validation grid (0: the output grid).
    """

    w_obs: float = 1.0
    seed: int = 0
    batch_size: int = 0
    eval_nx: int = 0
    eval_nt: int = 0

    def __post_init__(self) -> None:
        if self.w_obs <= 0:
            raise ValueError("w_obs must be > 0")
        if self.batch_size < 0:
            raise ValueError("batch_size must be >= 0")


@METHODS.register("dp")
class DifferentiablePhysics(Delegating):
    """Optimize or train through the physics: the solver, or a static forward operator."""

    Config = DPConfig
    config: DPConfig
    needs_solver = True

    def __init__(
        self,
        config: DPConfig,
        *,
        problem: Problem,
        device: torch.device,
        dtype: torch.dtype,
        solver: Solver | None = None,
    ) -> None:
        super().__init__(config, problem=problem, device=device, dtype=dtype)
        deps = {"problem": problem, "device": device, "dtype": dtype}
        if problem.is_static:
            self.impl: Method = ThroughOperator(config, **deps)
        elif solver is None:
            raise PbdlError(
                f"method 'dp' trains through a solver, but problem '{problem.name}' has "
                "none; choose one with solver=..."
            )
        else:
            self.impl = ThroughSolver(config, solver=solver, **deps)
        self.params = self.impl.params


class ThroughOperator(PointSupervised):
    """Static problems: train f(x) through the forward operator (see module docstring)."""

    config: DPConfig

    def __init__(
        self, config: DPConfig, *, problem: Problem, device: torch.device, dtype: torch.dtype
    ) -> None:
        super().__init__(config, problem=problem, device=device, dtype=dtype)
        observed = problem.observations(self.params)
        assert observed is not None  # checked by PointSupervised
        self.data_x = self.to_device(observed.x)  # [N, D]

    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        index = self.batch(step)
        inputs, x = self.data_inputs, self.data_x
        if index is not None:
            inputs, x = inputs[index], x[index]
        residual = self.problem.pde_residual(model(inputs), x, None, self._params_on_device)
        physics = residual.square().mean()
        return {"loss": self.config.w_obs * physics, "physics": physics}

    def validate(self, model: nn.Module) -> dict[str, float]:
        """The supervised metrics plus ``physics_mse``: the physics loss over all inputs."""
        metrics = super().validate(model)
        with torch.no_grad():
            fit = torch.cat([model(chunk) for chunk in self.data_inputs.split(CHUNK)])
            residual = self.problem.pde_residual(fit, self.data_x, None, self._params_on_device)
        metrics["physics_mse"] = float(residual.square().mean())
        return metrics


class ThroughSolver(Method):
    """Time-dependent problems: optimize u0 through the solver (see module docstring)."""

    config: DPConfig

    def __init__(
        self,
        config: DPConfig,
        *,
        problem: Problem,
        device: torch.device,
        dtype: torch.dtype,
        solver: Solver,
    ) -> None:
        super().__init__(config, problem=problem, device=device, dtype=dtype)
        self.solver = solver
        self.params = problem.sample_params(1, torch.Generator().manual_seed(config.seed))
        self._params_on_device = {k: v.to(device, dtype) for k, v in self.params.items()}
        obs = problem.observations(self.params)
        if obs is None:
            raise PbdlError(
                f"method 'dp' fits observations, but problem '{problem.name}' has none "
                "configured (for burgers: problem.observe_t=[0.5])"
            )
        if obs.frame is None or obs.cell is None:
            raise PbdlError("method 'dp' needs observations on the problem's output grid")
        self.observations: Observations = obs
        self._frame = obs.frame.to(device)
        self._cell = obs.cell.to(device)
        self._target = obs.u.to(device, dtype)
        self.num_steps = int(obs.frame.max())  # frames after the last observation are free
        self._exact: Tensor | bool | None = False  # cached reference (False: not computed)

    def build_model(self, model_config: Any) -> nn.Module:
        name = MODELS.config(model_config).name
        if name != "field":
            raise PbdlError(
                f"method 'dp' optimizes a grid tensor: use model=field (got model={name})"
            )
        torch.manual_seed(self.config.seed)
        shape = (1, self.problem.num_channels, *self.problem.grid.shape)
        return MODELS.build(model_config, shape=shape).to(self.device, self.dtype)

    def simulate(self, u0: Tensor, num_steps: int) -> Tensor:
        """Roll ``u0`` [1, C, *spatial] out for ``num_steps`` frames: [1, T, C, *spatial]."""
        return rollout(self.solver, u0, num_steps, self.problem.dt, self._params_on_device)

    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        frames = self.simulate(model(), self.num_steps)  # [1, K + 1, C, *spatial]
        flat = frames[0].flatten(2)  # [K + 1, C, cells]
        predicted = flat[self._frame, :, self._cell]  # [N, C]
        obs = (predicted - self._target).square().mean()
        return {"loss": self.config.w_obs * obs, "obs": obs}

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Relative L2 and mean absolute error of the whole rollout against the reference."""
        if self._exact is False:
            self._exact = self.problem.reference(self.problem.times(), self.params)
        if self._exact is None:
            return {}
        assert isinstance(self._exact, Tensor)
        prediction = self.predict(model)
        error = prediction - self._exact
        return {
            "rel_l2": float(error.norm() / self._exact.norm()),
            "mae": float(error.abs().mean()),
        }

    @torch.no_grad()
    def predict(self, model: nn.Module) -> Tensor:
        return self.simulate(model(), self.problem.num_steps).double().cpu()
