"""The PBDL book's teaser (ch. 1-2, "A teaser example"): invert y^2 = x.

The forward operator is P(y) = y^2 on x in [0, 1]; we look for a function f with
P(f(x)) = x. Two branches solve it, f = +sqrt(x) and f = -sqrt(x). Supervised data that
mix both (``observations``: y = ±sqrt(x), each sign with probability 1/2) teach a
regression network their average f ~ 0, which solves neither; a physical loss
|P(f(x)) - x|^2 (``pde_residual``) lets the network settle on one branch.

A static problem (t_end = 0: one output frame at t = 0): one channel ``y`` on ``nx``
cells of [0, 1], predictions [B, 1, 1, nx]. There is no unique reference solution;
``metrics`` measure the distance to the nearest branch instead.

The generative half of the teaser (ch. 2): the same data read as a conditional
distribution p(y | x) = 1/2 delta(y - sqrt x) + 1/2 delta(y + sqrt x), the
:class:`~pbdl_cli.problems.distribution.Distribution` a probabilistic method learns
(``method=flow_matching``): samples y [n, 1] with the condition x [n, 1], x ~ U[0, 1].
A good model puts every sample near a branch and about half on each; the test conditions
are ``test_x``, the modes are the branches (label 1: +sqrt x).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from pbdl_cli.errors import PbdlError
from pbdl_cli.problems.base import PROBLEMS, Grid, Observations, Params, StaticProblem
from pbdl_cli.problems.distribution import Distribution, Draws
from pbdl_cli.registry import PluginConfig
from pbdl_cli.utils.seeding import generator


@dataclasses.dataclass
class ParabolaConfig(PluginConfig):
    """Configuration of :class:`Parabola` (``problem.<key>``).

    Attributes:
        nx: cells of the output grid on [0, 1].
        n_data: number of observations (x, ±sqrt(x)).
        seed: seed of their positions and signs.
        test_x: the conditions x at which probabilistic methods are tested (in [0, 1]).
    """

    nx: int = 200
    n_data: int = 10000
    seed: int = 0
    test_x: list[float] = dataclasses.field(default_factory=lambda: [0.1, 0.25, 0.5, 0.75, 1.0])

    def __post_init__(self) -> None:
        if self.nx < 1 or self.n_data < 1:
            raise ValueError("nx and n_data must be >= 1")
        if not self.test_x or not all(0.0 <= float(x) <= 1.0 for x in self.test_x):
            raise ValueError(f"test_x must list values in [0, 1], got {self.test_x}")


@PROBLEMS.register("parabola")
class Parabola(StaticProblem, Distribution):
    """Find f with f(x)^2 = x on [0, 1]: two valid branches ±sqrt(x) (PBDL book ch. 2)."""

    Config = ParabolaConfig
    config: ParabolaConfig
    fields = ("y",)
    default_solver = None
    sample_shape = (1,)
    condition_shape = (1,)
    condition_names = ("x",)

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

    # -- the generative half: p(y | x), two branches ---------------------------------------
    def draw(self, n: int, generator: torch.Generator) -> Draws:
        """``n`` pairs: x ~ U[0, 1], y = s sqrt(x) with s = ±1 at probability 1/2; y and
        the condition x both [n, 1] float64."""
        x = torch.rand(n, 1, generator=generator, dtype=torch.float64)
        sign = torch.where(torch.rand(n, 1, generator=generator) < 0.5, -1.0, 1.0)
        return Draws(sign.double() * x.sqrt(), x)

    def test_conditions(self) -> Tensor:
        """``test_x`` as [M, 1]."""
        return torch.tensor(self.config.test_x, dtype=torch.float64)[:, None]

    def reference_samples(
        self, n: int, generator: torch.Generator, condition: Tensor | None = None
    ) -> Tensor:
        """``n`` draws of p(y | x): ±sqrt(x), each sign with probability 1/2, [n, 1]."""
        assert condition is not None
        sign = torch.where(torch.rand(n, 1, generator=generator) < 0.5, -1.0, 1.0)
        return sign.double() * float(condition.reshape(())) ** 0.5

    def parse_condition(self, values: list[float]) -> Tensor:
        """One x in [0, 1] (``condition=[0.5]``)."""
        x = super().parse_condition(values)
        if not 0.0 <= float(x) <= 1.0:
            raise PbdlError(f"condition= is x in [0, 1] for the parabola, got {values}")
        return x

    def mode_labels(self, y: Tensor, condition: Tensor | None = None) -> Tensor:
        """1 for samples closer to +sqrt(x) (y > 0), else 0: int64 [n]."""
        return (y.reshape(len(y)) > 0).long()

    def mode_weights(self, condition: Tensor | None = None) -> Tensor:
        """Both branches are equally likely: [0.5, 0.5] (label 0: -sqrt x, 1: +sqrt x)."""
        return torch.tensor([0.5, 0.5], dtype=torch.float64)

    def sample_metrics(self, y: Tensor, condition: Tensor | None = None) -> dict[str, float]:
        """At one x: ``branch_distance`` = mean_i min |y_i -+ sqrt x| and
        ``near_branch`` = the share of samples within 0.1 sqrt(x) + 0.02 of a branch."""
        assert condition is not None
        root = float(condition.reshape(())) ** 0.5
        y = y.reshape(len(y)).double()
        nearest = torch.minimum((y - root).abs(), (y + root).abs())
        tolerance = 0.1 * root + 0.02
        return {
            "branch_distance": float(nearest.mean()),
            "near_branch": float((nearest <= tolerance).double().mean()),
        }
