"""The pinn method: residual, constraints, sampling."""

from __future__ import annotations

import math

import pytest
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods import METHODS
from tests.conftest import build

CPU = torch.device("cpu")
TINY = {"name": "mlp", "depth": 2, "width": 8}


def pinn(dtype=torch.float64, **options):
    problem, _ = build(
        {"ic": "sine", "bc": "dirichlet", "nu": 0.01 / math.pi, "nx": 32, "dt": 0.25}
    )
    method = METHODS.build({"name": "pinn", **options}, problem=problem, device=CPU, dtype=dtype)
    return problem, method


def observed_burgers(**options):
    """Burgers observed at 6 random cells at t = 0.5 (the book's inverse setting, smaller)."""
    problem, _ = build(
        {"ic": "sine", "bc": "dirichlet", "nu": 0.01 / math.pi, "nx": 32, "dt": 0.25}
        | {"observe_t": [0.5], "observe_n": 6}
    )
    method = METHODS.build(
        {"name": "pinn", "n_collocation": 64, **options},
        problem=problem,
        device=CPU,
        dtype=torch.float64,
    )
    return problem, method


def test_burgers_residual_vanishes_for_the_viscous_shock():
    """u = -tanh(x / (2 nu)) is a steady solution: u u_x = nu u_xx."""
    problem, _ = pinn()
    nu = 0.05
    x = torch.linspace(-1, 1, 101, dtype=torch.float64)[:, None].requires_grad_(True)
    t = torch.rand(101, 1, dtype=torch.float64).requires_grad_(True)
    u = -torch.tanh(x / (2 * nu)) + 0 * t
    r = problem.pde_residual(u, x, t, {"nu": torch.tensor(nu, dtype=torch.float64)})
    assert r.abs().max() < 1e-12
    bad = problem.pde_residual(u, x, t, {"nu": torch.tensor(2 * nu, dtype=torch.float64)})
    assert bad.abs().max() > 1  # the residual sees a wrong viscosity


def test_hard_constraints_hold_exactly():
    _, method = pinn()
    model = method.build_model({"name": "mlp", "depth": 2, "width": 8})
    x = torch.linspace(-1, 1, 33, dtype=torch.float64)[:, None]
    at_zero = method.evaluate(model, x, torch.zeros_like(x))
    torch.testing.assert_close(at_zero, -torch.sin(math.pi * x))
    t = torch.rand(10, 1, dtype=torch.float64)
    for wall in (-1.0, 1.0):
        values = method.evaluate(model, torch.full_like(t, wall), t)
        assert values.abs().max() < 1e-15


@pytest.mark.parametrize("sampler", ["uniform", "lhs", "sobol"])
def test_collocation_points_cover_the_domain_and_resampling_follows_the_step(sampler):
    _, method = pinn(sampler=sampler, n_collocation=512, resample_every=3)
    x, t = method.points
    assert x.shape == t.shape == (512, 1)
    assert x.min() >= -1 and x.max() <= 1 and t.min() >= 0 and t.max() <= 1
    assert x.std() > 0.5 and t.std() > 0.25  # spread over the domain, not clumped
    model = method.build_model({"name": "mlp", "depth": 1, "width": 4})
    _, fresh = pinn(sampler=sampler, n_collocation=512, resample_every=3)
    for step in range(8):  # run through rounds 0, 1, 2
        method.loss(model, step)
    jump = fresh.loss(model, 7)  # a resumed run starts at step 7: same points (round 2)
    assert torch.equal(jump["loss"], method.loss(model, 7)["loss"])


def test_soft_constraints_and_errors():
    _, method = pinn(constraints="soft")
    model = method.build_model({"name": "mlp", "depth": 1, "width": 4})
    terms = method.loss(model, 0)
    assert set(terms) == {"pde", "ic", "bc", "loss"}
    assert torch.isclose(terms["loss"], terms["pde"] + terms["ic"] + terms["bc"])
    problem, _ = build({"ic": "sines", "bc": "dirichlet"})
    with pytest.raises(PbdlError, match=r"problem\.ic=sine"):
        METHODS.build({"name": "pinn"}, problem=problem, device=CPU, dtype=torch.float32)


