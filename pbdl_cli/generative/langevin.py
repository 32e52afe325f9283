"""Langevin dynamics and annealed Langevin dynamics for sampling with a score.

Book ch. 23 (Score matching & Langevin). The score is s(x) = grad_x log p(x), which needs
no normalized density.

* :func:`langevin` (unadjusted Langevin algorithm): x_{i+1} = x_i + eps s(x_i) + sqrt(2 eps) z_i,
  z_i ~ N(0, I). For small eps and many steps the iterates are distributed as p (with an
  O(eps) bias; the book's GM notebook: eps = 0.01, 500 steps). One evaluation per step.
* :func:`annealed_langevin`, Song & Ermon, "Generative modeling by estimating gradients of
  the data distribution", NeurIPS 2019: noise levels sigma_1 > ... > sigma_L and a
  noise-conditional score s(x, sigma) of p_sigma = p * N(0, sigma^2 I); at each level j,
  K steps of Langevin with alpha_j = eps (sigma_j / sigma_L)^2, so that the signal-to-noise
  ratio of the steps is the same at every level. L x K evaluations (book: sigmas
  4, 2, 1, 0.5, 0.2, 0.01, K = 150, eps = 1e-5). ``denoise=True`` ends with one Tweedie
  step x += sigma_L^2 s(x, sigma_L) (Jolicoeur-Martineau et al., ICLR 2021), which removes
  the last level's noise (one more evaluation).

The callables take ``x`` of shape ``[B, D]`` or ``[B, C, *spatial]``; the annealed score
also gets ``sigma`` as a float tensor ``[B]``, and returns ``x``'s shape.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

from torch import Generator, Tensor

from pbdl_cli.errors import PbdlError
from pbdl_cli.generative.common import Sampled, StepCallback, batch_vector, normal_like

#: a score: s(x [B, ...]) -> grad log p [B, ...]
ScoreFn = Callable[[Tensor], Tensor]
#: a noise-conditional score: s(x [B, ...], sigma [B]) -> grad log p_sigma [B, ...]
SigmaScoreFn = Callable[[Tensor, Tensor], Tensor]


def langevin(
    score: ScoreFn,
    x: Tensor,
    *,
    step_size: float,
    steps: int,
    generator: Generator | None = None,
    callback: StepCallback | None = None,
) -> Sampled:
    """``steps`` Langevin steps x += eps s(x) + sqrt(2 eps) z from ``x`` (eps = ``step_size``).

    ``callback(i, i, x_i)`` after step i. Returns the final state and ``steps`` evaluations.
    """
    _check(step_size, steps)
    noise = math.sqrt(2 * step_size)
    for i in range(1, steps + 1):
        x = x + step_size * score(x) + noise * normal_like(x, generator)
        if callback is not None:
            callback(i, i, x)
    return Sampled(x, steps)


def annealed_langevin(
    score: SigmaScoreFn,
    x: Tensor,
    sigmas: Sequence[float],
    *,
    step_size: float,
    steps: int,
    denoise: bool = False,
    generator: Generator | None = None,
    callback: StepCallback | None = None,
) -> Sampled:
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1; module docstring).

    Args:
        score: the noise-conditional score s(x, sigma).
        x: the start (the book: a regular grid over the domain; often uniform noise).
        sigmas: the noise levels, strictly decreasing (largest first), all positive.
        step_size: eps, the step at the smallest level; alpha_j = eps (sigma_j / sigma_L)^2.
        steps: K, the Langevin steps per level.
        denoise: end with x += sigma_L^2 s(x, sigma_L).
        callback: ``callback(j, sigma_j, x)`` after each level j = 1..L (and
            ``callback(L + 1, 0.0, x)`` after the denoising step).

    Returns:
        the final state and L x K (+ 1 with ``denoise``) evaluations.
    """
    _check(step_size, steps)
    levels = [float(s) for s in sigmas]
    if not levels or min(levels) <= 0:
        raise PbdlError("annealed Langevin: sigmas must be a non-empty list of positive levels")
    if any(a <= b for a, b in itertools.pairwise(levels)):
        raise PbdlError(f"annealed Langevin: sigmas must decrease strictly, got {levels}")
    last = levels[-1]
    evaluations = 0
    for j, sigma in enumerate(levels, start=1):
        alpha = step_size * (sigma / last) ** 2
        noise = math.sqrt(2 * alpha)
        level = batch_vector(sigma, x)
        for _ in range(steps):
            x = x + alpha * score(x, level) + noise * normal_like(x, generator)
        evaluations += steps
        if callback is not None:
            callback(j, sigma, x)
    if denoise:
        x = x + last**2 * score(x, batch_vector(last, x))
        evaluations += 1
        if callback is not None:
            callback(len(levels) + 1, 0.0, x)
    return Sampled(x, evaluations)


def _check(step_size: float, steps: int) -> None:
    if step_size <= 0 or steps < 1:
        raise PbdlError(
            f"Langevin needs step_size > 0 and steps >= 1, got step_size={step_size}, steps={steps}"
        )
