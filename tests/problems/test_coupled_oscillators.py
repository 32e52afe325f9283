"""The coupled oscillators of PBDL book ch. 41 (``problem=coupled_oscillators``): the RK4
integrator against the exact solution, energy, derivatives, and the methods on it."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.autograd import gradcheck

from pbdl_cli.methods.hig import HIG, HIGConfig
from pbdl_cli.methods.sip import SIP, SIPConfig
from pbdl_cli.problems.coupled_oscillators import (
    CoupledOscillators,
    CoupledOscillatorsConfig,
    chain_laplacian,
)

CPU, F64 = torch.device("cpu"), torch.float64


def problem(**kw: object) -> CoupledOscillators:
    return CoupledOscillators(CoupledOscillatorsConfig(**kw))


def stagewise(p: CoupledOscillators, s0: torch.Tensor, u: torch.Tensor, dt: float) -> torch.Tensor:
    s = s0
    for k in range(u.shape[-1]):
        s = p.rk4_step(s, u[..., k], dt)
    return s


def system_matrix(p: CoupledOscillators) -> torch.Tensor:
    """M of the uncontrolled linear system s' = M s: [[0, I], [-I + k Lap, 0]]."""
    n = p.config.oscillators
    eye = torch.eye(n, dtype=F64)
    lower = torch.cat(
        [-eye + p.config.strength * chain_laplacian(n), torch.zeros(n, n, dtype=F64)], 1
    )
    return torch.cat([torch.cat([torch.zeros(n, n, dtype=F64), eye], 1), lower], 0)


def test_laplacian_is_the_books_free_ended_chain():
    assert torch.equal(chain_laplacian(2), torch.tensor([[-1.0, 1.0], [1.0, -1.0]], dtype=F64))
    expected = torch.tensor([[-1.0, 1, 0], [1, -2, 1], [0, 1, -1]], dtype=F64)
    assert torch.equal(chain_laplacian(3), expected)
    assert torch.equal(chain_laplacian(1), torch.zeros(1, 1, dtype=F64))


def test_rhs_is_the_books_ode():
    """x' = v, v' = -x + 0.2 Lap x + u e_N for N = 2 (the book's matrices A, B, C)."""
    p = problem()
    s = torch.tensor([[0.3, -0.5, 0.7, 0.1]], dtype=F64)
    u = torch.tensor([2.0], dtype=F64)
    x1, x2 = 0.3, -0.5
    expected = [0.7, 0.1, -x1 + 0.2 * (x2 - x1), -x2 + 0.2 * (x1 - x2) + 2.0]
    assert torch.allclose(p.rhs(s, u), torch.tensor([expected], dtype=F64))


def test_affine_step_equals_the_four_stages():
    """The linear coupling applies each RK4 step as its affine map; it is the same RK4."""
    p = problem(oscillators=3)
    g = torch.Generator().manual_seed(0)
    s0 = torch.rand(5, 6, generator=g, dtype=F64)
    u = torch.randn(5, 24, generator=g, dtype=F64)
    assert torch.allclose(p.simulate(s0, u), stagewise(p, s0, u, 0.5), atol=1e-13, rtol=0)


@pytest.mark.parametrize("path", ["affine", "stages"])
def test_rk4_is_fourth_order_against_the_matrix_exponential(path):
    """Uncontrolled linear system to T = 12: halving dt divides the error by ~2^4 = 16."""
    p = problem()
    s0 = torch.tensor([[0.9, 0.2, 0.4, 0.6]], dtype=F64)
    exact = s0 @ torch.linalg.matrix_exp(system_matrix(p) * 12.0).T
    errors = []
    for steps in (24, 48, 96):
        u = torch.zeros(1, steps, dtype=F64)
        dt = 12.0 / steps
        end = p.simulate(s0, u, dt) if path == "affine" else stagewise(p, s0, u, dt)
        errors.append(float((end - exact).norm()))
    for coarse, fine in itertools.pairwise(errors):
        assert 14.0 < coarse / fine < 18.0, errors


def test_energy_without_coupling_decays_as_rk4s_amplification_factor():
    """Without coupling each oscillator is x'' = -x; RK4 multiplies the energy by
    |R(i dt)|^2 = 1 - dt^6/72 + dt^8/576 per step, R(z) = 1 + z + z^2/2 + z^3/6 + z^4/24:
    conserved to RK4 accuracy (5e-3 relative over the book's 24 steps of 0.5, then ~2^5
    less per halving of dt), and exactly as predicted."""
    p = problem(strength=0.0)
    s0 = torch.tensor([[0.9, 0.2, 0.4, 0.6]], dtype=F64)
    drifts = []
    for steps, dt in ((24, 0.5), (48, 0.25)):
        end = p.simulate(s0, torch.zeros(1, steps, dtype=F64), dt)
        ratio = float(p.energy(end) / p.energy(s0))
        z = complex(0.0, dt)
        factor = abs(1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24) ** 2
        assert ratio == pytest.approx(factor**steps, rel=1e-12)
        drifts.append(1 - ratio)
    assert 0 < drifts[0] < 6e-3
    assert 28 < drifts[0] / drifts[1] < 36


