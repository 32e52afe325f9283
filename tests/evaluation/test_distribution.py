"""Distribution metrics (pbdl_cli/evaluation/distribution.py): sample distances, mode
weights, per-pixel ensemble moments and the negative log-likelihood."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch

from pbdl_cli.evaluation.distribution import (
    DISTANCES,
    energy_distance,
    mode_coverage,
    mode_weight_error,
    mode_weights,
    negative_log_likelihood,
    pixel_moment_errors,
    pixel_moments,
    sliced_wasserstein2,
)
from pbdl_cli.problems import PROBLEMS

DISTANCE_FUNCTIONS = [energy_distance, sliced_wasserstein2]


def normal(n: int, d: int, seed: int, mu: float = 0.0, s: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return mu + s * torch.randn(n, d, generator=g, dtype=torch.float64)


def test_distances_are_registered():
    assert DISTANCES.names() == ["energy", "sliced_w2"]
    assert DISTANCES.get("energy") is energy_distance
    assert DISTANCES.get("sliced_w2") is sliced_wasserstein2


@pytest.mark.parametrize("distance", DISTANCE_FUNCTIONS)
def test_identical_sets_are_at_distance_zero(distance):
    x = normal(500, 3, seed=0)
    assert float(distance(x, x)) == 0.0
    assert float(distance(x, x.clone())) == 0.0
    assert float(distance(x, x.float())) == pytest.approx(0.0, abs=1e-6)
    # a permutation of the same points is the same empirical distribution
    assert float(distance(x, x[torch.randperm(500)])) == pytest.approx(0.0, abs=1e-12)
    # grid fields [N, C, H, W] are flattened to [N, C*H*W]
    fields = normal(40, 2 * 4 * 4, seed=1).reshape(40, 2, 4, 4)
    assert float(distance(fields, fields)) == 0.0
    assert float(distance(fields, fields + 0.1)) > 0


@pytest.mark.parametrize("distance", DISTANCE_FUNCTIONS)
def test_distances_grow_strictly_with_a_shift_and_are_symmetric(distance):
    x, y = normal(800, 2, seed=2), normal(600, 2, seed=3)
    direction = torch.tensor([1.0, 0.5], dtype=torch.float64)
    values = [float(distance(x, y + a * direction)) for a in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)]
    assert all(b > a for a, b in pairwise(values)), values
    assert values[0] >= 0
    # the same set shifted: strictly growing from exactly zero
    shifted = [float(distance(x, x + a * direction)) for a in (0.0, 0.1, 0.2, 0.4)]
    assert shifted[0] == 0 and all(b > a for a, b in pairwise(shifted))
    for a in (0.0, 1.0):
        forward, backward = distance(x, y + a * direction), distance(y + a * direction, x)
        assert float(forward) == pytest.approx(float(backward), rel=1e-12, abs=1e-15)


def test_sliced_w2_of_two_1d_gaussians_is_the_closed_form():
    n = 20_000
    x = normal(n, 1, seed=4)
    for mu, s in [(0.0, 1.0), (1.0, 1.0), (2.0, 0.5), (-1.5, 2.0)]:
        y = normal(n - 500, 1, seed=5, mu=mu, s=s)  # unequal counts: the quantile integral
        exact = mu**2 + (1 - s) ** 2  # W2^2(N(0, 1), N(mu, s^2))
        # sampling error: dominated by the means' error 2 |mu| sqrt(1/n + s^2/m)
        tolerance = 0.01 + 5 * 2 * abs(mu) * math.sqrt((1 + s**2) / n)
        # in 1D every direction is +-1: a few projections give the same value as many
        assert float(sliced_wasserstein2(x, y, projections=4)) == pytest.approx(
            exact, abs=tolerance
        )


def test_sliced_w2_in_two_dimensions_averages_the_projections():
    x = normal(200, 2, seed=6)
    v = torch.tensor([3.0, -4.0], dtype=torch.float64)  # |v|^2 = 25
    # a translate: W2^2 along theta is (theta . v)^2, whose mean over the circle is |v|^2 / 2
    # (the mean of 4000 values cos^2 has a relative spread of 1.1%)
    value = float(sliced_wasserstein2(x, x + v, projections=4000))
    assert value == pytest.approx(25 / 2, rel=0.05)
    # the projections are fixed by the seed
    y = normal(150, 2, seed=7, mu=0.5)
    assert float(sliced_wasserstein2(x, y, seed=3)) == float(sliced_wasserstein2(x, y, seed=3))
    assert float(sliced_wasserstein2(x, y, seed=3)) != float(sliced_wasserstein2(x, y, seed=4))
    with pytest.raises(ValueError, match="projections"):
        sliced_wasserstein2(x, y, projections=0)


def test_sliced_w2_with_unequal_counts_is_exact():
    # 6 and 4 atoms: the same measures as 12 atoms each (every atom repeated 2 and 3 times)
    a, b = normal(6, 1, seed=8), normal(4, 1, seed=9, mu=0.7)
    expected = sliced_wasserstein2(a.repeat_interleave(2, 0), b.repeat_interleave(3, 0))
    torch.testing.assert_close(sliced_wasserstein2(a, b), expected, rtol=1e-13, atol=0)
    # one atom against two: W2^2 = mean of the squared distances to it
    one = torch.tensor([[1.0]], dtype=torch.float64)
    two = torch.tensor([[0.0], [4.0]], dtype=torch.float64)
    assert float(sliced_wasserstein2(one, two)) == pytest.approx((1 + 9) / 2, rel=1e-14)


def test_energy_distance_by_hand_and_of_1d_gaussians():
    zero, one = torch.zeros(1, 1), torch.ones(1, 1)
    assert float(energy_distance(zero, one)) == pytest.approx(2.0)  # 2 |0 - 1|
    pair = torch.tensor([[0.0], [2.0]])
    # 2 * 1 - (0 + 2 + 2 + 0) / 4 - 0: the V-statistic keeps the i = j zeros
    assert float(energy_distance(pair, one)) == pytest.approx(1.0)
    # N(0, 1) against N(mu, 1) through their quantiles Phi^-1((i + 1/2) / n), which have
    # no sampling error: X - Y ~ N(mu, 2) gives
    # E|X - Y| = 2/sqrt(pi) e^(-mu^2/4) + mu erf(mu/2) and E|X - X'| = 2/sqrt(pi)
    u = (torch.arange(1000, dtype=torch.float64) + 0.5) / 1000
    quantiles = (math.sqrt(2) * torch.erfinv(2 * u - 1))[:, None]
    for mu in (0.0, 0.5, 1.0, 2.0, 3.0):
        cross = 2 / math.sqrt(math.pi) * math.exp(-(mu**2) / 4) + mu * math.erf(mu / 2)
        exact = 2 * cross - 4 / math.sqrt(math.pi)
        value = float(energy_distance(quantiles, quantiles + mu))
        assert value == pytest.approx(exact, abs=1e-3)
    # random samples: grows with mu (sampling noise ~0.03 against steps >= 0.14)
    x = normal(1000, 1, seed=10)
    values = [
        float(energy_distance(x, normal(1000, 1, seed=11, mu=mu)))
        for mu in (0.0, 0.5, 1.0, 2.0, 3.0)
    ]
    assert all(b > a for a, b in pairwise(values)), values
    assert values[0] < 0.02


def test_energy_distance_in_blocks_equals_one_block(monkeypatch):
    import pbdl_cli.evaluation.distribution as distribution

    x, y = normal(120, 3, seed=12), normal(80, 3, seed=13, mu=0.3)
    whole = energy_distance(x, y)
    monkeypatch.setattr(distribution, "_BLOCK", 500)  # blocks of 4-6 rows
    torch.testing.assert_close(energy_distance(x, y), whole, rtol=1e-12, atol=0)


@pytest.mark.parametrize("distance", DISTANCE_FUNCTIONS)
def test_distances_refuse_mismatched_sets(distance):
    with pytest.raises(ValueError, match="different sizes"):
        distance(torch.zeros(5, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="non-empty"):
        distance(torch.zeros(0, 2), torch.zeros(5, 2))


def test_mode_weights_of_a_labelled_set():
    labels = torch.tensor([0, 0, 1, 2, 2, 2, -1])
    torch.testing.assert_close(
        mode_weights(labels, 3), torch.tensor([2, 1, 3], dtype=torch.float64) / 7
    )
    assert mode_weights(labels, 4).tolist()[3] == 0.0
    even = torch.full((3,), 1 / 3, dtype=torch.float64)
    # TV: 1/2 (|2/7 - 1/3| + |1/7 - 1/3| + |3/7 - 1/3| + 1/7 unassigned)
    tv = 0.5 * (abs(2 / 7 - 1 / 3) + abs(1 / 7 - 1 / 3) + abs(3 / 7 - 1 / 3) + 1 / 7)
    assert float(mode_weight_error(labels, even)) == pytest.approx(tv, rel=1e-14)
    # covered: shares >= 1/2 * 1/3 -> modes 0 and 2, not mode 1 (1/7 < 1/6)
    assert float(mode_coverage(labels, even)) == pytest.approx(2 / 3)
    assert float(mode_coverage(labels, even, min_fraction=0.4)) == 1.0
    exact = torch.tensor([0, 1, 1, 1])
    assert float(mode_weight_error(exact, torch.tensor([0.25, 0.75]))) == 0.0
    assert float(mode_coverage(torch.zeros(10, dtype=torch.long), torch.tensor([0.5, 0.5]))) == 0.5
    for bad in (torch.tensor([0, 3]), torch.tensor([-2, 0]), torch.tensor([0.0, 1.0])):
        with pytest.raises(ValueError, match="labels must be integers"):
            mode_weights(bad, 3)


def test_mode_weights_of_gaussian_mixture_samples():
    gm = PROBLEMS.build({"name": "gaussian_mixture", "weights": [1.0, 3.0]})
    x = gm.sample(20_000, torch.Generator().manual_seed(14))
    labels = gm.component_of(x)
    shares = mode_weights(labels, gm.num_components)
    # the most-probable-component labels of the overlapping modes shift ~0.2% of the shares
    torch.testing.assert_close(shares, gm.weights, rtol=0, atol=0.02)
    assert float(mode_coverage(labels, gm.weights)) == 1.0
    only_one = gm.means[1].expand(100, 2)  # a collapsed model: every sample in mode 1
    assert float(mode_coverage(gm.component_of(only_one), gm.weights)) == 0.5
    assert float(mode_weight_error(gm.component_of(only_one), gm.weights)) == pytest.approx(0.25)


def test_pixel_moment_errors():
    reference = normal(50, 2 * 6 * 5, seed=15).reshape(50, 2, 6, 5)
    same = pixel_moment_errors(reference, reference.clone())
    assert set(same) == {
        "mean_mae",
        "std_mae",
        "mean_rel_l2",
        "std_rel_l2",
        "std_avg",
        "ref_std_avg",
    }
    for key in ("mean_mae", "std_mae", "mean_rel_l2", "std_rel_l2"):
        assert same[key].shape == (2,) and same[key].abs().max() == 0
    torch.testing.assert_close(same["std_avg"], same["ref_std_avg"])
    mean, std = pixel_moments(reference)
    assert mean.shape == std.shape == (2, 6, 5)
    torch.testing.assert_close(std, reference.std(0))
    # shift channel 0 by 0.5 and scale channel 1's spread by 2 around its mean
    samples = reference.clone()
    samples[:, 0] += 0.5
    samples[:, 1] = mean[1] + 2 * (reference[:, 1] - mean[1])
    errors = pixel_moment_errors(samples, reference)
    torch.testing.assert_close(errors["mean_mae"], torch.tensor([0.5, 0.0], dtype=torch.float64))
    torch.testing.assert_close(
        errors["std_mae"], torch.stack([torch.tensor(0.0), std[1].mean()]).double()
    )
    torch.testing.assert_close(errors["std_rel_l2"], torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(errors["std_avg"][1], 2 * errors["ref_std_avg"][1])
    # ensembles of different sizes are fine; different fields or one sample are not
    assert pixel_moment_errors(samples[:10], reference)["mean_mae"].shape == (2,)
    with pytest.raises(ValueError, match="different fields"):
        pixel_moment_errors(samples[:, :1], reference)
    with pytest.raises(ValueError, match="S >= 2"):
        pixel_moment_errors(samples[:1], reference)


def test_negative_log_likelihood():
    x = normal(40_000, 1, seed=16)

    def standard(batch: torch.Tensor) -> torch.Tensor:
        return -0.5 * batch[:, 0] ** 2 - 0.5 * math.log(2 * math.pi)

    # the entropy of N(0, 1): 1/2 log(2 pi e)
    value = float(negative_log_likelihood(standard, x))
    assert value == pytest.approx(0.5 * math.log(2 * math.pi * math.e), abs=0.02)
    batched = negative_log_likelihood(standard, x, batch_size=333)
    assert float(batched) == pytest.approx(value, rel=1e-12)
    # the book's mixture on its own samples: NLL = its entropy; a wider model scores worse
    gm = PROBLEMS.build({"name": "gaussian_mixture"})
    samples = gm.sample(20_000, torch.Generator().manual_seed(17))
    own = float(negative_log_likelihood(gm.log_density, samples))
    wider = PROBLEMS.build({"name": "gaussian_mixture", "variances": [2.0, 0.5]})
    assert float(negative_log_likelihood(wider.log_density, samples)) > own + 0.1
    with pytest.raises(ValueError, match=r"to \[B\]"):
        negative_log_likelihood(lambda b: b, x)
