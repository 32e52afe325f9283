"""Numerics of the Burgers solvers: book reproduction, convergence orders, exactness
against Cole-Hopf, gradients, batching, boundaries and substepping."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.evaluation.metrics import rel_l2
from pbdl_cli.problems.cole_hopf import burgers_sine_exact
from pbdl_cli.solvers import rollout
from tests.conftest import REPO, build, initial

SOLVERS = ("burgers_sl", "burgers_spectral")


def solve(problem, solver, u0, params, t_end=None):
    steps = round((t_end or problem.t_end) / problem.dt)
    return rollout(solver, u0, steps, problem.dt, params)


def order(errors: list[float], ratio: float = 2.0) -> list[float]:
    return [math.log(a / b) / math.log(ratio) for a, b in itertools.pairwise(errors)]


# -- the book's numbers (PBDL ch. 3.6) ---------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sl_reproduces_book_chapter_3_6(dtype):
    n = 128
    problem, solver = build(
        {"nx": n, "nu": 0.01 / (n * math.pi), "ic": "sine", "bc": "periodic", "dt": 1 / 32},
        {"name": "burgers_sl", "substeps": 1},
    )
    params, u0 = initial(problem, dtype=dtype)
    book_initial = [0.49289819, 0.53499762, 0.57580819, 0.61523159, 0.65317284]
    assert u0[0, 0, 10:15].tolist() == pytest.approx(book_initial, abs=1e-7)
    traj = solve(problem, solver, u0, params)
    assert traj.shape == (1, 33, 1, n)
    book_final = [0.0057228, 0.01716715, 0.02861034, 0.040052, 0.05149214]
    assert traj[0, -1, 0, :5].tolist() == pytest.approx(book_final, abs=1e-7)


def test_sl_matches_phiflow_state_for_state():
    """The same scheme as PhiFlow's diffuse.explicit + advect.semi_lagrangian, to rounding."""
    reference = json.loads((REPO / "tests" / "fixtures" / "phiflow_book_case.json").read_text())
    n = 128
    problem, solver = build(
        {"nx": n, "nu": 0.01 / (n * math.pi), "ic": "sine", "bc": "periodic", "dt": 1 / 32},
        {"name": "burgers_sl", "substeps": 1},
    )
    params, u0 = initial(problem)
    traj = solve(problem, solver, u0, params)
    for step in (16, 32):
        expected = torch.tensor(reference[f"state_step{step}"], dtype=torch.float64)
        torch.testing.assert_close(traj[0, step, 0], expected, rtol=0, atol=1e-13)


# -- accuracy against the exact solution ------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spectral_matches_cole_hopf_at_nx_2048(dtype):
    """Raissi's benchmark (nu = 0.01/pi, -sin(pi x), u(±1) = 0) to relative L2 <= 1e-5 at t=1."""
    problem, solver = build(
        {"nx": 2048, "nu": 0.01 / math.pi, "ic": "sine", "bc": "dirichlet", "dt": 0.25}
    )
    params, u0 = initial(problem, dtype=dtype)
    traj = solve(problem, solver, u0, params)
    exact = problem.reference(problem.times(), params)
    errors = rel_l2(traj[0].double(), exact[0]).tolist()
    print(f"\n{dtype}: relative L2 error per output time {errors}")
    assert errors[-1] <= 1e-5


def test_reference_is_cole_hopf_for_both_boundaries_and_scales_with_amplitude():
    p_dir, _ = build({"nx": 64, "nu": 0.02, "ic": "sine", "bc": "dirichlet", "ic_amplitude": 2.0})
    p_per, _ = build({"nx": 64, "nu": 0.02, "ic": "sine", "bc": "periodic", "ic_amplitude": 2.0})
    params = {"nu": torch.tensor([0.02])}
    t = torch.tensor([0.0, 0.3])
    ref = p_dir.reference(t, params)
    assert torch.equal(ref, p_per.reference(t, params))
    assert ref[0, 0, 0].tolist() == pytest.approx(
        (-2 * torch.sin(math.pi * p_dir.coords()["x"])).tolist()
    )
    # u_A(x, t; nu) = A v(x, A t; nu / A)
    direct = 2 * burgers_sine_exact(p_dir.coords()["x"], 2 * t, 0.01)
    torch.testing.assert_close(ref[0, :, 0], direct)
    p_rand, _ = build({"ic": "sines"})
    assert p_rand.reference(t, params) is None


# -- convergence orders -----------------------------------------------------------------------
def test_sl_converges_first_order_in_space_and_time():
    """Refining dx with dt ~ dx (Courant 0.5): error against Cole-Hopf drops as O(dx)."""
    errors = []
    for n in (64, 128, 256, 512):
        problem, solver = build(
            {"nx": n, "nu": 0.02, "ic": "sine", "bc": "periodic", "t_end": 0.25, "dt": 0.25},
            {"name": "burgers_sl", "cfl": 0.5},
        )
        params, u0 = initial(problem)
        final = solve(problem, solver, u0, params)[:, -1]
        exact = problem.reference(torch.tensor([0.25], dtype=torch.float64), params)[:, 0]
        errors.append(rel_l2(final, exact).item())
    orders = order(errors)
    print(f"\nburgers_sl errors {errors}, observed orders {orders}")
    assert all(0.8 <= p <= 1.3 for p in orders), orders


