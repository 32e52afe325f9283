"""The PBDL book's 2D Gaussian mixture (ch. 22-25): the target of its probabilistic toys.

A mixture of K isotropic Gaussians in R^D,

    p(x) = sum_k w_k N(x; mu_k, s_k I),   sum_k w_k = 1,

with the book's defaults K = 2, D = 2: equal weights, N([0, 0], I) and N([3, 2], 0.25 I)
(standard deviations 1 and 0.5). Everything here is exact: the log-density, the score
grad_x log p(x), samples and the most probable component of a point. Probabilistic
methods (normalizing flows, score matching, DDPM, flow matching) learn p from samples;
these functions are what their results are scored against.

The book's ``GaussianMixture.likelihood`` sums the component densities without the
weights: for its two components that "density" integrates to 2 (:meth:`book_likelihood`
keeps it for comparisons with the book's plots). Its ``score`` is unaffected for equal
weights, since the responsibilities normalize the weights away.

A static problem (no time, no solver, no parameters). A point is one channel ``x`` with
its D components along one axis (as for vector unknowns in
:mod:`pbdl_cli.problems.inversion`): points [B, D], as a prediction [B, 1, 1, D].
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any

import torch
from torch import Tensor

from pbdl_cli.errors import PbdlError
from pbdl_cli.problems.base import PROBLEMS, Grid, Params, StaticProblem
from pbdl_cli.problems.distribution import Distribution, Draws
from pbdl_cli.registry import PluginConfig

#: the book's mixture (ch. 22; reused in ch. 23-25)
BOOK_MEANS = [[0.0, 0.0], [3.0, 2.0]]
BOOK_VARIANCES = [1.0, 0.25]
BOOK_WEIGHTS = [0.5, 0.5]
#: a sample this many standard deviations from every mean is a stray (:meth:`sample_metrics`)
STRAY = 5.0


@dataclasses.dataclass
class GaussianMixtureConfig(PluginConfig):
    """Configuration of :class:`GaussianMixture` (``problem.<key>``).

    Attributes:
        means: mu_k, one list of D coordinates per component (K x D; typed ``list[Any]``
            so that integers pass: OmegaConf does not convert them inside nested lists).
        variances: s_k, the isotropic variance of each component (K values > 0).
        weights: w_k, relative weights (K values > 0), normalized by their sum.
    """

    means: list[Any] = dataclasses.field(default_factory=lambda: [list(m) for m in BOOK_MEANS])
    variances: list[float] = dataclasses.field(default_factory=lambda: list(BOOK_VARIANCES))
    weights: list[float] = dataclasses.field(default_factory=lambda: list(BOOK_WEIGHTS))

    def __post_init__(self) -> None:
        k = len(self.means)
        if k < 1:
            raise ValueError("means must list at least one component")
        numbers = (int, float)
        if not all(
            isinstance(m, list | tuple)
            and all(isinstance(v, numbers) and not isinstance(v, bool) for v in m)
            for m in self.means
        ):
            raise ValueError(f"means must be lists of numbers [[x, y], ...], got {self.means}")
        if len({len(m) for m in self.means}) != 1 or len(self.means[0]) < 1:
            raise ValueError("means must all have the same number (>= 1) of coordinates")
        self.means = [[float(v) for v in m] for m in self.means]
        if len(self.variances) != k or len(self.weights) != k:
            raise ValueError(
                f"variances and weights need one value per component ({k}), "
                f"got {len(self.variances)} and {len(self.weights)}"
            )
        if min(self.variances) <= 0 or min(self.weights) <= 0:
            raise ValueError("variances and weights must be > 0")
        values = [x for m in self.means for x in m] + [*self.variances, *self.weights]
        if not all(math.isfinite(float(x)) for x in values):
            raise ValueError("means, variances and weights must be finite")


@PROBLEMS.register("gaussian_mixture")
class GaussianMixture(StaticProblem, Distribution):
    """A mixture of isotropic Gaussians with exact density, score and samples (book ch. 22-25)."""

    Config = GaussianMixtureConfig
    config: GaussianMixtureConfig
    fields = ("x",)
    default_solver = None

    def __init__(self, config: GaussianMixtureConfig) -> None:
        super().__init__(config)
        #: mu_k [K, D], s_k [K] and w_k [K] (normalized), float64 on the CPU
        self.means = torch.tensor(config.means, dtype=torch.float64)
        self.variances = torch.tensor(config.variances, dtype=torch.float64)
        weights = torch.tensor(config.weights, dtype=torch.float64)
        self.weights = weights / weights.sum()

    @property
    def dim(self) -> int:
        """D, the dimension of a point."""
        return self.means.shape[1]

    @property
    def sample_shape(self) -> tuple[int, ...]:  # type: ignore[override]
        """(D,): a sample is one point."""
        return (self.dim,)

    @property
    def num_components(self) -> int:
        """K, the number of mixture components."""
        return self.means.shape[0]

    @property
    def grid(self) -> Grid:
        """One axis of the D components of a point (no physical space)."""
        return Grid(lower=(0.0,), upper=(float(self.dim),), shape=(self.dim,), bc="none")

    def slug(self) -> str:
        """``gaussian_mixture_k2_d2`` for the book's mixture; other settings add a digest."""
        c = self.config
        tag = f"gaussian_mixture_k{self.num_components}_d{self.dim}"
        weights = self.weights.tolist()  # normalized: [1, 1] and [0.5, 0.5] are the same
        if (c.means, c.variances, weights) == (BOOK_MEANS, BOOK_VARIANCES, BOOK_WEIGHTS):
            return tag
        text = repr((c.means, c.variances, weights)).encode()
        return f"{tag}_{hashlib.sha256(text).hexdigest()[:8]}"

    def sample_params(self, n: int, generator: torch.Generator) -> Params:
        """No physical parameters."""
        return {}

    def initial_state(self, params: Params, generator: torch.Generator) -> Tensor:
        raise PbdlError("problem 'gaussian_mixture' is static: it has no initial state to simulate")

    # -- the distribution ------------------------------------------------------------------
    def _check(self, x: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"points must be [B, {self.dim}], got {list(x.shape)}")

    def _parameters(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """mu [K, D], s [K] and w [K] in the dtype and on the device of ``x``."""
        return self.means.to(x), self.variances.to(x), self.weights.to(x)

    def component_log_densities(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """log N(x; mu_k, s_k I) = -D/2 log(2 pi s_k) - |x - mu_k|^2 / (2 s_k) of every
        component: [B, D] -> [B, K] (no weights). With ``sigma`` (a number or [B]) the
        components of the noised mixture p * N(0, sigma^2 I): variances s_k + sigma^2."""
        self._check(x)
        mu, s, _ = self._parameters(x)
        s = self._noised(s, sigma, x)  # [K] or [B, K]
        sq = (x[:, None, :] - mu[None]).square().sum(-1)  # [B, K]
        return -0.5 * self.dim * torch.log(2 * math.pi * s) - sq / (2 * s)

    @staticmethod
    def _noised(s: Tensor, sigma: Tensor | float, x: Tensor) -> Tensor:
        """The variances s_k + sigma^2: [K] for a number, [B, K] for one sigma per point."""
        if isinstance(sigma, Tensor) and sigma.ndim > 0:
            return s[None] + sigma.to(x).reshape(-1, 1).square()
        return s + float(sigma) ** 2

    def log_density(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """log p(x) = logsumexp_k (log w_k + log N(x; mu_k, s_k I)): [B, D] -> [B].

        Normalized: exp(log p) integrates to 1 (the book's ``likelihood`` does not, see
        :meth:`book_likelihood`). Differentiable; computed in the dtype of ``x``.
        """
        _, _, w = self._parameters(x)
        return torch.logsumexp(w.log() + self.component_log_densities(x), dim=1)

    def responsibilities(self, x: Tensor) -> Tensor:
        """The posterior component probabilities r_k(x) = w_k N_k(x) / p(x): [B, D] ->
        [B, K], rows summing to 1."""
        _, _, w = self._parameters(x)
        return torch.softmax(w.log() + self.component_log_densities(x), dim=1)

    def score(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """The exact score grad_x log p(x) = sum_k r_k(x) (mu_k - x) / s_k: [B, D] -> [B, D]
        (the book's ch. 23 formula, with normalized responsibilities and no epsilon).

        With ``sigma`` (a number or [B]): the score of the noised mixture
        p_sigma = p * N(0, sigma^2 I), again a mixture, with variances s_k + sigma^2 (what
        denoising score matching at noise level sigma learns)."""
        mu, s, w = self._parameters(x)
        s = self._noised(s, sigma, x)
        r = torch.softmax(w.log() + self.component_log_densities(x, sigma), dim=1)  # [B, K]
        pull = (mu[None] - x[:, None, :]) / (s if s.ndim == 2 else s[None])[:, :, None]
        return (r[:, :, None] * pull).sum(1)

    def noised_score(
        self, y: Tensor, sigma: Tensor | float, condition: Tensor | None = None
    ) -> Tensor:
        """The exact score of p * N(0, sigma^2 I) (:meth:`score` with ``sigma``)."""
        return self.score(y, sigma)

    def component_of(self, x: Tensor) -> Tensor:
        """The most probable component of each point, argmax_k w_k N_k(x): [B, D] -> int64
        [B] (labels for the per-mode weights of samples)."""
        _, _, w = self._parameters(x)
        return (w.log() + self.component_log_densities(x)).argmax(dim=1)

    def book_likelihood(self, x: Tensor) -> Tensor:
        """The book's ``GaussianMixture.likelihood``: sum_k N(x; mu_k, s_k I) without the
        weights, [B, D] -> [B]. Integrates to K (2 for the book's mixture), not to 1."""
        return self.component_log_densities(x).exp().sum(dim=1)

    def sample_with_components(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``n`` exact draws and the component each came from: points [n, D] float64 and
        labels [n] int64. A component k is drawn with probability w_k, then
        x = mu_k + sqrt(s_k) z with z ~ N(0, I); deterministic given ``generator``."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = self.means[labels] + self.variances[labels, None].sqrt() * z
        return x, labels

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` exact draws from p: [n, D] float64 (see :meth:`sample_with_components`)."""
        return self.sample_with_components(n, generator)[0]

    # -- the Distribution interface (unconditional) ----------------------------------------
    def draw(self, n: int, generator: torch.Generator) -> Draws:
        """``n`` exact draws as training data (no condition)."""
        return Draws(self.sample(n, generator))

    def reference_samples(
        self, n: int, generator: torch.Generator, condition: Tensor | None = None
    ) -> Tensor:
        """``n`` exact draws [n, D] (the mixture is unconditional)."""
        return self.sample(n, generator)

    def mode_labels(self, y: Tensor, condition: Tensor | None = None) -> Tensor:
        """The most probable component of each sample (:meth:`component_of`)."""
        return self.component_of(y)

    def mode_weights(self, condition: Tensor | None = None) -> Tensor:
        """w_k [K]."""
        return self.weights

    def sample_metrics(self, y: Tensor, condition: Tensor | None = None) -> dict[str, float]:
        """``stray_fraction``: the share of samples y [n, D] that are not finite or lie
        more than :data:`STRAY` standard deviations from every component's mean (exact
        draws do so with probability P(chi^2_D > 25), 3.7e-6 for D = 2). Sample-based
        distances are dominated by a few such points (e.g. a sampler's diverged chains)."""
        y = y.double()
        mu, s, _ = self._parameters(y)
        finite = torch.isfinite(y).all(dim=1)
        z2 = (y[:, None, :] - mu[None]).square().sum(-1) / s[None]  # [n, K]
        stray = ~finite | (z2.nan_to_num(math.inf) > STRAY**2).all(dim=1)
        return {"stray_fraction": float(stray.double().mean())}
