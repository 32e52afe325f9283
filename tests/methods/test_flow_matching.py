"""The flow_matching method: its loss is zero for the exact conditional velocity (and only
for the matching target form), its noise and times have the right moments, its samplers
make K / 2K / 4K network evaluations (adaptive: as counted), the exact Gaussian velocity
carries its noise to the data, conditions reach the network, a tiny run trains through
the CLI, and wrong settings are refused in one line. (The interpolant and target
formulas at t = 0 and 1 are tests/generative/test_flow_matching.py's.)"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods import METHODS
from pbdl_cli.problems import PROBLEMS
from tests.conftest import run_cli
from tests.generative.gaussian import exact_velocity

CPU = torch.device("cpu")
F64 = torch.float64


def method(problem: dict, **options):
    p = PROBLEMS.build(problem)
    options = {"n_train": 64, "n_val": 16, **options}
    return METHODS.build({"name": "flow_matching", **options}, problem=p, device=CPU, dtype=F64)


def parabola(**options):
    return method({"name": "parabola"}, **options)


def gaussian(mean: list[float], variance: float, **options):
    problem = {"name": "gaussian_mixture", "means": [mean], "variances": [variance]}
    return method({**problem, "weights": [1.0]}, **options)


class Columns(nn.Module):
    """A 'network' that computes its output from the input columns [y (D), t, c]."""

    def __init__(self, dim: int, f) -> None:
        super().__init__()
        self.dim, self.f, self.calls = dim, f, 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        d = self.dim
        return self.f(z[:, :d], z[:, d], z[:, d + 1 :])


def oracle(sigma_min: float, form: str) -> Columns:
    """The exact conditional velocity for data x1 = sqrt(c) (the parabola's upper
    branch): x0 = (x_t - t x1) / (1 - (1 - sigma_min) t) from the interpolant, then the
    target of ``form``."""

    def f(x_t, t, c):
        x1, t = c.sqrt(), t[:, None]
        x0 = (x_t - t * x1) / (1 - (1 - sigma_min) * t)
        return x1 - (1 - sigma_min) * x0 if form == "derivative" else x1 - x0

    return Columns(1, f)


@pytest.mark.parametrize("sigma_min", [0.0, 0.1])
@pytest.mark.parametrize("form", ["derivative", "difference"])
def test_loss_vanishes_for_the_exact_conditional_velocity_of_its_own_target(sigma_min, form):
    """Data y = sqrt(c) on many conditions: a network that inverts the interpolant and
    returns the target has zero loss, so the network sees the interpolant's own x_t and
    t and the condition in the third column. The other form's velocity differs by
    sigma_min x0: its loss is sigma_min^2 E[x0^2] = sigma_min^2 (zero only at 0)."""
    m = parabola(sigma_min=sigma_min, target=form)
    c = torch.rand(4096, 1, generator=torch.Generator().manual_seed(1), dtype=F64) + 0.05
    y = c.sqrt()
    noise = torch.Generator().manual_seed(2)
    assert float(m.sample_loss(oracle(sigma_min, form), y, c, noise)["loss"]) < 1e-18
    other = "difference" if form == "derivative" else "derivative"
    wrong = float(m.sample_loss(oracle(sigma_min, other), y, c, torch.Generator())["loss"])
    assert wrong == pytest.approx(sigma_min**2, rel=0.1, abs=1e-18)


def test_loss_moments_of_the_noise_and_the_times():
    """y = (3, 2) fixed, derivative target: a zero network has the loss
    mean(y^2) + (1 - sigma_min)^2 (x0 ~ N(0, I)); at y = 0 a network returning t has
    E[t^2] + (1 - sigma_min)^2 = 1/3 + (1 - sigma_min)^2 (t ~ U(0, 1), independent)."""
    s = 0.2
    m = gaussian([3.0, 2.0], 0.25, sigma_min=s)
    y = torch.tensor([[3.0, 2.0]], dtype=F64).expand(40000, 2)
    zero = Columns(2, lambda x, t, c: torch.zeros_like(x))
    loss = float(m.sample_loss(zero, y, None, torch.Generator().manual_seed(0))["loss"])
    assert loss == pytest.approx(6.5 + (1 - s) ** 2, rel=0.01)
    time = Columns(2, lambda x, t, c: t[:, None].expand_as(x))
    loss = float(m.sample_loss(time, 0 * y, None, torch.Generator().manual_seed(0))["loss"])
    assert loss == pytest.approx(1 / 3 + (1 - s) ** 2, rel=0.01)


@pytest.mark.parametrize(("sampler", "per_step"), [("euler", 1), ("midpoint", 2), ("rk4", 4)])
@pytest.mark.parametrize("steps", [0, 7])
def test_fixed_step_samplers_count_their_evaluations(sampler, per_step, steps):
    m = gaussian([0.0, 0.0], 1.0, fixed_steps=5)
    net = Columns(2, lambda x, t, c: -x)
    seen = []
    drawn = m.sample(
        net,
        9,
        condition=None,
        sampler=sampler,
        steps=steps,
        generator=torch.Generator(),
        callback=lambda step, t, x: seen.append(step),
    )
    k = steps or 5
    assert drawn.x.shape == (9, 2) and drawn.evaluations == net.calls == per_step * k
    assert m.expected_steps(sampler, steps) == k == len(seen)


def test_adaptive_sampler_reports_the_evaluations_it_made():
    m = gaussian([0.0, 0.0], 1.0, rtol=1e-7, atol=1e-7)
    net = Columns(2, lambda x, t, c: -x)
    x0 = torch.randn(9, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    drawn = m.sample(
        net,
        9,
        condition=None,
        sampler="adaptive",
        steps=0,
        generator=torch.Generator().manual_seed(3),
    )
    assert drawn.evaluations == net.calls > 6 and m.expected_steps("adaptive", 0) is None
    assert torch.allclose(drawn.x, x0 * math.exp(-1), atol=1e-6)  # dx/dt = -x from t = 0 to 1
    with pytest.raises(PbdlError, match="chooses its own steps"):
        m.sample(net, 9, condition=None, sampler="adaptive", steps=10, generator=torch.Generator())


@pytest.mark.parametrize(("sampler", "steps"), [("rk4", 10), ("adaptive", 0)])
def test_the_exact_velocity_of_gaussian_data_samples_it(sampler, steps):
    """Noise at t = 0 integrated to t = 1 with the exact marginal velocity of
    x1 ~ N(m, s^2 I) gives N(m, (s^2 + sigma_min^2) I)."""
    mean, s, sigma_min = torch.tensor([1.0, -2.0], dtype=F64), 0.5, 0.1
    m = gaussian(mean.tolist(), s**2, sigma_min=sigma_min)
    v = exact_velocity(mean, s, sigma_min)
    drawn = m.sample(
        Columns(2, lambda x, t, c: v(x, t)),
        8000,
        condition=None,
        sampler=sampler,
        steps=steps,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.allclose(drawn.x.mean(0), mean, atol=0.02)
    spread = torch.full((2,), math.hypot(s, sigma_min), dtype=F64)
    assert torch.allclose(drawn.x.std(0), spread, rtol=0.03)


def test_conditional_samples_have_the_parabolas_shapes_and_see_their_condition():
    """v = c: Euler moves every start by exactly c, so two conditions with the same noise
    differ by their difference; draw_samples gives [M, n, 1] at M conditions."""
    m = parabola()
    net = Columns(1, lambda x, t, c: c.expand_as(x))
    a, b = (
        m.sample(
            net,
            5,
            condition=torch.tensor([x], dtype=F64),
            sampler="euler",
            steps=4,
            generator=torch.Generator().manual_seed(0),
        ).x
        for x in (0.3, 0.8)
    )
    assert a.shape == (5, 1) and torch.allclose(b - a, torch.full((5, 1), 0.5, dtype=F64))
    mlp = m.build_model({"name": "mlp", "depth": 1, "width": 8})
    conditions = torch.tensor([[0.1], [0.5], [0.9]], dtype=F64)
    drawn = m.draw_samples(mlp, 7, conditions=conditions, sampler="midpoint", steps=3)
    assert drawn.samples.shape == (3, 7, 1) and drawn.evaluations == [6, 6, 6]
    assert torch.equal(drawn.conditions, conditions)
    assert mlp.net[0].in_features == 3  # [y, t, x]


def test_a_tiny_run_trains_and_evaluates_through_the_cli(tmp_path):
    run = tmp_path / "run"
    result = run_cli(
        "train",
        "experiment=parabola_flow_matching",
        "trainer.max_steps=30",
        "method.n_train=256",
        "method.n_val=32",
        "method.samples=40",
        "method.sampler=midpoint",
        "method.steps=3",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["parameters"] == (3 * 128 + 128) + (128 * 128 + 128) + (128 + 1)
    assert summary["sampling"]["evaluations"] == [6] * 5
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("val/loss" in r for r in records)
    result = run_cli("evaluate", f"run={run}", "checkpoint=last", "plots=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((run / "eval" / "metrics.json").read_text())["metrics"]
    rows = metrics["per_condition"]
    assert [r["condition"] for r in rows] == [[0.1], [0.25], [0.5], [0.75], [1.0]]
    assert all(0 <= r["near_branch"] <= 1 and r["energy"] >= 0 for r in rows)
    assert metrics["near_branch"] == pytest.approx(sum(r["near_branch"] for r in rows) / 5)
    assert metrics["energy"] == pytest.approx(summary["test"]["energy"])  # the same samples


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method.sampler=dopri5"], "has no sampler 'dopri5'; choose one of euler, midpoint, rk4"),
        (["method.sampler=adaptive", "method.steps=10"], "chooses its own steps"),
        (["problem=burgers"], "learns a probability distribution"),
    ],
)
def test_wrong_settings_are_refused_in_one_line(tmp_path, overrides, message):
    run = f"hydra.run.dir={tmp_path}/r"
    result = run_cli("train", "experiment=gm_flow_matching", *overrides, run, cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_config_refusals_in_process():
    with pytest.raises(PbdlError, match="sigma_min must lie in"):
        parabola(sigma_min=1.0)
    with pytest.raises(PbdlError, match="chooses its own steps"):
        parabola(sampler="adaptive", steps=3)
    with pytest.raises(PbdlError, match="fixed_steps"):
        parabola(fixed_steps=0)
    with pytest.raises(PbdlError, match="rtol and atol"):
        parabola(rtol=0.0)
    with pytest.raises(PbdlError, match="learns a probability distribution"):
        method({"name": "hig_toy"})
