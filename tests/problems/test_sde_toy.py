"""The SMDP toy SDE problem: drift, parameters and initial states, the distribution p_0."""

from __future__ import annotations

import pytest
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.problems.distribution import Distribution


def toy(**options: object):
    return PROBLEMS.build({"name": "sde_toy", **options})


def test_drift_is_minus_lambda1_sign_x_x_squared():
    problem = toy()
    x = torch.tensor([[-2.0], [-0.5], [0.0], [0.3], [1.0]], dtype=torch.float64)
    expected = torch.tensor([[28.0], [1.75], [0.0], [-0.63], [-7.0]], dtype=torch.float64)
    torch.testing.assert_close(problem.drift(x), expected)
    params = {"lambda1": torch.full((5,), 2.0, dtype=torch.float64)}
    torch.testing.assert_close(problem.drift(x, params), expected * 2 / 7)
    assert problem.diffusion(x).shape == (5, 1)
    assert float(problem.diffusion(x)[0, 0]) == pytest.approx(0.03)


def test_frames_parameters_and_alternating_initial_states():
    problem = toy()
    assert problem.num_steps == 499 and problem.state_shape == (1,)
    torch.testing.assert_close(problem.times(), torch.linspace(0, 10, 500, dtype=torch.float64))
    params = problem.sample_params(5, torch.Generator().manual_seed(0))
    x0 = problem.initial_state(params, torch.Generator())
    torch.testing.assert_close(x0[:, 0], torch.tensor([1.0, -1, 1, -1, 1], dtype=torch.float64))
    seeds = params["noise_seed"]
    assert torch.equal(seeds - seeds[0], torch.arange(5, dtype=torch.float64))
    assert float(seeds[-1]) < 2**24  # exact in float32
    other = problem.sample_params(5, torch.Generator().manual_seed(1))["noise_seed"]
    assert not torch.equal(other, seeds)


def test_distribution_p0_is_plus_minus_x0_with_equal_weights():
    problem = toy(x0=2.0)
    assert isinstance(problem, Distribution) and problem.condition_shape is None
    y = problem.reference_samples(4000, torch.Generator().manual_seed(0))
    assert y.shape == (4000, 1) and set(y.unique().tolist()) == {-2.0, 2.0}
    labels = problem.mode_labels(y)
    assert labels.dtype == torch.int64 and torch.equal(labels, (y[:, 0] > 0).long())
    assert abs(float(labels.double().mean()) - 0.5) < 0.04
    torch.testing.assert_close(problem.mode_weights(), torch.tensor([0.5, 0.5]).double())
    assert problem.draw(10, torch.Generator()).y.shape == (10, 1)


def test_sample_metrics_and_metrics_of_paths():
    problem = toy()
    y = torch.tensor([[1.1], [-0.95], [0.5], [-1.0]], dtype=torch.float64)
    m = problem.sample_metrics(y)
    assert m["positive_fraction"] == 0.5
    assert m["near_mode"] == 0.75
    assert m["mode_distance"] == pytest.approx((0.1 + 0.05 + 0.5 + 0.0) / 4)
    paths = torch.cat([y[:, None], torch.zeros(4, 3, 1, dtype=torch.float64)], 1)
    assert problem.metrics(paths, {})["mode_weight_error"] == 0.0


def test_config_is_checked():
    with pytest.raises(PbdlError, match="x0"):
        toy(x0=0.0)
    with pytest.raises(PbdlError, match="frames"):
        toy(frames=1)
