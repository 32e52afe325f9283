"""Optimization problems: unknowns x optimized directly through the physics, no network.

min_x L(P(x)) with L(y) = |y - y*|^2 (PBDL book ch. 37, "Simple example comparing
different optimizers"); ``method=optimize`` runs one of the update rules of
:mod:`pbdl_cli.training.updates` on it. The state is x itself: one channel ``x`` on a
"grid" of its n components, one frame (predictions [1, 1, 1, n]).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import torch
from torch import Tensor

from pbdl_cli.errors import PbdlError
from pbdl_cli.problems.base import Grid, Params, StaticProblem


class Optimization(StaticProblem):
    """A problem whose unknowns x [n] are optimized directly (no network, no time):
    min_x L(P(x)) with L(y) = |y - y*|^2 (sum of squares; book ch. 37), from
    :meth:`start`. ``method=optimize`` runs it with one of its update rules; the states
    are x itself (one channel ``x`` on a grid of n components, one frame)."""

    fields = ("x",)
    default_solver = None
    #: the source's step size per update rule (``method.lr=null`` takes it)
    step_sizes: ClassVar[dict[str, float]] = {}

    @abstractmethod
    def start(self) -> Tensor:
        """The initial guess x, float64 [n]."""

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """y = P(x): [..., n] -> [..., m]."""

    @abstractmethod
    def target(self) -> Tensor:
        """The target output y*, float64 [m]."""

    def objective(self, y: Tensor) -> Tensor:
        """L(y) = sum (y - y*)^2 over the last axis: [..., m] -> [...]."""
        return (y - self.target().to(y)).square().sum(-1)

    @property
    def grid(self) -> Grid:
        n = self.start().numel()
        return Grid(lower=(0.0,), upper=(float(n),), shape=(n,), bc="none")

    def sample_params(self, n: int, generator: torch.Generator) -> Params:
        """No physical parameters."""
        return {}

    def initial_state(self, params: Params, generator: torch.Generator) -> Tensor:
        raise PbdlError(f"problem '{self.name}' is an optimization: it has nothing to simulate")

    def metrics(self, prediction: Tensor, params: Params) -> dict[str, float]:
        """Of the optimized x (prediction [B, 1, 1, n], first trajectory): its components
        ``x0``.., the outputs ``y0``.. = P(x), the loss L(P(x)) and the distance |x - x_opt|
        to :meth:`optimum` (where known)."""
        x = prediction.to(torch.float64).reshape(prediction.shape[0], -1)[0]
        y = self.forward(x)
        out = {f"x{i}": float(v) for i, v in enumerate(x)}
        out |= {f"y{i}": float(v) for i, v in enumerate(y)}
        out["loss"] = float(self.objective(y))
        optimum = self.optimum()
        if optimum is not None:
            out["distance"] = float((x - optimum).norm())
        return out

    def optimum(self) -> Tensor | None:
        """The minimizer x [n] where it is known, else None."""
        return None
