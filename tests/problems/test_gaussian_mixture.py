"""The book's 2D Gaussian mixture (ch. 22-25): exact density, score, samples, components."""

from __future__ import annotations

import math

import pytest
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.problems import PROBLEMS

#: three unequal components, to catch a missing weight or a swapped variance
THREE = {
    "means": [[0.0, 0.0], [3.0, 2.0], [-2.0, 3.0]],
    "variances": [1.0, 0.25, 0.5],
    "weights": [1.0, 2.0, 5.0],
}


def mixture(**options):
    return PROBLEMS.build({"name": "gaussian_mixture", **options})


def midpoint_integral(values_of, lower: float, upper: float, n: int) -> float:
    """The midpoint rule over [lower, upper]^2 with n x n cells of f: [B, 2] -> [B]."""
    h = (upper - lower) / n
    c = lower + (torch.arange(n, dtype=torch.float64) + 0.5) * h
    points = torch.cartesian_prod(c, c)
    return float(values_of(points).sum()) * h * h


def test_defaults_are_the_books_mixture_and_a_static_problem():
    gm = mixture()
    assert gm.dim == 2 and gm.num_components == 2
    assert gm.means.tolist() == [[0.0, 0.0], [3.0, 2.0]]
    assert gm.variances.tolist() == [1.0, 0.25] and gm.weights.tolist() == [0.5, 0.5]
    assert gm.is_static and gm.times().tolist() == [0.0] and gm.default_solver is None
    assert gm.fields == ("x",) and gm.grid.shape == (2,) and gm.state_shape == (1, 2)
    assert gm.sample_params(3, torch.Generator()) == {}
    with pytest.raises(PbdlError, match="static"):
        gm.initial_state({}, torch.Generator())
    assert gm.slug() == "gaussian_mixture_k2_d2"
    assert mixture(weights=[2.0, 2.0], means=[[0, 0], [3, 2]]).slug() == gm.slug()
    other = mixture(**THREE).slug()
    assert (
        other.startswith("gaussian_mixture_k3_d2_")
        and other != mixture(**{**THREE, "weights": [1.0, 1.0, 1.0]}).slug()
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"means": []}, "at least one"),
        ({"means": [[0.0, 0.0], [1.0]]}, "same number"),
        ({"variances": [1.0]}, "one value per component"),
        ({"weights": [1.0, 1.0, 1.0]}, "one value per component"),
        ({"variances": [1.0, 0.0]}, "> 0"),
        ({"weights": [1.0, -1.0]}, "> 0"),
    ],
)
def test_config_validation(options, message):
    with pytest.raises(PbdlError, match=message):
        mixture(**options)


@pytest.mark.parametrize("options", [{}, THREE])
def test_the_density_integrates_to_one(options):
    gm = mixture(**options)
    total = midpoint_integral(lambda x: gm.log_density(x).exp(), -10.0, 12.0, 220)
    assert total == pytest.approx(1.0, abs=1e-9)


def test_entropy_of_the_books_mixture():
    """H(p) = -int p log p = 2.8174 nats, the floor of any model's NLL (docs: the book's
    flow losses sit 1/2 log 2pi lower, at a floor of 1.8985)."""
    gm = mixture()
    entropy = midpoint_integral(
        lambda x: -gm.log_density(x).exp() * gm.log_density(x), -10.0, 12.0, 440
    )
    assert entropy == pytest.approx(2.8174, abs=1e-4)
    samples = gm.sample(100_000, torch.Generator().manual_seed(7))
    # Monte Carlo: the spread of -log p is about 1.1, so the mean's error is ~0.0035
    assert float(-gm.log_density(samples).mean()) == pytest.approx(entropy, abs=0.02)


