"""problem=hhd and method=projection: the learned Helmholtz-Hodge projection (book ch. 9)."""

from __future__ import annotations

import json

import pytest
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods import METHODS
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.problems.hhd import noise
from tests.conftest import run_cli

CPU = torch.device("cpu")
OBSTACLE_KEYS = (
    "obstacle_marker_rel_l2",
    "obstacle_marker_rel_l2_unprojected",
    "obstacle_div_nn",
    "obstacle_div_nn_input",
    "obstacle_div_exact",
    "obstacle_div_unprojected",
)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make(**options):
    return PROBLEMS.build({"name": "hhd", **options})


def method(problem, dtype=torch.float64, **options):
    config = {"name": "projection", **options}
    return METHODS.build(config, problem=problem, device=CPU, dtype=dtype)


def test_sampler_is_deterministic_divergent_and_scaled():
    a, b = make(), make()
    train = a.data("train")
    assert train.shape == (100, 2, 32, 32) and train.dtype == torch.float64
    assert torch.equal(train, b.data("train"))
    assert not torch.equal(train, make(seed=1).data("train"))
    assert a.data("test").shape == (10, 2, 32, 32)
    # unit standard deviation and zero mean per field and component
    torch.testing.assert_close(
        train.std(dim=(2, 3), correction=0), torch.ones(100, 2, dtype=torch.float64)
    )
    assert train.mean(dim=(2, 3)).abs().max() < 1e-12
    # divergent, and the finer OOD noise (scale 2) much more so than scale 10
    train_div = a.div_loss(train).mean()
    test_div = a.div_loss(a.data("test")).mean()
    assert 200 < train_div < 450  # phiflow's Noise: ~310 (book: 390)
    assert 1500 < test_div < 2700  # book: 2059
    # scale acts through the high-pass cut: larger structures, smaller divergence
    coarse = noise(20, 32, scale=20.0, generator=torch.Generator().manual_seed(0))
    fine = noise(20, 32, scale=2.0, generator=torch.Generator().manual_seed(0))
    assert a.div_loss(coarse).mean() < 0.5 * a.div_loss(fine).mean()
    with pytest.raises(ValueError, match="keeps no Fourier mode"):
        noise(1, 8, scale=0.01)


def test_divergence_gradient_and_loss_match_a_hand_computation():
    problem = make(n=4, size=2.0)  # dx = 0.5
    g = torch.Generator().manual_seed(3)
    state = torch.randn(2, 2, 4, 4, generator=g, dtype=torch.float64)
    p = torch.randn(2, 4, 4, generator=g, dtype=torch.float64)
    h = 0.5
    u = state.clone()
    for b in range(2):
        for i in range(4):
            for j in range(4):
                u[b, 0, i, j] -= (p[b, i, j] - p[b, i - 1, j]) / h  # u on left faces
                u[b, 1, i, j] -= (p[b, i, j] - p[b, i, j - 1]) / h  # v on bottom faces
    loss = torch.zeros(2, dtype=torch.float64)
    for b in range(2):
        for i in range(4):
            for j in range(4):
                div = (u[b, 0, (i + 1) % 4, j] - u[b, 0, i, j]) / h
                div += (u[b, 1, i, (j + 1) % 4] - u[b, 1, i, j]) / h
                loss[b] += div**2
    corrected = problem.correct(state, p)
    torch.testing.assert_close(corrected, u)
    torch.testing.assert_close(problem.div_loss(corrected), loss)
    # the method's loss is the batch mean of it (identity "network" returning p)
    m = method(problem)
    m.train_fields = state

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return p[:, None]

    torch.testing.assert_close(m.loss(Fixed(), 0)["loss"], loss.mean())


def test_exact_projection_removes_the_divergence():
    problem = make()
    solved, p = problem.project(problem.data("test"))
    assert problem.div_loss(solved).max() < 1e-20
    assert p.mean(dim=(1, 2)).abs().max() < 1e-12  # the zero-mean pressure
    metrics = problem.metrics(solved[:, None], {})
    assert metrics["div_loss"] < 1e-20 and metrics["solver_div_loss"] < 1e-20
    assert metrics["input_div_loss"] > 1000


