"""The PBDL book's "Simple example comparing different optimizers" (ch. 37).

Unknowns x = (x0, x1), physics y = P(x) = (x0, x1^2), loss L(y) = |y|^2 = y0^2 + y1^2
(target y* = 0, minimizer x = 0), start x = [3, 3]. At the start dL/dy = [6, 18] and
dL/dx = [6, 108]: the gradient points mostly along x1, far from the diagonal path to
the optimum, which is what GD, Newton and the inverse simulator P^-1(y) = (y0, y1^(1/2))
handle differently (book step sizes 0.01, 1/3 and 0.3; ``step_sizes``).

The inverse is the branch x1 >= 0 of sqrt(y1) with the sign of ``x0``'s x1 (P loses
the sign of x1); y1 < 0 has no preimage and is clamped to 0.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import Tensor

from pbdl_cli.problems.base import PROBLEMS
from pbdl_cli.problems.optimization import Optimization
from pbdl_cli.registry import PluginConfig


@dataclasses.dataclass
class OptimizerToyConfig(PluginConfig):
    """Configuration of :class:`OptimizerToy` (``problem.<key>``).

    Attributes:
        start: the initial guess [x0, x1].
    """

    start: list[float] = dataclasses.field(default_factory=lambda: [3.0, 3.0])

    def __post_init__(self) -> None:
        if len(self.start) != 2:
            raise ValueError(f"start must have 2 components [x0, x1], got {self.start}")


@PROBLEMS.register("optimizer_toy")
class OptimizerToy(Optimization):
    """min |P(x)|^2 with P(x) = (x0, x1^2), from x = [3, 3] (PBDL book ch. 37)."""

    Config = OptimizerToyConfig
    config: OptimizerToyConfig
    step_sizes: ClassVar[dict[str, float]] = {
        "gd": 0.01,
        "newton": 1.0 / 3.0,
        "inverse_simulator": 0.3,
    }

    def slug(self) -> str:
        return "optimizer_toy"

    def start(self) -> Tensor:
        return torch.tensor(self.config.start, dtype=torch.float64)

    def forward(self, x: Tensor) -> Tensor:
        """y = (x0, x1^2): [..., 2] -> [..., 2]."""
        return torch.stack([x[..., 0], x[..., 1].square()], dim=-1)

    def inverse(self, y: Tensor, x0: Tensor) -> Tensor:
        """x = (y0, s sqrt(max(y1, 0))) with s the sign of ``x0``'s x1 (+ at 0)."""
        sign = torch.where(x0[..., 1] < 0, -1.0, 1.0).to(y)
        return torch.stack([y[..., 0], sign * y[..., 1].clamp(min=0).sqrt()], dim=-1)

    def target(self) -> Tensor:
        return torch.zeros(2, dtype=torch.float64)

    def optimum(self) -> Tensor:
        return torch.zeros(2, dtype=torch.float64)