def test_spectral_is_fourth_order_in_time():
    """ETDRK4: halving the substep divides the time error by ~16 (fixed grid)."""
    problem, _ = build({"nx": 64, "nu": 0.05, "ic": "sine", "t_end": 0.5, "dt": 0.5})
    params, u0 = initial(problem)

    def final(substeps: int) -> torch.Tensor:
        _, solver = build(
            {"nx": 64, "nu": 0.05, "ic": "sine", "t_end": 0.5, "dt": 0.5}, {"substeps": substeps}
        )
        return solve(problem, solver, u0, params)[:, -1]

    reference = final(1280)
    errors = [rel_l2(final(n), reference).item() for n in (20, 40, 80)]
    orders = order(errors)
    print(f"\nburgers_spectral time errors {errors}, observed orders {orders}")
    assert all(3.6 <= p <= 4.6 for p in orders), orders


def test_spectral_converges_exponentially_in_space():
    errors = []
    for n in (16, 32, 64):
        problem, solver = build(
            {"nx": n, "nu": 0.1, "ic": "sine", "bc": "periodic", "t_end": 0.5, "dt": 0.5},
            {"substeps": 1000},
        )
        params, u0 = initial(problem)
        final = solve(problem, solver, u0, params)[:, -1]
        exact = problem.reference(torch.tensor([0.5], dtype=torch.float64), params)[:, 0]
        errors.append(rel_l2(final, exact).item())
    orders = order(errors)
    print(f"\nburgers_spectral space errors {errors}, observed orders {orders}")
    assert errors[-1] < 1e-8
    assert orders[0] > 8  # far beyond any algebraic order