def test_loss_gradient_wrt_pressure_is_exact():
    problem = make(n=4)
    state = torch.randn(2, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    p = torch.randn(2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q: problem.div_loss(problem.correct(state, q)), (p,))


def test_rms_normalization_makes_the_projection_amplitude_equivariant():
    problem = make(n=8, n_train=4, n_test=2)
    m = method(problem, normalize="rms")
    model = m.build_model({"name": "unet", "levels": 1, "width": 4}).double()
    state = problem.data("train")
    with torch.no_grad():
        torch.testing.assert_close(m.pressure(model, 3 * state), 3 * m.pressure(model, state))


def test_batches_run_through_the_fields_in_order_or_shuffled():
    problem = make(n=8, n_train=25, n_test=2)
    m = method(problem, batch_size=10)
    assert m.batch(0).tolist() == list(range(10))
    assert m.batch(2).tolist() == list(range(20, 25))  # the last, short batch
    assert m.batch(3).tolist() == list(range(10))  # next epoch, same order
    s = method(problem, batch_size=10, shuffle=True)
    epoch = torch.cat([s.batch(k) for k in range(3)])
    assert sorted(epoch.tolist()) == list(range(25)) and epoch.tolist() != list(range(25))


def test_short_training_reduces_the_divergence():
    problem = make(n=16, n_train=20, n_test=4)
    m = method(problem, dtype=torch.float32, batch_size=10, normalize="rms")
    model = m.build_model({"name": "unet", "levels": 1, "width": 8, "activation": "relu"})
    before = m.validate(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for step in range(40):
        optimizer.zero_grad()
        m.loss(model, step)["loss"].backward()
        optimizer.step()
    after = m.validate(model)
    assert after["train_div_loss"] < 0.2 * before["train_div_loss"]
    assert after["train_div_loss"] < 0.2 * after["train_input_div_loss"]
    assert after["test_div_loss"] < before["test_div_loss"]
    prediction = m.predict(model)
    assert prediction.shape == (4, 1, 2, 16, 16) and prediction.dtype == torch.float64
    assert m.reference().shape == prediction.shape


def test_projection_refuses_other_problems_and_non_grid_models():
    with pytest.raises(PbdlError, match="problem=hhd"):
        method(PROBLEMS.build({"name": "parabola"}))
    with pytest.raises(PbdlError, match="grid model"):
        method(make(n=8, n_train=2, n_test=1)).build_model({"name": "mlp"})


def test_train_and_evaluate_write_the_three_divergences(workdir):
    run = workdir / "run"
    small = [
        "experiment=hhd",
        "problem.n=16",
        "problem.n_train=20",
        "problem.n_test=4",
        "model.width=4",
        "trainer.max_steps=6",
        "trainer.eval_every=3",
        f"hydra.run.dir={run}",
    ]
    result = run_cli("train", *small, cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    result = run_cli("evaluate", f"run={run}", "plots=false", cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = json.loads((run / "eval" / "metrics.json").read_text())["metrics"]
    for key in ("input_div_loss", "div_loss", "solver_div_loss", "div_reduction", "div_max"):
        assert key in metrics
    # the zero-shot obstacle test (method.obstacle_test, on by default)
    for key in OBSTACLE_KEYS:
        assert metrics[key] is not None and metrics[key] >= 0, key
    assert metrics["obstacle_div_exact"] < 1e-4
    assert metrics["solver_div_loss"] < 1e-20 < metrics["div_loss"] < metrics["input_div_loss"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("val/train_div_loss" in r for r in records)


def test_obstacle_test_runs_three_projections_side_by_side():
    from pbdl_cli.methods.projection_obstacle import RUNS, obstacle_grid, obstacle_test
    from pbdl_cli.numerics.pressure import PressureSystem

    # an ideal "network": the exact projection of the periodic box without the obstacle
    periodic = make().mac(CPU, torch.float32)
    fft = PressureSystem(periodic, "fft")
    result = obstacle_test(lambda div: fft.solve(div[:, 0]), steps=12)
    assert RUNS == ("nn", "exact", "free")
    assert result.smoke.shape == (3, 32, 32) and result.smoke.dtype == torch.float32
    assert result.velocity.shape == (3, 2, 32, 32)
    assert result.divergence.shape == (3, 12) and result.nn_input_divergence.shape == (12,)
    assert result.solid.sum() == 16  # Box(x=(12, 20), y=(18, 20)): 8 x 2 cells
    nn, exact, free = (result.run(k) for k in RUNS)
    # the exact projection with the obstacle is divergence-free on the fluid cells
    assert result.divergence[exact].max() < 1e-4
    assert result.divergence[free, -1] > 100 * result.divergence[exact, -1]
    # the projection ignoring the obstacle leaves some divergence (the obstacle's
    # boundary condition after it), but less than it was given
    assert 0 < result.divergence[nn].mean() < result.nn_input_divergence.mean()
    # no flow through the obstacle in any run: every face touching it is zero
    mac = obstacle_grid()
    for axis, fixed in ((0, mac.fixed_x[0]), (1, mac.fixed_y[0])):
        assert fixed.sum() > 0
        assert result.velocity[:, axis][:, fixed].abs().max() == 0
    # smoke rose from the inflow; the projected runs are close to the exact one
    assert result.smoke[exact].sum() > 0
    metrics = result.metrics()
    assert set(OBSTACLE_KEYS) <= set(metrics)
    assert metrics["obstacle_marker_rel_l2"] < metrics["obstacle_marker_rel_l2_unprojected"]
    with pytest.raises(ValueError, match="steps"):
        obstacle_test(lambda div: div[:, 0], steps=0)


def test_projection_obstacle_metrics_use_the_network_and_can_be_switched_off():
    problem = make(n=8, n_train=2, n_test=1)
    m = method(problem, dtype=torch.float32, normalize="rms")
    model = m.build_model({"name": "unet", "levels": 1, "width": 4})
    calls = []
    forward = model.forward
    model.forward = lambda x: calls.append(x.shape) or forward(x)
    result = m.obstacle_test(model, steps=3)
    assert calls == [(1, 1, 32, 32)] * 3  # the nn run only, on the book's 32^2 box
    assert result.divergence.shape == (3, 3)
    assert set(OBSTACLE_KEYS) <= set(m.extra_metrics(model))
    assert method(problem, obstacle_test=False).extra_metrics(model) == {}
