"""The Karman wake problem (PBDL book ch. 18): inflow strip, divergence with the cylinder,
vortex shedding, refinement and coarsening, and `pbdl generate data.refine=2`."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.numerics.mac import MacGrid
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.problems.karman import BOOK_RE_FACTOR, Karman, KarmanConfig
from pbdl_cli.solvers import SOLVERS
from pbdl_cli.stages.generate import burn_in
from tests.conftest import run_cli

F64 = torch.float64
BOOK_SCHEME = {
    "name": "ns_mac",
    "advection": "semi_lagrangian",
    "scalar_advection": "semi_lagrangian",
    "diffusion": "explicit",
    "pressure": "direct",
    "substeps": 1,
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _problem(**config) -> Karman:
    return PROBLEMS.build({"name": "karman", "warmup": 0.0, **config})


def _run(problem: Karman, steps: int, seed: int = 0, substeps: int = 1, dtype=F64):
    solver = SOLVERS.build({**BOOK_SCHEME, "substeps": substeps}, problem=problem)
    params = problem.sample_params(1, torch.Generator().manual_seed(seed))
    state = problem.initial_state(params, torch.Generator().manual_seed(seed)).to(dtype)
    params = {k: v.to(dtype) for k, v in params.items()}
    frames = []
    with torch.no_grad():
        for _ in range(steps):
            state = solver(state, problem.dt, params)
            frames.append(state)
    return torch.stack(frames, 1), solver


def test_setup_geometry_and_parameters():
    problem = _problem(re_range=[100.0, 1000.0])
    assert problem.grid.shape == (32, 64) and problem.grid.upper == (100.0, 200.0)
    assert problem.fields == ("u", "v")
    assert _problem(marker=True).fields == ("u", "v", "marker")
    re = problem.sample_params(200, torch.Generator().manual_seed(0))["re"]
    assert float(re.min()) >= 100 and float(re.max()) <= 1000
    assert float(torch.log(re).mean()) == pytest.approx(np.log(np.sqrt(1e5)), rel=0.05)
    nu = problem.viscosity({"re": torch.tensor([73.2421875], dtype=F64)})
    assert BOOK_RE_FACTOR == 0.625 and float(nu) == pytest.approx(0.625 / 73.2421875)
    solid = problem.obstacle()[0]
    assert int(solid.sum()) > 20 and bool(solid[16, 16]) and not bool(solid[16, 30])
    with pytest.raises(ValueError, match="re_range"):
        KarmanConfig(name="karman", re_range=[10.0, 1.0])
    with pytest.raises(ValueError, match="warmup"):
        KarmanConfig(name="karman", warmup=1.5)


def test_inflow_strip_holds_and_the_flow_is_divergence_free():
    problem = _problem()
    frames, solver = _run(problem, 5)
    # v faces at y = 0, 3.125 (inside y <= 5) are exactly 1, u there exactly 0
    assert torch.equal(frames[:, :, 1, :, :2], torch.ones_like(frames[:, :, 1, :, :2]))
    assert float(frames[:, :, 0, 1:, :2].abs().max()) == 0.0
    assert float(solver.last_info.divergence.max()) < 1e-10
    solid = problem.obstacle()[0]
    assert float(frames[0, -1, 1][solid].abs().max()) == 0.0  # no flow into the cylinder
    # the flux through the channel: what the strip pushes in leaves at the top
    assert float(frames[0, -1, 1, :, 40].sum()) == pytest.approx(32.0, rel=1e-6)


def test_a_parabolic_inflow_replaces_the_strip():
    """inflow_profile=parabolic: the bottom faces hold the face means of
    4 U x (W - x) / W^2 (flux 2/3 U W), there is no strip, and the flow stays
    divergence-free; with the strip's default depth the option is refused."""
    problem = _problem(inflow_profile="parabolic", inflow_depth=0.0)
    setup = problem.flow_setup(problem.sample_params(1, torch.Generator()))
    assert setup.velocity_regions == () and setup.boundary.y_lo.profile.value == "parabolic"
    frames, solver = _run(problem, 3)
    v_in = frames[0, -1, 1, :, 0]
    dx = problem.grid.spacing[0]
    assert float(v_in.sum()) * dx == pytest.approx(2 / 3 * 1.0 * 100.0, rel=1e-12)
    x = (torch.arange(32, dtype=F64) + 0.5) * dx
    assert torch.allclose(v_in, 4 * x * (100 - x) / 100**2 - dx**2 / (3 * 100**2), atol=1e-12)
    assert float(solver.last_info.divergence.max()) < 1e-10
    with pytest.raises(PbdlError, match="inflow_profile=parabolic needs inflow_depth=0"):
        _problem(inflow_profile="parabolic")


