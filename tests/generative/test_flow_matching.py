"""Flow matching: the interpolant and target at t = 0 and 1 for both target forms; the
fixed-step integrators' orders 1 / 2 / 4 and exact evaluation counts; the adaptive
integrator meets its tolerance; the exact velocity of Gaussian data carries N(0, I) to
N(m, s^2 + sigma_min^2)."""

from __future__ import annotations

import itertools
import math
import sys

import pytest
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.generative.flow_matching import FIXED_STEP, integrate, interpolant, target
from tests.generative.gaussian import exact_velocity

F64 = torch.float64
ORDERS = {"euler": 1, "midpoint": 2, "rk4": 4}
#: test ODEs dx/dt = f(x, t), x(0) = x0, and their exact solutions x(t)
ODES = {
    "linear": (lambda x, t: 0.8 * x, lambda x0, t: x0 * math.exp(0.8 * t)),
    "time-dependent": (
        lambda x, t: x * torch.cos(t).reshape(-1, *([1] * (x.ndim - 1))),
        lambda x0, t: x0 * math.exp(math.sin(t)),
    ),
}


class Counted:
    """A velocity that counts its calls and checks the time it is handed."""

    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, x, t):
        assert t.shape == (x.shape[0],) and t.dtype == x.dtype
        self.calls += 1
        return self.f(x, t)


@pytest.mark.parametrize("form", ["derivative", "difference"])
@pytest.mark.parametrize("sigma_min", [0.0, 1e-4, 0.1])
def test_interpolant_and_target_at_both_ends(form, sigma_min):
    """x_0 = x0 and x_1 = x1 + sigma_min x0 (= x1 at sigma_min = 0); the path is straight,
    x_t = x0 + t u for the derivative target; the difference target is x1 - x0, equal to
    the derivative at sigma_min = 0. On fields [B, C, H, W] with per-sample times."""
    g = torch.Generator().manual_seed(0)
    x0, x1 = (
        torch.randn(3, 2, 4, 5, generator=g, dtype=F64),
        torch.randn(3, 2, 4, 5, generator=g, dtype=F64),
    )
    u = target(x0, x1, sigma_min, form)
    assert torch.allclose(interpolant(x0, x1, 0.0, sigma_min), x0)
    assert torch.allclose(interpolant(x0, x1, 1.0, sigma_min), x1 + sigma_min * x0)
    assert torch.allclose(interpolant(x0, x1, torch.zeros(3), sigma_min), x0)
    if form == "difference":
        assert torch.allclose(u, x1 - x0) and torch.allclose(x0 + u, x1)
    else:
        assert torch.allclose(x0 + u, interpolant(x0, x1, 1.0, sigma_min))
        t = torch.tensor([0.1, 0.5, 0.9], dtype=F64)
        straight = x0 + t.reshape(3, 1, 1, 1) * u
        assert torch.allclose(interpolant(x0, x1, t, sigma_min), straight)
    if sigma_min == 0.0:
        assert torch.allclose(
            u, target(x0, x1, 0.0, "difference" if form == "derivative" else form)
        )
    per_sample = interpolant(x0, x1, torch.tensor([0.0, 1.0, 0.5]), sigma_min)
    assert torch.allclose(per_sample[0], x0[0]) and torch.allclose(
        per_sample[2], (1 - (1 - sigma_min) / 2) * x0[2] + x1[2] / 2
    )


@pytest.mark.parametrize("ode", sorted(ODES))
@pytest.mark.parametrize("method", sorted(ORDERS))
def test_fixed_step_orders_and_evaluation_counts(method, ode):
    f, exact = ODES[ode]
    x0 = torch.tensor([[1.0, -0.5], [2.0, 0.25]], dtype=F64)
    errors = []
    for steps in (16, 32, 64):
        v = Counted(f)
        out = integrate(v, x0, method=method, steps=steps)
        assert out.evaluations == v.calls == steps * FIXED_STEP[method]
        errors.append(float((out.x - exact(x0, 1.0)).abs().max()))
    orders = [math.log2(a / b) for a, b in itertools.pairwise(errors)]
    assert all(abs(p - ORDERS[method]) < 0.25 for p in orders), (errors, orders)


