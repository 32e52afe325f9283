"""The ``realnvp`` normalizing flow: invertibility, exact log-determinants (against the
autograd Jacobian), a normalized density, conditioning, a short maximum-likelihood fit,
gradients, sampling and configuration errors (tiny sizes, CPU, seconds)."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
import torch
from torch.func import functional_call, jacrev, vmap

from pbdl_cli.errors import PbdlError
from pbdl_cli.models import MODELS
from pbdl_cli.models.realnvp import LOG_2PI, AffineCoupling, RealNVP, book_offset
from pbdl_cli.models.utils import ModelInputError, count_parameters, describe

TINY: dict[str, Any] = {"name": "realnvp", "blocks": 4, "hidden": 16}


def build(
    features: int = 2,
    condition: int = 0,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    **options: Any,
) -> RealNVP:
    torch.manual_seed(seed)
    model = MODELS.build({**TINY, **options}, features=features, condition_features=condition)
    return model.to(dtype)


def points(batch: int, features: int, condition: int = 0, *, seed: int = 1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = 1.5 * torch.randn(batch, features, generator=g, dtype=dtype)
    c = torch.randn(batch, condition, generator=g, dtype=dtype) if condition else None
    return x, c


CASES = [(2, 0, "checkerboard"), (3, 0, "halves"), (5, 0, "checkerboard"), (4, 3, "halves")]


def test_book_configuration_has_the_books_parameter_count() -> None:
    model = MODELS.build({"name": "realnvp"}, features=2)
    # book ch. 22.5: 6 blocks of FCNN(1 -> 256 -> 256 -> 2): 66,818 each
    assert [count_parameters(flow) for flow in model.flows] == [66_818] * 6
    assert describe(model) == "realnvp: 6 blocks x 256 (depth 2), D=2, 400,908 parameters"
    cfg = model.config
    assert (cfg.blocks, cfg.hidden, cfg.depth, cfg.activation.value) == (6, 256, 2, "relu")


@pytest.mark.parametrize("mask", ["checkerboard", "halves"])
def test_masks_alternate_and_match_the_book_for_two_features(mask: str) -> None:
    model = build(2, mask=mask)
    kept = [flow.kept.tolist() for flow in model.flows]
    assert kept == [[0], [1], [0], [1]]  # keep x_1, change x_2, then swap (book's flip)
    model = build(5, mask=mask)
    for a, b in zip(model.flows[:-1], model.flows[1:], strict=True):  # alternate
        assert set(a.changed.tolist()) == set(b.kept.tolist())
    assert set(model.flows[0].kept.tolist()) == ({0, 2, 4} if mask == "checkerboard" else {0, 1})


@pytest.mark.parametrize(("features", "condition", "mask"), CASES)
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 2e-6), (torch.float64, 1e-13)])
def test_inverse_undoes_forward_and_vice_versa(
    features: int, condition: int, mask: str, dtype: torch.dtype, tol: float
) -> None:
    model = build(features, condition, mask=mask, dtype=dtype)
    x, c = points(64, features, condition, dtype=dtype)
    z, log_det = model(x, c)
    assert z.shape == x.shape and log_det.shape == (64,) and z.dtype == log_det.dtype == dtype
    assert (z - x).abs().max() > 0.1  # a map that is far from the identity
    scale = 1 + x.abs()
    assert ((model.inverse(z, c) - x).abs() / scale).max() < tol
    assert ((model(model.inverse(x, c), c)[0] - x).abs() / scale).max() < tol


def per_sample_jacobian(fn, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """[B, D, D] Jacobians of ``fn(x_i, c_i)`` (one sample at a time) by reverse mode."""
    if c is None:
        return vmap(jacrev(lambda xi: fn(xi[None], None)[0]))(x)
    return vmap(jacrev(lambda xi, ci: fn(xi[None], ci[None])[0]))(x, c)


@pytest.mark.parametrize(("features", "condition", "mask"), CASES)
def test_log_det_is_the_log_abs_det_of_the_autograd_jacobian(
    features: int, condition: int, mask: str
) -> None:
    model = build(features, condition, mask=mask)
    x, c = points(16, features, condition)
    z, log_det = model(x, c)
    jac = per_sample_jacobian(lambda xi, ci: model(xi, ci)[0], x, c)
    sign, logabs = torch.linalg.slogdet(jac)
    assert (sign > 0).all()  # affine couplings preserve orientation
    torch.testing.assert_close(log_det, logabs, rtol=0, atol=1e-11)
    assert log_det.std() > 0.05  # the determinant varies over x: not a linear map
    # the inverse's Jacobian has the reciprocal determinant
    inv = per_sample_jacobian(lambda zi, ci: model.inverse(zi, ci), z, c)
    torch.testing.assert_close(torch.linalg.slogdet(inv)[1], -log_det, rtol=0, atol=1e-11)
    # and so does every prefix of the flow
    for k in range(len(model.flows) + 1):
        zk, ldk = model(x, c, layers=k)
        jac = per_sample_jacobian(lambda xi, ci, k=k: model(xi, ci, layers=k)[0], x, c)
        torch.testing.assert_close(ldk, torch.linalg.slogdet(jac)[1], rtol=0, atol=1e-11)
        torch.testing.assert_close(model.inverse(zk, c, layers=k), x, rtol=0, atol=1e-12)


def test_prefixes_compose_and_layers_zero_is_the_identity() -> None:
    model = build(3)
    x, _ = points(8, 3)
    z0, ld0 = model(x, layers=0)
    assert torch.equal(z0, x) and torch.equal(ld0, torch.zeros(8, dtype=x.dtype))
    z2, ld2 = model(x, layers=2)
    rest, ld_rest = z2, ld2
    for flow in model.flows[2:]:
        rest, block = flow(rest)
        ld_rest = ld_rest + block
    z, log_det = model(x)
    torch.testing.assert_close(rest, z, rtol=0, atol=0)
    torch.testing.assert_close(ld_rest, log_det, rtol=0, atol=1e-14)


def grid_integral(log_density, half_width: float = 8.0, n: int = 241) -> float:
    """Midpoint rule of exp(log_density) over [-w, w]^2."""
    h = 2 * half_width / n
    axis = -half_width + h * (torch.arange(n, dtype=torch.float64) + 0.5)
    xx, yy = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1)
    with torch.no_grad():
        return float(log_density(grid).exp().sum() * h * h)


@pytest.mark.parametrize("condition", [0, 2])
def test_density_is_normalized_for_a_random_flow(condition: int) -> None:
    model = build(2, condition, seed=3, hidden=32, blocks=6)
    cs = [None] if not condition else [torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, -1.0]])]
    for c in cs:

        def log_q(grid: torch.Tensor, c: torch.Tensor | None = c) -> torch.Tensor:
            return model.log_prob(grid, None if c is None else c.expand(len(grid), -1))

        assert grid_integral(log_q) == pytest.approx(1.0, abs=3e-3)
        # not trivially a standard normal: the flow has moved the density around
        x, _ = points(256, 2)
        gauss = -0.5 * x.square().sum(-1) - LOG_2PI
        assert (log_q(x) - gauss).abs().max() > 0.3


def test_log_prob_is_the_standard_normal_for_the_identity_flow() -> None:
    model = build(3, out_init_scale=0.0)
    x, _ = points(32, 3)
    z, log_det = model(x)
    assert torch.equal(z, x) and torch.equal(log_det, torch.zeros(32, dtype=x.dtype))
    normal = torch.distributions.MultivariateNormal(
        torch.zeros(3, dtype=x.dtype), torch.eye(3, dtype=x.dtype)
    )
    torch.testing.assert_close(model.log_prob(x), normal.log_prob(x), rtol=0, atol=1e-13)


def test_book_log_prob_is_the_notebooks_formula() -> None:
    model = build(2)
    x, _ = points(32, 2)
    z, ldj = model(x)
    prior = (-0.5 * z**2).sum(-1) - 0.5 * math.log(2 * math.pi)  # the notebook's prior
    torch.testing.assert_close(model.book_log_prob(x), prior + ldj, rtol=0, atol=1e-13)
    assert book_offset(2) == pytest.approx(0.9189385, abs=1e-7) and book_offset(1) == 0


def test_condition_changes_the_map_and_stays_invertible() -> None:
    model = build(3, 2)
    x, _ = points(32, 3)
    c1 = torch.tensor([[1.0, 0.0]], dtype=x.dtype).expand(32, -1)
    c2 = torch.tensor([[-1.0, 0.5]], dtype=x.dtype).expand(32, -1)
    z1, ld1 = model(x, c1)
    z2, ld2 = model(x, c2)
    assert (z1 - z2).abs().max() > 0.1 and (ld1 - ld2).abs().max() > 0.01
    assert torch.equal(model(x, c1)[0], z1)  # deterministic
    torch.testing.assert_close(model.inverse(z1, c1), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(model.inverse(z2, c2), x, rtol=0, atol=1e-12)
    assert (model.inverse(z1, c2) - x).abs().max() > 0.1  # the wrong condition does not invert


def gaussian(n: int, generator: torch.Generator) -> torch.Tensor:
    """Samples of N(mu, Sigma) with mu = (1, -2), Sigma = [[0.25, 0.3], [0.3, 1]]."""
    chol = torch.tensor([[0.5, 0.0], [0.6, 0.8]])
    return torch.tensor([1.0, -2.0]) + torch.randn(n, 2, generator=generator) @ chol.T


def test_a_short_fit_approaches_the_exact_gaussian_likelihood() -> None:
    # entropy of the target: H = 1/2 log det(2 pi e Sigma), det Sigma = 0.16
    best = -0.5 * math.log((2 * math.pi * math.e) ** 2 * 0.16)  # -1.9216: max of E[log q]
    g = torch.Generator().manual_seed(0)
    test = gaussian(4096, g)
    model = build(2, seed=0, dtype=torch.float32, hidden=32)
    with torch.no_grad():
        before = model.log_prob(test).mean().item()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(300):
        loss = -model.log_prob(gaussian(256, g)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = model.log_prob(test).mean().item()
        samples = model.sample(4096, torch.Generator().manual_seed(5))
    assert before < best - 1.5  # it starts far from the target
    assert best - 0.1 < after < best + 0.05  # held-out: close to the optimum, not above it
    torch.testing.assert_close(samples.mean(0), torch.tensor([1.0, -2.0]), rtol=0, atol=0.1)
    torch.testing.assert_close(
        torch.cov(samples.T), torch.tensor([[0.25, 0.3], [0.3, 1.0]]), rtol=0, atol=0.15
    )


class _LogProb(torch.nn.Module):
    """``flow.log_prob`` as a module's forward, for ``functional_call``."""

    def __init__(self, flow: RealNVP) -> None:
        super().__init__()
        self.flow = flow

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return self.flow.log_prob(x, c)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_gradcheck_of_log_prob(activation: str) -> None:
    model = build(3, 2, seed=1, blocks=3, hidden=4, activation=activation, scale_clamp=1.0)
    x, c = points(4, 3, 2)
    x.requires_grad_(True)
    c.requires_grad_(True)
    assert torch.autograd.gradcheck(model.log_prob, (x, c))
    # and w.r.t. every weight (through z and log_det alike)
    wrapper = _LogProb(model)
    names = [name for name, _ in wrapper.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in wrapper.parameters())

    def by_parameters(*values: torch.Tensor) -> torch.Tensor:
        state = dict(zip(names, values, strict=True))
        return functional_call(wrapper, state, (x.detach(), c.detach()), strict=False)

    assert torch.autograd.gradcheck(by_parameters, params)