def test_the_wake_sheds_vortices_only_when_perturbed():
    """Behind the cylinder (x = 50, y ~ 90) the transverse velocity u oscillates after
    the start-up (shedding); without the initial perturbation the flow stays mirror
    symmetric about x = 50, so u there stays zero."""
    probe = {}
    for perturbation in (0.0, 0.1):
        frames, _ = _run(_problem(re=200.0, perturbation=perturbation), 150, seed=3)
        probe[perturbation] = frames[0, :, 0, 16, 28]  # the face at x = 50
    assert float(probe[0.0].abs().max()) < 1e-10
    late = probe[0.1][40:]
    assert float(late.max()) > 0.01 and float(late.min()) < -0.01  # both signs: oscillation


def test_the_burn_in_gives_each_trajectory_its_own_length_as_if_run_alone():
    """Karman.burn_in: warmup / dt steps plus 0..warmup_jitter per trajectory with the
    book's scheme in float32; generate's burn_in runs them in one call, and each
    trajectory's frame 0 is bit for bit what its own loop of solver steps gives."""
    problem = _problem(nx=8, ny=16, warmup=2.0, warmup_jitter=2, re_range=[100.0, 1000.0])
    params = problem.sample_params(3, torch.Generator().manual_seed(0))
    plan = problem.burn_in(params, torch.Generator().manual_seed(1))
    assert plan.dtype is torch.float32 and plan.solver == {**BOOK_SCHEME, "substeps": 1}
    assert plan.steps.shape == (3,) and bool(((plan.steps >= 2) & (plan.steps <= 4)).all())
    assert problem.refined(2).burn_in(params, torch.Generator()).solver["substeps"] == 2
    assert _problem().burn_in(params, torch.Generator()) is None  # warmup 0, no jitter
    plan = dataclasses.replace(plan, steps=torch.tensor([3, 0, 1]))
    u0 = problem.initial_state(params, torch.Generator().manual_seed(2))
    solver = SOLVERS.build(plan.solver, problem=problem)
    ticks = []
    frame0 = burn_in(solver, plan, u0, params, problem.dt, lambda: ticks.append(1), F64)
    assert frame0.dtype == torch.float32 and len(ticks) == 4
    for b, steps in enumerate((3, 0, 1)):
        alone = u0[b : b + 1].float()
        p = {k: v[b : b + 1].float() for k, v in params.items()}
        with torch.no_grad():
            for _ in range(steps):
                alone = solver(alone, problem.dt, p)
        assert torch.equal(frame0[b : b + 1], alone)
    assert not torch.equal(frame0[0], u0[0].float())  # the burn-in moved the flow


def test_refined_and_coarsened_states():
    problem = _problem(marker=True)
    fine = problem.refined(2)
    assert fine.grid.shape == (64, 128) and fine.refine == 2
    assert fine.grid.upper == problem.grid.upper and fine.refined(2).refine == 4
    assert fine.viscosity({"re": torch.tensor([100.0])}) == problem.viscosity(
        {"re": torch.tensor([100.0])}
    )
    state = torch.randn(2, 3, 64, 128, dtype=F64)
    coarse = problem.coarsen(state, 2)
    assert coarse.shape == (2, 3, 32, 64)
    # u: mean of the two fine faces on the coarse left face
    assert float(coarse[0, 0, 3, 5]) == pytest.approx(float(state[0, 0, 6, 10:12].mean()))


def test_a_coarsened_fine_state_is_divergence_free_on_the_coarse_grid():
    problem = _problem()
    frames, _ = _run(problem.refined(2), 3, substeps=2)
    coarse = problem.coarsen(frames[:, -1], 2)
    setup = problem.flow_setup({"re": torch.tensor([500.0])})
    mac = MacGrid(problem.grid.shape, problem.grid.lower, problem.grid.upper, setup.boundary)
    fx, fy = mac.extend(coarse[:, 0], coarse[:, 1])
    div = mac.divergence(fx, fy)[:, :, :-1]  # the top row's far face is not stored
    assert float(div.abs().max()) < 1e-8
    assert float(coarse[:, 1].abs().max()) > 0.5


def test_generate_with_refine_two(workdir):
    args = (
        "problem=karman",
        "problem.nx=8",
        "problem.ny=16",
        "problem.t_end=3",
        "problem.warmup=2",
        "problem.warmup_jitter=1",
        "problem.re_range=[100,1000]",
        "solver.advection=semi_lagrangian",
        "solver.pressure=direct",
        "solver.substeps=1",
        "data.refine=2",
        "data.n_train=2",
        "data.n_val=0",
        "data.n_test=1",
        "data.name=tiny",
    )
    result = run_cli("generate", *args, cwd=workdir)
    assert result.returncode == 0, result.stderr
    with h5py.File(workdir / "datasets" / "karman" / "tiny" / "train.h5") as f:
        assert f["fields/u"].shape == (2, 4, 1, 8, 16)
        assert f.attrs["refine"] == 2 and list(f.attrs["simulated_shape"]) == [16, 32]
        v = f["fields/v"][()]
        re = f["params/re"][()]
    assert np.isfinite(v).all() and np.allclose(v[:, :, 0, :, 0], 1.0)
    assert re.shape == (2,) and ((re >= 100) & (re <= 1000)).all()
