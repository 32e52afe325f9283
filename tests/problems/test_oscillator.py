"""The damped oscillator problem: closed form vs RK4, residual, observations, 0-D grid."""

from __future__ import annotations

import pytest
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.problems.oscillator import damped_oscillation

REGIMES = {  # (m, mu, k): delta = mu / 2m vs omega0 = sqrt(k / m) = 20
    "under": (1.0, 4.0, 400.0),
    "critical": (1.0, 40.0, 400.0),
    "over": (2.0, 200.0, 800.0),
}


def oscillator(**options):
    return PROBLEMS.build({"name": "oscillator", **options})


def rk4(m: float, mu: float, k: float, u0: float, v0: float, t_end: float, steps: int):
    """Classical RK4 for (u, v)' = (v, -(mu v + k u) / m); returns u at every step [steps+1]."""
    h, u, v, out = t_end / steps, u0, v0, [u0]

    def f(u: float, v: float) -> tuple[float, float]:
        return v, -(mu * v + k * u) / m

    for _ in range(steps):
        k1 = f(u, v)
        k2 = f(u + h / 2 * k1[0], v + h / 2 * k1[1])
        k3 = f(u + h / 2 * k2[0], v + h / 2 * k2[1])
        k4 = f(u + h * k3[0], v + h * k3[1])
        u += h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        v += h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
        out.append(u)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("regime", REGIMES)
def test_exact_solution_matches_rk4_and_the_initial_conditions(regime):
    m, mu, k = REGIMES[regime]
    problem = oscillator(m=m, mu=mu, k=k, u0=0.5, v0=3.0)
    params = problem.sample_params(2, torch.Generator())
    exact = problem.reference(problem.times(), params)
    assert exact.shape == (2, 101, 1) and exact.dtype == torch.float64
    numerical = rk4(m, mu, k, 0.5, 3.0, 1.0, 10000)[::100]  # h = 1e-4, frames every 0.01
    torch.testing.assert_close(exact[0, :, 0], numerical, rtol=0, atol=1e-10)
    torch.testing.assert_close(exact[1], exact[0])
    t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    u = damped_oscillation(t, m, mu, k, 0.5, 3.0)
    (v,) = torch.autograd.grad(u.sum(), t)
    assert float(u.detach()) == pytest.approx(0.5, abs=1e-15) and float(v) == pytest.approx(
        3.0, abs=1e-12
    )


def test_regimes_behave_as_expected():
    """Under-damped oscillates (sign changes); critical and over-damped do not."""
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    signs = {
        name: int((torch.diff(torch.sign(damped_oscillation(t, *mmk, 1.0, 0.0))) != 0).sum())
        for name, mmk in REGIMES.items()
    }
    assert signs["under"] >= 6 and signs["critical"] == 0 and signs["over"] == 0
    # nearly critical from both sides: no cancellation in either closed form
    near = [damped_oscillation(t, 1.0, 40.0 + s, 400.0, 1.0, 0.0) for s in (-1e-9, 0, 1e-9)]
    torch.testing.assert_close(near[0], near[1], rtol=0, atol=1e-9)
    torch.testing.assert_close(near[2], near[1], rtol=0, atol=1e-9)
    # strongly over-damped: no overflow
    assert torch.isfinite(damped_oscillation(t, 1.0, 2000.0, 1.0, 1.0, 0.0)).all()


@pytest.mark.parametrize("regime", REGIMES)
def test_residual_of_the_exact_solution_vanishes(regime):
    m, mu, k = REGIMES[regime]
    problem = oscillator(m=m, mu=mu, k=k, v0=-2.0)
    params = problem.sample_params(1, torch.Generator())
    t = torch.linspace(0, 1, 201, dtype=torch.float64)[:, None].requires_grad_(True)
    x = torch.zeros(201, 0, dtype=torch.float64)
    u = damped_oscillation(t, m, mu, k, 1.0, -2.0)
    r = problem.pde_residual(u, x, t, params)
    assert r.shape == (201, 1)
    assert r.abs().max() < 1e-9 * k  # k u is of order k
    wrong = problem.pde_residual(u, x, t, {**params, "k": params["k"] * 1.1})
    assert wrong.abs().max() > 1  # the residual sees a wrong spring constant


def test_time_only_grid_and_output_times():
    problem = oscillator()
    assert problem.grid.num_spatial_dims == 0 and problem.grid.shape == ()
    assert problem.coords() == {} and not problem.is_static
    assert problem.num_steps == 100 and problem.times().shape == (101,)
    assert problem.times()[-1] == pytest.approx(1.0)
    params = problem.sample_params(3, torch.Generator())
    assert set(params) == {"m", "mu", "k"} and params["k"].tolist() == [400.0] * 3
    assert problem.initial_state(params, torch.Generator()).shape == (3, 1)
    assert problem.default_solver is None


def test_observations_are_deterministic_and_lie_in_the_first_part():
    problem = oscillator()
    params = problem.sample_params(1, torch.Generator())
    obs = problem.observations(params)
    assert obs.x.shape == (10, 0) and obs.t.shape == (10, 1) and obs.u.shape == (10, 1)
    assert len(obs) == 10 and obs.t.max() == pytest.approx(0.36) and obs.t.min() == 0
    torch.testing.assert_close(obs.u, problem.reference(obs.t[:, 0], params)[0])
    assert obs.frame.tolist() == list(range(0, 37, 4)) and obs.cell.tolist() == [0] * 10
    noisy = oscillator(observe_noise=0.1, observe_seed=3).observations(params)
    again = oscillator(observe_noise=0.1, observe_seed=3).observations(params)
    other = oscillator(observe_noise=0.1, observe_seed=4).observations(params)
    assert torch.equal(noisy.u, again.u) and not torch.equal(noisy.u, other.u)
    assert 0.01 < (noisy.u - obs.u).std() < 0.3
    off_grid = oscillator(observe_n=7).observations(params)  # 0.06 steps: still frames
    assert off_grid.frame is not None
    assert oscillator(observe_n=4, observe_t_max=0.355).observations(params).frame is None
    assert oscillator(observe_n=0).observations(params) is None


def test_config_validation():
    with pytest.raises(PbdlError, match="observe_t_max"):
        oscillator(observe_t_max=2.0)
    with pytest.raises(PbdlError, match="m > 0"):
        oscillator(m=0.0)
    with pytest.raises(PbdlError, match="multiple of dt"):
        oscillator(dt=0.3)
    free = oscillator(k=0.0, mu=0.0, v0=1.0)  # no forces: u = u0 + v0 t
    params = free.sample_params(1, torch.Generator())
    assert free.reference(torch.tensor([0.5]), params).item() == pytest.approx(1.5)
