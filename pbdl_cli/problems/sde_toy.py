"""The SMDP toy SDE of the PBDL book (ch. 28): quadratically decaying trajectories with noise.

    dx = -lambda1 sign(x) x^2 dt + lambda2 dW,    x(0) = (-1)^n x0,    t in [0, t_end]

with lambda1 = 7, lambda2 = 0.03, x0 = 1 and t_end = 10 (book eq. 28.1). Trajectory n of a
split starts at (-1)^n x0, so the initial distribution p_0 puts probability 1/2 on each of
+-x0; the drift pulls both towards 0, where the paths end in a narrow band. The reverse
problem (learning p_0 from the noisy end states, :mod:`pbdl_cli.methods.smdp`) runs the
reverse-time SDE

    dx = -[lambda1 sign(x) x^2 - lambda2^2 grad_x log p_t(x)] dt + lambda2 dw    (t: 10 -> 0)

One channel ``x`` on a grid without spatial axes: states [B, 1], trajectories [B, T, 1].
``pbdl generate problem=sde_toy`` integrates it with :mod:`pbdl_cli.solvers.sde_euler`
(Euler-Maruyama, internal steps of at most 0.01, 500 frames at linspace(0, 10, 500) as
in the book: every 10 / 499 ~ 0.02, three Euler-Maruyama steps of 0.0067 each); each
trajectory's Brownian path comes from its own seed (the ``noise_seed`` parameter).

As a :class:`~pbdl_cli.problems.distribution.Distribution` the problem is p_0 itself:
unconditional samples y [n, 1] equal to +-x0 with probability 1/2 each, two modes
(label 1 for +x0, 0 for -x0), what ``pbdl sample`` scores a trained ``smdp`` against.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from pbdl_cli.problems.base import PROBLEMS, Grid, Params, PluginConfig, Problem
from pbdl_cli.problems.distribution import Distribution, Draws

#: noise seeds are integers below 2^24, exact in float32 (the dtype params may travel in)
NOISE_SEED_LIMIT = 2**23


@dataclasses.dataclass
class SdeToyConfig(PluginConfig):
    """Configuration of :class:`SdeToy` (``problem.<key>``).

    Attributes:
        lambda1: strength of the drift -lambda1 sign(x) x^2.
        lambda2: diffusion coefficient g (additive noise lambda2 dW).
        x0: magnitude of the initial values; trajectory n starts at (-1)^n x0.
        t_end: final time.
        frames: stored frames at linspace(0, t_end, frames) (the book's 500: an output
            interval of 10 / 499 ~ 0.02); the solver steps finer (``solver.dt``).
    """

    lambda1: float = 7.0
    lambda2: float = 0.03
    x0: float = 1.0
    t_end: float = 10.0
    frames: int = 500

    def __post_init__(self) -> None:
        if self.lambda1 < 0 or self.lambda2 < 0:
            raise ValueError("lambda1 and lambda2 must be >= 0")
        if self.x0 <= 0:
            raise ValueError("x0 must be > 0 (trajectories start at +-x0)")
        if self.t_end <= 0 or self.frames < 2:
            raise ValueError("need t_end > 0 and frames >= 2")


def sign_quadratic_drift(x: Tensor, lambda1: Tensor | float) -> Tensor:
    """f(x) = -lambda1 sign(x) x^2 (book eq. 28.1), elementwise; ``lambda1`` broadcasts."""
    return -lambda1 * torch.sign(x) * x * x


@PROBLEMS.register("sde_toy")
class SdeToy(Distribution, Problem):
    """dx = -lambda1 sign(x) x^2 dt + lambda2 dW from +-x0 (PBDL book ch. 28, SMDP toy)."""

    Config = SdeToyConfig
    config: SdeToyConfig
    fields = ("x",)
    default_solver = "sde_euler"
    sample_shape = (1,)
    condition_shape = None

    @property
    def grid(self) -> Grid:
        return Grid(lower=(), upper=(), shape=(), bc="none")

    @property
    def t_end(self) -> float:
        return self.config.t_end

    @property
    def dt(self) -> float:
        return self.config.t_end / (self.config.frames - 1)

    def slug(self) -> str:
        c = self.config
        return f"l{c.lambda1:g}_g{c.lambda2:g}"

    # -- the SDE ----------------------------------------------------------------------------
    def drift(self, x: Tensor, params: Params | None = None) -> Tensor:
        """f(x) [B, ...] of states x [B, ...]; lambda1 per trajectory from ``params`` [B],
        else the config's."""
        if params is None:
            return sign_quadratic_drift(x, self.config.lambda1)
        lam = params["lambda1"].to(x.device, x.dtype).view(-1, *([1] * (x.dim() - 1)))
        return sign_quadratic_drift(x, lam)

    def diffusion(self, x: Tensor, params: Params | None = None) -> Tensor:
        """g [B, 1, ...] (broadcasts over x [B, ...]): the additive noise amplitude lambda2."""
        if params is None:
            return torch.full((x.shape[0], *([1] * (x.dim() - 1))), self.config.lambda2).to(x)
        return params["lambda2"].to(x.device, x.dtype).view(-1, *([1] * (x.dim() - 1)))

    # -- parameters and initial states ------------------------------------------------------
    def sample_params(self, n: int, generator: torch.Generator) -> Params:
        """lambda1, lambda2 (constants), x0 = (-1)^i x0 and noise_seed = base + i for the
        trajectories i < n ([n] float64 each; ``base`` drawn from ``generator``)."""
        c = self.config
        index = torch.arange(n, dtype=torch.float64)
        base = int(torch.randint(0, NOISE_SEED_LIMIT, (1,), generator=generator))
        return {
            "lambda1": torch.full((n,), c.lambda1, dtype=torch.float64),
            "lambda2": torch.full((n,), c.lambda2, dtype=torch.float64),
            "x0": c.x0 * (1.0 - 2.0 * (index % 2)),
            "noise_seed": base + index,
        }

    def initial_state(self, params: Params, generator: torch.Generator) -> Tensor:
        """x(0) = params["x0"]: [B, 1] float64."""
        return params["x0"].to(torch.float64)[:, None].clone()

    # -- the distribution p_0 ---------------------------------------------------------------
    def draw(self, n: int, generator: torch.Generator) -> Draws:
        """``n`` draws of p_0 (no condition)."""
        return Draws(self.reference_samples(n, generator))

    def reference_samples(
        self, n: int, generator: torch.Generator, condition: Tensor | None = None
    ) -> Tensor:
        """``n`` draws of p_0: +-x0 with probability 1/2 each, [n, 1] float64."""
        heads = torch.rand(n, generator=generator, dtype=torch.float64) < 0.5
        return torch.where(heads, 1.0, -1.0)[:, None] * self.config.x0

    def mode_labels(self, y: Tensor, condition: Tensor | None = None) -> Tensor:
        """1 for samples above 0 (the +x0 mode), 0 otherwise: int64 [n]."""
        return (y.reshape(len(y), -1)[:, 0] > 0).long()

    def mode_weights(self, condition: Tensor | None = None) -> Tensor:
        """[0.5, 0.5]: the weights of the -x0 and +x0 modes."""
        return torch.tensor([0.5, 0.5], dtype=torch.float64)

    def metrics(self, prediction: Tensor, params: Params) -> dict[str, float]:
        """The :meth:`sample_metrics` of frame 0 of predicted paths [B, T, 1] (the
        samples of p_0 that a sampler's paths end in), plus ``mode_weight_error``: the
        largest |share - 1/2| of the two modes."""
        y = prediction[:, 0]
        values = self.sample_metrics(y)
        values["mode_weight_error"] = abs(values["positive_fraction"] - 0.5)
        return values

    def sample_metrics(self, y: Tensor, condition: Tensor | None = None) -> dict[str, float]:
        """``mode_distance``: mean ||y| - x0| / x0; ``near_mode``: the fraction of samples
        with ||y| - x0| < 0.2 x0; ``positive_fraction``: the share of samples above 0."""
        y = y.reshape(len(y), -1)[:, 0].double()
        distance = (y.abs() - self.config.x0).abs() / self.config.x0
        return {
            "mode_distance": float(distance.mean()),
            "near_mode": float((distance < 0.2).double().mean()),
            "positive_fraction": float((y > 0).double().mean()),
        }
