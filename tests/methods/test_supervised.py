"""The supervised method on point data; coordinate-network helpers; the oscillator PINN."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods import METHODS
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.problems.oscillator import damped_oscillation
from pbdl_cli.training import TrainerConfig, fit

CPU = torch.device("cpu")
TINY = {"name": "mlp", "depth": 2, "width": 16}


#: tiny networks train fastest on one thread (as ``pbdl train`` does: threads=1)
pytestmark = pytest.mark.usefixtures("one_thread")


def method(problem: dict, dtype=torch.float64, **options):
    problem = PROBLEMS.build(problem)
    options = {"name": "supervised", **options}
    return problem, METHODS.build(options, problem=problem, device=CPU, dtype=dtype)


def test_inputs_are_scaled_to_the_unit_box():
    _, osc = method({"name": "oscillator"})
    assert osc.in_features == 1  # t only
    t = torch.tensor([[0.0], [0.5], [1.0]], dtype=torch.float64)
    torch.testing.assert_close(osc.inputs(torch.zeros(3, 0), t), 2 * t - 1)
    torch.testing.assert_close(osc.data_inputs, 2 * osc.problem.observations(osc.params).t - 1)
    _, par = method({"name": "parabola", "n_data": 16})
    assert par.in_features == 1  # x only: static
    x = torch.tensor([[0.0], [0.25], [1.0]], dtype=torch.float64)
    torch.testing.assert_close(par.inputs(x, torch.zeros_like(x)), 2 * x - 1)
    _, burgers_pinn = method({"name": "burgers", "ic": "sine", "bc": "dirichlet"}, name="pinn")
    both = burgers_pinn.inputs(torch.tensor([[-1.0], [1.0]]), torch.tensor([[0.0], [1.0]]))
    torch.testing.assert_close(both, torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))


def test_grid_points_enumerate_time_then_space():
    x, t = METHODS.get("supervised").grid_points(
        [torch.tensor([0.0, 1.0]), torch.tensor([5.0, 6.0, 7.0])], torch.tensor([0.5, 0.25])
    )
    assert x.shape == (12, 2) and t.shape == (12, 1)
    assert x[:3].tolist() == [[0.0, 5.0], [0.0, 6.0], [0.0, 7.0]] and t[:6, 0].tolist() == [0.5] * 6
    x, t = METHODS.get("supervised").grid_points([], torch.tensor([0.5, 0.25]))
    assert x.shape == (2, 0) and t[:, 0].tolist() == [0.5, 0.25]


def test_fit_reduces_the_loss_and_predicts_on_the_output_grid(tmp_path):
    problem, m = method({"name": "oscillator"})
    model = m.build_model(TINY)
    first = float(m.loss(model, 0)["loss"].detach())
    config = TrainerConfig(max_steps=150, lr=1e-2, log_every=50, eval_every=0)
    result = fit(m, model, config, tmp_path, validate_key="rel_l2")
    assert result.terms["loss"] < first / 20 and set(result.terms) == {"loss", "data"}
    prediction = m.predict(model)
    assert prediction.shape == (1, 101, 1) and prediction.dtype == torch.float64
    observed = problem.observations(m.params)
    at_data = prediction[0, observed.frame, :]  # the observations lie on output frames
    mse = float((at_data - observed.u).square().mean())
    assert mse == pytest.approx(float(m.loss(model, 0)["loss"].detach()), rel=1e-12)
    metrics = m.validate(model)
    assert set(metrics) == {"rel_l2", "data_mse"}  # data_mse: the loss over all observations
    assert metrics["data_mse"] == pytest.approx(mse, rel=1e-5)
    assert math.isfinite(m.residual(model))


def test_minibatches_cover_each_epoch_and_resume_exactly(tmp_path):
    problem = {"name": "parabola", "n_data": 23, "nx": 16}
    _, m = method(problem, batch_size=5)  # 5 batches per epoch, the last one of 3
    epoch = [m.batch(s) for s in range(5)]
    assert [len(b) for b in epoch] == [5, 5, 5, 5, 3]
    assert sorted(torch.cat(epoch).tolist()) == list(range(23))
    assert not torch.equal(torch.cat(epoch), torch.cat([m.batch(s) for s in range(5, 10)]))

    def run(steps: int, folder: str, resume: bool = False) -> nn.Module:
        _, fresh = method(problem, dtype=torch.float32, batch_size=5)
        model = fresh.build_model(TINY)
        config = TrainerConfig(max_steps=steps, lr=1e-2, log_every=1, checkpoint_every=6)
        fit(fresh, model, config, tmp_path / folder, resume=resume)
        return model

    straight = run(12, "straight")
    run(6, "cut")
    resumed = run(12, "cut", resume=True)  # a new process: new method and model objects
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_static_problem_validates_with_its_own_metrics():
    _, m = method({"name": "parabola", "n_data": 8, "nx": 10})
    model = m.build_model(TINY)
    assert m.predict(model).shape == (1, 1, 1, 10)
    metrics = m.validate(model)
    assert {"residual", "branch_error", "branch_rel_l2", "positive_fraction"} <= set(metrics)

    class Root(nn.Module):  # the + branch written in the network's input: x = (s + 1) / 2
        def forward(self, s: torch.Tensor) -> torch.Tensor:
            return ((s + 1) / 2).sqrt()

    assert m.residual(Root()) < 1e-15
    assert m.validate(Root())["branch_error"] < 1e-15


def test_residual_of_the_exact_oscillation_vanishes():
    _, m = method({"name": "oscillator"})

    class Exact(nn.Module):  # t = (s + 1) / 2 from the scaled input s
        def forward(self, s: torch.Tensor) -> torch.Tensor:
            return damped_oscillation((s + 1) / 2, 1.0, 4.0, 400.0, 1.0, 0.0)

    assert m.residual(Exact()) < 1e-9
    assert m.validate(Exact())["rel_l2"] < 1e-15


def test_errors():
    with pytest.raises(PbdlError, match="no observations"):
        method({"name": "burgers"})
    with pytest.raises(PbdlError, match="batch_size"):
        method({"name": "oscillator"}, batch_size=-1)


def test_oscillator_pinn_trains_on_observations_and_physics(tmp_path):
    problem = PROBLEMS.build({"name": "oscillator"})
    options = {"name": "pinn", "constraints": "soft", "w_ic": 0.0, "w_pde": 1e-4}
    m = METHODS.build(
        options | {"n_collocation": 32}, problem=problem, device=CPU, dtype=torch.float32
    )
    assert m.points[0].shape == (32, 0) and m.points[1].shape == (32, 1)
    model = m.build_model(TINY)
    first = m.loss(model, 0)
    config = TrainerConfig(max_steps=60, lr=1e-2, log_every=10, eval_every=30)
    result = fit(m, model, config, tmp_path, validate_key="rel_l2")
    assert set(result.terms) == {"pde", "obs", "loss"}
    assert all(math.isfinite(v) for v in result.terms.values())
    assert result.terms["loss"] < float(first["loss"].detach())
    assert result.best is not None and m.predict(model).shape == (1, 101, 1)
    with pytest.raises(PbdlError, match="constraints=soft"):
        METHODS.build({"name": "pinn"}, problem=problem, device=CPU, dtype=torch.float32)
