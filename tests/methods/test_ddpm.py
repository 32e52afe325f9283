"""The ``ddpm`` method (PBDL book ch. 24) end to end through its own code paths: the
noising inside ``sample_loss`` against the closed form for each schedule (an oracle that
inverts it must reach zero loss), the Bayes-optimal loss of Gaussian data, the samplers'
network evaluations and refusals, the network inputs of conditional points and fields,
resume-exactness, and the CLI's one-line refusals. The schedules and samplers themselves
are tested in ``tests/generative``; here they are reached through the method."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import Tensor, nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.generative.schedules import cosine_alpha_bar
from pbdl_cli.methods import METHODS
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.problems.distribution import Distribution, Draws
from pbdl_cli.training import TrainerConfig, fit
from tests.conftest import run_cli

CPU = torch.device("cpu")
F64 = torch.float64
TINY = {"name": "mlp", "depth": 2, "width": 16}
#: a mixture of one component: Gaussian data N(M, S^2 I)
M, S = [1.0, -2.0], 0.5
GAUSSIAN = {"name": "gaussian_mixture", "means": [M], "variances": [S**2], "weights": [1.0]}

pytestmark = pytest.mark.usefixtures("one_thread")


def ddpm(problem=None, dtype=F64, **options):
    """A ``ddpm`` method on ``problem`` (a config dict or a problem object)."""
    if problem is None or isinstance(problem, dict):
        problem = PROBLEMS.build(problem or {"name": "gaussian_mixture"})
    options = {"name": "ddpm", "n_train": 64, "n_val": 32, **options}
    return METHODS.build(options, problem=problem, device=CPU, dtype=dtype)


def expected_alpha_bar(schedule: str, T: int) -> Tensor:
    """abar_t, t = 1..T, [T] float64, written from each schedule's definition (not from
    ``noise_schedule``): linear 1e-4..0.02, cosine (Nichol & Dhariwal, clipped at 0.999),
    constant 0.02."""
    if schedule == "linear":
        betas = torch.linspace(1e-4, 0.02, T, dtype=F64)
    elif schedule == "constant":
        betas = torch.full((T,), 0.02, dtype=F64)
    else:
        f = cosine_alpha_bar(torch.arange(T + 1, dtype=F64), T)
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0)


class Oracle(nn.Module):
    """Inverts x_t = sqrt(abar_t) y + sqrt(1 - abar_t) eps for known y: reads x_t and the
    time input tau from the network input [x_t, tau], takes t = tau T (which must be an
    integer in 1..T) and returns eps = (x_t - sqrt(abar_t) y) / sqrt(1 - abar_t). The loss
    against the method's eps is zero exactly when the method noises with abar at the
    step it feeds as t / T."""

    def __init__(self, y: Tensor, abar: Tensor) -> None:
        super().__init__()
        self.y, self.abar, self.T = y, abar, len(abar)
        self.seen: list[Tensor] = []

    def forward(self, inputs: Tensor) -> Tensor:
        x, tau = inputs[:, :-1], inputs[:, -1]
        self.seen.append(tau)
        t = (tau * self.T).round().long()
        assert torch.allclose(tau * self.T, t.to(tau.dtype), atol=1e-9), "t / T off the grid"
        assert int(t.min()) >= 1 and int(t.max()) <= self.T, "t outside 1..T"
        abar = self.abar[t - 1][:, None]
        return (x - abar.sqrt() * self.y) / (1 - abar).sqrt()


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
def test_sample_loss_noises_with_the_closed_form_marginal(schedule):
    """x_t = sqrt(abar_t) y + sqrt(1 - abar_t) eps with t ~ U{1..T} fed as t / T: the
    oracle's loss is zero (any other abar index, or t fed unscaled, breaks it); the zero
    network's loss is E[eps^2] = 1 (unit noise); t covers 1..T evenly."""
    T = 1000
    method = ddpm(schedule=schedule, T=T)
    n = 40_000
    y = torch.tensor([[1.5, -0.5]], dtype=F64).expand(n, 2)
    oracle = Oracle(y[:1], expected_alpha_bar(schedule, T))
    noise = torch.Generator().manual_seed(3)
    loss = float(method.sample_loss(oracle, y, None, noise)["loss"])
    assert loss < 1e-20, loss
    t = oracle.seen[0] * T
    assert float(t.min()) == 1 and float(t.max()) == T
    assert abs(float(t.mean()) - (T + 1) / 2) < 5 * T / math.sqrt(12 * n)
    counts = torch.bincount(t.round().long() - 1, minlength=T).reshape(10, -1).sum(1)
    assert ((counts - n / 10).abs() < 5 * math.sqrt(n / 10)).all(), counts  # deciles

    class Zero(nn.Module):
        def forward(self, inputs: Tensor) -> Tensor:
            return torch.zeros_like(inputs[:, :2])

    unit = float(method.sample_loss(Zero(), y, None, torch.Generator().manual_seed(4))["loss"])
    assert abs(unit - 1) < 5 * math.sqrt(2 / (2 * n)), unit


