"""The PBDL book's teaser (ch. 1-2, "A teaser example"): invert y^2 = x.

The forward operator is P(y) = y^2 on x in [0, 1]; we look for a function f with
P(f(x)) = x. Two branches solve it, f = +sqrt(x) and f = -sqrt(x). Supervised data that
mix both (``observations``: y = ±sqrt(x), each sign with probability 1/2) teach a
regression network their average f ~ 0, which solves neither; a physical loss
|P(f(x)) - x|^2 (``pde_residual``) lets the network settle on one branch.

A static problem (t_end = 0: one output frame at t = 0): one channel ``y`` on ``nx``
cells of [0, 1], predictions [B, 1, 1, nx]. There is no unique reference solution;
``metrics`` measure the distance to the nearest branch instead.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from pbdl_cli.errors import PbdlError
from pbdl_cli.problems.base import PROBLEMS, Grid, Observations, Params, StaticProblem
from pbdl_cli.registry import PluginConfig
from pbdl_cli.utils.seeding import generator


@dataclasses.dataclass
class ParabolaConfig(PluginConfig):
    """Configuration of :class:`Parabola` (``problem.<key>``).

    Attributes:
        nx: cells of the output grid on [0, 1].
        n_data: number of observations (x, ±sqrt(x)).
        seed: seed of their positions and signs.
    """

    nx: int = 200
    n_data: int = 10000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.nx < 1 or self.n_data < 1:
            raise ValueError("nx and n_data must be >= 1")


@PROBLEMS.register("parabola")
class Parabola(StaticProblem):
    """Find f with f(x)^2 = x on [0, 1]: two valid branches ±sqrt(x) (PBDL book ch. 2)."""

    Config = ParabolaConfig
    config: ParabolaConfig
    fields = ("y",)
    default_solver = None

    @property
    def grid(self) -> Grid:
        return Grid(lower=(0.0,), upper=(1.0,), shape=(self.config.nx,), bc="none")

    def slug(self) -> str:
        return f"parabola_n{self.config.n_data}"

    def sample_params(self, n: int, generator: torch.Generator) -> Params:
        """No physical parameters."""
        return {}

    def initial_state(self, params: Params, generator: torch.Generator) -> Tensor:
        raise PbdlError("problem 'parabola' is static: it has no initial state to simulate")

    def pde_residual(self, u: Tensor, x: Tensor, t: Tensor | None, params: Params) -> Tensor:
        """P(f(x)) - x = u^2 - x: [N, 1] (no derivatives; ``t`` is unused)."""
        return u.square() - x

    def observations(self, params: Params) -> Observations:
        """``n_data`` points x ~ U[0, 1] with y = s sqrt(x), s = ±1 with probability 1/2:
        x, t (zeros), u [N, 1] float64."""
        c = self.config
        g = generator(c.seed, "parabola")
        x = torch.rand(c.n_data, 1, generator=g, dtype=torch.float64)
        sign = torch.where(torch.rand(c.n_data, 1, generator=g) < 0.5, -1.0, 1.0)
        return Observations(x=x, t=torch.zeros_like(x), u=sign.double() * x.sqrt())

    def metrics(self, prediction: Tensor, params: Params) -> dict[str, float]:
        """Distances of a prediction f [B, 1, 1, nx] to the nearest branch on the grid:

        residual = mean |f^2 - x|, branch_error = mean min(|f - sqrt x|, |f + sqrt x|),
        branch_rel_l2 = ||f - nearest branch|| / ||sqrt x||, positive_fraction = share of
        cells closer to +sqrt(x).
        """
        f = prediction.to(torch.float64).reshape(prediction.shape[0], -1)  # [B, X]
        x = self.grid.cell_centres()[None]
        root = x.sqrt()
        plus, minus = (f - root).abs(), (f + root).abs()
        nearest = torch.minimum(plus, minus)
        return {
            "residual": float((f.square() - x).abs().mean()),
            "branch_error": float(nearest.mean()),
            "branch_rel_l2": float(nearest.norm() / root.expand_as(f).norm()),
            "positive_fraction": float((plus < minus).double().mean()),
        }
