"""SMDP's probability-flow rollout loss and the reverse-SDE / probability-flow samplers:
a hand-computed window, gradients (gradcheck), and sampling a Gaussian with its exact
score under pure Brownian motion."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from pbdl_cli.errors import PbdlError
from pbdl_cli.generative.sde import (
    probability_flow,
    probability_flow_rollout_loss,
    reverse_sde,
)

F64 = torch.float64


def quadratic(x: Tensor) -> Tensor:
    return -7.0 * torch.sign(x) * x * x


def test_rollout_loss_of_a_hand_computed_window():
    # score s(x, t) = t + x; two samples, three frames at t = 1, 0.5, 0
    x = torch.tensor([[0.2, 0.4, 1.0], [-0.1, -0.3, -0.5]], dtype=F64)[:, :, None]
    t = torch.tensor([1.0, 0.5, 0.0], dtype=F64)
    loss, predicted = probability_flow_rollout_loss(lambda y, s: y + s[:, None], quadratic, x, t)
    # sample 0: x1 = 0.2 - 0.5 (-0.28 - 0.5 (1.2)) = 0.64; x2 = 0.64 - 0.5 (-7 0.4096 - 0.5 1.14)
    a1 = 0.2 - 0.5 * (-7 * 0.04 - 0.5 * 1.2)
    a2 = a1 - 0.5 * (-7 * a1 * a1 - 0.5 * (0.5 + a1))
    b1 = -0.1 - 0.5 * (7 * 0.01 - 0.5 * (1.0 - 0.1))
    b2 = b1 - 0.5 * (-7 * math.copysign(b1 * b1, b1) - 0.5 * (0.5 + b1))
    assert a1 == pytest.approx(0.64)
    torch.testing.assert_close(predicted[:, :, 0], torch.tensor([[a1, a2], [b1, b2]], dtype=F64))
    expected = ((a1 - 0.4) ** 2 + (b1 + 0.3) ** 2) / 2 + ((a2 - 1.0) ** 2 + (b2 + 0.5) ** 2) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-12)


def test_rollout_loss_forward_direction_is_the_forward_probability_flow_step():
    # ascending times: x <- x + h [f(x) - s / 2] with s at the earlier time
    x = torch.tensor([[[1.0], [0.5]]], dtype=F64)
    t = torch.tensor([0.0, 0.1], dtype=F64)
    _, predicted = probability_flow_rollout_loss(lambda y, s: 2 + 0 * y, quadratic, x, t)
    assert float(predicted[0, 0, 0]) == pytest.approx(1.0 + 0.1 * (-7.0 - 1.0))


def test_rollout_loss_per_sample_times_and_a_one_frame_window():
    x = torch.randn(3, 4, 1, dtype=F64, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([3.0, 2.0, 1.0, 0.5], dtype=F64)

    def score(y: Tensor, s: Tensor) -> Tensor:
        return torch.sin(y) * s[:, None]

    shared, _ = probability_flow_rollout_loss(score, quadratic, x, t)
    each, _ = probability_flow_rollout_loss(score, quadratic, x, t.expand(3, 4))
    torch.testing.assert_close(shared, each)
    loss, predicted = probability_flow_rollout_loss(score, quadratic, x[:, :1], t[:1])
    assert float(loss) == 0.0 and predicted.shape == (3, 0, 1)
    with pytest.raises(ValueError, match="times"):
        probability_flow_rollout_loss(score, quadratic, x, t[:3])


def test_rollout_loss_gradcheck():
    x = torch.tensor([[0.3, 0.5, 0.9, 1.0], [-0.2, -0.4, -0.7, -1.0]], dtype=F64)[:, :, None]
    t = torch.tensor([0.3, 0.2, 0.1, 0.0], dtype=F64)

    def loss_of(a: Tensor, b: Tensor) -> Tensor:
        def score(y: Tensor, s: Tensor) -> Tensor:
            return a * y + b * torch.log(s[:, None] + 1e-5)

        return probability_flow_rollout_loss(score, quadratic, x, t)[0]

    a = torch.tensor(1.5, dtype=F64, requires_grad=True)
    b = torch.tensor(-0.3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(loss_of, (a, b))


def gaussian_score(sigma0: float, g: float):
    """g^2 grad log p_t for p_0 = N(0, sigma0^2) under dx = g dW: -g^2 x / (sigma0^2 + g^2 t)."""
    return lambda x, t: -(g**2) * x / (sigma0**2 + g**2 * t[:, None])


@pytest.mark.parametrize("sampler", ["sde", "ode"])
def test_samplers_recover_a_gaussian_with_its_exact_score(sampler):
    sigma0, g, t_end, n = 0.5, 1.0, 2.0, 20000
    gen = torch.Generator().manual_seed(0)
    x = math.sqrt(sigma0**2 + g**2 * t_end) * torch.randn(n, 1, generator=gen, dtype=F64)
    score, zero = gaussian_score(sigma0, g), lambda y: torch.zeros_like(y)
    seen: list[tuple[int, float]] = []
    if sampler == "sde":
        out = reverse_sde(
            score,
            zero,
            g,
            x,
            t_start=t_end,
            t_end=0.0,
            steps=400,
            generator=gen,
            callback=lambda i, t, _: seen.append((i, t)),
        )
    else:
        out = probability_flow(
            score,
            zero,
            x,
            t_start=t_end,
            t_end=0.0,
            steps=400,
            callback=lambda i, t, _: seen.append((i, t)),
        )
    assert out.x.shape == (n, 1) and out.evaluations == 400
    assert seen[0] == (1, pytest.approx(2.0 - 0.005)) and seen[-1] == (400, pytest.approx(0.0))
    # the std of the samples is sigma0 (Euler error O(h), sampling error ~ 1 / sqrt(2 n))
    assert float(out.x.std()) == pytest.approx(sigma0, rel=0.03)
    assert abs(float(out.x.mean())) < 4 * sigma0 / math.sqrt(n)


def test_probability_flow_is_deterministic_and_reverse_sde_uses_the_generator():
    x = torch.linspace(-0.1, 0.1, 5, dtype=F64)[:, None]
    score = gaussian_score(0.5, 0.3)

    def one(seed: int) -> Tensor:
        gen = torch.Generator().manual_seed(seed)
        return reverse_sde(score, quadratic, 0.3, x, t_start=1, t_end=0, steps=10, generator=gen).x

    torch.testing.assert_close(one(1), one(1), rtol=0, atol=0)
    assert not torch.equal(one(1), one(2))
    a = probability_flow(score, quadratic, x, t_start=1.0, t_end=0.0, steps=10).x
    b = probability_flow(score, quadratic, x, t_start=1.0, t_end=0.0, steps=10).x
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_samplers_refuse_bad_settings():
    x = torch.zeros(2, 1)
    score = gaussian_score(1.0, 1.0)
    with pytest.raises(PbdlError, match="steps"):
        probability_flow(score, quadratic, x, t_start=1.0, t_end=0.0, steps=0)
    with pytest.raises(PbdlError, match="t_end < t_start"):
        reverse_sde(score, quadratic, 1.0, x, t_start=0.0, t_end=1.0, steps=3)
