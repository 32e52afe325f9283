"""The ``ffjord`` velocity network: the book's parameter count, its initialization, the
concat-squash formula written out, scalar and per-sample times, conditioning, gradcheck
in float64 and one-line input errors."""

from __future__ import annotations

import math

import pytest
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.models import MODELS
from pbdl_cli.models.ffjord import FFJORD, ConcatSquash
from pbdl_cli.models.utils import ModelInputError, count_parameters, describe

F64 = torch.float64


def build(features: int = 2, condition: int = 0, *, seed: int = 0, **options) -> FFJORD:
    torch.manual_seed(seed)
    config = {"name": "ffjord", "width": 8, "depth": 2, **options}
    return MODELS.build(config, features=features, condition_features=condition).to(F64)


def test_book_configuration_has_the_books_parameter_count() -> None:
    model = MODELS.build({"name": "ffjord"}, features=2)
    # book ch. 22.6: ConcatSquash 2 -> 128, 7 x (128 -> 128), 128 -> 2; in * out + 4 out each
    assert [count_parameters(layer) for layer in model.layers] == [768] + [16_896] * 7 + [264]
    assert count_parameters(model) == 119_304
    assert describe(model) == "ffjord: 9 concat-squash layers, width 128, D=2, 119,304 parameters"
    conditional = MODELS.build({"name": "ffjord"}, features=2, condition_features=3)
    assert count_parameters(conditional) == 119_304 + 3 * 128  # c enters the first layer only


def test_initialization_is_xavier_uniform_with_zero_biases() -> None:
    torch.manual_seed(3)
    layer = ConcatSquash(50, 60)
    assert layer.lin3.bias is None
    assert not layer.lin1.bias.any() and not layer.lin2.bias.any()
    for lin, fan_in in ((layer.lin1, 50), (layer.lin2, 1), (layer.lin3, 1)):
        bound = math.sqrt(6 / (fan_in + 60))  # U(-b, b): std b / sqrt(3) = 0.577 b
        w = lin.weight
        assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound
        assert 0.45 * bound < w.std() < 0.7 * bound


def test_forward_is_the_concat_squash_stack_written_out() -> None:
    model = build(3, 2, depth=1)
    g = torch.Generator().manual_seed(1)
    y, c, t = (
        torch.randn(4, 3, generator=g, dtype=F64),
        torch.randn(4, 2, generator=g, dtype=F64),
        torch.rand(4, generator=g, dtype=F64),
    )

    def squash(layer: ConcatSquash, h: torch.Tensor) -> torch.Tensor:
        w1, b1 = layer.lin1.weight, layer.lin1.bias
        gate = torch.sigmoid(t[:, None] * layer.lin2.weight[:, 0] + layer.lin2.bias)
        return (h @ w1.T + b1) * gate + t[:, None] * layer.lin3.weight[:, 0]

    first, last = model.layers
    expected = squash(last, torch.tanh(squash(first, torch.cat([y, c], 1))))
    assert torch.allclose(model(t, y, c), expected, atol=1e-14)
    assert len(build(3, depth=0).layers) == 1  # depth 0: one layer D -> D


def test_a_scalar_time_equals_the_same_time_per_sample() -> None:
    model = build(2)
    y = torch.randn(5, 2, dtype=F64)
    out = model(torch.tensor(0.3, dtype=F64), y)
    assert out.shape == (5, 2)
    assert torch.allclose(out, model(torch.full((5,), 0.3, dtype=F64), y), atol=0)
    assert torch.allclose(out, model(0.3, y), atol=0)
    assert not torch.allclose(out, model(0.7, y))  # the time matters


def test_the_condition_changes_the_velocity_per_sample() -> None:
    model = build(2, 1)
    y = torch.randn(3, 2, dtype=F64).repeat(2, 1)
    c = torch.tensor([[0.0]] * 3 + [[1.0]] * 3, dtype=F64)
    out = model(0.5, y, c)
    assert not torch.allclose(out[:3], out[3:])
    assert torch.allclose(model(0.5, y[:3], c[:3]), out[:3], atol=1e-15)  # per sample


def test_gradcheck_in_float64() -> None:
    model = build(2, 1, width=4)
    g = torch.Generator().manual_seed(2)
    y = torch.randn(3, 2, generator=g, dtype=F64, requires_grad=True)
    c = torch.randn(3, 1, generator=g, dtype=F64, requires_grad=True)
    t = torch.rand(3, generator=g, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, y, c: model(t, y, c), (t, y, c))
    assert torch.autograd.gradgradcheck(lambda y: model(t.detach(), y, c.detach()), (y,))
    weight = model.layers[0].lin2.weight
    names = dict(model.named_parameters())
    key = next(n for n, p in names.items() if p is weight)

    def of_weight(w: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(model, {key: w}, (t.detach(), y.detach(), c.detach()))

    assert torch.autograd.gradcheck(of_weight, (weight.detach().clone().requires_grad_(),))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m(0.1, torch.zeros(4, 3, dtype=F64)), r"expected y \[B, 2\]"),
        (lambda m: m(torch.zeros(3, dtype=F64), torch.zeros(4, 2, dtype=F64)), "expected t"),
        (lambda m: m(0.1, torch.zeros(4, 2, dtype=F64), torch.zeros(4, 1)), "condition_features=0"),
    ],
)
def test_input_errors_are_one_line(call, message) -> None:
    with pytest.raises(ModelInputError, match=message):
        call(build(2))


def test_conditional_model_refuses_a_missing_or_wrong_condition() -> None:
    model = build(2, 2)
    with pytest.raises(ModelInputError, match=r"expected c \[4, 2\], got None"):
        model(0.1, torch.zeros(4, 2, dtype=F64))
    with pytest.raises(ModelInputError, match="method's condition has 3"):
        MODELS.build({"name": "ffjord", "condition_features": 2}, features=2, condition_features=3)
    with pytest.raises(PbdlError, match="width must be >= 1"):
        MODELS.build({"name": "ffjord", "width": 0}, features=2)
