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

**Matching a reference trajectory** (``method.target=trajectory``; book ch. 16, the smoke
plume): ``trajectories`` simulations run together (the problem's parameters for that
many, e.g. four inflow positions), and the loss compares each one's final state (after
``steps`` solver steps; 0: all output steps) on the channels ``match`` with the final
state of trajectory ``reference`` (gradient stopped):

    L(u0) = sum_b 1/2 sum_cells (P^n(u0)_b[match] - stop_grad(P^n(u0)_ref[match]))^2

(``reduction=half_sum``, PhiFlow's ``l2_loss`` summed over the batch; ``mean``: the mean
square). ``optimize`` restricts the unknowns to some channels (e.g. ``[u, v]``: the
initial velocity); the others keep the problem's initial state.

Static problems (no time, e.g. ``parabola``): a network f(x) (``mlp``) is trained through
the problem's forward operator, L = w_obs mean_i R(f(x_i), x_i)^2 with R =
``problem.pde_residual`` (for the parabola R = P(f(x)) - x = f(x)^2 - x) at the
observation inputs x_i; the observed values are not used, only the physics.

Shapes: the field is [1, C, *spatial]; ``predict`` returns [1, T, C, *spatial].
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import torch
from torch import Tensor, nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods.base import METHODS, Delegating, Method, MethodConfig
from pbdl_cli.methods.points import CHUNK
from pbdl_cli.methods.supervised_points import PointSupervised
from pbdl_cli.models.base import MODELS
from pbdl_cli.problems.base import Observations, Problem
from pbdl_cli.solvers import Solver, rollout


class Target(str, enum.Enum):
    """What the rollout is compared with (time-dependent problems)."""

    observations = "observations"
    trajectory = "trajectory"


class Reduction(str, enum.Enum):
    """How the squared misfits are reduced."""

    mean = "mean"
    half_sum = "half_sum"


@dataclasses.dataclass
class DPConfig(MethodConfig):
    """Options of ``dp`` (``method.<key>``).

    Attributes:
        w_obs: weight of the observation misfit (static problems: of the physics loss).
        seed: seed of the initialization (``model.init=normal`` fields, networks).
        batch_size: static problems: observation inputs per step (0: all of them).
        eval_nx, eval_nt: static problems: validation grid (0: the output grid).
        target: ``observations`` (the problem's) or ``trajectory``: the final state of
            trajectory ``reference`` of the batch (book ch. 16).
        trajectories: simulations optimized together (``target=trajectory``).
        reference: index of the target trajectory (``target=trajectory``; -1: the last).
        match: channels compared with the target (``target=trajectory``; empty: all).
        steps: solver steps before the comparison (``target=trajectory``; 0: all).
        optimize: channels of the initial state that are unknowns (empty: all); the
            others are the problem's initial state.
        reduction: ``mean`` square, or ``half_sum``: 1/2 sum over cells and trajectories
            (PhiFlow's ``l2_loss`` summed over the batch); observations default to mean.
    """

    w_obs: float = 1.0
    seed: int = 0
    batch_size: int = 0
    eval_nx: int = 0
    eval_nt: int = 0
    target: Target = Target.observations
    trajectories: int = 1
    reference: int = -1
    match: list[str] = dataclasses.field(default_factory=list)
    steps: int = 0
    optimize: list[str] = dataclasses.field(default_factory=list)
    reduction: Reduction = Reduction.mean

    def __post_init__(self) -> None:
        if self.w_obs <= 0:
            raise ValueError("w_obs must be > 0")
        if self.batch_size < 0:
            raise ValueError("batch_size must be >= 0")
        if self.trajectories < 1:
            raise ValueError("trajectories must be >= 1")
        if self.steps < 0:
            raise ValueError("steps must be >= 0")
        if self.target is Target.observations and self.trajectories != 1:
            raise ValueError("trajectories > 1 needs target=trajectory")
        if not -self.trajectories <= self.reference < self.trajectories:
            raise ValueError(f"reference={self.reference} is not one of the trajectories")


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
        elif config.target is Target.trajectory:
            self.impl = MatchTrajectory(config, solver=solver, **deps)
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
        self.params = problem.sample_params(
            config.trajectories, torch.Generator().manual_seed(config.seed)
        )
        self._params_on_device = {k: v.to(device, dtype) for k, v in self.params.items()}
        self._unknown = _channels(problem, config.optimize, "optimize")
        self._fixed: Tensor | None = None
        if len(self._unknown) < problem.num_channels:
            generator = torch.Generator().manual_seed(config.seed)
            self._fixed = problem.initial_state(self.params, generator).to(device, dtype)
        self._setup_target()

    def _setup_target(self) -> None:
        problem, device, dtype = self.problem, self.device, self.dtype
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
        batch = self.config.trajectories
        shape = (batch, len(self._unknown), *self.problem.grid.shape)
        return MODELS.build(model_config, shape=shape).to(self.device, self.dtype)

    def initial(self, model: nn.Module) -> Tensor:
        """The initial state [B, C, *spatial]: the unknown channels from the model, the
        others from the problem's initial state."""
        value = model()
        if self._fixed is None:
            return value
        channels = list(self._fixed.unbind(1))
        for k, c in enumerate(self._unknown):
            channels[c] = value[:, k]
        return torch.stack(channels, dim=1)

    def reduce(self, residual: Tensor) -> Tensor:
        """The squared misfit, reduced as ``method.reduction`` says."""
        if self.config.reduction is Reduction.half_sum:
            return 0.5 * residual.square().sum()
        return residual.square().mean()

    def simulate(self, u0: Tensor, num_steps: int) -> Tensor:
        """Roll ``u0`` [1, C, *spatial] out for ``num_steps`` frames: [1, T, C, *spatial]."""
        return rollout(self.solver, u0, num_steps, self.problem.dt, self._params_on_device)

    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        frames = self.simulate(self.initial(model), self.num_steps)  # [1, K + 1, C, ...]
        flat = frames[0].flatten(2)  # [K + 1, C, cells]
        predicted = flat[self._frame, :, self._cell]  # [N, C]
        obs = self.reduce(predicted - self._target)
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
        return self.simulate(self.initial(model), self.problem.num_steps).double().cpu()