def test_zero_weights_skip_terms_and_need_no_initial_state():
    """w_ic=0 (inverse problems: u0 unknown) works for a random initial state."""
    problem, _ = build({"ic": "sines", "bc": "dirichlet", "nx": 32, "dt": 0.25})
    method = METHODS.build(
        {"name": "pinn", "constraints": "soft", "w_ic": 0.0, "w_bc": 0.5, "n_collocation": 64},
        problem=problem,
        device=CPU,
        dtype=torch.float64,
    )
    model = method.build_model({"name": "mlp", "depth": 1, "width": 4})
    terms = method.loss(model, 0)
    assert set(terms) == {"pde", "bc", "loss"}  # no observations: burgers defines none here
    assert torch.isclose(terms["loss"], terms["pde"] + 0.5 * terms["bc"])
    _, data_only = observed_burgers(constraints="soft", w_pde=0.0, w_ic=0.0, w_bc=0.0)
    assert data_only.points is None
    assert set(data_only.loss(data_only.build_model(TINY), 0)) == {"obs", "loss"}
    with pytest.raises(PbdlError, match="every loss term"):
        pinn(constraints="soft", w_pde=0.0, w_ic=0.0, w_bc=0.0)  # burgers: no observations


def test_observation_term_is_the_mse_at_the_observed_points():
    problem, method = pinn(dtype=torch.float64, constraints="soft", w_obs=2.0)
    assert problem.observations(method.params) is None  # the default: nothing observed
    assert "obs" not in method.loss(method.build_model(TINY), 0)
    problem, method = observed_burgers(constraints="soft", w_obs=2.0)
    model = method.build_model(TINY)
    obs = problem.observations(method.params)
    assert len(obs) == 6 and obs.t.unique().tolist() == [0.5]
    expected = (model(torch.cat([obs.x, 2 * obs.t - 1], dim=1)) - obs.u).square().mean()
    terms = method.loss(model, 0)
    assert set(terms) == {"pde", "ic", "bc", "obs", "loss"}
    torch.testing.assert_close(terms["obs"], expected, rtol=1e-14, atol=0)
    total = terms["pde"] + terms["ic"] + terms["bc"] + 2.0 * terms["obs"]
    torch.testing.assert_close(terms["loss"], total)
    # hard constraints: the observation term sees the transformed output
    problem, hard = observed_burgers()
    model = hard.build_model(TINY)
    u = -torch.sin(math.pi * obs.x) + obs.t * (1 - obs.x**2) * model(
        torch.cat([obs.x, 2 * obs.t - 1], dim=1)
    )
    torch.testing.assert_close(hard.loss(model, 0)["obs"], (u - obs.u).square().mean())


def test_residual_on_the_output_grid():
    problem, method = pinn(dtype=torch.float64)
    model = method.build_model(TINY)
    x, t = method.grid_points([problem.grid.cell_centres()], problem.times())
    x.requires_grad_(True), t.requires_grad_(True)
    r = problem.pde_residual(method.evaluate(model, x, t), x, t, method.params)
    assert method.residual(model) == pytest.approx(float(r.detach().abs().mean()), rel=1e-12)


