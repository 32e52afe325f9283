"""Unrolled training, shared by ``sol`` (a corrected solver) and ``unrolled`` (a
surrogate): the method's stepper is rolled out n times from a window's history and the
loss averages the normalized MSE over the n predicted states (PBDL book ch. 17-18):

    s~_{t+i} = stepper(s~_{t+i-k}, ..., s~_{t+i-1})
    L = 1/n sum_{i=1..n} mean ((s~_{t+i} - s_{t+i}) / sigma)^2

n follows ``unroll_schedule`` (a curriculum); the windows hold as many future frames as
the largest n (``horizon`` = :attr:`UnrollConfig.max_unroll`).

Shapes: history [B, k, C, *spatial], future [B, max n, C, *spatial].
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from pbdl_cli.methods.grid import GridMethod
from pbdl_cli.problems.base import Problem
from pbdl_cli.solvers import Solver


@dataclasses.dataclass
class UnrollConfig:
    """Options of the methods that unroll several steps in training (mixed into a config).

    Attributes:
        unroll: predicted states per training window (m, or n of SOL-n).
        unroll_schedule: curriculum ``[[step, n], ...]``: from training step ``step`` on,
            unroll n states (before the first entry: ``unroll``); e.g.
            ``[[0, 1], [500, 2], [1000, 4]]``.
    """

    unroll: int = 4
    unroll_schedule: list[list[int]] = dataclasses.field(default_factory=list)

    def check_unroll(self) -> None:
        if self.unroll < 1:
            raise ValueError("unroll must be >= 1")
        last = -1
        for entry in self.unroll_schedule:
            if len(entry) != 2 or entry[0] <= last or entry[0] < 0 or entry[1] < 1:
                raise ValueError(
                    "unroll_schedule must be [[step, n], ...] with increasing steps >= 0 and "
                    f"n >= 1, got {self.unroll_schedule}"
                )
            last = entry[0]

    def unroll_at(self, step: int) -> int:
        """Unrolled states at training step ``step``."""
        n = self.unroll
        for start, value in self.unroll_schedule:
            if step >= start:
                n = value
        return n

    @property
    def max_unroll(self) -> int:
        return max([self.unroll, *(n for _, n in self.unroll_schedule)])


class UnrolledTraining(GridMethod):
    """Mixed in before a stepper class (:class:`~pbdl_cli.methods.surrogate.SurrogateMethod`,
    :class:`~pbdl_cli.methods.correction.CorrectedMethod`): windows of ``max_unroll``
    future frames and the loss of ``unroll_at(step)`` unrolled states."""

    config: UnrollConfig  # type: ignore[assignment]

    def __init__(
        self,
        config: UnrollConfig,
        *,
        problem: Problem,
        device: torch.device,
        dtype: torch.dtype,
        solver: Solver | None = None,
    ) -> None:
        self.horizon = config.max_unroll
        super().__init__(config, problem=problem, device=device, dtype=dtype, solver=solver)  # type: ignore[arg-type]

    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        return self.unrolled_loss(model, step, self.config.unroll_at(step))
