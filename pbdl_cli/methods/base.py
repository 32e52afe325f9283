"""The Method interface: how learning meets physics.

A method builds its model (it decides the input and output sizes), defines the training
loss (it owns its data: collocation points, dataset windows, observations), reports
validation metrics, and predicts the solution on the problem's output grid, which is what
evaluation compares with the reference.

Shapes: ``predict`` returns [B, T, C, *spatial] on the problem's times and cell centres.

A method is the trainer's :class:`~pbdl_cli.training.objective.Objective`: its loss, and
the optional hooks for taking over the optimizer step and for data-parallel training
(``supports_ddp``, ``set_distributed``, ``shard_weight``; the grid methods have them).
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from pbdl_cli.problems.base import Params, Problem
from pbdl_cli.registry import PluginConfig, Registry
from pbdl_cli.solvers.base import NO_SOLVER, SOLVERS
from pbdl_cli.training.objective import Objective


@dataclasses.dataclass
class MethodConfig(PluginConfig):
    """Base of every method's schema (``method.<key>``).

    Attributes:
        seed: where the method's own random draws start (network initialization,
            sampling, batch order, noise), each from a sub-seed derived from it. It
            follows the run's ``seed`` (``conf/train.yaml``); ``pbdl train`` refuses a
            ``method.seed`` set apart from it.
    """

    seed: int = 0


class Method(Objective):
    """Base of all methods; see the module docstring."""

    Config: ClassVar[type[MethodConfig]]
    #: methods that train through a solver get ``solver=`` (built from the ``solver`` node)
    needs_solver: ClassVar[bool] = False

    def __init__(
        self, config: Any, *, problem: Problem, device: torch.device, dtype: torch.dtype
    ) -> None:
        self.config = config
        self.problem = problem
        self.device = device
        self.dtype = dtype
        #: physical parameters of the trajectories ``predict`` returns (CPU tensors [B])
        self.params: Params = {}

    @abstractmethod
    def build_model(self, model_config: Any) -> nn.Module:
        """The model this method trains, from the ``model`` config node."""

    def check_model_config(self, model_config: Any) -> None:
        """Refuse, in one line (PbdlError), a ``model`` node this method cannot train; run
        when the stage is built, before any run directory is touched. Default: none."""

    @abstractmethod
    def predict(self, model: nn.Module) -> Tensor:
        """The prediction on the problem's output grid, [B, T, C, *spatial] (float64, CPU)."""

    def reference(self) -> Tensor | None:
        """What ``predict`` is compared with where the problem has no exact solution (e.g.
        the test trajectories of a dataset), [B, T, C, *spatial] float64; None: nothing."""
        return None

    def residual(self, model: nn.Module) -> float | None:
        """Mean absolute PDE residual of the prediction (``pbdl evaluate``), or None where
        the method cannot compute one."""
        return None

    def extra_metrics(self, model: nn.Module) -> dict[str, float]:
        """Further metrics of the trained model that ``pbdl evaluate`` adds to
        ``metrics.json`` (e.g. ``projection``'s obstacle test); called without
        gradients. Default: none."""
        return {}


#: every registered method (``method=<name>``)
METHODS: Registry[type[Method]] = Registry("method", group="method")


def build_method(
    config: PluginConfig,
    solver: PluginConfig,
    *,
    problem: Problem,
    device: torch.device,
    dtype: torch.dtype,
) -> Method:
    """The method of a validated ``method`` node for ``problem``; methods that train
    through a solver (``needs_solver``) also get the one of the ``solver`` node (None
    where the problem has none: static problems train through no solver)."""
    deps: dict[str, Any] = {"problem": problem, "device": device, "dtype": dtype}
    if METHODS.get(config.name).needs_solver:
        has_solver = solver.name != NO_SOLVER
        deps["solver"] = SOLVERS.create(solver, problem=problem) if has_solver else None
    return METHODS.create(config, **deps)


class Delegating(Method):
    """A registered method that hands everything to one of several implementations,
    chosen from the problem or the config (``dp``: solver or static operator;
    ``supervised``: point or grid data). Subclasses set ``self.impl`` in ``__init__``;
    other attributes of the implementation (``normalization``, ``batch``, ...) are
    reachable through the facade."""

    impl: Method

    @property  # type: ignore[override]
    def supports_ddp(self) -> bool:  # the implementation's
        return self.impl.supports_ddp

    def __getattr__(self, name: str) -> Any:
        impl = self.__dict__.get("impl")
        if impl is None:
            raise AttributeError(name)
        return getattr(impl, name)

    def build_model(self, model_config: Any) -> nn.Module:
        return self.impl.build_model(model_config)

    def check_model_config(self, model_config: Any) -> None:
        self.impl.check_model_config(model_config)

    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        return self.impl.loss(model, step)

    def validate(self, model: nn.Module) -> dict[str, float]:
        return self.impl.validate(model)

    def step(self, optimizer: torch.optim.Optimizer, closure: Callable[[], Tensor]) -> bool:
        return self.impl.step(optimizer, closure)

    def set_distributed(self, rank: int, world_size: int) -> None:
        self.impl.set_distributed(rank, world_size)

    def shard_weight(self, step: int) -> float:
        return self.impl.shard_weight(step)

    def predict(self, model: nn.Module) -> Tensor:
        return self.impl.predict(model)

    def residual(self, model: nn.Module) -> float | None:
        return self.impl.residual(model)

    def reference(self) -> Tensor | None:
        return self.impl.reference()

    def extra_metrics(self, model: nn.Module) -> dict[str, float]:
        return self.impl.extra_metrics(model)
