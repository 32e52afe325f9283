"""Problem ``smoke`` (PBDL book §3.7) and differentiable physics through it (ch. 16)."""

from __future__ import annotations

import itertools

import h5py
import pytest
import torch

from pbdl_cli.methods import METHODS
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.solvers import SOLVERS, rollout
from tests.conftest import run_cli

CPU = torch.device("cpu")
#: the book's scheme (E3): semi-Lagrangian marker and velocity, one step per frame
BOOK_SOLVER = {
    "name": "ns_mac",
    "advection": "semi_lagrangian",
    "scalar_advection": "semi_lagrangian",
    "diffusion": "explicit",
    "substeps": 1,
}
#: max |velocity| after the first step and after each of the next 10 (book §3.7)
BOOK_MAX_VELOCITY = [
    0.1558497,
    0.4630,
    0.8966,
    1.4099,
    2.0411,
    2.9280,
    3.8395,
    4.5269,
    4.8680,
    5.1311,
    5.4839,
]
#: ch. 16: four plumes in a 32 x 40 box
DP_PROBLEM = {
    "resolution": [32, 40],
    "domain": [32.0, 40.0],
    "nu": 0.0,
    "inflow_centers": [[12, 4], [13, 6], [14, 5], [16, 5]],
    "inflow_radius": 3.0,
    "inflow_amount": 1 / 3,
    "t_end": 20.0,
    "dt": 1.0,
}
DP_SOLVER = {**BOOK_SOLVER, "scalar_advection": "maccormack", "diffusion": "none"}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def smoke(**options):
    return PROBLEMS.build({"name": "smoke", **options})


def start(problem, batch=1, dtype=torch.float64):
    params = problem.sample_params(batch, torch.Generator().manual_seed(0))
    state = problem.initial_state(params, torch.Generator()).to(dtype)
    return {k: v.to(dtype) for k, v in params.items()}, state


def max_velocity(state):
    return float(state[:, :2].abs().max())


def test_first_steps_match_the_book():
    """Mean marker after one step (exact: 52 inflow cells x 0.2 / 1280) and the max
    velocity of the first 11 steps (within 0.2 %, docs/problems/smoke.md)."""
    problem = smoke()
    solver = SOLVERS.build(BOOK_SOLVER, problem=problem)
    params, state = start(problem)
    ours = []
    for k in range(11):
        state = solver(state, problem.dt, params)
        if k == 0:
            assert float(state[:, 2].mean()) == pytest.approx(0.008125, rel=1e-9)
            assert float(state[:, 2].max()) == pytest.approx(0.2)
        ours.append(max_velocity(state))
    assert ours[0] == pytest.approx(BOOK_MAX_VELOCITY[0], rel=1e-4)
    for k, (book, value) in enumerate(zip(BOOK_MAX_VELOCITY, ours, strict=True)):
        assert value == pytest.approx(book, rel=5e-3), f"step {k}"
    assert float(solver.last_info.divergence.max()) < 1e-10  # exact DCT projection


def test_inflow_adds_its_amount_per_step_whatever_the_substeps():
    """The source rate is inflow_amount / dt: a step adds inflow_amount in the disc."""
    problem = smoke(buoyancy=0.0, inflow_amount=0.3, dt=2.0, t_end=4.0)
    mask = problem.inflow_mask(problem.sample_params(1, torch.Generator()))
    assert int(mask.sum()) == 52
    for substeps in (1, 3):
        solver = SOLVERS.build({**BOOK_SOLVER, "substeps": substeps}, problem=problem)
        params, state = start(problem)
        frames = rollout(solver, state, 2, problem.dt, params)
        assert torch.allclose(frames[0, 1, 2], 0.3 * mask[0], atol=1e-12)
        assert torch.allclose(frames[0, 2, 2], 0.6 * mask[0], atol=1e-12)
        assert float(frames[:, :, :2].abs().max()) < 1e-12  # no buoyancy: at rest


def test_inflow_positions_per_trajectory():
    problem = smoke(inflow_centers=[[20, 10], [60, 30]], inflow_radius=5.0)
    params = problem.sample_params(3, torch.Generator())
    assert params["inflow_x"].tolist() == [20, 60, 20]
    assert params["inflow_y"].tolist() == [10, 30, 10]
    masks = problem.inflow_mask(params)
    assert torch.equal(masks[0], masks[2]) and not torch.equal(masks[0], masks[1])
    jittered = smoke(inflow_jitter=[10.0, 2.0])
    a = jittered.sample_params(64, torch.Generator().manual_seed(1))
    b = jittered.sample_params(64, torch.Generator().manual_seed(1))
    assert torch.equal(a["inflow_x"], b["inflow_x"])  # deterministic per seed
    assert float((a["inflow_x"] - 30).abs().max()) <= 10
    assert float((a["inflow_y"] - 15).abs().max()) <= 2
    assert float(a["inflow_x"].std()) > 3
    with pytest.raises(Exception, match="inflow centre"):
        smoke(inflow_centers=[[1, 2, 3]])


