"""Grid models ``resnet``, ``unet`` and ``fno``: shapes, parameter counts, conditioning,
equivariance, gradients, serialization and configuration errors (tiny sizes, CPU)."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch
from torch import nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.models import MODELS
from pbdl_cli.models.utils import ModelInputError, count_parameters, describe

# tiny configurations used by most tests
TINY: dict[str, dict[str, Any]] = {
    "resnet": {"name": "resnet", "width": 4, "blocks": 2, "dilations": [1, 2]},
    "unet": {"name": "unet", "levels": 2, "width": 3},
    "fno": {"name": "fno", "modes": 3, "width": 4, "layers": 2, "projection_width": 5},
}
NAMES = list(TINY)


def build(
    cfg: dict[str, Any],
    d: int,
    *,
    cin: int = 2,
    cout: int = 3,
    params: int = 1,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> nn.Module:
    torch.manual_seed(seed)
    model = MODELS.build(
        cfg, in_channels=cin, out_channels=cout, num_spatial_dims=d, num_params=params
    )
    return model.to(dtype)


def inputs(batch: int, cin: int, spatial: tuple[int, ...], params: int = 1, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cin, *spatial, generator=g, dtype=torch.float64)
    p = torch.randn(batch, params, generator=g, dtype=torch.float64) if params else None
    return x, p


SIZES = {1: [(8,), (13,), (16,)], 2: [(8, 8), (9, 12), (7, 11)]}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("d", [1, 2])
def test_output_shape(name: str, d: int) -> None:
    model = build(TINY[name], d)
    for spatial in SIZES[d]:  # odd sizes too: unet pads and crops
        x, p = inputs(2, 2, spatial)
        assert model(x, p).shape == (2, 3, *spatial)


@pytest.mark.parametrize("name", NAMES)
def test_output_shape_3d(name: str) -> None:
    cfg = {**TINY[name], **({"modes": 2} if name == "fno" else {})}
    model = build(cfg, 3, params=0)
    x, _ = inputs(1, 2, (4, 5, 6), params=0)
    assert model(x).shape == (1, 3, 4, 5, 6)


@pytest.mark.parametrize("d", [1, 2])
def test_parameter_count_resnet(d: int) -> None:
    cin, p, cout, w, k, blocks, n = 2, 1, 3, 4, 3, 2, 2
    kk = k**d
    expected = (cin + p) * w * kk + w + blocks * n * (w * w * kk + w) + w * cout * kk + cout
    assert count_parameters(build(TINY["resnet"], d)) == expected


@pytest.mark.parametrize("d, growth", [(1, 2), (2, 2), (2, 1)])
def test_parameter_count_unet(d: int, growth: int) -> None:
    cin, p, cout, w, levels, kk = 2, 1, 3, 3, 2, 3**d
    c = [w * growth**level for level in range(levels + 1)]

    def conv(a: int, b: int) -> int:
        return a * b * kk + b

    expected = conv(cin + p, c[0]) + conv(c[0], c[0])
    expected += sum(conv(c[j - 1], c[j]) + conv(c[j], c[j]) for j in range(1, levels + 1))
    expected += sum(
        conv(c[j + 1], c[j]) + conv(2 * c[j], c[j]) + conv(c[j], c[j]) for j in range(levels)
    )
    expected += c[0] * cout + cout
    assert count_parameters(build({**TINY["unet"], "growth": growth}, d)) == expected


@pytest.mark.parametrize("d", [1, 2, 3])
def test_unet_batch_norm_adds_a_norm_per_double_convolution_conv(d: int) -> None:
    plain = build(TINY["unet"], d)
    normed = build({**TINY["unet"], "batch_norm": True}, d)
    norms = [m for m in normed.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    # 2 per double convolution: levels + 1 encoder and levels decoder blocks
    assert len(norms) == 2 * (2 * 2 + 1)
    assert count_parameters(normed) == count_parameters(plain) + sum(
        2 * m.num_features for m in norms
    )
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in plain.modules())
    x = torch.randn(4, 2, *(8,) * d, dtype=torch.float64)
    assert normed(x, torch.randn(4, 1, dtype=torch.float64)).shape == (4, 3, *(8,) * d)


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("grid", [False, True])
def test_parameter_count_fno(d: int, grid: bool) -> None:
    cin, p, cout, w, m, layers, q = 2, 1, 3, 4, 3, 2, 5
    g = d if grid else 0
    expected = (cin + p + g) * w + w
    expected += layers * (2 * w * w * (2 * m) ** (d - 1) * m + w * w + w)
    expected += w * q + q + q * cout + cout
    model = build({**TINY["fno"], "grid_features": grid}, d)
    assert count_parameters(model) == expected


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("d", [1, 2])
def test_conditioning(name: str, d: int) -> None:
    model = build(TINY[name], d)
    x, p = inputs(2, 2, SIZES[d][0])
    p.requires_grad_(True)
    y = model(x, p)
    assert not torch.allclose(y, model(x, p + 1.0))
    y.square().sum().backward()
    assert p.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["resnet", "fno"])
@pytest.mark.parametrize("d", [1, 2])
def test_periodic_shift_equivariance(name: str, d: int) -> None:
    model = build(TINY[name], d)  # resnet: padding=circular; fno: no grid features, no pad
    spatial = (12,) if d == 1 else (10, 12)
    x, p = inputs(2, 2, spatial)
    shifts, dims = (5, -3)[:d], tuple(range(2, 2 + d))
    rolled = model(torch.roll(x, shifts, dims), p)
    torch.testing.assert_close(rolled, torch.roll(model(x, p), shifts, dims), atol=1e-5, rtol=0)


def test_unet_shift_equivariance_by_multiples_of_coarsening() -> None:
    model = build(TINY["unet"], 1)  # levels=2: equivariant under shifts by multiples of 4
    x, p = inputs(2, 2, (16,))
    rolled = model(torch.roll(x, 8, -1), p)
    torch.testing.assert_close(rolled, torch.roll(model(x, p), 8, -1), atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_zero_output_init(name: str) -> None:
    model = build({**TINY[name], "out_init_scale": 0.0}, 1)
    x, p = inputs(2, 2, (8,))
    y = model(x, p)
    assert torch.equal(y, torch.zeros_like(y))
    y.sum().backward()  # the last layer still learns
    last = [q for q in model.parameters() if q.grad is not None and q.grad.abs().sum() > 0]
    assert last


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("d", [1, 2])
def test_batch_consistency(name: str, d: int) -> None:
    model = build(TINY[name], d)
    x, p = inputs(3, 2, SIZES[d][1])
    batched = model(x, p)
    single = torch.cat([model(x[i : i + 1], p[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-12, rtol=1e-10)


GRADCHECK = {
    "resnet": {"name": "resnet", "width": 2, "blocks": 1, "activation": "tanh"},
    "unet": {"name": "unet", "levels": 1, "width": 2, "activation": "tanh"},
    "fno": {"name": "fno", "modes": 2, "width": 2, "layers": 2, "projection_width": 2},
}


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(name: str) -> None:
    model = build(GRADCHECK[name], 1, cin=1, cout=1)
    x, p = inputs(1, 1, (6,))
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: model(x, p), (x,))


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name: str) -> None:
    model = build(TINY[name], 2)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    other = build(TINY[name], 2, seed=123)
    x, p = inputs(2, 2, (8, 8))
    assert not torch.equal(model(x, p), other(x, p))
    other.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(model(x, p), other(x, p))


def test_fno_weights_are_real_and_adamw_updates_them() -> None:
    model = build(TINY["fno"], 1)
    weight = model.spectral[0].weight
    assert not weight.is_complex() and weight.shape == (4, 4, 3, 2)
    before = weight.detach().clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x, p = inputs(2, 2, (8,))
    model(x, p).square().mean().backward()
    optimizer.step()
    assert not torch.equal(before, weight.detach())


def test_fno_pad_crops_back_and_allows_small_grids() -> None:
    model = build({**TINY["fno"], "modes": 4, "pad": 2}, 2)
    x, p = inputs(1, 2, (6, 7))  # 6 + 2 >= 2 * 4
    assert model(x, p).shape == (1, 3, 6, 7)


def test_describe() -> None:
    assert describe(build(TINY["resnet"], 1)).startswith("resnet: 2 blocks x 4 (dilations 1,2), 1D")
    assert describe(build(TINY["unet"], 2)).startswith("unet: 2 levels, width 3 to 12, 2D")
    text = describe(build(TINY["fno"], 1, cin=1, cout=1))
    n = count_parameters(build(TINY["fno"], 1, cin=1, cout=1))
    assert text == f"fno: 2 layers x 4, 3 modes, 1D, {n:,} parameters"
    mlp = MODELS.build({"name": "mlp"}, in_features=2, out_features=1)
    assert describe(mlp) == f"mlp: {count_parameters(mlp):,} parameters"


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"name": "resnet", "width": 0}, "width"),
        ({"name": "resnet", "kernel_size": 4}, "odd"),
        ({"name": "resnet", "dilations": []}, "dilations"),
        ({"name": "resnet", "dilations": [1, 0]}, "dilations"),
        ({"name": "resnet", "padding": "reflect"}, "circular, zeros, replicate"),
        ({"name": "resnet", "out_init_scale": -1.0}, "out_init_scale"),
        ({"name": "unet", "levels": -1}, "levels"),
        ({"name": "unet", "kernel_size": 2}, "odd"),
        ({"name": "fno", "modes": 0}, "modes"),
        ({"name": "fno", "pad": -1}, "pad"),
        ({"name": "fno", "activation": "sin"}, "gelu"),
    ],
)
def test_config_errors(cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(PbdlError, match=message):
        MODELS.config(cfg)


def test_fno_modes_too_large_for_grid() -> None:
    model = build({**TINY["fno"], "modes": 8}, 1)
    x, p = inputs(1, 2, (12,))
    with pytest.raises(ModelInputError, match=r"modes=8 .* >= 16 \(got \[12\]\)"):
        model(x, p)


def test_unet_grid_too_small() -> None:
    model = build({**TINY["unet"], "levels": 3}, 2)
    x, p = inputs(1, 2, (8, 6))
    with pytest.raises(ModelInputError, match=r"levels=3.* >= 8 \(got \[8, 6\]\)"):
        model(x, p)


def test_resnet_circular_grid_too_small() -> None:
    model = build({**TINY["resnet"], "dilations": [1, 4]}, 1)
    x, p = inputs(1, 2, (3,))
    with pytest.raises(ModelInputError, match=r"largest dilation needs spatial sizes >= 4"):
        model(x, p)
    assert build({**TINY["resnet"], "padding": "zeros"}, 1)(x, p).shape == (1, 3, 3)


@pytest.mark.parametrize("name", NAMES)
def test_input_errors(name: str) -> None:
    model = build(TINY[name], 1)
    x, p = inputs(2, 2, (8,))
    with pytest.raises(ModelInputError, match="num_params=1"):
        model(x)
    with pytest.raises(ModelInputError, match="num_params=1"):
        model(x, p[:, :0])
    with pytest.raises(ModelInputError, match="expected input"):
        model(x[:, :1], p)
    with pytest.raises(ModelInputError, match="num_params=0"):
        build(TINY[name], 1, params=0)(x, p)
