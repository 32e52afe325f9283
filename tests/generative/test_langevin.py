"""Langevin and annealed Langevin dynamics with the exact score of Gaussian data reach its
mean and standard deviation; the evaluation counts and step sizes are exact."""

from __future__ import annotations

import math

import pytest
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.generative.langevin import annealed_langevin, langevin
from tests.generative.gaussian import exact_score, exact_sigma_score, moments

M = torch.tensor([1.0, -2.0])
S = 0.5
N = 20_000


def uniform_start(seed: int, shape=(N, 2), half_width: float = 5.0) -> torch.Tensor:
    """The book's start: points spread over the domain [-5, 5]^2 (here random)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) * 2 - 1) * half_width


def test_langevin_reaches_the_gaussian():
    """eps = 0.01 (the book's GM notebook): the unadjusted chain's stationary std is
    s / sqrt(1 - eps / (2 s^2)) = 1.01 s; relaxation time s^2 / eps = 25 steps."""
    g = torch.Generator().manual_seed(1)
    seen = []
    out = langevin(
        exact_score(M, S),
        uniform_start(0),
        step_size=0.01,
        steps=400,
        generator=g,
        callback=lambda i, t, x: seen.append(i),
    )
    assert out.evaluations == 400 and seen == list(range(1, 401))
    mean, std = moments(out.x)
    assert (mean - M).abs().max() < 0.02
    assert ((std - S * 1.0102) / S).abs().max() < 0.02, std


def test_langevin_on_fields():
    m = torch.linspace(-1, 1, 6).reshape(1, 2, 3)
    out = langevin(
        exact_score(m, S),
        uniform_start(2, (8000, 1, 2, 3)),
        step_size=0.01,
        steps=300,
        generator=torch.Generator().manual_seed(3),
    )
    mean, std = moments(out.x)
    assert out.x.shape == (8000, 1, 2, 3)
    assert (mean - m).abs().max() < 0.05 and ((std - S) / S).abs().max() < 0.06


@pytest.mark.parametrize("denoise", [False, True])
def test_annealed_langevin_reaches_the_gaussian(denoise):
    """Levels 2 .. 0.01 of p_sigma = N(m, s^2 + sigma^2); eps = 1e-4, so the largest level
    steps with alpha = eps (2 / 0.01)^2 = 4, below the stability limit 2 (s^2 + 4)."""
    sigmas = [2.0, 1.0, 0.5, 0.2, 0.05, 0.01]
    levels = []
    out = annealed_langevin(
        exact_sigma_score(M, S),
        uniform_start(4),
        sigmas,
        step_size=1e-4,
        steps=100,
        denoise=denoise,
        generator=torch.Generator().manual_seed(5),
        callback=lambda j, sigma, x: levels.append((j, sigma)),
    )
    assert out.evaluations == 600 + denoise
    assert levels == [*enumerate(sigmas, 1)] + ([(7, 0.0)] if denoise else [])
    mean, std = moments(out.x)
    assert (mean - M).abs().max() < 0.02
    assert ((std - S) / S).abs().max() < 0.05, std


def test_annealed_step_sizes_follow_the_noise_levels():
    """With a zero score each level only adds noise of variance 2 alpha_j K, alpha_j =
    eps (sigma_j / sigma_L)^2: the total variance is exact."""
    sigmas, eps, k = [3.0, 1.0, 0.5], 1e-3, 20
    x = torch.zeros(40_000, 1, dtype=torch.float64)
    out = annealed_langevin(
        lambda x, sigma: torch.zeros_like(x),
        x,
        sigmas,
        step_size=eps,
        steps=k,
        generator=torch.Generator().manual_seed(6),
    )
    variance = sum(2 * eps * (s / sigmas[-1]) ** 2 * k for s in sigmas)
    assert float(out.x.var()) == pytest.approx(variance, rel=4 * math.sqrt(2 / 40_000))


def test_langevin_errors_are_one_line():
    x = torch.zeros(2, 2)
    with pytest.raises(PbdlError, match="step_size > 0"):
        langevin(exact_score(M, S), x, step_size=0.0, steps=10)
    with pytest.raises(PbdlError, match="decrease strictly"):
        annealed_langevin(exact_sigma_score(M, S), x, [0.1, 1.0], step_size=1e-3, steps=5)
    with pytest.raises(PbdlError, match="positive"):
        annealed_langevin(exact_sigma_score(M, S), x, [1.0, 0.0], step_size=1e-3, steps=5)