def test_time_only_and_static_problems():
    from pbdl_cli.problems import PROBLEMS

    oscillator = PROBLEMS.build({"name": "oscillator", "observe_n": 0})
    with pytest.raises(PbdlError, match=r"time-only: use method\.constraints=soft"):
        METHODS.build({"name": "pinn"}, problem=oscillator, device=CPU, dtype=torch.float64)
    forward = METHODS.build(
        {"name": "pinn", "constraints": "soft", "n_collocation": 16},
        problem=oscillator,
        device=CPU,
        dtype=torch.float64,
    )
    model = forward.build_model(TINY)
    terms = forward.loss(model, 0)
    assert set(terms) == {"pde", "ic", "loss"}  # no walls, no observations (observe_n=0)
    t0 = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
    u0 = model(2 * t0 / 1.0 - 1)
    (v0,) = torch.autograd.grad(u0, t0)
    # u(0) = 1 and u'(0) = 0 (initial_rate) both enter the initial term
    assert float(terms["ic"].detach()) == pytest.approx(
        float((u0.detach() - 1) ** 2 + v0**2), rel=1e-12
    )

    parabola = PROBLEMS.build({"name": "parabola", "n_data": 32, "nx": 20})
    physics = METHODS.build(
        {"name": "pinn", "constraints": "soft", "w_obs": 0.0, "n_collocation": 64},
        problem=parabola,
        device=CPU,
        dtype=torch.float64,
    )
    x, t = physics.points
    assert x.shape == (64, 1) and torch.equal(t, torch.zeros(64, 1, dtype=torch.float64))
    model = physics.build_model(TINY)
    terms = physics.loss(model, 0)
    assert set(terms) == {"pde", "loss"}  # static: no initial term; bc 'none': no walls
    y = model(2 * x - 1)
    torch.testing.assert_close(terms["pde"], (y**2 - x).square().mean())
    assert physics.predict(model).shape == (1, 1, 1, 20)


@pytest.mark.parametrize("nu_pi", [0.1, 0.05])
def test_burgers_residual_of_the_cole_hopf_solution_vanishes(nu_pi):
    """Burgers.pde_residual (autograd, as the PINN uses it) of the exact solution is ~0.

    The Cole-Hopf solution for -sin(pi x) written as its Fourier-Bessel series, in torch
    ops so that autograd differentiates it: u = 4 pi nu sum_k (-1)^k k r_k e^{-k^2 tau}
    sin(k pi x) / (1 + 2 sum_k (-1)^k r_k e^{-k^2 tau} cos(k pi x)), tau = nu pi^2 t,
    r_k = I_k(a) / I_0(a), a = 1 / (2 pi nu); checked against the reference first.
    """
    from pbdl_cli.problems.cole_hopf import _bessel_ratios, burgers_sine_exact

    problem, _ = pinn()
    nu = nu_pi / math.pi
    r = torch.from_numpy(_bessel_ratios(1 / (2 * math.pi * nu)))[1:]
    k = torch.arange(1, r.numel() + 1, dtype=torch.float64)
    sign = (-1.0) ** k

    def exact(x, t):
        decay = r * sign * torch.exp(-(k**2) * nu * math.pi**2 * t)  # [N, K]
        num = 4 * math.pi * nu * (decay * k * torch.sin(math.pi * k * x)).sum(-1, keepdim=True)
        den = 1 + 2 * (decay * torch.cos(math.pi * k * x)).sum(-1, keepdim=True)
        return num / den

    g = torch.Generator().manual_seed(0)
    x = (2 * torch.rand(400, 1, generator=g, dtype=torch.float64) - 1).requires_grad_(True)
    t = torch.rand(400, 1, generator=g, dtype=torch.float64).requires_grad_(True)
    u = exact(x, t)
    xs, ts = torch.linspace(-1, 1, 33, dtype=torch.float64), torch.tensor([0.0, 0.3, 1.0])
    reference = burgers_sine_exact(xs, ts, nu)  # [T, X]
    series = exact(xs[None, :, None], ts[:, None, None])[..., 0]
    assert torch.allclose(series, reference, atol=1e-12)
    params = {"nu": torch.tensor(nu, dtype=torch.float64)}
    residual = problem.pde_residual(u, x, t, params)
    (u_t,) = torch.autograd.grad(u.sum(), t, retain_graph=True)
    # round-off only (the series' denominator is ~1e-8 near x = 0 at early times)
    assert residual.abs().max() < 1e-6 and u_t.abs().max() > 1
    wrong = problem.pde_residual(u, x, t, {"nu": torch.tensor(1.5 * nu, dtype=torch.float64)})
    assert wrong.abs().max() > 1e-2  # the residual does see the viscosity