class MatchTrajectory(ThroughSolver):
    """Optimize the initial states of a batch so that their final states match the
    final state of one of them (``target=trajectory``, see the module docstring)."""

    def _setup_target(self) -> None:
        c, problem = self.config, self.problem
        self.num_steps = c.steps or problem.num_steps
        if self.num_steps > problem.num_steps:
            raise PbdlError(
                f"method.steps={c.steps} is more than the problem's {problem.num_steps} steps"
            )
        self._match = _channels(problem, c.match, "match")
        self._reference = c.reference % c.trajectories

    def mismatch(self, model: nn.Module) -> tuple[Tensor, Tensor]:
        """Final states [B, C, *spatial] and their misfit to the reference's final state
        on the matched channels (the reference gets no gradient): [B, M, *spatial]."""
        final = self.simulate(self.initial(model), self.num_steps)[:, -1]
        chosen = final[:, self._match]
        return final, chosen - chosen[self._reference : self._reference + 1].detach()

    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        _, diff = self.mismatch(model)
        obs = self.reduce(diff)
        return {"loss": self.config.w_obs * obs, "obs": obs}

    def validate(self, model: nn.Module) -> dict[str, float]:
        """The misfit of every trajectory (``obs_<b>``) and their sum ``obs``."""
        with torch.no_grad():
            _, diff = self.mismatch(model)
        per = [float(self.reduce(d)) for d in diff]
        return {"obs": sum(per)} | {f"obs_{b}": v for b, v in enumerate(per)}


def _channels(problem: Problem, names: list[str], key: str) -> list[int]:
    """Channel indices of ``names`` (empty: all channels)."""
    if not names:
        return list(range(problem.num_channels))
    unknown = [n for n in names if n not in problem.fields]
    if unknown:
        raise PbdlError(
            f"method.{key}: {', '.join(unknown)} is not a field of problem "
            f"'{problem.name}' ({', '.join(problem.fields)})"
        )
    return [problem.fields.index(n) for n in names]
