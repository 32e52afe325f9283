"""problem=heat (PBDL book ch. 39): the exact periodic diffusion, the book's stabilized
inverse diffusion, the random soft boxes, the mean correction and SIP on it."""

from __future__ import annotations

import math

import pytest
import torch

from pbdl_cli.methods import METHODS
from pbdl_cli.models.base import MODELS
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.problems.heat import (
    box_mask,
    diffuse,
    log_decay,
    signal_probability,
    stabilized_inverse_diffuse,
)

CPU = torch.device("cpu")


def heat(**options):
    return PROBLEMS.build({"name": "heat", **options})


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_shapes_follow_the_resolution():
    p = heat(resolution=8)
    assert p.x_shape == p.y_shape == p.input_shape == (1, 8, 8)
    assert p.has_inverse and p.differentiable
    assert heat().x_shape == (1, 64, 64)


@pytest.mark.parametrize(("a", "b"), [(1, 0), (0, 3), (2, 5), (32, 32)])
def test_forward_is_the_analytic_decay_of_a_fourier_mode(a, b):
    n, amount = 64, 8.0
    i = torch.arange(n, dtype=torch.float64) + 0.5
    x = torch.cos(2 * math.pi * (a * i[:, None] + b * i[None, :]) / n)[None, None]
    decay = math.exp(-((2 * math.pi / n) ** 2) * (a * a + b * b) * amount)
    y = heat(amount=amount).forward(x)
    assert torch.allclose(y, x * decay, atol=1e-12)


def test_forward_conserves_the_mean_and_runs_in_float64():
    p = heat()
    x = p.sample(4, gen()).truth
    y = p.forward(x)
    assert torch.allclose(y.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-12)
    y32 = p.forward(x.float())
    assert y32.dtype == torch.float32
    assert torch.allclose(y32.double(), y, atol=1e-6)


def test_forward_gradcheck_float64():
    p = heat(resolution=8, amount=2.0)
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64, generator=gen(), requires_grad=True)
    assert torch.autograd.gradcheck(p.forward, (x,), fast_mode=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("amount", [8.0, 100.0, 1e4])
def test_stabilized_inverse_is_finite_for_any_diffusion(dtype, amount):
    dy = torch.randn(3, 1, 64, 64, generator=gen(1), dtype=torch.float64)
    cases = [dy, 1e-30 * dy, 1e30 * dy, torch.zeros_like(dy), diffuse(dy, amount)]
    for case in cases:
        out = stabilized_inverse_diffuse(case.to(dtype), amount)
        assert out.dtype == dtype
        assert torch.isfinite(out).all(), (amount, dtype)
    p, action = signal_probability(dy, amount, 1e-6)
    assert torch.isfinite(p).all() and torch.isfinite(action).all()
    assert (action >= -1).all() and (action <= 1).all()


def test_stabilized_inverse_recovers_the_modes_it_keeps():
    p = heat()
    x = p.sample(4, gen(2)).truth
    y = p.forward(x)
    _, action = signal_probability(y, 8.0, 1e-6)
    kept = action == 1
    assert kept.any() and not kept.all()
    recovered = torch.fft.rfft2(p.inverse(y, torch.zeros_like(x)))
    assert torch.allclose(recovered[kept], torch.fft.rfft2(x)[kept], rtol=1e-6, atol=1e-8)
    # the lowest modes are kept, the highest (signal drowned) are damped: action -1
    assert kept[..., 0, 1].all() and (action[..., 32, 32] == -1).all()
    # the full inverse of a diffused field would amplify up to exp(L) ~ 1e68
    assert log_decay(64, 8.0).max() > 150
    assert recovered.abs().max() < 1e4


def test_inverse_is_x0_plus_the_stabilized_inverse_of_the_y_step():
    p = heat()
    samples = p.sample(3, gen(3))
    x0 = 0.1 * torch.randn(3, 1, 64, 64, generator=gen(4), dtype=torch.float64)
    dy = samples.target - p.forward(x0)
    expected = x0 + stabilized_inverse_diffuse(dy, 8.0)
    assert torch.allclose(p.inverse(p.forward(x0) + dy, x0), expected, atol=1e-12)


def test_box_mask_is_exact_on_cell_aligned_boxes_and_soft_otherwise():
    centre = torch.tensor([[32.0, 20.0], [10.3, 40.7]], dtype=torch.float64)
    half = torch.tensor([[4.0, 2.0], [3.25, 1.6]], dtype=torch.float64)
    mask = box_mask(centre, half, 64)
    assert mask.shape == (2, 64, 64)
    assert ((mask >= 0) & (mask <= 1)).all()
    assert set(mask[0].unique().tolist()) == {0.0, 1.0} and mask[0].sum() == 8 * 4
    soft = mask[1]
    assert ((soft > 0) & (soft < 1)).any()
    assert soft.sum() == pytest.approx(4 * 3.25 * 1.6, rel=0.15)


def test_samples_are_random_boxes_deterministic_per_generator():
    p = heat()
    a, b = p.sample(16, gen(5)), p.sample(16, gen(5))
    assert torch.equal(a.truth, b.truth)
    assert not torch.equal(a.truth, p.sample(16, gen(6)).truth)
    x = a.truth
    assert x.shape == (16, 1, 64, 64) and x.dtype == torch.float64
    assert (x >= 0).all() and (x <= 10).all() and (x.amax((1, 2, 3)) > 0).all()
    assert torch.equal(a.input, a.target)
    assert torch.allclose(a.target, p.forward(x))
    assert a.condition is None


def test_mean_correction_is_off_by_default():
    samples = heat().sample(2, gen())
    x = torch.randn(2, 1, 64, 64, dtype=torch.float64, generator=gen(7))
    assert torch.equal(heat().correct(x, samples), x)
    corrected = heat(mean_correction=True).correct(x, samples)
    assert torch.allclose(corrected.mean((1, 2, 3)), samples.truth.mean((1, 2, 3)))
    assert torch.allclose(
        corrected - corrected.mean((1, 2, 3), keepdim=True), x - x.mean((1, 2, 3), keepdim=True)
    )


def test_sip_takes_the_analytic_inverse_and_lowers_the_proxy_target():
    p = heat(resolution=16)
    config = METHODS.config({"name": "sip", "batch_size": 4, "n_val": 4})
    sip = METHODS.create(config, problem=p, device=CPU, dtype=torch.float32)
    assert sip.local_inverse.value == "analytic"
    model = sip.build_model(MODELS.config({"name": "unet", "levels": 2, "width": 4}))
    samples = sip.batch(0)
    x = sip.unknowns(model, samples).detach()
    target = sip.corrected(x, samples)
    assert target.dtype == torch.float32
    before = p.loss_y(p.forward(x), samples.target)
    after = p.loss_y(p.forward(target), samples.target)
    assert (after < 0.5 * before).all()
    assert torch.isfinite(sip.loss(model, 0)["loss"])
