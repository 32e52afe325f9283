"""Continuous normalizing flows: the divergence against the autograd Jacobian's trace,
Hutchinson's estimator unbiased, the log-likelihood of a linear flow against the closed
change of variables (log det expm(A (1 - t0)) = (1 - t0) tr A), sampling inverting the
likelihood's map, adjoint gradients equal to backpropagated ones, evaluation counts."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.generative.cnf import (
    divergence_exact,
    divergence_hutchinson,
    draw_probe,
    log_likelihood,
    sample,
    standard_normal_log_prob,
    velocity_and_divergence,
)

F64 = torch.float64


class SmallNet(nn.Module):
    """A random smooth velocity v(z, t) on [B, *shape] (flattened through a tanh MLP)."""

    def __init__(self, shape: tuple[int, ...], seed: int = 0, width: int = 16) -> None:
        super().__init__()
        torch.manual_seed(seed)
        d = math.prod(shape)
        self.shape = shape
        self.net = nn.Sequential(nn.Linear(d + 1, width), nn.Tanh(), nn.Linear(width, d)).to(F64)

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z.reshape(z.shape[0], -1), t[:, None]], 1)
        return self.net(h).reshape(z.shape)


def jacobian_traces(v: SmallNet, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """tr(dv/dz) per sample from the full autograd Jacobian of one sample at a time."""
    traces = []
    for b in range(z.shape[0]):

        def one(x, b=b):
            return v(x[None], t[b : b + 1])[0].reshape(-1)

        jac = torch.autograd.functional.jacobian(one, z[b])
        traces.append(torch.trace(jac.reshape(jac.shape[0], -1)))
    return torch.stack(traces)


@pytest.mark.parametrize("shape", [(2,), (5,), (2, 3, 2)])
def test_exact_divergence_is_the_trace_of_the_jacobian(shape) -> None:
    v = SmallNet(shape, seed=len(shape))
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, *shape, generator=g, dtype=F64)
    t = torch.rand(4, generator=g, dtype=F64)
    out, div = velocity_and_divergence(v, z, t)
    assert out.shape == z.shape and div.shape == (4,) and not div.requires_grad
    assert torch.allclose(div, jacobian_traces(v, z, t), atol=1e-12)
    assert div.abs().min() > 1e-3  # a non-trivial field


def test_the_divergence_is_differentiable_with_create_graph() -> None:
    v = SmallNet((3,), seed=1, width=6)
    t = torch.full((2,), 0.4, dtype=F64)
    z = torch.randn(2, 3, dtype=F64, requires_grad=True)

    def div(z: torch.Tensor) -> torch.Tensor:
        return divergence_exact(v(z, t), z, create_graph=True)

    assert torch.autograd.gradcheck(div, (z,))
    weight = v.net[0].weight
    (grad,) = torch.autograd.grad(div(z).sum(), weight)
    assert grad.abs().max() > 0  # reaches the parameters (training through the divergence)


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(kind) -> None:
    v = SmallNet((4,), seed=2)
    z0 = torch.randn(1, 4, dtype=F64)
    t = torch.full((1,), 0.3, dtype=F64)
    exact = float(jacobian_traces(v, z0, t)[0])
    n = 20_000  # one point, many probes: each row a probe
    z = z0.repeat(n, 1).requires_grad_(True)
    probe = draw_probe(z, kind, torch.Generator().manual_seed(5))
    if kind == "rademacher":
        assert set(probe.unique().tolist()) == {-1.0, 1.0}
    estimates = divergence_hutchinson(v(z, t.expand(n)), z, probe)
    mean, std = float(estimates.mean()), float(estimates.std())
    assert std > 0.01  # an estimator with noise ...
    assert abs(mean - exact) < 4 * std / math.sqrt(n)  # ... and without bias


def test_hutchinson_with_rademacher_probes_is_exact_for_a_diagonal_jacobian() -> None:
    scale = torch.tensor([0.5, -2.0, 3.0], dtype=F64)

    def v(z, t):
        return torch.sin(z) * scale

    z = torch.randn(6, 3, dtype=F64, requires_grad=True)
    probe = draw_probe(z, "rademacher", torch.Generator().manual_seed(0))
    expected = (torch.cos(z) * scale).sum(1)
    assert torch.allclose(divergence_hutchinson(v(z, None), z, probe), expected, atol=1e-14)


def linear_case(d: int, seed: int) -> tuple[torch.Tensor, callable]:
    g = torch.Generator().manual_seed(seed)
    a = 0.6 * torch.randn(d, d, generator=g, dtype=F64)
    return a, lambda z, t: (z.reshape(z.shape[0], -1) @ a.T).reshape(z.shape)


def linear_log_prob(a: torch.Tensor, y: torch.Tensor, t0: float) -> torch.Tensor:
    """z = expm(A (1 - t0)) y; log q(y) = log N(z) + log det expm(A (1 - t0))."""
    m = torch.linalg.matrix_exp(a * (1 - t0))
    z = y.reshape(y.shape[0], -1) @ m.T
    return standard_normal_log_prob(z) + torch.logdet(m)


@pytest.mark.parametrize(
    ("method", "steps", "tol"), [("dopri5", None, 1e-7), ("rk4", 40, 1e-6), ("euler", 2000, 5e-3)]
)
@pytest.mark.parametrize("t0", [0.0, 0.4])
def test_linear_flow_log_likelihood_is_the_change_of_variables(method, steps, tol, t0) -> None:
    a, v = linear_case(3, seed=1)
    y = torch.randn(8, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    result = log_likelihood(v, y, method=method, steps=steps, rtol=1e-10, atol=1e-10, t0=t0)
    assert torch.allclose(result.log_prob, linear_log_prob(a, y, t0), atol=tol, rtol=0)
    assert torch.allclose(
        result.log_det, torch.full((8,), (1 - t0) * float(torch.trace(a)), dtype=F64), atol=tol
    )
    m = torch.linalg.matrix_exp(a * (1 - t0))
    assert torch.allclose(result.z, y @ m.T, atol=tol)
    if steps:
        assert result.evaluations == steps * {"rk4": 4, "euler": 1}[method]
    else:
        assert result.evaluations > 0


def test_linear_flow_on_fields_and_with_hutchinson_for_a_diagonal_matrix() -> None:
    a, v = linear_case(12, seed=3)
    y = torch.randn(5, 2, 3, 2, dtype=F64)
    result = log_likelihood(v, y, rtol=1e-10, atol=1e-10)
    assert result.z.shape == y.shape
    assert torch.allclose(result.log_prob, linear_log_prob(a, y, 0.0), atol=1e-7)
    diagonal = torch.diag(torch.diagonal(a))
    hutch = log_likelihood(
        lambda z, t: (z.reshape(5, -1) @ diagonal).reshape(z.shape),
        y,
        rtol=1e-10,
        atol=1e-10,
        divergence="hutchinson",
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.allclose(hutch.log_prob, linear_log_prob(diagonal, y, 0.0), atol=1e-7)


def test_sampling_inverts_the_likelihood_map() -> None:
    v = SmallNet((2,), seed=4)
    y = torch.randn(16, 2, dtype=F64)
    with torch.no_grad():
        result = log_likelihood(v, y, rtol=1e-10, atol=1e-10)
        back = sample(v, result.z, rtol=1e-10, atol=1e-10)
    assert back.x.shape == y.shape and back.evaluations > 0
    assert (result.z - y).abs().max() > 0.05
    assert torch.allclose(back.x, y, atol=1e-7)
    seen = []
    fixed = sample(v, result.z, method="rk4", steps=5, callback=lambda k, t, x: seen.append(t))
    assert fixed.evaluations == 20 and seen == pytest.approx([0.8, 0.6, 0.4, 0.2, 0.0])


# the adjoint's rk4 (torchdiffeq's 3/8 rule, backward ODE discretized) agrees to O(h^4):
# 3e-7 at 6 steps, 2e-8 at 12
@pytest.mark.parametrize(("method", "steps"), [("dopri5", None), ("rk4", 12)])
def test_adjoint_gradients_equal_backpropagation_through_the_solver(method, steps) -> None:
    v = SmallNet((2,), seed=5, width=8)
    y = torch.randn(6, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    params = list(v.parameters())
    grads = []
    for adjoint in (False, True):
        result = log_likelihood(
            v,
            y,
            method=method,
            steps=steps,
            rtol=1e-10,
            atol=1e-10,
            adjoint=adjoint,
            adjoint_params=params,
        )
        grads.append(torch.autograd.grad(-result.log_prob.mean(), params))
        assert result.evaluations > 0
    for direct, adjoint in zip(*grads, strict=True):
        assert direct.abs().max() > 0
        assert torch.allclose(direct, adjoint, atol=1e-7, rtol=1e-6)


def test_a_start_at_the_latent_time_is_the_prior() -> None:
    y = torch.randn(3, 2, dtype=F64)
    result = log_likelihood(lambda z, t: z, y, t0=1.0)
    assert torch.equal(result.log_prob, standard_normal_log_prob(y)) and result.evaluations == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"divergence": "trace"}, "unknown divergence 'trace'"),
        ({"divergence": "hutchinson", "probe": "uniform"}, "unknown Hutchinson probe"),
        ({"method": "rk5", "steps": 3}, "unknown ODE method"),
        ({"method": "rk4"}, "needs steps"),
        ({"adjoint": True}, "needs the parameters"),
        ({"t0": 1.5}, r"start time must lie in \[0, 1\]"),
    ],
)
def test_bad_options_are_one_line_errors(kwargs, message) -> None:
    with pytest.raises(PbdlError, match=message):
        log_likelihood(lambda z, t: z, torch.zeros(2, 2), **kwargs)
