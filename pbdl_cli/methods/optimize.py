"""Direct optimization of a problem's unknowns x with a chosen update rule (PBDL book
ch. 36-37): no network; the "model" is x itself (``model=field``, initialized to the
problem's start), and every training step applies one update of
:mod:`pbdl_cli.training.updates` to it:

- ``gd``:                Delta x = -eta dL/dx
- ``newton``:            Delta x = -eta H^-1 dL/dx            (exact Hessian of L(P(x)))
- ``gauss_newton``:      Delta x = -eta J^+ (P(x) - y*)       (J = dP/dx)
- ``inverse_simulator``: Delta x = P^-1(y + eta (y* - y); x) - x, y = P(x) (the Newton step
  of L = |y - y*|^2 in y-space, mapped back by the problem's inverse simulator)

for L(y) = |y - y*|^2. The problem must be an
:class:`~pbdl_cli.problems.optimization.Optimization` (forward P, start, target y*);
``inverse_simulator`` also needs its ``inverse`` (``Problem.has_inverse``). The method
takes over the trainer's step (``Objective.step``): ``trainer.optimizer`` and
``trainer.lr`` are unused, the logged ``lr`` is eta. Logged per step: ``train/*`` at x
before the update (``loss``, ``x0``.., ``y0``..), ``val/*`` after it (with
``trainer.eval_every=1``: iterate k at step k + 1).

Shapes: x is [1, n] (the field); ``predict`` returns [1, 1, 1, n].
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods.base import METHODS, Method, MethodConfig
from pbdl_cli.models.base import MODELS
from pbdl_cli.problems.base import Problem
from pbdl_cli.problems.optimization import Optimization
from pbdl_cli.training import updates


class Update(str, enum.Enum):
    """The update rule of ``method=optimize``."""

    gd = "gd"
    newton = "newton"
    gauss_newton = "gauss_newton"
    inverse_simulator = "inverse_simulator"


@dataclasses.dataclass
class OptimizeConfig(MethodConfig):
    """Options of ``optimize`` (``method.<key>``).

    Attributes:
        update: ``gd``, ``newton``, ``gauss_newton`` or ``inverse_simulator``.
        lr: the step size eta; null: the problem's for this rule (``step_sizes``, e.g. the
            book's 0.01 / 1/3 / 0.3 for ``optimizer_toy``).
    """

    update: Update = Update.gd
    lr: float | None = None

    def __post_init__(self) -> None:
        if self.lr is not None and self.lr <= 0:
            raise ValueError("lr must be > 0 (or null for the problem's step size)")


@METHODS.register("optimize")
class Optimize(Method):
    """Optimize the problem's unknowns directly with GD, Newton, Gauss-Newton or the
    inverse simulator (see module docstring)."""

    Config = OptimizeConfig
    config: OptimizeConfig
    problem: Optimization

    def __init__(
        self, config: OptimizeConfig, *, problem: Problem, device: torch.device, dtype: torch.dtype
    ) -> None:
        super().__init__(config, problem=problem, device=device, dtype=dtype)
        if not isinstance(problem, Optimization):
            raise PbdlError(
                f"method 'optimize' updates a problem's unknowns x directly, but problem "
                f"'{problem.name}' is not an optimization problem (e.g. problem=optimizer_toy)"
            )
        rule = config.update.value
        if config.update is Update.inverse_simulator and not problem.has_inverse:
            raise PbdlError(
                f"method.update=inverse_simulator needs an inverse simulator P^-1(y; x0), "
                f"which problem '{problem.name}' does not provide (Problem.inverse)"
            )
        lr = config.lr if config.lr is not None else problem.step_sizes.get(rule)
        if lr is None:
            raise PbdlError(
                f"problem '{problem.name}' has no step size for method.update={rule}; set method.lr"
            )
        self.lr = float(lr)

    def check_model_config(self, model_config: Any) -> None:
        name = MODELS.config(model_config).name
        if name != "field":
            raise PbdlError(
                f"method 'optimize' updates the unknowns themselves: use model=field "
                f"(got model={name})"
            )

    def build_model(self, model_config: Any) -> nn.Module:
        self.check_model_config(model_config)
        start = self.problem.start()
        model = MODELS.build(model_config, shape=(1, start.numel()))
        with torch.no_grad():
            model.value.copy_(start[None])
        return model.to(self.device, self.dtype)

    def _terms(self, x: Tensor) -> dict[str, Tensor]:
        """The loss L(P(x)) and the components of x [1, n] and y = P(x)."""
        y = self.problem.forward(x)
        terms = {"loss": self.problem.objective(y).sum()}
        # copies: x is the parameter, updated in place after the terms are read
        terms |= {f"x{i}": v for i, v in enumerate(x[0].detach().clone())}
        terms |= {f"y{i}": v for i, v in enumerate(y[0].detach())}
        return terms

    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        return self._terms(model())

    def delta(self, x: Tensor) -> Tensor:
        """The update Delta x of ``method.update`` at ``x`` [B, n]: [B, n]."""
        p, lr = self.problem, self.lr
        rule = self.config.update
        if rule is Update.gd:
            return updates.gradient_step(lambda v: p.objective(p.forward(v)), x, lr)
        if rule is Update.newton:
            return updates.newton_step(lambda v: p.objective(p.forward(v)), x, lr)
        if rule is Update.gauss_newton:
            target = p.target().to(x)
            return updates.gauss_newton_step(lambda v: p.forward(v) - target, x, lr)
        return updates.inverse_simulator_step(p.forward, p.inverse, p.objective, x, lr)

    def step(self, optimizer: torch.optim.Optimizer, closure: Callable[[], Tensor]) -> bool:
        """Log the terms at x (``closure``), then x <- x + Delta x."""
        closure()
        params = [q for group in optimizer.param_groups for q in group["params"]]
        if len(params) != 1:
            raise PbdlError(f"method 'optimize' updates one tensor, not {len(params)}")
        try:
            delta = self.delta(params[0].detach())
        except torch.linalg.LinAlgError as error:  # e.g. a singular Hessian
            x = params[0].detach().flatten().tolist()
            raise PbdlError(
                f"method.update={self.config.update.value} failed at x = {x}: "
                f"{str(error).splitlines()[0]}"
            ) from None
        with torch.no_grad():
            params[0].add_(delta)
        for group in optimizer.param_groups:  # the trainer logs the optimizer's lr
            group["lr"] = self.lr
        return True

    def validate(self, model: nn.Module) -> dict[str, float]:
        with torch.no_grad():
            return {k: float(v) for k, v in self._terms(model()).items()}

    def predict(self, model: nn.Module) -> Tensor:
        with torch.no_grad():
            return model().detach().to("cpu", torch.float64)[:, None, None]
