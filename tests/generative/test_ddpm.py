"""DDPM samplers with the exact epsilon of Gaussian data N(m, s^2 I): ancestral and DDIM
sampling reproduce its mean and standard deviation, on points and on fields; the
evaluation counts are exact; DDIM with eta = 1 on all steps is ancestral sampling."""

from __future__ import annotations

import itertools

import pytest
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.generative.ddpm import ancestral_sample, ddim_sample, ddim_steps
from pbdl_cli.generative.schedules import noise_schedule
from tests.generative.gaussian import exact_eps, moments

M = torch.tensor([1.0, -2.0])
S = 0.5
N = 20_000


def check_gaussian(x, m, s, *, mean_tol=0.03, std_rtol=0.025):
    mean, std = moments(x)
    assert (mean - m).abs().max() < mean_tol, mean
    assert ((std - s).abs() / s).max() < std_rtol, std


@pytest.mark.parametrize(
    ("name", "sigma", "std_rtol"),
    [
        ("linear", "beta", 0.025),
        ("linear", "posterior", 0.025),
        ("cosine", "beta", 0.025),
        ("cosine", "posterior", 0.025),
        # the chain's Gaussian steps miss the true reverse variance: exact output std
        # (linear moment recursion) +0.2 % / -0.8 % (linear), +0.1 % / -0.4 % (cosine),
        # and with beta = 0.02 at every step, coarse near t = 0: -2.5 % (constant, beta)
        ("constant", "beta", 0.04),
    ],
)
def test_ancestral_sampling_reproduces_gaussian_data(name, sigma, std_rtol):
    schedule = noise_schedule(name, 1000)
    g = torch.Generator().manual_seed(0)
    out = ancestral_sample(exact_eps(M, S, schedule), schedule, (N, 2), sigma=sigma, generator=g)
    assert out.evaluations == 1000
    check_gaussian(out.x, M, S, std_rtol=std_rtol)


def test_ancestral_sampling_on_fields_broadcasts_the_step():
    """A per-pixel mean on [B, C, H, W]; the callback sees every step, T - 1 down to 0."""
    schedule = noise_schedule("cosine", 200)
    m = torch.linspace(-2, 2, 2 * 3 * 4).reshape(2, 3, 4)
    seen = []
    g = torch.Generator().manual_seed(1)
    out = ancestral_sample(
        exact_eps(m, S, schedule),
        schedule,
        (4000, 2, 3, 4),
        sigma="posterior",
        generator=g,
        callback=lambda step, t, x: seen.append((step, t, x.shape)),
    )
    assert out.x.shape == (4000, 2, 3, 4) and out.evaluations == 200
    assert [s for s, _, _ in seen] == list(range(1, 201))
    assert [t for _, t, _ in seen] == list(range(199, -1, -1))
    check_gaussian(out.x, m, S, mean_tol=0.05, std_rtol=0.05)


@pytest.mark.parametrize(
    ("name", "steps", "eta"),
    [("linear", 200, 0.0), ("cosine", 100, 0.0), ("cosine", 200, 0.5), ("linear", 1000, 1.0)],
)
def test_ddim_reproduces_gaussian_data_with_k_evaluations(name, steps, eta):
    schedule = noise_schedule(name, 1000)
    g = torch.Generator().manual_seed(2)
    out = ddim_sample(exact_eps(M, S, schedule), schedule, (N, 2), steps, eta=eta, generator=g)
    assert out.evaluations == steps
    check_gaussian(out.x, M, S)


def test_ddim_error_falls_with_the_number_of_steps():
    """eta = 0 is a first-order discretization of the probability-flow ODE: from the same
    start, the std's error roughly halves when K doubles."""
    schedule = noise_schedule("linear", 1000)
    start = torch.randn(N, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    eps = exact_eps(M.double(), S, schedule)
    reference = ddim_sample(eps, schedule, start, 1000).x.std(0)
    errors = [
        (ddim_sample(eps, schedule, start, k).x.std(0) - reference).abs().max()
        for k in (25, 50, 100)
    ]
    for coarse, fine in itertools.pairwise(errors):
        assert 1.6 < coarse / fine < 2.5, errors


def test_ddim_with_eta_one_on_all_steps_is_ancestral_sampling():
    schedule = noise_schedule("cosine", 100)
    eps = exact_eps(M.double(), S, schedule)
    start = torch.randn(64, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ddpm = ancestral_sample(
        eps, schedule, start, sigma="posterior", generator=torch.Generator().manual_seed(5)
    )
    ddim = ddim_sample(
        eps, schedule, start, 100, eta=1.0, generator=torch.Generator().manual_seed(5)
    )
    assert torch.allclose(ddpm.x, ddim.x, rtol=1e-9, atol=1e-9)


def test_deterministic_ddim_ignores_the_generator_and_counts_its_callbacks():
    schedule = noise_schedule("linear", 1000)
    eps = exact_eps(M, S, schedule)
    start = torch.randn(16, 2)
    seen = []
    a = ddim_sample(
        eps,
        schedule,
        start,
        10,
        generator=torch.Generator().manual_seed(0),
        callback=lambda step, t, x: seen.append(t),
    )
    b = ddim_sample(eps, schedule, start, 10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.x, b.x) and a.evaluations == 10
    assert seen == [*reversed(ddim_steps(1000, 10)[:-1]), 0]


@pytest.mark.parametrize("sigma", ["beta", "posterior"])
def test_the_last_ancestral_step_adds_no_noise(sigma):
    """z = 0 at t = 1 (Alg. 2): with T = 1 the sampler is deterministic given x_1 and
    is x_0 = (x_1 - beta_1 / sqrt(1 - abar_1) eps_hat) / sqrt(alpha_1)."""
    schedule = noise_schedule("constant", 1)
    eps = exact_eps(M, S, schedule)
    start = torch.randn(8, 2)
    runs = [
        ancestral_sample(
            eps, schedule, start, sigma=sigma, generator=torch.Generator().manual_seed(k)
        )
        for k in (0, 1)
    ]
    one = torch.ones(8, dtype=torch.long)
    expected = (start - 0.02 / 0.02**0.5 * eps(start, one)) / 0.98**0.5
    assert torch.equal(runs[0].x, runs[1].x) and runs[0].evaluations == 1
    assert torch.allclose(runs[0].x, expected)


def test_ddim_steps_are_evenly_spaced_and_distinct():
    assert ddim_steps(1000, 1) == [1000]
    assert ddim_steps(1000, 2) == [1, 1000]
    assert ddim_steps(10, 10) == list(range(1, 11))
    taus = ddim_steps(1000, 50)
    assert len(set(taus)) == 50 and taus[0] == 1 and taus[-1] == 1000
    gaps = [b - a for a, b in itertools.pairwise(taus)]
    assert max(gaps) - min(gaps) <= 1
    with pytest.raises(PbdlError, match=r"1\.\.T"):
        ddim_steps(100, 101)


def test_sampler_errors_are_one_line():
    schedule = noise_schedule("linear", 10)
    eps = exact_eps(M, S, schedule)
    with pytest.raises(PbdlError, match="sigma must be one of beta, posterior"):
        ancestral_sample(eps, schedule, (2, 2), sigma="tilde")
    with pytest.raises(PbdlError, match="eta must be non-negative"):
        ddim_sample(eps, schedule, (2, 2), 5, eta=-1)
