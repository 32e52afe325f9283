"""Closed forms for Gaussian data N(m, s^2 I): the exact networks the samplers are
tested with (the samples must then come out as N(m, s^2))."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from pbdl_cli.generative.common import per_sample
from pbdl_cli.generative.schedules import NoiseSchedule


def exact_eps(m: Tensor | float, s: float, schedule: NoiseSchedule) -> Callable:
    """E[eps | x_t] for x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, x0 ~ N(m, s^2):
    x_t ~ N(sqrt(abar) m, abar s^2 + 1 - abar) and Cov(eps, x_t) = sqrt(1 - abar), so
    eps*(x_t, t) = sqrt(1 - abar) (x_t - sqrt(abar) m) / (abar s^2 + 1 - abar)."""

    def eps(x: Tensor, t: Tensor) -> Tensor:
        assert t.dtype == torch.long and t.shape == (x.shape[0],)
        abar = schedule.alpha_bar_at(t, x)
        return (1 - abar).sqrt() * (x - abar.sqrt() * m) / (abar * s**2 + 1 - abar)

    return eps


def exact_score(m: Tensor | float, s: float) -> Callable:
    """grad log N(x; m, s^2 I) = -(x - m) / s^2."""
    return lambda x: -(x - m) / s**2


def exact_sigma_score(m: Tensor | float, s: float) -> Callable:
    """The score of p_sigma = N(m, (s^2 + sigma^2) I): -(x - m) / (s^2 + sigma^2)."""

    def score(x: Tensor, sigma: Tensor) -> Tensor:
        assert sigma.shape == (x.shape[0],)
        return -(x - m) / (s**2 + per_sample(sigma, x) ** 2)

    return score


def exact_velocity(m: Tensor | float, s: float, sigma_min: float) -> Callable:
    """The marginal flow-matching velocity E[x1 - (1 - sigma_min) x0 | x_t] for x0 ~ N(0, I),
    x1 ~ N(m, s^2 I), x_t = a x0 + t x1 with a = 1 - (1 - sigma_min) t: with
    var = a^2 + t^2 s^2, E[x1 | x] = m + t s^2 (x - t m) / var, E[x0 | x] = a (x - t m) / var.
    Its flow carries N(0, I) at t = 0 to N(m, (s^2 + sigma_min^2) I) at t = 1."""

    def v(x: Tensor, t: Tensor) -> Tensor:
        assert t.shape == (x.shape[0],) and t.is_floating_point()
        t = per_sample(t, x)
        a = 1 - (1 - sigma_min) * t
        var = a**2 + t**2 * s**2
        centred = x - t * m
        return m + (t * s**2 - (1 - sigma_min) * a) * centred / var

    return v


def moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-entry mean and standard deviation over the sample axis 0."""
    return x.mean(0), x.std(0)
