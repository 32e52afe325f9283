"""Error metrics (pbdl_cli/evaluation/metrics.py, and the drift metrics built on them) on
references with a non-zero mean, where "divided by the reference's RMS" and "divided by
its standard deviation" differ, and on predictions off by a constant bias."""

from __future__ import annotations

import math

import pytest
import torch

from pbdl_cli.evaluation.drift import correlation, rollout_summary, spectral_errors
from pbdl_cli.evaluation.metrics import METRICS, per_frame, summarize

N = 64  # cells: sin and cos on x_j = 2 pi j / N have discrete means of squares of exactly 1/2
X = torch.arange(N, dtype=torch.float64) * (2 * math.pi / N)


def fields(*means: float, frames: int = 3) -> torch.Tensor:
    """[B, T, C=1, X] references ``mean_b + sin(x)`` (the same in every frame)."""
    rows = [(m + torch.sin(X)).expand(frames, 1, N) for m in means]
    return torch.stack(rows)


def test_relative_errors_are_normalized_by_the_reference_rms_not_its_spread() -> None:
    reference = fields(3.0, -2.0)
    prediction = reference + 0.1 * torch.cos(X)  # rms(p - r) = 0.1 / sqrt(2)
    # rms(r) = sqrt(m^2 + 1/2): 0.1/sqrt(2)/sqrt(9.5) = 0.1/sqrt(19), 0.1/sqrt(2)/sqrt(4.5) = 0.1/3;
    # dividing by the standard deviation of r (1/sqrt(2)) instead would give 0.1 for both
    expected = torch.tensor([0.1 / math.sqrt(19), 0.1 / 3], dtype=torch.float64)
    for name in ("nrmse", "rel_l2"):
        values = METRICS.get(name)(prediction.reshape(2, -1), reference.reshape(2, -1))
        assert torch.allclose(values, expected, rtol=1e-12), name  # measured ~1e-16
        frames = per_frame(name, prediction, reference)  # [B, T]
        assert torch.allclose(frames, expected[:, None].expand(2, 3), rtol=1e-12)
        assert summarize(prediction, reference)[name] == pytest.approx(
            float(expected.mean()), rel=1e-12
        )
    curves = rollout_summary(prediction, reference, torch.arange(3.0), periodic=True).per_time
    assert torch.allclose(
        torch.as_tensor(curves["nrmse"]), torch.full((3,), float(expected.mean()))
    )


def test_a_constant_bias_is_an_error_for_every_metric_but_the_correlation() -> None:
    reference = fields(3.0)
    prediction = reference + 0.25
    values = summarize(prediction, reference)
    # the error p - r = 0.25 everywhere: it has no spread, but it is an error of 0.25
    assert values["mse"] == pytest.approx(0.0625, rel=1e-12)
    assert values["mae"] == pytest.approx(0.25, rel=1e-12)
    assert values["max_error"] == pytest.approx(0.25, rel=1e-12)
    assert values["rel_l2"] == pytest.approx(0.25 / math.sqrt(9.5), rel=1e-12)
    assert values["nrmse"] == pytest.approx(0.25 / math.sqrt(9.5), rel=1e-12)
    # adding the same constant to both changes none of the absolute errors
    shifted = summarize(prediction + 7.0, reference + 7.0)
    for name in ("mse", "mae", "max_error"):
        assert shifted[name] == pytest.approx(values[name], rel=1e-9), name  # measured ~1e-15
    # Pearson correlation is blind to an offset by definition: exactly correlated
    assert torch.allclose(correlation(prediction, reference), torch.ones(1, 3, dtype=torch.float64))


def test_spectral_errors_see_the_mean_as_the_zero_wavenumber() -> None:
    reference = fields(3.0)
    prediction = reference + 0.25  # the whole error sits in the mean (wavenumber 0)
    spectral = spectral_errors(prediction, reference, periodic=True)
    assert spectral is not None
    rel = 0.25 / math.sqrt(9.5)
    assert torch.allclose(spectral["rel_l2_low"], torch.full((1, 3), rel, dtype=torch.float64))
    assert float(spectral["rel_l2_high"].abs().max()) < 1e-12  # measured ~1e-17
    # energy of the mean 3.25^2 instead of 3^2, out of a total of 9 + 1/2
    expected = (3.25**2 - 3.0**2) / 9.5
    assert torch.allclose(
        spectral["spectral_error"], torch.full((1, 3), expected, dtype=torch.float64)
    )
