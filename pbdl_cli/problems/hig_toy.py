"""The PBDL book's half-inverse-gradient toy (ch. 40.3; Schnell, Holl & Thuerey 2022).

A network f(x; theta): R -> R^2 (one hidden layer of 7 tanh units) learns the target

    y^(x) = (sin 6x, cos 9x),  x ~ U[-1, 1]

through the "physics" P(z) = (z_1, lambda z_2), with the scaled loss

    L(z, y^; lambda) = 1/2 (z_1 - y^_1)^2 + 1/2 (lambda z_2 - y^_2)^2 = 1/2 |P(z) - y^|^2.

lambda < 1 scales the second component down, as a badly scaled simulator would: the
network must output z_2 = y^_2 / lambda (up to 100 for lambda = 0.01), while gradients
along z_2 shrink by lambda. In the :class:`~pbdl_cli.problems.inversion.Inversion`
terms: input = x [1], unknowns = z [2], y* = y^ [2], no condition; z* = (y^_1, y^_2 /
lambda) is known (``truth``), and P is linear with the exact inverse P^-1(y) =
(y_1, y_2 / lambda).

Shapes: input [B, 1], z and y [B, 2].
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import Tensor

from pbdl_cli.problems.base import PROBLEMS
from pbdl_cli.problems.inversion import Inversion, Samples
from pbdl_cli.registry import PluginConfig


@dataclasses.dataclass
class HIGToyConfig(PluginConfig):
    """Configuration of :class:`HIGToy` (``problem.<key>``).

    Attributes:
        scale: lambda, the factor on the second output (book: 1 and 0.01).
        n_test: test inputs (an even grid on [-1, 1]) that ``pbdl evaluate`` scores.
    """

    scale: float = 0.01
    n_test: int = 256

    def __post_init__(self) -> None:
        if self.scale == 0 or self.n_test < 2:
            raise ValueError("scale must be nonzero and n_test >= 2")


@PROBLEMS.register("hig_toy")
class HIGToy(Inversion):
    """Learn (sin 6x, cos 9x) through P(z) = (z_1, lambda z_2) (module docstring)."""

    Config = HIGToyConfig
    config: HIGToyConfig
    x_shape: ClassVar[tuple[int, ...]] = (2,)
    y_shape: ClassVar[tuple[int, ...]] = (2,)
    input_shape: ClassVar[tuple[int, ...]] = (1,)

    def slug(self) -> str:
        return f"hig_toy_l{self.config.scale:g}"

    @staticmethod
    def target_of(x: Tensor) -> Tensor:
        """y^(x) = (sin 6x, cos 9x): [B, 1] -> [B, 2]."""
        return torch.cat([torch.sin(6 * x), torch.cos(9 * x)], dim=1)

    def _samples(self, x: Tensor) -> Samples:
        target = self.target_of(x)
        truth = torch.stack([target[:, 0], target[:, 1] / self.config.scale], dim=1)
        return Samples(input=x, target=target, truth=truth)

    def sample(self, n: int, generator: torch.Generator) -> Samples:
        """x ~ U[-1, 1] [n, 1] and its targets, float64."""
        x = 2 * torch.rand(n, 1, generator=generator, dtype=torch.float64) - 1
        return self._samples(x)

    def draw_test_samples(self) -> Samples:
        """An even grid of ``n_test`` inputs on [-1, 1]."""
        x = torch.linspace(-1, 1, self.config.n_test, dtype=torch.float64)[:, None]
        return self._samples(x)

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """P(z) = (z_1, lambda z_2): [B, 2] -> [B, 2]."""
        return torch.stack([x[:, 0], self.config.scale * x[:, 1]], dim=1)

    def inverse(self, y: Tensor, x0: Tensor, condition: Tensor | None = None) -> Tensor:
        """P^-1(y) = (y_1, y_2 / lambda) (P is linear: x0 is not needed)."""
        return torch.stack([y[:, 0], y[:, 1] / self.config.scale], dim=1)
