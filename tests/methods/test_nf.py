"""The ``nf`` method: its loss is the flow's negative log-likelihood (and the book's units
beside it), sampling is one inverse pass of the seeded latent, batches resume exactly,
a conditional flow learns a condition-dependent mean, and what a coupling flow cannot
learn is refused in one line.

The model's own properties (the inverse undoes the forward in float32 and float64, the
log-determinant equals log|det| of the autograd Jacobian, the density is normalized) are
tested in tests/models/test_realnvp.py."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods import METHODS
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.problems.distribution import Draws
from pbdl_cli.problems.gaussian_mixture import GaussianMixture
from pbdl_cli.training import TrainerConfig, fit
from pbdl_cli.utils.seeding import generator
from tests.conftest import run_cli

CPU = torch.device("cpu")
TINY: dict[str, Any] = {"name": "realnvp", "blocks": 4, "hidden": 16}
LOG_2PI = math.log(2 * math.pi)

pytestmark = pytest.mark.usefixtures("one_thread")


def build(problem: Any = None, dtype: torch.dtype = torch.float64, **options: Any):
    if problem is None:
        problem = PROBLEMS.build({"name": "gaussian_mixture"})
    options = {"name": "nf", "n_train": 200, "n_val": 64, "batch_size": 32, **options}
    return METHODS.build(options, problem=problem, device=CPU, dtype=dtype)


class ShiftedGaussian(GaussianMixture):
    """A toy conditional distribution: c ~ U(-1, 1), y | c ~ N((2c, -c), 0.25 I)."""

    condition_shape = (1,)

    def mean(self, c: Tensor) -> Tensor:
        return torch.cat([2 * c, -c], dim=-1)

    def draw(self, n: int, generator: torch.Generator) -> Draws:
        c = 2 * torch.rand(n, 1, generator=generator, dtype=torch.float64) - 1
        return Draws(self.mean(c) + 0.5 * torch.randn(n, 2, generator=generator), c)

    def test_conditions(self) -> Tensor:
        return torch.tensor([[-0.8], [0.8]], dtype=torch.float64)

    def reference_samples(self, n: int, generator: torch.Generator, condition=None) -> Tensor:
        return self.mean(condition.reshape(1, 1)) + 0.5 * torch.randn(n, 2, generator=generator)

    def log_density(self, y: Tensor, condition=None) -> Tensor:
        c = condition.reshape(-1, 1).expand(len(y), 1)
        r2 = (y - self.mean(c)).square().sum(-1) / 0.25
        return -0.5 * r2 - LOG_2PI - math.log(0.25)


class Fields(GaussianMixture):
    """A stand-in for a problem with field samples of one entry [1, 1, 1] (fields of
    more entries are flattened: tests/methods/test_fields_flows.py)."""

    sample_shape = (1, 1, 1)


def shifted() -> ShiftedGaussian:
    return ShiftedGaussian(PROBLEMS.build({"name": "gaussian_mixture"}).config)


def test_the_loss_is_the_negative_log_likelihood_in_nats_and_in_the_books_units():
    m = build()
    model = m.build_model(TINY)
    assert m.has_likelihood and m.samplers == ("inverse",)
    y = m.batch(3).y
    terms = m.loss(model, 3)
    assert set(terms) == {"loss", "book_loss"}
    torch.testing.assert_close(terms["loss"], -model.log_prob(y).mean(), rtol=0, atol=1e-12)
    torch.testing.assert_close(m.log_prob(model, y, None), model.log_prob(y), rtol=0, atol=0)
    # the notebook's formula: prior = sum(-z^2 / 2) - log(2 pi) / 2, loss = mean(-prior - ldj)
    z, ldj = model(y)
    prior = (-0.5 * z**2).sum(-1) - 0.5 * LOG_2PI
    torch.testing.assert_close(terms["book_loss"], (-prior - ldj).mean(), rtol=0, atol=1e-12)
    offset = float(terms["loss"].detach() - terms["book_loss"])
    assert offset == pytest.approx(0.5 * LOG_2PI, abs=1e-12)
    terms["loss"].backward()  # the loss carries the gradient, book_loss is a report
    assert all(p.grad is not None for p in model.parameters())
    assert not terms["book_loss"].requires_grad


def test_the_identity_flow_has_the_standard_normal_loss():
    """With zero last layers every block is the identity: loss = E[|y|^2 / 2] + log(2 pi)."""
    m = build()
    model = m.build_model({**TINY, "out_init_scale": 0.0})
    y = m.batch(0).y
    expected = (0.5 * y.square().sum(-1) + LOG_2PI).mean()
    torch.testing.assert_close(m.loss(model, 0)["loss"], expected, rtol=0, atol=1e-12)
    val = m.validate(model)  # the mean over the held-out draws
    expected = float((0.5 * m.val_set.y.square().sum(-1) + LOG_2PI).mean())
    assert val["loss"] == pytest.approx(expected, rel=1e-12)
    assert val["book_loss"] == pytest.approx(expected - 0.5 * LOG_2PI, rel=1e-12)


def test_sampling_is_one_inverse_pass_of_the_seeded_latent():
    m = build()
    model = m.build_model(TINY)
    seen = []
    drawn = m.draw_samples(model, 50, seed=3, callback=lambda *args: seen.append(args[:2]))
    assert drawn.samples.shape == (1, 50, 2) and drawn.conditions is None
    assert drawn.evaluations == [1] and drawn.sampler == "inverse" and seen == [(1, 1.0)]
    assert m.expected_steps("inverse", 0) == 1
    z = torch.randn(50, 2, generator=generator(3, "sample", 0), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(drawn.samples[0], model.inverse(z), rtol=0, atol=0)
    again = m.draw_samples(model, 50, seed=3)
    assert torch.equal(again.samples, drawn.samples)
    assert not torch.equal(m.draw_samples(model, 50, seed=4).samples, drawn.samples)
    with pytest.raises(PbdlError, match="one pass"):
        m.sample(model, 4, condition=None, sampler="inverse", steps=5, generator=generator(0))
    with pytest.raises(PbdlError, match="no sampler 'ancestral'"):
        m.draw_samples(model, 4, sampler="ancestral")


def test_training_resumes_with_the_same_batches(tmp_path):
    def run(steps: int, folder: str, resume: bool = False) -> nn.Module:
        fresh = build(dtype=torch.float32, n_train=100, batch_size=32)  # 4 steps an epoch
        model = fresh.build_model(TINY)
        config = TrainerConfig(max_steps=steps, lr=1e-3, log_every=1, checkpoint_every=5)
        fit(fresh, model, config, tmp_path / folder, resume=resume)
        return model

    straight = run(10, "straight")
    run(5, "cut")
    resumed = run(10, "cut", resume=True)  # a new process: new method and model objects
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not all(  # training moved the weights
        torch.equal(a, b)
        for a, b in zip(straight.parameters(), run(1, "one").parameters(), strict=True)
    )


def test_a_conditional_flow_learns_the_mean_of_each_condition(tmp_path):
    m = build(shifted(), dtype=torch.float32, n_train=4096, batch_size=128, n_val=512)
    model = m.build_model({**TINY, "hidden": 32})
    assert model.condition_features == 1
    config = TrainerConfig(max_steps=400, lr=3e-3, log_every=100, eval_every=0)
    fit(m, model, config, tmp_path, validate_key="loss")
    drawn = m.draw_samples(model, 4000, seed=0)
    assert drawn.samples.shape == (2, 4000, 2) and drawn.evaluations == [1, 1]
    for c, samples in zip(drawn.conditions, drawn.samples, strict=True):
        mean = samples.mean(0)
        torch.testing.assert_close(mean, torch.tensor([2.0, -1.0]) * c, rtol=0, atol=0.1)
        assert samples.std(0).sub(0.5).abs().max() < 0.1
    # the NLL of exact draws is close to their entropy log(2 pi e 0.25) = 1.4516 nats
    y = m.problem.reference_samples(4000, torch.Generator().manual_seed(1), drawn.conditions[1])
    c = drawn.conditions[1].reshape(1, 1).expand(4000, 1)
    with torch.no_grad():
        nll = -m.log_prob(model, y.float(), c.float()).mean()
    exact = -m.problem.log_density(y, drawn.conditions[1]).mean()
    assert 0 < float(nll) - float(exact) < 0.1


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        (lambda: PROBLEMS.build({"name": "parabola"}), "needs samples with D >= 2"),
        (lambda: Fields(PROBLEMS.build({"name": "gaussian_mixture"}).config), "has D = 1"),
        (lambda: PROBLEMS.build({"name": "oscillator"}), "defines none"),
    ],
)
def test_what_a_coupling_flow_cannot_learn_is_refused(problem, message):
    with pytest.raises(PbdlError, match=message):
        build(problem())


def test_other_models_are_refused():
    m = build()
    with pytest.raises(PbdlError, match="trains model=realnvp, not model=mlp"):
        m.check_model_config({"name": "mlp"})
    m.check_model_config(TINY)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("problem=gaussian_mixture", "method=nf"), "add model=realnvp"),
        (("problem=parabola", "method=nf", "model=realnvp"), "use method=flow_matching"),
    ],
)
def test_the_cli_refuses_in_one_line(workdir, args, message):
    result = run_cli("train", *args, "trainer.lbfgs_steps=0", cwd=workdir)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (workdir / "outputs").exists()