def test_sample_is_seeded_in_the_models_dtype_and_shares_a_condition() -> None:
    model = build(3, 2)
    a = model.sample(5, torch.Generator().manual_seed(7), torch.tensor([0.5, -1.0]))
    b = model.sample(5, torch.Generator().manual_seed(7), torch.tensor([[0.5, -1.0]] * 5))
    assert a.shape == (5, 3) and a.dtype == torch.float64 and torch.equal(a, b)
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    torch.testing.assert_close(a, model.inverse(z, torch.tensor([[0.5, -1.0]] * 5)))
    c = model.sample(5, torch.Generator().manual_seed(8), torch.tensor([0.5, -1.0]))
    assert not torch.equal(a, c)


def test_scale_clamp_bounds_every_blocks_log_scale() -> None:
    # huge initial outputs: unclamped, exp(s) would overflow
    model = build(4, scale_clamp=1.5, out_init_scale=30.0)
    x, _ = points(64, 4)
    for flow in model.flows:
        _, s = flow.shift_and_log_scale(x[:, flow.kept], None)
        assert s.abs().max() <= 1.5 and s.abs().max() > 1.3
    z, log_det = model(x)
    assert torch.isfinite(z).all() and log_det.abs().max() <= 1.5 * 2 * len(model.flows)
    torch.testing.assert_close(model.inverse(z), x, rtol=1e-9, atol=1e-9)
    # scale_clamp = 0: the raw network output, as in the book
    flow = build(4, scale_clamp=0.0, out_init_scale=300.0).flows[0]
    _, s = flow.shift_and_log_scale(x[:, flow.kept], None)
    torch.testing.assert_close(s, flow.net(x[:, flow.kept]).chunk(2, -1)[1], rtol=0, atol=0)


