"""Inversion problems: a network learns to invert the physics (PBDL book ch. 38-41).

Each sample i has a network input ``input_i`` (usually the target itself), a target
y*_i, an optional condition c_i of the physics (e.g. an initial state) and, where
known, the ground-truth unknowns x*_i. A network f predicts x_i = f(input_i; theta),
the physics maps it to y_i = P(x_i; c_i), and training minimizes

    L(theta) = mean_i L_y(P(f(input_i; theta); c_i), y*_i)

with the problem's per-sample loss L_y (default 1/2 |y - y*|^2). The methods
``gradient`` (backpropagation through P, any optimizer), ``sip`` (scale-invariant
physics updates, ch. 38) and ``hig`` (half-inverse gradients, ch. 40) train on it;
what each needs from the problem is checked when it is built: ``sip`` an inverse
simulator (:meth:`Inversion.inverse`) or a differentiable P for its Jacobian
pseudo-inverse, ``hig`` a differentiable P.

Shapes: x [B, *x_shape], y and y* [B, *y_shape], input [B, *input_shape], condition
[B, ...] or None. Predictions (``pbdl evaluate``) are x of a fixed test set as
[B, 1, C, *spatial]: one frame, the x channels on the problem's grid.
"""

from __future__ import annotations

import dataclasses
import math
from abc import abstractmethod
from typing import ClassVar

import torch
from torch import Tensor

from pbdl_cli.errors import PbdlError
from pbdl_cli.problems.base import Grid, Params, StaticProblem


