"""Taylor-Green vortex: energy decay rate and second-order spatial convergence of the
``ns_mac`` solver against the exact solution, and the problem's hooks."""

from __future__ import annotations

import math

import torch

from pbdl_cli.numerics.diffusion import face_laplacian
from pbdl_cli.numerics.geometry import Boundary
from pbdl_cli.numerics.mac import MacGrid
from pbdl_cli.numerics.pressure import PressureSystem, project
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.solvers import SOLVERS


def simulate(n: int, t_end: float, dt: float, nu: float = 0.1, **solver):
    problem = PROBLEMS.build(
        {"name": "taylor_green", "n": n, "nu": nu, "t_end": t_end, "dt": t_end}
    )
    stepper = SOLVERS.build({"name": "ns_mac", "substeps": 1, **solver}, problem=problem)
    params = problem.sample_params(1, torch.Generator())
    state = problem.initial_state(params, torch.Generator())
    start = state
    for _ in range(round(t_end / dt)):
        state = stepper(state, dt, params)
    exact = problem.reference(torch.tensor([t_end]), params)[:, 0]
    return problem, start, state, exact


def test_kinetic_energy_decays_at_the_exact_rate():
    """Rate -ln(E(T)/E(0))/T of the discrete energy vs 4 nu (nu=0.1, n=32, T=0.2,
    dt=0.005, MacCormack, explicit diffusion): measured 0.32% too fast."""
    problem, start, end, _ = simulate(32, 0.2, 0.005)
    rate = -math.log(float(problem.kinetic_energy(end) / problem.kinetic_energy(start))) / 0.2
    assert abs(rate - 0.4) / 0.4 < 0.01, rate


def test_velocity_error_converges_at_second_order():
    """Max velocity error at T=0.32 vs the exact solution for n = 16, 32, 64 with
    dt = 0.08 (16/n)^2 (so the O(dt) time error is O(dx^2) too): orders 1.87 and 1.97."""
    errors = []
    for n in (16, 32, 64):
        _, _, end, exact = simulate(n, 0.32, 0.08 * (16 / n) ** 2)
        errors.append(float((end - exact).abs().max()))
    orders = [math.log2(errors[k] / errors[k + 1]) for k in range(2)]
    assert min(orders) >= 1.8, (errors, orders)


def test_spatial_operators_converge_at_second_order():
    """The discrete face Laplacian of the exact field (vs -2 u) and the projection of
    exact field + grad(phi) sampled at the faces (vs the exact field)."""
    lap_err, proj_err = [], []
    for n in (16, 32, 64):
        mac = MacGrid((n, n), (0, 0), (2 * math.pi,) * 2, Boundary.periodic(), dtype=torch.float64)
        (xu, yu), (xv, yv) = mac.face_positions(0), mac.face_positions(1)
        u = (torch.sin(xu) * torch.cos(yu))[None]
        v = (-torch.cos(xv) * torch.sin(yv))[None]
        lap = face_laplacian(mac, u, 0)
        lap_err.append(float((lap + 2 * u).abs().max()))
        # phi = sin(x + 2 y): grad = (cos(x + 2y), 2 cos(x + 2y))
        gu, gv = torch.cos(xu + 2 * yu)[None], 2 * torch.cos(xv + 2 * yv)[None]
        px, py, _, _ = project(mac, u + gu, v + gv, PressureSystem(mac, "fft"))
        proj_err.append(float(torch.maximum((px - u).abs().max(), (py - v).abs().max())))
    for errors in (lap_err, proj_err):
        orders = [math.log2(errors[k] / errors[k + 1]) for k in range(2)]
        assert min(orders) >= 1.9, (errors, orders)


def test_reference_initial_state_and_coarsening():
    problem = PROBLEMS.build({"name": "taylor_green", "n": 8, "nu": 0.05, "t_end": 0.2, "dt": 0.1})
    params = problem.sample_params(2, torch.Generator())
    ref = problem.reference(problem.times(), params)
    assert ref.shape == (2, 3, 2, 8, 8)
    assert torch.equal(ref[:, 0], problem.initial_state(params, torch.Generator()))
    decay = ref[:, 2].abs().amax() / ref[:, 0].abs().amax()
    assert math.isclose(float(decay), math.exp(-2 * 0.05 * 0.2), rel_tol=1e-12)
    fine = problem.refined(2)
    coarse = fine.coarsen(fine.reference(problem.times(), params)[:, 1], 2)
    assert torch.allclose(coarse, ref[:, 1], atol=0.02)  # face averages of the finer field
    mac = MacGrid((8, 8), (0, 0), (2 * math.pi,) * 2, Boundary.periodic(), dtype=torch.float64)
    assert float(mac.divergence(coarse[:, 0], coarse[:, 1]).abs().max()) < 1e-12
