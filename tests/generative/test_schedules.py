"""DDPM schedules and the forward process: the closed-form marginal of q(x_t | x_0) for
every schedule, the cosine formula, the posterior against Gaussian conditioning."""

from __future__ import annotations

import math

import pytest
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.generative.schedules import (
    SCHEDULES,
    cosine_alpha_bar,
    noise_schedule,
    posterior,
    predict_x0,
    q_sample,
)

F64 = torch.float64


@pytest.mark.parametrize("name", SCHEDULES)
def test_q_sample_has_the_closed_form_marginal_on_fields(name):
    """Per step t (one per group of samples, mixed in one batch), the empirical mean and
    variance of x_t over the samples are sqrt(abar_t) x0 and 1 - abar_t within 5
    standard errors, on a field [B, C, H, W]."""
    schedule = noise_schedule(name, 1000)
    g = torch.Generator().manual_seed(1)
    field = torch.randn(1, 2, 3, 3, generator=g, dtype=F64) + 1.5
    steps = [1, 10, 100, 400, 800, 1000]
    n = 20_000
    t = torch.tensor(steps).repeat_interleave(n)
    x0 = field.expand(len(t), -1, -1, -1)
    eps = torch.randn(x0.shape, generator=g, dtype=F64)
    x_t = q_sample(x0, t, eps, schedule).reshape(len(steps), n, *field.shape[1:])
    for k, step in enumerate(steps):
        abar = float(schedule.alpha_bar[step - 1])
        mean, var = x_t[k].mean(0), x_t[k].var(0)
        se_mean, se_var = math.sqrt((1 - abar) / n), (1 - abar) * math.sqrt(2 / n)
        assert (mean - math.sqrt(abar) * field[0]).abs().max() < 5 * se_mean, (name, step)
        assert (var - (1 - abar)).abs().max() < 5 * se_var, (name, step)


def test_q_sample_on_points_with_a_scalar_step_and_step_zero():
    schedule = noise_schedule("linear", 100)
    x0, eps = torch.randn(4, 3, dtype=F64), torch.randn(4, 3, dtype=F64)
    assert torch.equal(q_sample(x0, 0, eps, schedule), x0)
    abar = schedule.alpha_bar[49]
    expected = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    assert torch.allclose(q_sample(x0, 50, eps, schedule), expected)
    assert torch.allclose(predict_x0(expected, 50, eps, schedule), x0)
    assert q_sample(x0.float(), 50, eps.float(), schedule).dtype == torch.float32


def test_cosine_alpha_bar_matches_its_formula_and_clips_the_last_beta():
    T = 1000
    schedule = noise_schedule("cosine", T)
    t = torch.arange(1, T + 1, dtype=F64)
    formula = cosine_alpha_bar(t, T)
    assert torch.allclose(schedule.alpha_bar[:-1], formula[:-1], rtol=1e-10, atol=0)
    assert float(formula[-1]) == pytest.approx(0, abs=1e-30)  # f(T) = cos^2(pi / 2)
    assert float(schedule.betas[-1]) == 0.999 and float(schedule.betas[:-1].max()) < 0.999
    # Nichol & Dhariwal's f(0) = cos^2(s / (1 + s) pi / 2) normalization: abar(0) = 1
    assert float(cosine_alpha_bar(torch.tensor(0.0), T)) == 1.0


def test_linear_and_constant_schedules():
    linear = noise_schedule("linear", 1000)
    assert float(linear.betas[0]) == pytest.approx(1e-4)
    assert float(linear.betas[-1]) == pytest.approx(0.02)
    scaled = noise_schedule("linear", 100, rescale=True)  # the book's DDPMForwardProcess
    assert float(scaled.betas[0]) == pytest.approx(1e-3)
    assert float(scaled.betas[-1]) == pytest.approx(0.2)
    constant = noise_schedule("constant", 1000)
    assert torch.all(constant.betas == 0.02)
    powers = 0.98 ** torch.arange(1, 1001, dtype=F64)
    assert torch.allclose(constant.alpha_bar, powers, rtol=1e-10)
    assert constant.T == 1000 and torch.allclose(constant.alphas, 1 - constant.betas)


@pytest.mark.parametrize("name", SCHEDULES)
def test_posterior_equals_gaussian_conditioning(name):
    """mu~ and beta~ against the conditional of the joint Gaussian (x_{t-1}, x_t) | x0:
    Cov = sqrt(alpha_t)(1 - abar_{t-1}), Var x_t = 1 - abar_t."""
    schedule = noise_schedule(name, 200)
    x0, x_t = torch.randn(5, 2, dtype=F64), torch.randn(5, 2, dtype=F64)
    assert float(schedule.posterior_variance[0]) == 0.0
    for t in (1, 2, 57, 200):
        abar, prev = schedule.alpha_bar0[t], schedule.alpha_bar0[t - 1]
        alpha = schedule.alphas[t - 1]
        gain = alpha.sqrt() * (1 - prev) / (1 - abar)
        mean = prev.sqrt() * x0 + gain * (x_t - abar.sqrt() * x0)
        var = (1 - prev) - alpha * (1 - prev) ** 2 / (1 - abar)
        got_mean, got_var = posterior(x0, x_t, torch.full((5,), t), schedule)
        assert torch.allclose(got_mean, mean, rtol=1e-9, atol=1e-12)
        assert torch.allclose(got_var.flatten(), var.expand(5), rtol=1e-9, atol=1e-15)


def test_schedule_errors_are_one_line():
    with pytest.raises(PbdlError, match="did you mean 'cosine'"):
        noise_schedule("cosin", 10)
    schedule = noise_schedule("linear", 10)
    x = torch.zeros(2, 2)
    with pytest.raises(PbdlError, match=r"out of range 0\.\.10"):
        q_sample(x, torch.tensor([3, 11]), x, schedule)
    with pytest.raises(PbdlError, match="at least 1"):
        noise_schedule("linear", 0)
