"""The Method interface: how learning meets physics.

A method builds its model (it decides the input and output sizes), defines the training
loss (it owns its data: collocation points, dataset windows, observations), reports
validation metrics, and predicts the solution on the problem's output grid, which is what
evaluation compares with the reference.

Shapes: ``predict`` returns [B, T, C, *spatial] on the problem's times and cell centres.

Data-parallel training (``trainer.strategy=ddp``, :mod:`pbdl_cli.training.distributed`)
needs two optional hooks, which are deliberately not defined here, so that a method
without them is refused with a clear message (and a method that delegates attribute
lookups to an implementation, like ``supervised``, offers them exactly when its
implementation does):

- ``set_distributed(rank, world_size)``: from now on, compute the loss of step s on this
  process's shard (``rank`` of ``world_size``) of the global batch that one process with
  ``world_size`` times the batch size would use at step s (the grid methods:
  :meth:`~pbdl_cli.methods.grid.GridMethod.set_distributed`).
- ``shard_weight(step) -> float``: the factor on this process's loss that makes the mean
  over the processes the global batch's loss (1 for even shards).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from pbdl_cli.problems.base import Params, Problem
from pbdl_cli.registry import PluginConfig, Registry


class Method(ABC):
    """Base of all methods; see the module docstring."""

    Config: ClassVar[type[PluginConfig]]
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

    @abstractmethod
    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        """``{"loss": total, <term>: value, ...}`` for training step ``step``."""

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Metrics logged every ``trainer.eval_every`` steps (lower is better)."""
        return {}

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


class Delegating(Method):
    """A registered method that hands everything to one of several implementations,
    chosen from the problem or the config (``dp``: solver or static operator;
    ``supervised``: point or grid data). Subclasses set ``self.impl`` in ``__init__``;
    other attributes of the implementation (``normalization``, ``batch``, ...) are
    reachable through the facade."""

    impl: Method

    def __getattr__(self, name: str) -> Any:
        impl = self.__dict__.get("impl")
        if impl is None:
            raise AttributeError(name)
        return getattr(impl, name)

    def build_model(self, model_config: Any) -> nn.Module:
        return self.impl.build_model(model_config)

    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        return self.impl.loss(model, step)

    def validate(self, model: nn.Module) -> dict[str, float]:
        return self.impl.validate(model)

    def predict(self, model: nn.Module) -> Tensor:
        return self.impl.predict(model)

    def residual(self, model: nn.Module) -> float | None:
        return self.impl.residual(model)

    def reference(self) -> Tensor | None:
        return self.impl.reference()

    def extra_metrics(self, model: nn.Module) -> dict[str, float]:
        return self.impl.extra_metrics(model)
