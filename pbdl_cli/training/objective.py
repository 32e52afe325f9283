"""What the training loop needs from a method: its loss, and a few optional hooks.

:func:`~pbdl_cli.training.trainer.fit` trains any :class:`Objective`. Every method is one
(:class:`~pbdl_cli.methods.base.Method` adds building the model and predicting), and so
is any small object a test or script wants to train.

- :meth:`Objective.loss` (required): ``{"loss": total, <term>: value, ...}`` at a step.
- :meth:`Objective.validate`: metrics logged every ``trainer.eval_every`` steps (lower is
  better; ``fit``'s ``validate_key`` picks the one that decides ``best.pt``).
- :meth:`Objective.step`: take over the optimizer step (a method that updates nothing,
  SIP, HIG); by default the trainer steps its optimizer.
- Data-parallel training (``trainer.strategy=ddp``, :mod:`pbdl_cli.training.distributed`)
  needs a loss that splits into shards of a batch: ``supports_ddp``, then
  :meth:`Objective.set_distributed` and :meth:`Objective.shard_weight`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn


class Objective(ABC):
    """A loss to minimize over a model's parameters (see the module docstring)."""

    #: the loss of a step splits into shards of its batch (data-parallel training)
    supports_ddp: ClassVar[bool] = False

    @abstractmethod
    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        """``{"loss": total, <term>: value, ...}`` for training step ``step``."""

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Metrics logged every ``trainer.eval_every`` steps (lower is better)."""
        return {}

    def step(self, optimizer: torch.optim.Optimizer, closure: Callable[[], Tensor]) -> bool:
        """Take over the optimizer step: ``closure()`` evaluates the loss and its gradient.
        Return True when the step was taken; the default returns False and the trainer
        steps ``optimizer`` itself."""
        return False

    def set_distributed(self, rank: int, world_size: int) -> None:
        """From now on, compute the loss of step s on this process's shard (``rank`` of
        ``world_size``) of the global batch that one process with ``world_size`` times the
        batch size would use at step s (only where ``supports_ddp``)."""
        raise NotImplementedError(f"{type(self).__name__} does not split its loss into shards")

    def shard_weight(self, step: int) -> float:
        """The factor on this process's loss at ``step`` that makes the mean over the
        processes the global batch's loss (1 for even shards)."""
        return 1.0