def test_generate_smoke(tmp_path):
    result = run_cli(
        "generate",
        "problem=smoke",
        "problem.t_end=3",
        "problem.resolution=[16,20]",
        "problem.inflow_jitter=[5,2]",
        "data.n_train=2",
        "data.n_val=0",
        "data.n_test=0",
        f"data.root={tmp_path / 'data'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    (path,) = (tmp_path / "data" / "smoke").glob("*/train.h5")
    with h5py.File(path) as f:
        assert f["fields/marker"].shape == (2, 3, 1, 16, 20)
        assert float(f["fields/marker"][:, -1].max()) > 0.3  # two steps of 0.2
        x = f["params/inflow_x"][()]
        assert x.shape == (2,) and x[0] != x[1]


# -- differentiable physics (book ch. 16) ----------------------------------------------
def dp_setup(problem=None, dtype=torch.float64, **method):
    p = smoke(**{**DP_PROBLEM, **(problem or {})})
    s = SOLVERS.build(DP_SOLVER, problem=p)
    options = {
        "name": "dp",
        "target": "trajectory",
        "trajectories": 4,
        "match": ["marker"],
        "optimize": ["u", "v"],
        "reduction": "half_sum",
        **method,
    }
    m = METHODS.build(options, problem=p, device=CPU, dtype=dtype, solver=s)
    model = m.build_model({"name": "field", "init": "zeros"})
    return p, s, m, model


def test_dp_initial_loss_is_near_the_book():
    """Loss at iteration 0: 1/2 sum over cells, summed over the batch (book 298.29)."""
    _, _, m, model = dp_setup(dtype=torch.float32)
    assert model.value.shape == (4, 2, 32, 40)
    with torch.no_grad():
        loss = float(m.loss(model, 0)["loss"])
    assert loss == pytest.approx(304.1752, rel=1e-5)  # measured (float32)
    assert abs(loss / 298.286163 - 1) < 0.021  # 2.0% above the book's (its solver's details)
    assert m.validate(model)["obs_3"] == 0  # the reference matches itself


TINY = {
    "resolution": [8, 10],
    "domain": [8.0, 10.0],
    "inflow_centers": [[3, 2], [5, 2.5]],
    "inflow_radius": 1.5,
    "t_end": 4.0,
}


def test_dp_gradient_matches_finite_differences():
    """dL/du0 along a random direction vs a central difference, float64, tiny grid."""
    _, _, m, model = dp_setup(TINY, trajectories=2)
    g = torch.Generator().manual_seed(0)
    u0 = (0.3 * torch.randn(model.value.shape, generator=g, dtype=torch.float64)).requires_grad_()

    class Fixed(torch.nn.Module):
        def __init__(self, value):
            super().__init__()
            self.value = value

        def forward(self):
            return self.value

    loss = m.loss(Fixed(u0), 0)["loss"]
    (grad,) = torch.autograd.grad(loss, u0)
    assert float(grad[1].abs().max()) == 0  # the reference gets no gradient
    direction = torch.randn(u0.shape, generator=g, dtype=torch.float64)
    direction[1] = 0
    eps = 1e-6
    with torch.no_grad():
        plus = m.loss(Fixed(u0 + eps * direction), 0)["loss"]
        minus = m.loss(Fixed(u0 - eps * direction), 0)["loss"]
    fd = float(plus - minus) / (2 * eps)
    assert float((grad * direction).sum()) == pytest.approx(fd, rel=1e-5, abs=1e-9)
    assert abs(fd) > 1e-3


def test_dp_gradient_descent_lowers_the_loss_and_keeps_the_marker_fixed():
    p, _, m, model = dp_setup(TINY, trajectories=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for step in range(6):
        opt.zero_grad()
        loss = m.loss(model, step)["loss"]
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(b < a for a, b in itertools.pairwise(losses))
    assert losses[-1] < 0.9 * losses[0]
    prediction = m.predict(model)
    assert prediction.shape == (2, p.num_steps + 1, 3, 8, 10)
    assert float(prediction[:, 0, 2].abs().max()) == 0  # the marker is not optimized
    assert float(model.value.detach()[1].abs().max()) == 0  # the reference keeps u0 = 0


def test_dp_options_are_checked():
    with pytest.raises(Exception, match="not a field"):
        dp_setup(TINY, trajectories=2, optimize=["w"])
    with pytest.raises(Exception, match="needs target=trajectory"):
        METHODS.config({"name": "dp", "trajectories": 2})
    with pytest.raises(Exception, match="not one of the trajectories"):
        METHODS.config({"name": "dp", "target": "trajectory", "trajectories": 2, "reference": 2})


def test_smoke_dp_reproduction_is_registered():
    from pbdl_cli.reproduce.base import get

    repro = get("smoke_dp")
    assert [v.name for v in repro.variants] == ["dp"]
    assert any(c.quick for c in repro.checks)