# -- gradients --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "substeps"), [("burgers_sl", 2), ("burgers_sl", 1), ("burgers_spectral", 2)]
)
@pytest.mark.parametrize("bc", ["periodic", "dirichlet"])
def test_gradcheck_through_solver_steps(name, substeps, bc):
    """Through two output steps, w.r.t. the initial state and the viscosity. For burgers_sl,
    two substeps keep the Courant number below 1 (upwind form), one exceeds it (gather)."""
    problem, solver = build(
        {"nx": 16, "nu": 0.01, "ic": "sines", "bc": bc, "t_end": 0.4, "dt": 0.2},
        {"name": name, "substeps": substeps},
    )
    params, u0 = initial(problem, batch=2)
    u0 = u0.clone().requires_grad_(True)
    nu = params["nu"].clone().requires_grad_(True)

    def f(u: torch.Tensor, viscosity: torch.Tensor) -> torch.Tensor:
        return rollout(solver, u, 2, problem.dt, {"nu": viscosity})

    assert torch.autograd.gradcheck(f, (u0, nu), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_sl_fast_path_equals_general_interpolation():
    from pbdl_cli.numerics.ghosts import extend, pad_ghosts
    from pbdl_cli.solvers.burgers_sl import sample_near, sample_periodic

    g = torch.Generator().manual_seed(1)
    u = torch.randn(3, 1, 20, generator=g, dtype=torch.float64)
    courant = 2 * torch.rand(3, 1, 20, generator=g, dtype=torch.float64) - 1  # |c| <= 1
    for periodic in (True, False):
        torch.testing.assert_close(
            sample_near(pad_ghosts(u, periodic), courant),
            sample_periodic(extend(u, periodic), courant),
        )


# -- batching, boundaries, substepping ---------------------------------------------------------
@pytest.mark.parametrize("name", SOLVERS)
@pytest.mark.parametrize("bc", ["periodic", "dirichlet"])
def test_batch_equals_members_run_alone(name, bc):
    problem, solver = build(
        {"nx": 64, "nu_range": [0.005, 0.05], "ic": "sines", "bc": bc, "t_end": 0.3, "dt": 0.1},
        {"name": name},
    )
    params, u0 = initial(problem, batch=4, seed=3)
    u0 = u0 * torch.tensor([0.5, 1.0, 1.5, 2.0], dtype=u0.dtype).view(-1, 1, 1)
    assert len(set(solver.num_substeps(u0, problem.dt, params).tolist())) > 1  # mixed counts
    together = solve(problem, solver, u0, params)
    for b in range(4):
        alone = solve(problem, solver, u0[b : b + 1], {"nu": params["nu"][b : b + 1]})
        torch.testing.assert_close(together[b : b + 1], alone, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", SOLVERS)
def test_periodic_shift_equivariance(name):
    """Periodic boundaries: shifting the initial state by k cells shifts the solution."""
    problem, solver = build(
        {"nx": 64, "ic": "sines", "bc": "periodic", "t_end": 0.2, "dt": 0.1}, {"name": name}
    )
    params, u0 = initial(problem)
    shifted = solve(problem, solver, u0.roll(17, -1), params)
    torch.testing.assert_close(shifted, solve(problem, solver, u0, params).roll(17, -1))


def test_spectral_conserves_momentum_with_periodic_bc():
    problem, solver = build({"nx": 128, "ic": "sines", "bc": "periodic", "t_end": 1.0, "dt": 0.25})
    params, u0 = initial(problem, batch=3)
    u0 = u0 + 0.3  # nonzero mean
    traj = solve(problem, solver, u0, params)
    mass = traj.sum(dim=-1)
    torch.testing.assert_close(mass, mass[:, :1].expand_as(mass), rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", SOLVERS)
def test_long_time_limit_depends_on_boundary(name):
    """Energy decays; periodic keeps the mean (-> constant 0.5), Dirichlet walls drain it (-> 0)."""
    base = {"nx": 32, "nu": 0.5, "ic": "sine", "t_end": 4.0, "dt": 0.5, "ic_amplitude": 0.3}
    for bc, limit in (("periodic", 0.5), ("dirichlet", 0.0)):
        problem, solver = build({**base, "bc": bc}, {"name": name})
        params, u0 = initial(problem)
        traj = solve(problem, solver, u0 + 0.5, params)
        energy = (traj - limit).square().sum(dim=-1).flatten()
        assert (energy[1:] <= energy[:-1] * (1 + 1e-9)).all(), f"{bc}: energy grows"
        assert (traj[0, -1] - limit).abs().max() < 0.02, f"{bc}: not near {limit}"


def test_dirichlet_walls_hold_zero():
    """Extrapolating to the wall faces gives u = O(dx^2) for bc=dirichlet."""
    for name in SOLVERS:
        problem, solver = build(
            {"nx": 256, "nu": 0.02, "ic": "sines", "bc": "dirichlet", "t_end": 0.5, "dt": 0.25},
            {"name": name},
        )
        params, u0 = initial(problem, batch=2)
        u = solve(problem, solver, u0, params)[:, -1, 0]
        walls = torch.stack([(3 * u[:, 0] - u[:, 1]) / 2, (3 * u[:, -1] - u[:, -2]) / 2])
        assert walls.abs().max() < 1e-3, name


def test_output_interval_is_independent_of_the_solver_step():
    """One interval of 0.3 or ten of 0.03 agree to the solver's accuracy."""
    coarse, solver = build({"nx": 128, "nu": 0.02, "ic": "sines", "t_end": 0.3, "dt": 0.3})
    fine, _ = build({"nx": 128, "nu": 0.02, "ic": "sines", "t_end": 0.3, "dt": 0.03})
    params, u0 = initial(coarse)
    a = solve(coarse, solver, u0, params)[:, -1]
    b = solve(fine, solver, u0, params)[:, -1]
    assert rel_l2(a, b).item() < 1e-6


def test_automatic_substeps_follow_stability_limits():
    problem, sl = build(
        {"nx": 100, "nu": 0.01, "ic": "sine", "dt": 0.1, "t_end": 1.0}, {"name": "burgers_sl"}
    )
    params, u0 = initial(problem)
    # diffusion: 0.45 dx^2 / nu = 0.018 -> ceil(0.1 / 0.018) = 6 substeps
    assert sl.num_substeps(u0, 0.1, params).tolist() == [6]
    _, spectral = build({"nx": 100, "nu": 0.01, "ic": "sine", "dt": 0.1}, {"cfl": 0.5})
    # advection: 0.5 dx / max|u| = 0.01 / max|u|
    expected = math.ceil(0.1 / (0.5 * 0.02 / u0.abs().max().item()))
    assert spectral.num_substeps(u0, 0.1, params).tolist() == [expected]
    _, fixed = build({"nx": 100}, {"substeps": 3})
    assert fixed.num_substeps(u0, 0.1, params).tolist() == [3]


def test_blow_up_is_reported_not_hidden():
    problem, solver = build({"nx": 32, "nu": 0.01, "dt": 0.1}, {"name": "burgers_sl"})
    params, u0 = initial(problem)
    with pytest.raises(PbdlError, match="no longer finite"):
        solver.step(u0 * float("nan"), 0.1, params)
    viscous, capped = build(
        {"nx": 32, "nu": 0.1, "dt": 0.1}, {"name": "burgers_sl", "max_substeps": 2}
    )
    params, u0 = initial(viscous)
    with pytest.raises(PbdlError, match="max_substeps"):  # needs 6 substeps
        capped.step(u0, 0.1, params)


def test_solver_rejects_wrong_shapes_and_problems():
    _, solver = build({"nx": 32})
    with pytest.raises(ValueError, match="batch dimension"):
        solver(torch.zeros(1, 32), 0.1, {"nu": torch.ones(1)})