def test_the_books_likelihood_lacks_the_weights_and_integrates_to_two():
    gm = mixture()
    assert midpoint_integral(gm.book_likelihood, -10.0, 12.0, 220) == pytest.approx(2, abs=1e-9)
    x = torch.randn(100, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(gm.book_likelihood(x), 2 * gm.log_density(x).exp())
    # the book's formula at one point: sum_k exp(-|x - mu_k|^2 / (2 s_k)) / (2 pi s_k)
    point = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    by_hand = math.exp(-1.25 / 2) / (2 * math.pi) + math.exp(-6.25 / 0.5) / (0.5 * math.pi)
    assert float(gm.book_likelihood(point)) == pytest.approx(by_hand, rel=1e-14)


def test_one_dimensional_mixture_matches_the_closed_form():
    gm = mixture(means=[[-1.0], [2.0]], variances=[0.5, 2.0], weights=[0.3, 0.7])
    x = torch.linspace(-4, 5, 11, dtype=torch.float64)[:, None]

    def normal(mu: float, s: float) -> torch.Tensor:
        return torch.exp(-((x[:, 0] - mu) ** 2) / (2 * s)) / math.sqrt(2 * math.pi * s)

    expected = 0.3 * normal(-1.0, 0.5) + 0.7 * normal(2.0, 2.0)
    torch.testing.assert_close(gm.log_density(x).exp(), expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize("options", [{}, THREE])
def test_the_score_is_the_autograd_gradient_of_the_log_density(options):
    gm = mixture(**options)
    g = torch.Generator().manual_seed(2)
    x = torch.cat(
        [
            4 * torch.randn(200, 2, generator=g, dtype=torch.float64),
            torch.tensor([[30.0, -40.0], [-25.0, 60.0], [1.5, 1.0]], dtype=torch.float64),
        ]
    ).requires_grad_(True)
    (grad,) = torch.autograd.grad(gm.log_density(x).sum(), x)
    torch.testing.assert_close(gm.score(x.detach()), grad, rtol=1e-12, atol=1e-12)
    assert torch.isfinite(gm.score(x.detach())).all()


def test_the_noised_score_is_the_gradient_of_the_convolved_density():
    """p_sigma(x) = int p(y) N(x - y; 0, sigma^2) dy by quadrature (independent of the
    variance shift the mixture uses); its autograd gradient is ``noised_score``."""
    gm = mixture(means=[[-1.0], [2.0]], variances=[0.5, 2.0], weights=[0.3, 0.7])
    sigma = 0.7
    y = torch.linspace(-20, 20, 40001, dtype=torch.float64)
    p = gm.log_density(y[:, None]).exp()  # [Q]
    x = torch.linspace(-4, 5, 13, dtype=torch.float64).requires_grad_(True)
    kernel = torch.exp(-((x[:, None] - y[None]) ** 2) / (2 * sigma**2)) / math.sqrt(
        2 * math.pi * sigma**2
    )
    density = torch.trapezoid(kernel * p[None], y, dim=1)
    (grad,) = torch.autograd.grad(density.log().sum(), x)
    points = x.detach()[:, None]
    score = gm.noised_score(points, sigma)
    torch.testing.assert_close(score[:, 0], grad, rtol=1e-7, atol=1e-9)
    per_point = gm.noised_score(points, torch.full((13,), sigma, dtype=torch.float64))
    torch.testing.assert_close(per_point, score, rtol=1e-14, atol=1e-14)
    mixed = torch.tensor([0.0, sigma], dtype=torch.float64).repeat(7)[:13]  # per point
    expected = torch.where((mixed > 0)[:, None], score, gm.score(points))
    torch.testing.assert_close(gm.noised_score(points, mixed), expected, rtol=1e-14, atol=0)
    torch.testing.assert_close(gm.noised_score(points, 0.0), gm.score(points), rtol=0, atol=0)


def test_stray_samples_are_counted():
    gm = mixture()
    y = torch.tensor(
        [[0.0, 0.0], [3.0, 2.0], [4.9, 0.0], [5.1, 0.0], [3.0, 4.4], [3.0, 4.6], [math.nan, 0.0]],
        dtype=torch.float64,
    )  # squared distances in sd to N(0, I) / N([3, 2], 0.25 I): (4.9, 0) 24.0 / 41.6,
    # (5.1, 0) 26.0 / 33.6 (stray), (3, 4.4) 28.4 / 23.0, (3, 4.6) 30.2 / 27.0 (stray), nan
    assert gm.sample_metrics(y)["stray_fraction"] == pytest.approx(3 / 7)
    exact = gm.sample(100_000, torch.Generator().manual_seed(0))
    assert gm.sample_metrics(exact)["stray_fraction"] < 1e-4


def test_score_near_a_mean_pulls_towards_it():
    gm = mixture()
    at = torch.tensor([[3.0, 2.0], [0.0, 0.0]], dtype=torch.float64)
    # at mu_2 the far component's share is ~e^-6.5: the score is ~0; at mu_1 it is not quite
    assert gm.score(at)[0].abs().max() < 5e-3
    step = torch.tensor([[3.1, 2.0]], dtype=torch.float64)
    assert float(gm.score(step)[0, 0]) == pytest.approx(-0.1 / 0.25, rel=1e-2)


def test_responsibilities_and_component_of():
    gm = mixture(**THREE)
    x = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    r = gm.responsibilities(x)
    torch.testing.assert_close(r.sum(1), torch.ones(50, dtype=torch.float64))
    assert torch.equal(gm.component_of(x), r.argmax(1))
    assert gm.component_of(gm.means).tolist() == [0, 1, 2]
    # equal variances, halfway between the means: the heavier component wins
    even = mixture(means=[[0.0], [2.0]], variances=[1.0, 1.0], weights=[1.0, 3.0])
    assert even.component_of(torch.tensor([[1.0], [0.3]])).tolist() == [1, 0]


@pytest.mark.parametrize("options", [{}, THREE])
def test_samples_match_the_mixture_within_sampling_error(options):
    gm = mixture(**options)
    n = 200_000
    x, labels = gm.sample_with_components(n, torch.Generator().manual_seed(4))
    assert x.shape == (n, 2) and x.dtype == torch.float64 and labels.dtype == torch.int64
    w, mu, s = gm.weights, gm.means, gm.variances
    shares = torch.bincount(labels, minlength=gm.num_components).double() / n
    assert (shares - w).abs().max() < 5 * math.sqrt(0.25 / n)
    mean = (w[:, None] * mu).sum(0)
    second = (
        w[:, None, None] * (s[:, None, None] * torch.eye(2) + mu[:, :, None] * mu[:, None])
    ).sum(0)
    cov = second - torch.outer(mean, mean)
    torch.testing.assert_close(x.mean(0), mean, rtol=0, atol=5 * math.sqrt(cov.max() / n))
    torch.testing.assert_close(torch.cov(x.T), cov, rtol=0, atol=0.05)
    for k in range(gm.num_components):
        own = x[labels == k]
        torch.testing.assert_close(own.mean(0), mu[k], rtol=0, atol=0.02)
        torch.testing.assert_close(own.var(0), s[k].expand(2), rtol=0.03, atol=0)
    # most samples are labelled with their own component (the two overlap a little)
    assert float((gm.component_of(x) == labels).double().mean()) > 0.97


def test_sampling_is_deterministic_given_the_generator():
    gm = mixture()
    a = gm.sample(1000, torch.Generator().manual_seed(5))
    b = gm.sample(1000, torch.Generator().manual_seed(5))
    c = gm.sample(1000, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="n must be"):
        gm.sample(0, torch.Generator())


def test_float32_points_and_bad_shapes():
    gm = mixture()
    x = torch.zeros(4, 2)
    assert gm.log_density(x).dtype == torch.float32 and gm.score(x).dtype == torch.float32
    expected = math.log(0.5 / (2 * math.pi) + 0.5 * math.exp(-13 / 0.5) / (0.5 * math.pi))
    assert float(gm.log_density(x)[0]) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match=r"\[B, 2\]"):
        gm.log_density(torch.zeros(4, 3))
