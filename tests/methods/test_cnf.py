"""Method ``cnf``: its loss is the NLL of the ODE likelihood (and the book's units), the
density it defines is normalized, sampling is the likelihood's map inverted, Hutchinson
and the adjoint give the same loss or gradient as their exact counterparts, a
conditional flow on the parabola, configuration errors, and a tiny run of ``pbdl train``
(tiny sizes, CPU, seconds)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.generative import cnf
from pbdl_cli.methods import METHODS
from pbdl_cli.methods.cnf import CNF
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.utils.seeding import generator
from tests.conftest import run_cli

F64 = torch.float64
CPU = torch.device("cpu")
TINY_MODEL = {"name": "ffjord", "width": 8, "depth": 2}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def make(problem: str = "gaussian_mixture", **options: Any) -> tuple[CNF, torch.nn.Module]:
    config = {"name": "cnf", "n_train": 64, "batch_size": 16, "n_val": 32, "samples": 40}
    config |= {"ode": "rk4", "ode_steps": 4, **options}
    method = METHODS.create(
        METHODS.config(config),
        problem=PROBLEMS.create(PROBLEMS.config({"name": problem})),
        device=CPU,
        dtype=F64,
    )
    return method, method.build_model(TINY_MODEL)


def test_the_loss_is_the_mean_nll_of_the_ode_likelihood_and_its_book_units() -> None:
    method, model = make()
    drawn = method.batch(0)
    terms = method.sample_loss(model, drawn.y, None, generator(0, "noise", 0))
    expected = cnf.log_likelihood(lambda z, t: model(t, z), drawn.y, method="rk4", steps=4)
    assert torch.allclose(terms["loss"], -expected.log_prob.mean(), atol=1e-12)
    assert float(terms["book_nll"]) == pytest.approx(
        float(terms["loss"].detach()) - 0.5 * math.log(2 * math.pi), abs=1e-12
    )
    assert float(terms["nfe"]) == 16  # rk4: 4 steps x 4
    (grad,) = torch.autograd.grad(terms["loss"], model.layers[0].lin1.weight)
    assert grad.abs().max() > 0


def test_the_flow_density_integrates_to_one() -> None:
    method, model = make(ode="dopri5", ode_steps=0, rtol=1e-7, atol=1e-7)
    axis = torch.linspace(-7, 7, 141, dtype=F64)
    gx, gy = torch.meshgrid(axis, axis, indexing="xy")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    with torch.no_grad():
        density = method.log_prob(model, grid, None).exp()
    assert float(density.sum() * (axis[1] - axis[0]) ** 2) == pytest.approx(1.0, abs=2e-3)


def test_sampling_is_the_likelihood_map_inverted() -> None:
    method, model = make(ode="dopri5", ode_steps=0, rtol=1e-9, atol=1e-9)
    with torch.no_grad():
        drawn = method.sample(
            model, 32, condition=None, sampler="dopri5", steps=0, generator=generator(0, "s")
        )
        z = torch.randn(32, 2, generator=generator(0, "s"), dtype=F64)
        back = method.likelihood(model, drawn.x, None)
    assert drawn.x.shape == (32, 2) and drawn.evaluations > 0
    assert (drawn.x - z).abs().max() > 1e-3 and torch.allclose(back.z, z, atol=1e-6)
    fixed = method.sample(
        model, 8, condition=None, sampler="euler", steps=0, generator=generator(0, "e")
    )
    assert fixed.evaluations == 32 and method.expected_steps("euler", 0) == 32
    assert method.expected_steps("dopri5", 0) is None


def test_hutchinson_and_the_adjoint_agree_with_the_exact_and_direct_versions() -> None:
    exact_method, model = make()
    y = exact_method.batch(0).y
    exact = exact_method.sample_loss(model, y, None, generator(0, "n"))["loss"].detach()
    hutch_method, _ = make(divergence="hutchinson")
    noise = [generator(0, "n") for _ in range(2)]
    a, b = (hutch_method.sample_loss(model, y, None, g)["loss"] for g in noise)
    assert torch.equal(a, b) and not torch.allclose(a, exact)  # seeded, and an estimate
    estimates = torch.stack(
        [hutch_method.sample_loss(model, y, None, generator(k, "n"))["loss"] for k in range(60)]
    ).detach()
    assert abs(float(estimates.mean() - exact)) < 4 * float(estimates.std()) / math.sqrt(60)
    adjoint_method, _ = make(ode="dopri5", ode_steps=0, adjoint=True, rtol=1e-9, atol=1e-9)
    direct_method, _ = make(ode="dopri5", ode_steps=0, rtol=1e-9, atol=1e-9)
    params = list(model.parameters())
    grads = [
        torch.autograd.grad(m.sample_loss(model, y, None, generator(0, "n"))["loss"], params)
        for m in (direct_method, adjoint_method)
    ]
    for direct, adjoint in zip(*grads, strict=True):
        assert torch.allclose(direct, adjoint, atol=1e-6, rtol=1e-5)


def test_a_conditional_flow_on_the_parabola() -> None:
    method, model = make("parabola")
    assert method.condition_features == 1 and model.condition_features == 1
    drawn = method.batch(0)
    terms = method.sample_loss(model, drawn.y, drawn.condition, generator(0, "noise", 0))
    assert torch.isfinite(terms["loss"])
    c = torch.tensor([0.5], dtype=F64)
    with torch.no_grad():
        at = [
            method.sample(
                model,
                16,
                condition=torch.tensor([x], dtype=F64),
                sampler="rk4",
                steps=0,
                generator=generator(0, "c"),
            ).x
            for x in (0.1, 0.9)
        ]
        log_q = method.log_prob(model, drawn.y, c.expand(len(drawn.y), 1))
    assert at[0].shape == (16, 1) and not torch.allclose(at[0], at[1])  # c matters
    assert log_q.shape == (len(drawn.y),)
    sampled = method.draw_samples(model, 8)
    assert sampled.samples.shape[1:] == (8, 1)


def test_a_few_steps_lower_the_validation_loss() -> None:
    method, model = make(n_train=256, batch_size=64)
    before = method.validate(model)["loss"]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(30):
        optimizer.zero_grad()
        method.loss(model, step)["loss"].backward()
        optimizer.step()
    after = method.validate(model)
    assert after["loss"] < before - 0.3
    assert after["book_nll"] == pytest.approx(after["loss"] - 0.5 * math.log(2 * math.pi))


@pytest.mark.parametrize(
    ("options", "model", "message"),
    [
        ({}, {"name": "mlp"}, "trains model=ffjord"),
        ({"ode": "dopri5", "ode_steps": 3}, TINY_MODEL, "chooses its own steps"),
        ({"ode": "rk5"}, TINY_MODEL, "ode must be one of"),
        ({"sampler": "ddim"}, TINY_MODEL, "no sampler 'ddim'"),
    ],
)
def test_configuration_errors_are_one_line(options, model, message) -> None:
    with pytest.raises(PbdlError, match=message):
        method, _ = make(**options)
        method.build_model(model)


def test_dopri5_sampling_refuses_a_step_count() -> None:
    method, model = make()
    with pytest.raises(PbdlError, match="chooses its own steps"):
        method.sample(model, 4, condition=None, sampler="dopri5", steps=5, generator=generator(0))


def test_pbdl_train_runs_the_preset_at_tiny_size(workdir) -> None:
    run = workdir / "run"
    result = run_cli(
        "train",
        "experiment=gm_cnf",
        "trainer.max_steps=4",
        "method.n_train=64",
        "method.batch_size=32",
        "method.n_val=32",
        "method.samples=64",
        "method.ode=rk4",
        "method.sampler=rk4",
        "model.width=8",
        "model.depth=1",
        f"hydra.run.dir={run}",
        cwd=workdir,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "train/loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]  # every step logged (epoch means)
    assert all(r["train/nfe"] == 32 for r in steps)  # rk4 at its default 8 steps
    summary = json.loads((run / "summary.json").read_text())
    assert summary["sampling"]["sampler"] == "rk4"
    assert summary["test"]["nll"] > summary["test"]["exact_nll"] - 0.2
    assert 0 <= summary["test"]["mode_weight_error"] <= 1
