"""``score``: denoising score matching with Langevin sampling (PBDL book ch. 23; Vincent
2011, "A connection between score matching and denoising autoencoders"; Song & Ermon
2019, "Generative modeling by estimating gradients of the data distribution").

Training (eq. 23.2). A pair (y, c) gets a noise level sigma and z ~ N(0, I); the noisy
sample y~ = y + sigma z has the kernel score grad log p_sigma(y~ | y) = -(y~ - y) / sigma^2
= -z / sigma, which the network s_theta(y~, sigma, c) regresses:

    L = mean over the batch of lambda(sigma) sum over the sample's entries (s_theta + z / sigma)^2

with lambda = 1 (``weighting=none``, the book's) or sigma^2 (``sigma2``, Song & Ermon's
choice, which gives every level the same scale). The minimizer is the score of the noised
distribution p_sigma = p * N(0, sigma^2 I), and the minimum is not zero: the target's
variance around its conditional mean stays,

    L* = lambda (D / sigma^2 - E_{p_sigma} |grad log p_sigma|^2),

e.g. lambda D (1 / sigma^2 - 1 / (s^2 + sigma^2)) for p = N(m, s^2 I) (D entries per
sample). For the book's mixture at sigma = 0.1 that is 195.2: its printed losses, 192-198,
are flat from the first epoch because they are almost all this floor.

Noise levels (``sigmas``): one (the book's 0.1, sampled by plain Langevin) or several,
strictly decreasing (the book's annealed list 4, 2, 1, 0.5, 0.2, 0.01). Every epoch pairs
each training sample with every level once, in a fresh random order, as the book's
``AnnealedDenoisingScoreMatchingDataset`` does (n_train x L items, ceil(n_train L /
batch_size) steps per epoch); the noise of step s comes from (seed, "noise", s).

Network input: [y, sigma, c] (:meth:`GenerativeMethod.model_input` with sigma as the
"time") with one level too: the book's single-sigma network has no sigma input, but a
constant input column only shifts the first layer's bias (the same functions, 128 more
weights at width 128), and one layout serves both modes.

Validation (``val/...``): every held-out sample at every level with fixed noise:
``loss`` (mean over the levels, the expected epoch loss); where the problem knows the
noised score (:meth:`~pbdl_cli.problems.distribution.Distribution.noised_score`, e.g.
``gaussian_mixture``) also ``loss_exact`` (what the exact score scores on the same
draws: the floor L*), ``excess = loss - loss_exact`` (an estimate of the weighted Fisher
divergence E |s_theta - grad log p_sigma|^2) and ``score_rel``, the relative RMS error
sqrt(E |s_theta - grad log p_sigma|^2 / E |grad log p_sigma|^2) at the smallest level (with
several levels also ``score_rel_<sigma>`` for each).

Samplers (:mod:`pbdl_cli.generative.langevin`):

- ``langevin`` (ch. 23.3, eq. 23.3): ``steps`` (default ``langevin_steps`` = 500) of
  y += eps s_theta(y, sigma_L, c) + sqrt(2 eps) z with eps = ``langevin_eps`` (0.01), at the
  smallest level sigma_L; one evaluation per step.
- ``annealed_langevin`` (ch. 23.4; Song & Ermon Alg. 1): at each level sigma_j, largest
  first, ``steps`` (default ``annealed_steps`` = 150) steps with alpha_j = eps
  (sigma_j / sigma_L)^2, eps = ``annealed_eps`` (1e-5); needs two levels or more;
  ``denoise`` ends with one Tweedie step y += sigma_L^2 s_theta(y, sigma_L).

Both start from n points uniform in the box [-b, b]^D (b = ``langevin_box`` 5 or
``annealed_box`` 10): the book starts from a regular 35 x 35 grid on these boxes, and a
uniform draw is its counterpart for any number of samples. The default sampler is
``langevin`` with one level and ``annealed_langevin`` with several.

Shapes: samples y [B, D] (model=mlp, input [y, sigma, c]) or [B, C, *spatial] (a grid
model, sigma as a constant channel), as every
:class:`~pbdl_cli.methods.generative.GenerativeMethod`.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import math
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.generative.common import Sampled, StepCallback, batch_vector, normal_like, per_sample
from pbdl_cli.generative.langevin import annealed_langevin, langevin
from pbdl_cli.methods.base import METHODS
from pbdl_cli.methods.generative import CHUNK, GenerativeConfig, GenerativeMethod
from pbdl_cli.problems.distribution import Draws
from pbdl_cli.utils.seeding import generator


class Weighting(str, enum.Enum):
    none = "none"  # lambda = 1 (the book's)
    sigma2 = "sigma2"  # lambda = sigma^2 (Song & Ermon 2019)


@dataclasses.dataclass
class ScoreConfig(GenerativeConfig):
    """Options of ``score`` (``method.<key>``; the rest as every probabilistic method).

    Attributes:
        sigmas: the noise levels, strictly decreasing (book: [0.1]; annealed: [4, 2, 1,
            0.5, 0.2, 0.01]).
        weighting: none (lambda = 1, the book's) or sigma2 (lambda = sigma^2).
        langevin_eps, langevin_steps, langevin_box: plain Langevin's step eps, its default
            number of steps and the half-width of its uniform start box (0.01, 500, 5).
        annealed_eps, annealed_steps, annealed_box: annealed Langevin's eps (alpha_j =
            eps (sigma_j / sigma_L)^2), default steps per level and start box (1e-5,
            150, 10).
        denoise: end annealed Langevin with one Tweedie step y += sigma_L^2 s_theta.
    """

    sigmas: list[float] = dataclasses.field(default_factory=lambda: [0.1])
    weighting: Weighting = Weighting.none
    langevin_eps: float = 0.01
    langevin_steps: int = 500
    langevin_box: float = 5.0
    annealed_eps: float = 1e-5
    annealed_steps: int = 150
    annealed_box: float = 10.0
    denoise: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.weighting = Weighting(self.weighting)
        levels = [float(s) for s in self.sigmas]
        if not levels or not all(math.isfinite(s) and s > 0 for s in levels):
            raise ValueError(f"sigmas must be a non-empty list of levels > 0, got {self.sigmas}")
        if any(a <= b for a, b in itertools.pairwise(levels)):
            raise ValueError(f"sigmas must decrease strictly (largest first), got {levels}")
        self.sigmas = levels
        numbers = (self.langevin_eps, self.langevin_box, self.annealed_eps, self.annealed_box)
        if not all(math.isfinite(v) and v > 0 for v in numbers):
            raise ValueError(
                "langevin_eps, langevin_box, annealed_eps and annealed_box must be > 0"
            )
        if self.langevin_steps < 1 or self.annealed_steps < 1:
            raise ValueError("langevin_steps and annealed_steps must be >= 1")


@METHODS.register("score")
class Score(GenerativeMethod):
    """Denoising score matching; (annealed) Langevin sampling (module docstring)."""

    Config = ScoreConfig
    config: ScoreConfig
    samplers: ClassVar[tuple[str, ...]] = ("langevin", "annealed_langevin")

    @property
    def levels(self) -> list[float]:
        """sigma_1 > ... > sigma_L."""
        return list(self.config.sigmas)

    @property
    def default_sampler(self) -> str:
        return "annealed_langevin" if len(self.levels) > 1 else "langevin"

    def check_sampler(self, name: str) -> str:
        name = super().check_sampler(name)
        if name == "annealed_langevin" and len(self.levels) < 2:
            raise PbdlError(
                f"sampler=annealed_langevin anneals over noise levels, but method.sigmas="
                f"{self.levels} has one; give several (e.g. [4.0,2.0,1.0,0.5,0.2,0.01]) or "
                "use sampler=langevin"
            )
        return name

    # data: every sample at every level once per epoch ------------------------------------
    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.config.n_train * len(self.levels) / self.config.batch_size)

    def items(self, step: int) -> Tensor:
        """The (sample, level) items of step ``step``: indices i into n_train x L (sample
        i // L at level i % L), one random order per epoch from (seed, "batches", epoch)."""
        c = self.config
        count = len(self.train_set) * len(self.levels)
        epoch, k = divmod(step, self.steps_per_epoch)
        if self._epoch is None or self._epoch[0] != epoch:
            order = torch.randperm(count, generator=generator(c.seed, "batches", epoch))
            self._epoch = (epoch, order.to(self.device))
        return self._epoch[1][k * c.batch_size : (k + 1) * c.batch_size]

    def batch(self, step: int) -> Draws:
        """The training samples of step ``step`` (each item's sample; see :meth:`items`)."""
        return self.train_set.select(self.items(step) // len(self.levels))

    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        items = self.items(step)
        L = len(self.levels)
        drawn = self.train_set.select(items // L)
        noise = generator(self.config.seed, "noise", step)
        return self.sample_loss(model, drawn.y, drawn.condition, noise, levels=items % L)

    # the objective ------------------------------------------------------------------------
    def sigma_of(self, levels: Tensor, like: Tensor) -> Tensor:
        """The noise levels [B] of level indices [B], in ``like``'s dtype and device."""
        table = torch.tensor(self.levels, dtype=like.dtype, device=like.device)
        return table[levels.to(like.device)]

    def weight(self, sigma: Tensor) -> Tensor:
        """lambda(sigma) [B]: 1 or sigma^2."""
        return (
            sigma.square() if self.config.weighting is Weighting.sigma2 else torch.ones_like(sigma)
        )

    def perturb(self, y: Tensor, sigma: Tensor, noise: torch.Generator) -> tuple[Tensor, Tensor]:
        """y~ = y + sigma z and the target -z / sigma (both y's shape), z from ``noise``."""
        z = normal_like(y, noise)
        s = per_sample(sigma, y)
        return y + s * z, -z / s

    def sample_loss(
        self,
        model: nn.Module,
        y: Tensor,
        condition: Tensor | None,
        noise: torch.Generator,
        *,
        levels: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """The DSM loss (module docstring) of samples y [B, *sample_shape]; each at level
        ``levels`` [B] (indices into ``sigmas``; default: uniform draws from ``noise``)."""
        if levels is None:  # one level: no draw, so that z is the generator's first
            size = (len(y),)
            one = len(self.levels) == 1
            levels = (
                torch.zeros(size, dtype=torch.long)
                if one
                else torch.randint(len(self.levels), size, generator=noise)
            )
        sigma = self.sigma_of(levels, y)
        noisy, target = self.perturb(y, sigma, noise)
        predicted = model(self.model_input(noisy, sigma, condition))
        per = (predicted - target).square().flatten(1).sum(1)
        return {"loss": (self.weight(sigma) * per).mean()}

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Every validation sample at every level, the same noise each time (module
        docstring: ``loss``, and ``loss_exact``, ``excess``, ``score_rel`` where the
        problem knows its noised score)."""
        noise = generator(self.config.seed, "val_noise")
        n = len(self.val_set)
        per_level: list[dict[str, float]] = []
        with torch.no_grad():
            for sigma in self.levels:
                sums: dict[str, float] = {}
                for start in range(0, n, CHUNK):
                    chunk = self.val_set.select(torch.arange(start, min(start + CHUNK, n)))
                    for k, v in self._level_sums(
                        model, chunk.y, chunk.condition, sigma, noise
                    ).items():
                        sums[k] = sums.get(k, 0.0) + v
                per_level.append(sums)
        out = {"loss": sum(s["loss"] for s in per_level) / (n * len(self.levels))}
        if "exact" not in per_level[0]:
            return out
        out["loss_exact"] = sum(s["exact"] for s in per_level) / (n * len(self.levels))
        out["excess"] = out["loss"] - out["loss_exact"]
        rel = [math.sqrt(s["error"] / max(s["norm"], 1e-300)) for s in per_level]
        out["score_rel"] = rel[-1]
        if len(self.levels) > 1:
            out |= {f"score_rel_{sigma:g}": r for sigma, r in zip(self.levels, rel, strict=True)}
        return out

    def _level_sums(
        self,
        model: nn.Module,
        y: Tensor,
        condition: Tensor | None,
        sigma: float,
        noise: torch.Generator,
    ) -> dict[str, float]:
        """Sums over the samples y [n, ...] at one level: the weighted loss and, where the
        exact noised score s* is known, its loss, sum |s_theta - s*|^2 and sum |s*|^2."""
        sigmas = batch_vector(sigma, y)
        noisy, target = self.perturb(y, sigmas, noise)
        predicted = model(self.model_input(noisy, sigmas, condition))
        lam = self.weight(sigmas)
        out = {"loss": float((lam * (predicted - target).square().flatten(1).sum(1)).sum())}
        exact = self.distribution.noised_score(noisy.double(), sigma, _double(condition))
        if exact is None:
            return out
        exact = exact.to(predicted)
        out["exact"] = float((lam * (exact - target).square().flatten(1).sum(1)).sum())
        out["error"] = float((predicted - exact).square().sum())
        out["norm"] = float(exact.square().sum())
        return out

    # sampling -----------------------------------------------------------------------------
    def score_fn(
        self, model: nn.Module, condition: Tensor | None
    ) -> Callable[[Tensor, Tensor], Tensor]:
        """s(y [B, ...], sigma [B]) -> s_theta [B, ...] at one condition [*condition_shape]
        (or None), shared by every sample."""

        def score(x: Tensor, sigma: Tensor) -> Tensor:
            c = None if condition is None else condition[None].expand(len(x), *condition.shape)
            return model(self.model_input(x, sigma, c))

        return score

    def start(self, n: int, box: float, generator: torch.Generator) -> Tensor:
        """n points uniform in [-box, box]^sample_shape, on the method's device."""
        u = torch.rand(
            (n, *self.sample_shape), generator=generator, dtype=self.dtype, device=generator.device
        )
        return ((2 * u - 1) * box).to(self.device)

    def expected_steps(self, sampler: str, steps: int) -> int:
        """Langevin: its steps; annealed: one callback per level (+1 with ``denoise``)."""
        if sampler == "langevin":
            return steps or self.config.langevin_steps
        return len(self.levels) + int(self.config.denoise)

    def sample(
        self,
        model: nn.Module,
        n: int,
        *,
        condition: Tensor | None,
        sampler: str,
        steps: int,
        generator: torch.Generator,
        callback: StepCallback | None = None,
    ) -> Sampled:
        c = self.config
        sampler = self.check_sampler(sampler)
        score = self.score_fn(model, condition)
        if sampler == "langevin":
            last = self.levels[-1]
            return langevin(
                lambda x: score(x, batch_vector(last, x)),
                self.start(n, c.langevin_box, generator),
                step_size=c.langevin_eps,
                steps=steps or c.langevin_steps,
                generator=generator,
                callback=callback,
            )
        return annealed_langevin(
            score,
            self.start(n, c.annealed_box, generator),
            self.levels,
            step_size=c.annealed_eps,
            steps=steps or c.annealed_steps,
            denoise=c.denoise,
            generator=generator,
            callback=callback,
        )


def _double(condition: Tensor | None) -> Tensor | None:
    return None if condition is None else condition.double()