def test_quartic_energy_is_conserved_to_rk4_accuracy():
    """The default alpha (0.05); larger ones make dt = 0.5 too coarse (alpha 0.5: 34%)."""
    p = problem(coupling="quartic")
    s0 = torch.tensor([[0.9, -0.2, 0.4, 0.6]], dtype=F64)
    drifts = []
    for steps in (24, 48):
        end = p.simulate(s0, torch.zeros(1, steps, dtype=F64), 12.0 / steps)
        drifts.append(abs(float(p.energy(end) / p.energy(s0)) - 1))
    assert drifts[0] < 2e-2
    assert drifts[0] / drifts[1] > 16  # at least 4th order


def test_quartic_force_is_minus_the_gradient_of_the_potential():
    p = problem(coupling="quartic", oscillators=3, alpha=0.3)
    x = torch.tensor([0.4, -0.3, 0.8], dtype=F64, requires_grad=True)
    potential = p.energy(torch.cat([x, torch.zeros(3, dtype=F64)])[None]).sum()
    (grad,) = torch.autograd.grad(potential, x)
    s = torch.cat([x.detach(), torch.zeros(3, dtype=F64)])[None]
    force = p.rhs(s, torch.zeros(1, dtype=F64))[0, 3:]
    assert torch.allclose(force, -grad)


@pytest.mark.parametrize("coupling", ["linear", "quartic"])
def test_gradcheck_of_the_simulator(coupling, one_thread):
    p = problem(coupling=coupling, alpha=0.5)
    g = torch.Generator().manual_seed(1)
    u = torch.randn(2, 8, generator=g, dtype=F64, requires_grad=True)
    s0 = torch.rand(2, 4, generator=g, dtype=F64, requires_grad=True)
    assert gradcheck(lambda a, b: p.forward(a, b), (u, s0))


def test_sample_and_loss_are_the_books():
    p = problem()
    s = p.sample(4096, torch.Generator().manual_seed(0))
    assert s.input.shape == s.target.shape == s.condition.shape == (4096, 4)
    assert torch.equal(s.input, s.target) and torch.equal(s.target, s.condition)
    assert float(s.input.min()) >= 0 and float(s.input.max()) < 1
    y = torch.tensor([[1.0, 2.0, 0.0, 0.0]], dtype=F64)
    assert float(p.loss_y(y, torch.zeros_like(y))) == 5.0  # a sum of squares, no 1/2


def make(cls, config):  # type: ignore[no-untyped-def]
    method = cls(config, problem=problem(), device=CPU, dtype=F64)
    model = method.build_model({"name": "mlp", "depth": 3, "width": 20, "init": "xavier_uniform"})
    return method, model


def test_hig_jacobian_equals_autograd(one_thread):
    method, model = make(HIG, HIGConfig(name="hig", batch_size=4, n_train=4, n_val=0))
    assert sum(q.numel() for q in model.parameters()) == 1444  # the book's network
    samples = method.batch(0)
    y, jac = method.jacobian(model, samples)
    params = list(model.parameters())
    rows = []
    forward = method.problem.forward(method.unknowns(model, samples), samples.condition)
    assert torch.allclose(y, forward)
    for i in range(4):
        for j in range(4):
            grads = torch.autograd.grad(forward[i, j], params, retain_graph=True)
            rows.append(torch.cat([gr.flatten() for gr in grads]))
    assert torch.allclose(jac, torch.stack(rows), atol=1e-12)


def test_sip_target_is_the_books_pinv_step():
    """With eta = 2/B, u~ = u - pinv(J) d(sum_i |y_i - y*_i|^2 / B)/dy (the book's SIP)."""
    b = 8
    config = SIPConfig(name="sip", batch_size=b, n_train=b, n_val=0, inverse="pinv", eta=2 / b)
    method, model = make(SIP, config)
    samples = method.batch(0)
    u = method.unknowns(model, samples).detach()
    p = method.problem
    y = p.forward(u, samples.condition)
    grad = 2 * (y - samples.target) / b
    jac = torch.func.vmap(torch.func.jacrev(lambda a, c: p.forward(a[None], c[None])[0]))(
        u, samples.condition
    )
    book = u - (torch.linalg.pinv(jac, rtol=1e-5) @ grad[..., None])[..., 0]
    assert torch.allclose(method.corrected(u, samples), book, atol=1e-12)


def test_hig_one_epoch_brings_the_loss_from_order_one_below_1e_3(one_thread):
    """One epoch of 32 HIG updates (batch 32, lr 1) on 1024 states: from ~1 to < 1e-3."""
    method, model = make(HIG, HIGConfig(name="hig", batch_size=32, n_train=1024, n_val=0))
    start = method.validate(model)["y_loss"]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.0)
    for step in range(1024 // 32):

        def closure() -> torch.Tensor:
            loss = method.loss(model, step)["loss"]  # noqa: B023
            loss.backward()
            return loss

        method.step(optimizer, closure)
    end = method.validate(model)["y_loss"]
    assert start > 0.1 and math.isfinite(end) and end < 1e-3, (start, end)


def test_config_errors():
    with pytest.raises(ValueError, match="coupling"):
        problem(coupling="cubic")
    with pytest.raises(ValueError, match="time_step"):
        problem(time_step=0.0)
