"""The rotated sine of PBDL book ch. 38.4 ("SIP training in action"; Holl, Koltun &
Thuerey 2022, sec. "characterization"): a two-dimensional physics whose conditioning
(xi) and coupling (phi) are set by hand,

    y = P(x) = (sin(x^_1) / xi, x^_2 * xi),     x^ = R_phi x,
    R_phi = [[cos phi, -sin phi], [sin phi, cos phi]],

with x = (x_1, x_2) the unknowns and y = (y_1, y_2) the observation. The Jacobian is
J = diag(cos(x^_1) / xi, xi) R_phi: for xi >> 1 the two directions of x^ are scaled by
1/xi and xi, so the loss L = 1/2 |P(x) - y*|^2 is ill-conditioned (curvatures ~1/xi^2
and xi^2), and phi != 0 turns that scaling away from the axes of x, which a diagonal
preconditioner (Adam) cannot undo. At phi = 0 the problem factors into two independent
1D problems.

Samples: x^* uniform in the box [-box, box]^2 (box < pi/2, where sin is monotone, so P
is invertible on the sampled region), x* = R_phi^T x^*, y* = P(x*); the network input
is y* (``normalize_input``: y* divided by the scales (1/xi, xi), i.e. (sin(x^*_1), x^*_2),
inputs of size ~1 as in the paper's y* in [-1, 1]^2), the truth x*.

The local inverse P^-1(y; x0) (:meth:`RotatedSine.inverse`): x^_2 = y_2 / xi and
x^_1 the solution of sin(x^_1) = clamp(xi y_1, -1, 1) nearest x0's x^_1
(among arcsin(s) + 2 pi k and pi - arcsin(s) + 2 pi k), rotated back by R_phi^T; for an
xi y_1 outside [-1, 1] that is the nearest extremum of sin (the closest y). It inverts
P exactly wherever |xi y_1| <= 1.

Shapes: x, y, y* and the input [B, 2]; no condition.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
from torch import Tensor

from pbdl_cli.problems.base import PROBLEMS
from pbdl_cli.problems.inversion import Inversion, Samples
from pbdl_cli.registry import PluginConfig


@dataclasses.dataclass
class RotatedSineConfig(PluginConfig):
    """Configuration of :class:`RotatedSine` (``problem.<key>``).

    Attributes:
        xi: the conditioning xi > 0 (book: 1 well-conditioned, 32 ill-conditioned).
        phi: the rotation angle phi in degrees (0: uncoupled; book: 0 to 45).
        box: x^* is drawn uniformly from [-box, box]^2 (0 < box < pi/2).
        normalize_input: feed the network y* / (1/xi, xi) instead of y* (inputs ~1).
        n_test: samples of the fixed test set ``pbdl evaluate`` scores.
    """

    xi: float = 1.0
    phi: float = 0.0
    box: float = 1.0
    normalize_input: bool = True
    n_test: int = 1024

    def __post_init__(self) -> None:
        if not self.xi > 0:
            raise ValueError(f"xi must be > 0, got {self.xi}")
        if not 0 < self.box < math.pi / 2:
            raise ValueError(
                f"box must be in (0, pi/2) so that sin is monotone on it, got {self.box}"
            )
        if self.n_test < 1:
            raise ValueError(f"n_test must be >= 1, got {self.n_test}")


@PROBLEMS.register("rotated_sine")
class RotatedSine(Inversion):
    """y = (sin(x^_1) / xi, x^_2 xi), x^ = R_phi x (PBDL book ch. 38.4; module docstring)."""

    Config = RotatedSineConfig
    config: RotatedSineConfig
    x_shape: ClassVar[tuple[int, ...]] = (2,)
    y_shape: ClassVar[tuple[int, ...]] = (2,)
    input_shape: ClassVar[tuple[int, ...]] = (2,)

    def slug(self) -> str:
        c = self.config
        return f"rotated_sine_xi{c.xi:g}_phi{c.phi:g}"

    def rotation(self, like: Tensor) -> Tensor:
        """R_phi [2, 2] in ``like``'s dtype and device."""
        phi = math.radians(self.config.phi)
        c, s = math.cos(phi), math.sin(phi)
        return torch.tensor([[c, -s], [s, c]], dtype=like.dtype, device=like.device)

    def rotate(self, x: Tensor) -> Tensor:
        """x^ = R_phi x for every row of x [B, 2]."""
        return x @ self.rotation(x).T

    def unrotate(self, xh: Tensor) -> Tensor:
        """x = R_phi^T x^ for every row of x^ [B, 2]."""
        return xh @ self.rotation(xh)

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """y = (sin(x^_1) / xi, x^_2 xi): [B, 2] -> [B, 2]."""
        xi = self.config.xi
        xh = self.rotate(x)
        return torch.stack([torch.sin(xh[:, 0]) / xi, xh[:, 1] * xi], dim=1)

    def inverse(  # type: ignore[override]
        self, y: Tensor, x0: Tensor, condition: Tensor | None = None
    ) -> Tensor:
        """The preimage of y [B, 2] nearest x0 [B, 2] along x^_1 (module docstring): [B, 2]."""
        xi = self.config.xi
        near = self.rotate(x0)[:, 0]
        a = torch.arcsin((xi * y[:, 0]).clamp(-1.0, 1.0))
        two_pi = 2 * math.pi
        first = a + two_pi * torch.round((near - a) / two_pi)
        second = (math.pi - a) + two_pi * torch.round((near - (math.pi - a)) / two_pi)
        xh1 = torch.where((first - near).abs() <= (second - near).abs(), first, second)
        return self.unrotate(torch.stack([xh1, y[:, 1] / xi], dim=1))

    def network_input(self, y: Tensor) -> Tensor:
        """What the network sees for targets y* [B, 2]: y* or y* / (1/xi, xi)."""
        if not self.config.normalize_input:
            return y
        xi = self.config.xi
        return y * torch.tensor([xi, 1.0 / xi], dtype=y.dtype, device=y.device)

    def sample(self, n: int, generator: torch.Generator) -> Samples:
        """x^* uniform in [-box, box]^2, x* = R_phi^T x^*, y* = P(x*), float64."""
        box = self.config.box
        xh = (2 * torch.rand(n, 2, generator=generator, dtype=torch.float64) - 1) * box
        truth = self.unrotate(xh)
        target = self.forward(truth)
        return Samples(input=self.network_input(target), target=target, truth=truth)

    def draw_test_samples(self) -> Samples:
        """``n_test`` samples drawn with a seed of their own."""
        from pbdl_cli.utils.seeding import generator

        return self.sample(self.config.n_test, generator(self.name, "test"))
