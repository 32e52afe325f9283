"""The ``ns_mac`` solver: gradients of a whole step, batch independence, a buoyant
smoke blob in a closed box, a channel with inflow, outflow and an obstacle."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.numerics.geometry import Boundary, Side, sphere_mask
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.problems.base import Grid, Problem
from pbdl_cli.problems.flow import FlowSetup
from pbdl_cli.registry import PluginConfig
from pbdl_cli.solvers import SOLVERS

F64 = torch.float64


@dataclasses.dataclass
class BoxConfig(PluginConfig):
    nx: int = 12
    ny: int = 16
    buoyancy: float = 1.0
    obstacle: bool = False
    channel: bool = False  # inflow v = 1 at y = 0, outflow at the top


class Box(Problem):
    """A closed box (or channel) with a marker blob; a test-only flow problem."""

    Config = BoxConfig
    fields = ("u", "v", "marker")
    t_end = 1.0
    dt = 1.0

    @property
    def grid(self) -> Grid:
        c = self.config
        return Grid((0.0, 0.0), (float(c.nx), float(c.ny)), (c.nx, c.ny), "dirichlet")

    def sample_params(self, n, generator):
        return {"nu": torch.full((n,), 0.05, dtype=F64)}

    def initial_state(self, params, generator):
        c = self.config
        state = torch.zeros(params["nu"].shape[0], 3, c.nx, c.ny, dtype=F64)
        blob = sphere_mask((c.nx, c.ny), (0, 0), (c.nx, c.ny), (c.nx / 2, c.ny / 4), 2.5)
        state[:, 2] = blob[0].to(F64)
        return state

    def flow_setup(self, params):
        c = self.config
        shape, lo, hi = (c.nx, c.ny), (0, 0), (c.nx, c.ny)
        obstacle = sphere_mask(shape, lo, hi, (c.nx / 2, c.ny * 0.6), 2.0) if c.obstacle else None
        boundary = Boundary.closed()
        if c.channel:
            wall = Side("no_slip")
            boundary = Boundary(wall, wall, Side("inflow", (0.0, 1.0)), Side("outflow"))
        return FlowSetup(boundary=boundary, obstacle=obstacle, buoyancy=c.buoyancy)


def make(solver=None, **problem):
    p = Box(BoxConfig(name="test_box", **problem))
    s = SOLVERS.build({"name": "ns_mac", **(solver or {})}, problem=p)
    return p, s


def random_state(problem, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    params = problem.sample_params(batch, g)
    state = problem.initial_state(params, g)
    state[:, :2] = 0.3 * torch.randn(state[:, :2].shape, generator=g, dtype=F64)
    state[:, 2] += 0.1 * torch.rand(state[:, 2].shape, generator=g, dtype=F64)
    return params, state


@pytest.mark.parametrize(
    ("solver", "problem"),
    [
        ({"advection": "semi_lagrangian", "scalar_advection": "semi_lagrangian"}, {}),
        ({"diffusion": "implicit", "cg_tol": 1e-13}, {"obstacle": True, "channel": True}),
    ],
)
def test_gradcheck_of_one_solver_step(solver, problem):
    p, s = make({"substeps": 1, "cg_tol": 1e-13, **solver}, nx=6, ny=5, **problem)
    params, state = random_state(p, 2, seed=1)
    state.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: s(x, 0.3, params), (state,), atol=1e-6, fast_mode=True
    )


def test_batch_of_three_matches_one_at_a_time():
    p, s = make({"diffusion": "implicit", "cg_tol": 1e-10}, obstacle=True, channel=True)
    params, state = random_state(p, 3, seed=2)
    state[1, :2] *= 5
    batched = s(state, 0.5, params)
    for k in range(3):
        single = s(state[k : k + 1], 0.5, {n: v[k : k + 1] for n, v in params.items()})
        assert torch.allclose(single[0], batched[k], atol=1e-10, rtol=0)


def test_buoyant_blob_rises_in_a_closed_box():
    p, s = make({"cg_tol": 1e-6}, obstacle=False)
    params, state = p.sample_params(1, torch.Generator()), None
    state = p.initial_state(params, torch.Generator())
    y = (torch.arange(p.config.ny, dtype=F64) + 0.5)[None, None]

    def centre_of_mass(x):
        m = x[:, 2]
        return float((m * y).sum() / m.sum())

    start = centre_of_mass(state)
    for _ in range(8):
        state = s(state, 0.5, params)
        assert bool(torch.isfinite(state).all())
        info = s.last_info
        assert bool(info.converged.all()) and float(info.divergence.max()) < 1e-5
    assert centre_of_mass(state) > start + 0.5
    assert float(state[:, 1].max()) > 0.1  # it moves upwards


def test_channel_with_obstacle_float32_runs_and_stays_divergence_free():
    p, s = make({"cg_tol": 1e-5}, obstacle=True, channel=True, buoyancy=0.0)
    params, state = random_state(p, 2)
    state = state.float()
    params = {k: v.float() for k, v in params.items()}
    for _ in range(4):
        state = s(state, 0.5, params)
    assert state.dtype == torch.float32 and bool(torch.isfinite(state).all())
    info = s.last_info
    assert bool(info.converged.all()) and int(info.iterations.min()) > 0
    # the inflow face keeps v = 1, the mean flow leaves through the top
    assert torch.allclose(state[:, 1, :, 0], torch.ones_like(state[:, 1, :, 0]))
    assert float(state[:, 1, :, -1].mean()) > 0.5


def test_solver_rejects_problems_without_flow_setup_and_says_what_it_needs():
    ns_mac = SOLVERS.get("ns_mac")
    assert ns_mac.supports(PROBLEMS.build({"name": "taylor_green"}))
    burgers = PROBLEMS.build({"name": "burgers"})
    assert not ns_mac.supports(burgers)
    with pytest.raises(PbdlError, match=r"cannot solve problem 'burgers'.*flow_setup"):
        SOLVERS.build({"name": "ns_mac"}, problem=burgers)
    with pytest.raises(PbdlError, match="diffusion_number"):
        SOLVERS.build({"name": "ns_mac", "diffusion_number": 0.9}, problem=make()[0])


def test_an_iteration_budget_too_small_for_the_pressure_solve_is_reported(caplog):
    """solver.cg_max_iter below what the obstacle channel needs: ns_mac says so once (with
    the residual and the option to raise) and its diagnostics show it; a budget that is
    large enough gives no warning."""
    problem, solver = make({"pressure": "cg", "cg_max_iter": 3}, obstacle=True, channel=True)
    params, state = random_state(problem, 2)
    with caplog.at_level(logging.WARNING, logger="pbdl.solvers.ns_mac"):
        for _ in range(2):
            state = solver(state, 0.5, params)
    warnings = [r for r in caplog.records if "did not converge" in r.getMessage()]
    assert len(warnings) == 1 and "cg_max_iter" in warnings[0].getMessage()
    assert not bool(solver.last_info.converged.any())
    assert solver.last_info.iterations.tolist() == [3, 3]
    caplog.clear()
    _, enough = make({"pressure": "cg", "cg_max_iter": 2000}, obstacle=True, channel=True)
    with caplog.at_level(logging.WARNING, logger="pbdl.solvers.ns_mac"):
        enough(random_state(problem, 2)[1], 0.5, params)
    assert bool(enough.last_info.converged.all()) and not caplog.records


def test_cfl_caps_the_substep_per_trajectory():
    """solver.cfl: max(|u|, |v|) h / min(dx, dy) <= cfl in every substep, counted per
    trajectory; without it (and without explicit diffusion) one substep per interval."""
    problem, capped = make({"diffusion": "none", "cfl": 0.5})
    _, free = make({"diffusion": "none"})
    params = problem.sample_params(2, torch.Generator())
    state = problem.initial_state(params, torch.Generator())
    state[0, 0, 5, 5] = 3.0  # max speed 3 on unit cells: 1 * 3 / 0.5 = 6 substeps
    state[1, 1, 4, 7] = -1.0  # max speed 1: 2 substeps
    assert capped.num_substeps(state, 1.0, params).tolist() == [6, 2]
    assert free.num_substeps(state, 1.0, params).tolist() == [1, 1]