def test_the_bayes_optimal_network_reaches_the_analytic_loss():
    """Gaussian data N(m, s^2 I): eps*(x_t, t) = sqrt(1 - abar)(x_t - sqrt(abar) m) /
    (abar s^2 + 1 - abar) minimizes the loss, and its expected loss per entry is
    E_t[abar s^2 / (abar s^2 + 1 - abar)]; ``validate`` (mean over n_val draws, fixed
    noise) meets it, and the oracle one step late (abar_{t-1}) does worse."""
    T = 200
    method = ddpm(GAUSSIAN, schedule="linear", rescale=True, T=T, n_val=40_000)
    betas = torch.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T, dtype=F64)  # rescaled
    abar = torch.cumprod(1 - betas, 0)
    m = torch.tensor(M, dtype=F64)

    class Bayes(nn.Module):
        def __init__(self, shift: int = 0) -> None:
            super().__init__()
            self.shift = shift

        def forward(self, inputs: Tensor) -> Tensor:
            x, t = inputs[:, :2], (inputs[:, 2] * T).round().long()
            a = torch.cat([abar.new_ones(1), abar])[t - self.shift][:, None]
            return (1 - a).sqrt() * (x - a.sqrt() * m) / (a * S**2 + 1 - a)

    expected = float((abar * S**2 / (abar * S**2 + 1 - abar)).mean())
    optimal = method.validate(Bayes())["loss"]
    # per-entry loss: a scaled chi-square of 1 dof, variance 2 l(t)^2; plus the spread
    # of l(t) over t: the standard error of the mean over 40,000 x 2 entries
    per_t = abar * S**2 / (abar * S**2 + 1 - abar)
    se = math.sqrt(float((2 * per_t**2).mean() / 2 + per_t.var()) / 40_000)
    assert abs(optimal - expected) < 5 * se, (optimal, expected, se)
    # on the same noise (validate's is fixed): a step-late abar (abar_{t-1}) loses
    assert method.validate(Bayes(shift=1))["loss"] > optimal


def test_the_samplers_count_their_network_evaluations_and_refuse_steps():
    T = 20
    method = ddpm(T=T, ddim_steps=7, samples=5, chunk=3)  # two chunks per condition
    model = method.build_model(TINY)
    calls = []
    model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape))
    drawn = method.draw_samples(model)
    assert drawn.evaluations == [T] and drawn.sampler == "ancestral"
    assert len(calls) == 2 * T and drawn.samples.shape == (1, 5, 2)
    assert method.expected_steps("ancestral", 0) == T
    for steps, k in ((0, 7), (4, 4), (T, T)):
        calls.clear()
        seen: list[float] = []

        def note(step: int, t: float, x: Tensor, seen: list[float] = seen) -> None:
            seen.append(t)

        drawn = method.draw_samples(model, 3, sampler="ddim", steps=steps, callback=note)
        assert drawn.evaluations == [k] and len(calls) == k
        assert len(seen) == k == method.expected_steps("ddim", steps) and seen[-1] == 0
    with pytest.raises(PbdlError, match=f"ancestral sampling takes all T = {T} steps"):
        method.draw_samples(model, 3, sampler="ancestral", steps=5)
    with pytest.raises(PbdlError, match=re.escape("1..T = 1..20")):
        method.draw_samples(model, 3, sampler="ddim", steps=T + 1)
    with pytest.raises(PbdlError, match="no sampler 'euler'; choose one of ancestral, ddim"):
        ddpm(sampler="euler")


@pytest.mark.parametrize(
    ("sampler", "steps", "std_rtol"),
    # DDIM's first-order steps undershoot the spread: -2.4 % at K = 100 of T = 200 with
    # the exact eps at the tensor level (-5 % at 50, -10 % at 25)
    [("ancestral", 0, 0.03), ("ddim", 200, 0.03), ("ddim", 100, 0.045)],
)
def test_sampling_with_the_bayes_optimal_network_reproduces_gaussian_data(sampler, steps, std_rtol):
    """The method's wrapper feeds the sampler's step t as t / T: with the exact eps of
    N(m, s^2 I) the samples come out with that mean and spread (T = 200: the chain's
    Gaussian steps miss the spread by under 1 % with sigma_t^2 = beta_t, by 4 % with the
    posterior variance, tests/generative)."""
    T = 200
    method = ddpm(GAUSSIAN, schedule="linear", rescale=True, T=T)
    betas = torch.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T, dtype=F64)
    abar = torch.cumprod(1 - betas, 0)
    m = torch.tensor(M, dtype=F64)

    class Bayes(nn.Module):
        def forward(self, inputs: Tensor) -> Tensor:
            x, t = inputs[:, :2], (inputs[:, 2] * T).round().long()
            a = abar[t - 1][:, None]
            return (1 - a).sqrt() * (x - a.sqrt() * m) / (a * S**2 + 1 - a)

    x = method.draw_samples(Bayes(), 20_000, sampler=sampler, steps=steps).samples[0]
    assert (x.mean(0) - m).abs().max() < 0.03
    assert ((x.std(0) - S).abs() / S).max() < std_rtol