@dataclasses.dataclass
class Samples:
    """A batch of inversion samples (float64 on the CPU when drawn).

    Attributes:
        input: what the network sees, [B, *input_shape].
        target: y*, [B, *y_shape].
        condition: the physics' per-sample condition (e.g. an initial state) or None.
        truth: the ground-truth x* where known, [B, *x_shape], else None.
    """

    input: Tensor
    target: Tensor
    condition: Tensor | None = None
    truth: Tensor | None = None

    def __len__(self) -> int:
        return self.target.shape[0]

    def to(self, device: torch.device, dtype: torch.dtype) -> Samples:
        """The batch on ``device`` in ``dtype``."""

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, dtype)

        return Samples(
            input=self.input.to(device, dtype),
            target=self.target.to(device, dtype),
            condition=move(self.condition),
            truth=move(self.truth),
        )

    def select(self, index: Tensor) -> Samples:
        """The samples ``index`` (a [k] index tensor) of this batch."""

        def pick(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[index]

        return Samples(
            input=self.input[index],
            target=self.target[index],
            condition=pick(self.condition),
            truth=pick(self.truth),
        )


class Inversion(StaticProblem):
    """A problem whose inverse a network learns (see the module docstring).

    Subclasses set the shapes and implement :meth:`sample` and :meth:`forward`; those
    with an (analytic or numerical) inverse simulator also implement :meth:`inverse`.
    ``differentiable = False`` declares a P that autograd cannot differentiate (SIP then
    needs :meth:`inverse`, HIG is refused).
    """

    fields: ClassVar[tuple[str, ...]] = ("x",)
    default_solver = None
    #: one sample's unknowns x, outputs y and network input
    x_shape: ClassVar[tuple[int, ...]]
    y_shape: ClassVar[tuple[int, ...]]
    input_shape: ClassVar[tuple[int, ...]]
    #: P is differentiable by autograd (torch.func): gradients, Jacobians
    differentiable: ClassVar[bool] = True

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator) -> Samples:
        """``n`` samples drawn with ``generator``, float64."""

    @abstractmethod
    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """y = P(x; c): [B, *x_shape] (and the condition [B, ...]) -> [B, *y_shape]."""

    def inverse(  # type: ignore[override]
        self, y: Tensor, x0: Tensor, condition: Tensor | None = None
    ) -> Tensor:
        """The local inverse simulator P^-1(y; x0, c): [B, *y_shape] -> [B, *x_shape], the
        preimage of y nearest x0. Optional (``has_inverse``)."""
        raise PbdlError(
            f"problem '{self.name}' has no inverse simulator P^-1(y; x0) (Problem.inverse)"
        )

    @property
    def has_inverse(self) -> bool:
        return type(self).inverse is not Inversion.inverse

    def correct(self, x: Tensor, samples: Samples) -> Tensor:
        """A correction of the network's x [B, *x_shape] before the physics (e.g. the heat
        problem's optional mean correction); default: none. Must be differentiable."""
        return x

    def loss_y(self, y: Tensor, target: Tensor) -> Tensor:
        """The per-sample loss L_y(y, y*) = 1/2 |y - y*|^2: [B, *y_shape] -> [B]."""
        return 0.5 * (y - target).flatten(1).square().sum(1)

    def loss_x(self, x: Tensor, truth: Tensor) -> Tensor:
        """The per-sample x-space error 1/2 |x - x*|^2 (logged where x* is known): [B]."""
        return 0.5 * (x - truth).flatten(1).square().sum(1)

    def test_samples(self) -> Samples:
        """The fixed samples ``pbdl evaluate`` scores, drawn once per problem object
        (:meth:`draw_test_samples`): predict, reference and metrics share them."""
        cached = self.__dict__.get("_test_samples")
        if cached is None:
            cached = self.__dict__["_test_samples"] = self.draw_test_samples()
        return cached

    def draw_test_samples(self) -> Samples:
        """Draw the test samples (default: 256 with a seed of their own)."""
        from pbdl_cli.utils.seeding import generator

        return self.sample(256, generator(self.name, "test"))

    @property
    def grid(self) -> Grid:
        """x as ``len(x_shape) - 1`` spatial axes after a channel axis for grids
        (x_shape = (C, *spatial)), or one axis of its components for vectors."""
        if len(self.x_shape) == 1:
            n = self.x_shape[0]
            return Grid(lower=(0.0,), upper=(float(n),), shape=(n,), bc="none")
        spatial = self.x_shape[1:]
        return Grid(
            lower=(0.0,) * len(spatial),
            upper=tuple(float(s) for s in spatial),
            shape=spatial,
            bc="periodic",
        )

    def as_prediction(self, x: Tensor) -> Tensor:
        """x [B, *x_shape] as a prediction [B, 1, C, *spatial]."""
        if len(self.x_shape) == 1:
            return x[:, None, None]
        return x[:, None]

    def from_prediction(self, prediction: Tensor) -> Tensor:
        """A prediction [B, 1, C, *spatial] as x [B, *x_shape]."""
        return prediction.reshape(prediction.shape[0], *self.x_shape)

    def sample_params(self, n: int, generator: torch.Generator) -> Params:
        """No physical parameters."""
        return {}

    def initial_state(self, params: Params, generator: torch.Generator) -> Tensor:
        raise PbdlError(f"problem '{self.name}' is an inversion: it has nothing to simulate")

    def metrics(self, prediction: Tensor, params: Params) -> dict[str, float]:
        """Of predictions x [B, 1, C, *spatial] for :meth:`test_samples`: the mean
        ``y_loss`` (L_y of P(x) against y*) and, where x* is known, the mean ``x_loss``."""
        test = self.test_samples()
        x = self.from_prediction(prediction.to(torch.float64))
        with torch.no_grad():
            y = self.forward(x, test.condition)
            out = {"y_loss": float(self.loss_y(y, test.target).mean())}
            if test.truth is not None:
                out["x_loss"] = float(self.loss_x(x, test.truth).mean())
        return out

    @property
    def x_size(self) -> int:
        """Entries of one sample's x."""
        return math.prod(self.x_shape)

    @property
    def y_size(self) -> int:
        """Entries of one sample's y."""
        return math.prod(self.y_shape)