def test_state_dict_roundtrip_and_float64_conversion() -> None:
    model = build(3, 1, dtype=torch.float32)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    assert all("net" in key for key in model.state_dict())  # index buffers are not saved
    other = build(3, 1, seed=9, dtype=torch.float32)
    other.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    x, c = points(8, 3, 1, dtype=torch.float32)
    assert torch.equal(other(x, c)[0], model(x, c)[0])
    double = other.double()
    assert double.flows[0].kept.dtype == torch.long
    assert double(x.double(), c.double())[0].dtype == torch.float64


def test_input_and_configuration_errors() -> None:
    model = build(3, 2)
    x, c = points(4, 3, 2)
    with pytest.raises(ModelInputError, match=r"expected x \[B, 3\], got shape \[4, 2\]"):
        model(x[:, :2], c)
    with pytest.raises(ModelInputError, match=r"condition_features=2; expected c \[4, 2\]"):
        model(x)
    with pytest.raises(ModelInputError, match=r"got \[4, 1\]"):
        model.inverse(x, c[:, :1])
    with pytest.raises(ModelInputError, match=r"layers must be in 0\.\.4"):
        model(x, c, layers=5)
    with pytest.raises(ModelInputError, match="condition_features=0 but c was given"):
        build(3)(x, c)
    with pytest.raises(PbdlError, match="features >= 2"):
        build(1)
    with pytest.raises(PbdlError, match="blocks, hidden and depth"):
        MODELS.build({"name": "realnvp", "blocks": 0}, features=2)
    with pytest.raises(PbdlError, match="scale_clamp"):
        MODELS.build({"name": "realnvp", "scale_clamp": -1.0}, features=2)
    with pytest.raises(PbdlError, match="mask"):
        MODELS.build({"name": "realnvp", "mask": "random"}, features=2)
    # the option is a default for methods that pass no condition size; a conflict is an error
    cfg = {"name": "realnvp", "condition_features": 3}
    assert MODELS.build(cfg, features=2).condition_features == 3
    assert MODELS.build(cfg, features=2, condition_features=3).condition_features == 3
    with pytest.raises(PbdlError, match="condition_features=3 but the method's condition has 2"):
        MODELS.build(cfg, features=2, condition_features=2)
    assert isinstance(model.flows[0], AffineCoupling)