def test_fixed_steps_run_backwards_and_report_every_step():
    f, _exact = ODES["time-dependent"]
    x1 = torch.ones(2, 1, 3, 3, dtype=F64)  # a field: the time broadcasts over C, H, W
    seen = []
    out = integrate(
        Counted(f),
        x1,
        method="rk4",
        steps=40,
        t0=1.0,
        t1=0.0,
        callback=lambda step, t, x: seen.append((step, t)),
    )
    assert torch.allclose(out.x, x1 / math.exp(math.sin(1.0)), rtol=1e-7)
    assert [s for s, _ in seen] == list(range(1, 41))
    assert seen[-1][1] == pytest.approx(0.0) and seen[0][1] == pytest.approx(0.975)


@pytest.mark.parametrize("ode", sorted(ODES))
def test_adaptive_integration_meets_its_tolerance(ode):
    f, exact = ODES[ode]
    x0 = torch.tensor([[1.0, -0.5], [2.0, 0.25]], dtype=F64)
    calls = []
    for tol in (1e-3, 1e-5, 1e-7, 1e-9):
        v = Counted(f)
        out = integrate(v, x0, method="dopri5", rtol=tol, atol=tol)
        error = (out.x - exact(x0, 1.0)).abs()
        assert (error <= 10 * (tol + tol * exact(x0, 1.0).abs())).all(), (tol, error)
        assert out.evaluations == v.calls > 0
        calls.append(v.calls)
    assert calls == sorted(calls) and calls[-1] > calls[0]


def test_adaptive_snapshots_reach_the_callback():
    f, exact = ODES["linear"]
    x0 = torch.ones(4, 2, dtype=F64)
    seen = []
    out = integrate(
        Counted(f),
        x0,
        method="dopri5",
        rtol=1e-8,
        atol=1e-8,
        snapshots=[0.75, 0.25, 0.5],
        callback=lambda step, t, x: seen.append((step, t, x)),
    )
    assert [(s, t) for s, t, _ in seen] == [(1, 0.25), (2, 0.5), (3, 0.75), (4, 1.0)]
    for _, t, x in seen:
        assert torch.allclose(x, exact(x0, t), rtol=1e-6)
    assert torch.equal(seen[-1][2], out.x)


@pytest.mark.parametrize(
    ("method", "steps", "tol"), [("euler", 200, 2e-2), ("rk4", 20, 1e-5), ("dopri5", None, 1e-5)]
)
def test_exact_gaussian_velocity_transports_noise_to_data(method, steps, tol):
    """The marginal velocity of x0 ~ N(0, I), x1 ~ N(m, s^2 I) is linear in x, so its flow
    maps each start x0 to m + sqrt(s^2 + sigma_min^2) x0 exactly; on a field."""
    m = torch.linspace(-1, 2, 12, dtype=F64).reshape(1, 3, 4)
    s, sigma_min = 0.5, 1e-3
    x0 = torch.randn(256, 1, 3, 4, generator=torch.Generator().manual_seed(1), dtype=F64)
    out = integrate(
        Counted(exact_velocity(m, s, sigma_min)),
        x0,
        method=method,
        steps=steps,
        rtol=1e-7,
        atol=1e-7,
    )
    expected = m + math.sqrt(s**2 + sigma_min**2) * x0
    assert (out.x - expected).abs().max() < tol
    if steps is not None:
        assert out.evaluations == steps * FIXED_STEP[method]


def test_integrator_errors_are_one_line(monkeypatch):
    x = torch.zeros(2, 2)
    v = ODES["linear"][0]
    with pytest.raises(PbdlError, match="did you mean 'rk4'"):
        integrate(v, x, method="rk5", steps=4)
    with pytest.raises(PbdlError, match="needs steps >= 1"):
        integrate(v, x, method="euler")
    with pytest.raises(PbdlError, match="chooses its own steps"):
        integrate(v, x, method="dopri5", steps=10)
    with pytest.raises(PbdlError, match="strictly between"):
        integrate(v, x, method="dopri5", snapshots=[1.0])
    with pytest.raises(PbdlError, match="unknown flow-matching target"):
        target(x, x, 0.0, "ch25")
    monkeypatch.setitem(sys.modules, "torchdiffeq", None)  # as if not installed
    with pytest.raises(
        PbdlError, match=r"needs the torchdiffeq package: pip install 'pbdl\[generative\]'"
    ):
        integrate(v, x, method="dopri5")