class Fields(Distribution):
    """A field distribution for the shapes: y [2, 8, 8] (noise), the condition a vector
    [3] or a field [1, 8, 8]."""

    name = "fields"
    sample_shape = (2, 8, 8)

    def __init__(self, condition_shape: tuple[int, ...] | None) -> None:
        self.condition_shape = condition_shape

    def draw(self, n: int, generator: torch.Generator) -> Draws:
        y = torch.randn(n, *self.sample_shape, generator=generator, dtype=F64)
        c = None
        if self.condition_shape is not None:
            c = torch.rand(n, *self.condition_shape, generator=generator, dtype=F64)
        return Draws(y, c)


RESNET = {"name": "resnet", "width": 4, "blocks": 1}


@pytest.mark.parametrize(("condition", "channels"), [(None, 3), ((3,), 6), ((1, 8, 8), 4)])
def test_field_inputs_carry_time_and_condition_channels(condition, channels):
    """Fields [B, 2, 8, 8]: t / T as one constant channel, a vector condition as one
    constant channel per entry, a field condition as its own channels."""
    method = ddpm(Fields(condition), T=10, ddim_steps=2, samples=3)
    drawn = method.batch(0)
    y, c = drawn.y[:5], None if drawn.condition is None else drawn.condition[:5]
    t = torch.arange(1, 6, dtype=F64) / 10
    inputs = method.model_input(y, t, c)
    assert inputs.shape == (5, channels, 8, 8)
    assert torch.equal(inputs[:, :2], y)
    assert torch.equal(inputs[:, 2], t[:, None, None].expand(5, 8, 8))
    if condition == (3,):
        assert torch.equal(inputs[:, 3:], c[:, :, None, None].expand(5, 3, 8, 8))
    elif condition is not None:
        assert torch.equal(inputs[:, 3:], c)
    model = method.build_model(RESNET)
    assert model(inputs).shape == (5, 2, 8, 8)
    assert set(method.loss(model, 0)) == {"loss"}
    cond = None if c is None else c[0]
    drawn = method.draw_samples(model, 4, conditions=None if c is None else cond[None])
    assert drawn.samples.shape == (1, 4, 2, 8, 8) and drawn.evaluations == [10]
    with pytest.raises(PbdlError, match="use a grid model"):
        method.build_model(TINY)


def test_point_inputs_append_time_and_condition():
    """Points: [y, t / T, c] into the MLP; sampling at one condition gives every row it."""
    method = ddpm({"name": "parabola", "test_x": [0.25, 0.81]}, T=10, ddim_steps=3, samples=4)
    model = method.build_model(TINY)
    assert model.net[0].in_features == 3
    y, c = torch.tensor([[0.5], [-0.3]], dtype=F64), torch.tensor([[0.25], [0.09]], dtype=F64)
    inputs = method.model_input(y, torch.tensor([0.1, 1.0], dtype=F64), c)
    assert inputs.tolist() == [[0.5, 0.1, 0.25], [-0.3, 1.0, 0.09]]
    seen = []
    model.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    drawn = method.draw_samples(model, sampler="ddim")
    assert drawn.samples.shape == (2, 4, 1) and drawn.evaluations == [3, 3]
    assert len(seen) == 6 and all(s.shape == (4, 3) for s in seen)
    assert torch.equal(seen[0][:, 2], torch.full((4,), 0.25, dtype=F64))
    assert torch.allclose(seen[3][:, 2], torch.full((4,), 0.81, dtype=F64))
    assert [round(float(s[0, 1]) * 10) for s in seen[:3]] == [10, 6, 1]  # DDIM's steps
    with pytest.raises(PbdlError, match="with model=mlp"):
        method.build_model({"name": "resnet"})


def test_a_resumed_run_matches_an_uninterrupted_one(tmp_path):
    """Stopped at step 6 of 12 (batch 64 of 150 draws: 3 batches per epoch, so the cut
    and the rest cross epochs), resumed by new objects: the same weights bit for bit."""

    def run(steps: int, folder: str, resume: bool = False) -> nn.Module:
        method = ddpm(dtype=torch.float32, n_train=150, batch_size=64, schedule="constant")
        model = method.build_model(TINY)
        config = TrainerConfig(max_steps=steps, lr=1e-2, log_every=1, checkpoint_every=6)
        fit(method, model, config, tmp_path / folder, resume=resume)
        return model

    straight = run(12, "straight")
    run(6, "cut")
    resumed = run(12, "cut", resume=True)
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    other = ddpm(dtype=torch.float32, n_train=150, batch_size=64, seed=1).build_model(TINY)
    assert not torch.equal(next(other.parameters()), next(straight.parameters()))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("problem=gaussian_mixture", "method=ddpm", "trainer.lbfgs_steps=5"),
            "set trainer.lbfgs_steps=0",
        ),
        (
            ("problem=burgers", "method=ddpm", "trainer.lbfgs_steps=0"),
            "problem 'burgers' defines none",
        ),
    ],
)
def test_train_refuses_lbfgs_and_problems_without_a_distribution(workdir, args, message):
    result = run_cli("train", *args, "hydra.run.dir=run", cwd=workdir)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr
    assert not (workdir / "run").exists()
