"""The parabola teaser (y^2 = x, two branches): static grid, data, residual, branch metrics."""

from __future__ import annotations

import pytest
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.problems import PROBLEMS


def parabola(**options):
    return PROBLEMS.build({"name": "parabola", **options})


def test_static_problem_has_one_frame_at_t0():
    problem = parabola()
    assert problem.is_static and problem.t_end == 0
    assert problem.num_steps == 0 and problem.times().tolist() == [0.0]
    assert problem.grid.shape == (200,) and problem.fields == ("y",)
    x = problem.coords()["x"]
    assert x[0] == pytest.approx(0.0025) and x[-1] == pytest.approx(0.9975)
    assert problem.reference(problem.times(), {}) is None
    assert problem.default_solver is None
    with pytest.raises(PbdlError, match="static"):
        problem.initial_state({}, torch.Generator())


def test_observations_mix_both_branches():
    problem = parabola()
    obs = problem.observations({})
    assert obs.x.shape == obs.t.shape == obs.u.shape == (10000, 1)
    assert obs.x.dtype == torch.float64 and obs.x.min() >= 0 and obs.x.max() <= 1
    torch.testing.assert_close(obs.u.square(), obs.x, rtol=1e-14, atol=0)
    assert torch.equal(obs.t, torch.zeros_like(obs.t))
    positive = float((obs.u > 0).double().mean())
    assert 0.48 < positive < 0.52  # each sign with probability 1/2
    # per-sample MSE of the average f = 0 is E[x] = 1/2 (the book's supervised result)
    assert float(obs.u.square().mean()) == pytest.approx(0.5, abs=0.01)
    again, other = problem.observations({}), parabola(seed=1).observations({})
    assert torch.equal(obs.u, again.u) and not torch.equal(obs.x, other.x)
    assert len(parabola(n_data=7).observations({})) == 7


def test_residual_is_the_forward_operator_minus_the_measurement():
    problem = parabola()
    x = torch.rand(50, 1, dtype=torch.float64)
    for sign in (1, -1):
        r = problem.pde_residual(sign * x.sqrt(), x, None, {})
        assert r.abs().max() < 1e-15
    torch.testing.assert_close(problem.pde_residual(torch.zeros_like(x), x, None, {}), -x)


def test_metrics_measure_the_distance_to_the_nearest_branch():
    problem = parabola(nx=100)
    root = problem.grid.cell_centres().sqrt()
    plus = problem.metrics(root.reshape(1, 1, 1, -1), {})
    assert plus["branch_error"] == 0 and plus["branch_rel_l2"] == 0
    assert plus["residual"] < 1e-15 and plus["positive_fraction"] == 1
    minus = problem.metrics(-root.reshape(1, 1, 1, -1), {})
    assert minus["branch_error"] == 0 and minus["positive_fraction"] == 0
    zero = problem.metrics(torch.zeros(1, 1, 1, 100), {})
    assert zero["branch_error"] == pytest.approx(float(root.mean()))
    assert zero["branch_rel_l2"] == pytest.approx(1.0)
    assert zero["residual"] == pytest.approx(0.5)  # mean x over the cell centres
    # a mixture: + on the left half, - on the right half; both are valid
    mixed = torch.cat([root[:50], -root[50:]]).reshape(1, 1, 1, -1)
    assert problem.metrics(mixed, {})["branch_error"] == 0
    assert problem.metrics(mixed, {})["positive_fraction"] == 0.5


def test_config_validation():
    with pytest.raises(PbdlError, match="n_data"):
        parabola(n_data=0)
