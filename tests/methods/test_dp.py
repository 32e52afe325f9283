"""The dp method: observations, gradients through the solver, the book's inverse problem."""

from __future__ import annotations

import math

import pytest
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods import METHODS
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.solvers import SOLVERS

CPU = torch.device("cpu")
BOOK = {"ic": "sine", "bc": "periodic", "nu": 0.01 / math.pi, "nx": 128, "dt": 1 / 32}


def setup(problem=None, solver="burgers_sl", dtype=torch.float64, **method):
    options = {**BOOK, "observe_t": [0.5], **(problem or {})}
    p = PROBLEMS.build({"name": "burgers", **options})
    s = SOLVERS.build({"name": solver, "substeps": 1}, problem=p)
    m = METHODS.build({"name": "dp", **method}, problem=p, device=CPU, dtype=dtype, solver=s)
    return p, s, m


def test_observations_sit_on_the_grid_and_equal_the_exact_solution():
    p, _, _ = setup({"observe_t": [0.25, 0.5], "observe_n": 10, "observe_seed": 3})
    obs = p.observations(p.sample_params(1, torch.Generator()))
    assert obs.x.shape == (20, 1) and obs.t.shape == (20, 1) and obs.u.shape == (20, 1)
    assert obs.frame.tolist() == [8] * 10 + [16] * 10
    assert len(set(obs.cell[:10].tolist())) == 10  # distinct cells per time
    exact = p.reference(p.times(), {"nu": torch.tensor([0.01 / math.pi])})[0, :, 0]
    assert torch.allclose(obs.u[:, 0], exact[obs.frame, obs.cell], atol=1e-14)
    assert torch.allclose(obs.x[:, 0], p.grid.cell_centres()[obs.cell])
    again = p.observations(p.sample_params(1, torch.Generator()))
    assert torch.equal(obs.u, again.u)  # deterministic
    noisy = PROBLEMS.build(
        {"name": "burgers", **BOOK, "observe_t": [0.5], "observe_noise": 0.1}
    ).observations({"nu": torch.tensor([0.01 / math.pi])})
    assert 0.05 < float((noisy.u - exact[16, :, None]).std()) < 0.2


def test_observe_t_must_be_an_output_time():
    with pytest.raises(Exception, match="not an output time"):
        PROBLEMS.build({"name": "burgers", **BOOK, "observe_t": [0.51]})


@pytest.mark.parametrize("solver", ["burgers_sl", "burgers_spectral"])
def test_gradient_through_the_solver_passes_gradcheck(solver):
    """dL/du0 of the observation misfit (4 solver steps, 16 cells) in float64."""
    _, _, m = setup(
        {"nx": 16, "dt": 1 / 8, "observe_t": [0.5], "observe_n": 12}, solver=solver, w_obs=2.0
    )
    model = m.build_model({"name": "field", "init": "normal", "scale": 0.5})
    u0 = model.value.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda u: m.loss(_Wrapped(u), 0)["loss"], (u0,), eps=1e-6, atol=1e-8
    )


class _Wrapped(torch.nn.Module):
    """A field model whose value is an outside tensor (for gradcheck)."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.v = value

    def forward(self) -> torch.Tensor:
        return self.v


def test_loss_is_the_mse_at_the_observed_frame_and_predict_rolls_out_everything():
    p, s, m = setup(w_obs=3.0)
    model = m.build_model({"name": "field"})
    with torch.no_grad():
        model.value.copy_(-torch.sin(math.pi * p.grid.cell_centres())[None, None])
    terms = m.loss(model, 0)
    frames = [model.value.detach()]
    for _ in range(16):
        frames.append(
            s(frames[-1], p.dt, {"nu": torch.tensor([0.01 / math.pi], dtype=torch.float64)})
        )
    exact = p.reference(torch.tensor([0.5]), m.params)[0, 0]
    expected = (frames[16] - exact).square().mean()
    assert float(terms["obs"].detach()) == pytest.approx(float(expected), rel=1e-12)
    assert float(terms["loss"].detach()) == pytest.approx(3 * float(expected), rel=1e-12)
    prediction = m.predict(model)
    assert prediction.shape == (1, 33, 1, 128) and prediction.dtype == torch.float64
    assert torch.allclose(prediction[0, 16], frames[16][0])


def test_gradient_descent_reconstructs_the_initial_state():
    """The book's setting (ch. 14): 50 GD steps at lr 5 from u0 = 0."""
    torch.set_num_threads(1)
    p, _, m = setup(dtype=torch.float32)
    model = m.build_model({"name": "field"})
    optimizer = torch.optim.SGD(model.parameters(), lr=5.0)
    losses = []
    for step in range(50):
        optimizer.zero_grad()
        terms = m.loss(model, step)
        terms["loss"].backward()
        optimizer.step()
        losses.append(float(terms["obs"].detach()))
    assert 0.3 < losses[0] < 0.5 and losses[-1] < 0.015 * losses[0]  # book: 0.383 -> 0.0033
    metrics = m.validate(model)
    assert metrics["mae"] < 0.08  # book: 0.064 (PINN: 0.193)
    truth = -torch.sin(math.pi * p.grid.cell_centres())
    error = (model.value.detach()[0, 0].double() - truth).abs().mean()
    assert error < 0.2  # u0 itself is only roughly determined by one late observation


def test_errors_are_clear():
    with pytest.raises(PbdlError, match="observe_t"):
        setup({"observe_t": []})
    _, _, m = setup()
    with pytest.raises(PbdlError, match="model=field"):
        m.build_model({"name": "mlp"})
