"""Euler-Maruyama (``sde_euler``) on SDEs with closed-form moments: Brownian motion
(lambda1 = 0), an Ornstein-Uhlenbeck process (linear drift: mean, variance, weak order 1),
and the seeded, batch-independent noise streams."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor

from pbdl_cli.errors import PbdlError
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.problems.base import Params
from pbdl_cli.problems.sde_toy import SdeToy
from pbdl_cli.solvers import SOLVERS, rollout


def toy(**options: object) -> SdeToy:
    return PROBLEMS.build({"name": "sde_toy", **options})  # type: ignore[return-value]


class OrnsteinUhlenbeck(SdeToy):
    """dx = -theta x dt + g dW (theta = lambda1): E x = x0 e^(-theta t),
    Var x = g^2 (1 - e^(-2 theta t)) / (2 theta)."""

    def drift(self, x: Tensor, params: Params | None = None) -> Tensor:
        lam = self.config.lambda1 if params is None else params["lambda1"].to(x).view(-1, 1)
        return -lam * x


def simulate(problem: SdeToy, n: int, solver_dt: float, seed: int = 0) -> Tensor:
    """n trajectories [n, T, 1] in float64, all in one batch."""
    solver = SOLVERS.build({"name": "sde_euler", "dt": solver_dt}, problem=problem)
    params = problem.sample_params(n, torch.Generator().manual_seed(seed))
    x0 = problem.initial_state(params, torch.Generator())
    with torch.no_grad():
        return rollout(solver, x0, problem.num_steps, problem.dt, params)


def test_brownian_motion_has_variance_g2_t():
    problem = toy(lambda1=0.0, lambda2=0.5, t_end=1.0, frames=5)
    x = simulate(problem, 4000, 0.05)
    start = x[:, :1]
    increments = (x - start)[:, 1:, 0]  # [n, 4] at t = 0.25 .. 1
    t = problem.times()[1:]
    # the mean is 0 and the variance g^2 t, within 4 standard errors
    n = increments.shape[0]
    assert increments.mean(0).abs().max() < 4 * 0.5 * math.sqrt(1.0 / n)
    variance = increments.var(0)
    expected = 0.25 * t
    assert torch.all((variance / expected - 1).abs() < 4 * math.sqrt(2 / n))
    # independent increments: the covariance of W(t1) and W(t2) is g^2 min(t1, t2)
    cov = (increments[:, 0] * increments[:, 3]).mean()
    assert abs(float(cov) / (0.25 * 0.25) - 1) < 0.15


def ou(
    theta: float, solver_dt: float, n: int = 2000, g: float = 0.2
) -> tuple[OrnsteinUhlenbeck, Tensor]:
    problem = OrnsteinUhlenbeck(toy(lambda1=theta, lambda2=g, t_end=1.0, frames=3).config)
    return problem, simulate(problem, n, solver_dt)


def test_ornstein_uhlenbeck_mean_and_variance_of_the_scheme():
    """Euler-Maruyama's own moments for dx = -theta x dt + g dW with step h:
    E x_k = (1 - theta h)^k x0 and Var x_k = g^2 h sum_{j<k} (1 - theta h)^(2j)."""
    theta, h, g = 2.0, 0.05, 0.2
    problem, x = ou(theta, h, g=g)
    x0 = x[:, 0, 0]  # +-1 alternating
    assert torch.equal(x0[:4], torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64))
    scaled = x[:, :, 0] * x0[:, None]  # mirrored to start at +1: the same law
    k = torch.round(problem.times() / h)
    a = 1 - theta * h
    mean = a**k
    var = g**2 * h * (1 - a ** (2 * k)) / (1 - a**2)
    n = x.shape[0]
    assert torch.all((scaled.mean(0) - mean).abs() <= 4 * torch.sqrt(var / n) + 1e-12)
    assert torch.allclose(scaled[:, 1:].var(0), var[1:], rtol=4 * math.sqrt(2 / n))
    # and both are close to the exact process' (O(h))
    exact_var = g**2 * (1 - math.exp(-2 * theta)) / (2 * theta)
    assert abs(float(var[-1]) / exact_var - 1) < 0.1


def test_ornstein_uhlenbeck_mean_converges_with_weak_order_one():
    """E x_N = x0 (1 - theta h)^N exactly for Euler-Maruyama; its error against
    x0 e^(-theta t) halves with h. With g small, the sample mean shows it."""
    theta, errors = 1.0, []
    for h in (0.1, 0.05, 0.025):
        _, x = ou(theta, h, n=1000, g=0.01)
        scaled = x[:, -1, 0] * x[:, 0, 0]
        steps = round(1.0 / h)
        assert abs(float(scaled.mean()) - (1 - theta * h) ** steps) < 4 * 0.01 / math.sqrt(1000)
        errors.append(abs(float(scaled.mean()) - math.exp(-theta)))
    rates = [math.log2(a / b) for a, b in itertools.pairwise(errors)]
    assert all(0.8 < r < 1.2 for r in rates), (errors, rates)


def test_noise_streams_are_seeded_per_trajectory_and_batch_independent():
    problem = toy(t_end=1.0, frames=51)
    solver = SOLVERS.build({"name": "sde_euler"}, problem=problem)
    params = problem.sample_params(6, torch.Generator().manual_seed(3))
    x0 = problem.initial_state(params, torch.Generator())
    with torch.no_grad():
        together = rollout(solver, x0, problem.num_steps, problem.dt, params)
        alone = rollout(
            solver, x0[4:5], problem.num_steps, problem.dt, {k: v[4:5] for k, v in params.items()}
        )
        again = rollout(solver, x0, problem.num_steps, problem.dt, dict(params))
    torch.testing.assert_close(alone[0], together[4], rtol=0, atol=0)
    # the same parameter tensors continue their streams; a new rollout of the same
    # trajectories with fresh parameter tensors restarts them
    fresh = {k: v.clone() for k, v in params.items()}
    with torch.no_grad():
        restarted = rollout(solver, x0, problem.num_steps, problem.dt, fresh)
    assert not torch.equal(again, together)
    torch.testing.assert_close(restarted, together, rtol=0, atol=0)
    # trajectories differ from each other
    assert not torch.equal(together[0, 1:], together[2, 1:])


def test_substeps_follow_solver_dt_and_the_drift():
    problem = toy(lambda2=0.0, t_end=0.1, frames=6)  # no noise: explicit Euler of -7 x|x|
    solver = SOLVERS.build({"name": "sde_euler", "dt": 0.01}, problem=problem)
    params = problem.sample_params(2, torch.Generator())
    x0 = problem.initial_state(params, torch.Generator())
    assert int(solver.num_substeps(x0, problem.dt, params).max()) == 2
    with torch.no_grad():
        x = rollout(solver, x0, problem.num_steps, problem.dt, params)
    ref = 1.0
    for _ in range(10):
        ref = ref - 0.01 * 7 * ref * ref
    assert x[0, -1, 0].item() == pytest.approx(ref, rel=1e-12)
    assert x[1, -1, 0].item() == pytest.approx(-ref, rel=1e-12)


def test_refuses_problems_without_a_drift():
    with pytest.raises(PbdlError, match="drift"):
        SOLVERS.build({"name": "sde_euler"}, problem=PROBLEMS.build({"name": "oscillator"}))
