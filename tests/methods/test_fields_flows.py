"""``nf`` and ``cnf`` on field samples [B, C, *spatial] (issue 13).

``nf`` flattens each field to a vector: its log-likelihood is the flow's on the
flattened data, an identity flow gives the standard normal density of all C H W
entries, sampling unflattens the seeded latent in row-major order, and a few steps of
training lower the loss. ``cnf`` takes a grid model as the velocity through
``model_input``: for a linear velocity v(y) = M y (a convolution standing in for a grid
model) the flow is y -> exp(M) y, so log q(y) = log N(exp(M) y; 0, I) + tr M exactly;
Hutchinson is unbiased for it; samples have the field's shape; training lowers the loss;
model/problem mismatches are refused in one line."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.generative import cnf
from pbdl_cli.methods import METHODS
from pbdl_cli.problems.distribution import Distribution, Draws

F64 = torch.float64
CPU = torch.device("cpu")
LOG_2PI = math.log(2 * math.pi)

pytestmark = pytest.mark.usefixtures("one_thread")


class GaussianField(Distribution):
    """y ~ N(m, s^2 I) on [C, H, W] with m = 1 + c_0 (a vector condition [2], c ~ U(0, 1)^2)
    or m = 1 (unconditional), s = 0.5."""

    name = "gaussian_field"

    def __init__(self, shape: tuple[int, ...], conditional: bool) -> None:
        self.sample_shape = shape
        self.condition_shape = (2,) if conditional else None

    def draw(self, n: int, generator: torch.Generator) -> Draws:
        c = None
        shift = torch.zeros(n, *([1] * len(self.sample_shape)), dtype=F64)
        if self.condition_shape is not None:
            c = torch.rand(n, 2, generator=generator, dtype=F64)
            shift = c[:, 0].reshape(shift.shape)
        y = 1 + shift + 0.5 * torch.randn(n, *self.sample_shape, generator=generator, dtype=F64)
        return Draws(y, c)

    def test_conditions(self) -> Tensor | None:
        return None if self.condition_shape is None else torch.tensor([[0.2, 0.5]], dtype=F64)

    def reference_samples(
        self, n: int, generator: torch.Generator, condition: Tensor | None = None
    ) -> Tensor:
        shift = 0.0 if condition is None else float(condition.reshape(-1)[0])
        return 1 + shift + 0.5 * torch.randn(n, *self.sample_shape, generator=generator, dtype=F64)


def build(method: str, shape=(1, 4, 4), conditional=False, **options: Any):
    config = {"name": method, "n_train": 64, "n_val": 32, "batch_size": 16, "samples": 5}
    problem = GaussianField(shape, conditional)
    return METHODS.build(config | options, problem=problem, device=CPU, dtype=F64)


# nf -------------------------------------------------------------------------------------
@pytest.mark.parametrize("conditional", [False, True])
def test_nf_log_prob_is_the_flows_on_the_flattened_field(conditional):
    method = build("nf", (2, 4, 4), conditional)
    model = method.build_model({"name": "realnvp", "blocks": 3, "hidden": 8})
    assert model.features == 32 and model.condition_features == (2 if conditional else 0)
    drawn = method.batch(0)
    log_q = method.log_prob(model, drawn.y, drawn.condition)
    flat_c = None if drawn.condition is None else drawn.condition.reshape(16, -1)
    assert torch.equal(log_q, model.log_prob(drawn.y.reshape(16, 32), flat_c))
    terms = method.sample_loss(model, drawn.y, drawn.condition, torch.Generator())
    assert torch.allclose(terms["loss"], -log_q.mean())
    assert float(terms["book_loss"]) == pytest.approx(
        float(terms["loss"].detach()) - 31 / 2 * LOG_2PI
    )


def test_an_identity_nf_is_the_standard_normal_of_every_entry_and_unflattens_samples():
    method = build("nf", (2, 4, 4), conditional=True)
    model = method.build_model({"name": "realnvp", "blocks": 2, "hidden": 8, "out_init_scale": 0})
    y = torch.randn(7, 2, 4, 4, dtype=F64)
    c = torch.rand(7, 2, dtype=F64)
    normal = torch.distributions.MultivariateNormal(
        torch.zeros(32, dtype=F64), torch.eye(32, dtype=F64)
    )
    expected = normal.log_prob(y.reshape(7, 32))
    assert torch.allclose(method.log_prob(model, y, c), expected, atol=1e-12)
    drawn = method.draw_samples(model, 6, seed=3)
    assert drawn.samples.shape == (1, 6, 2, 4, 4) and drawn.evaluations == [1]
    g = torch.Generator().manual_seed(0)
    sampled = method.sample(model, 6, condition=c[0], sampler="inverse", steps=0, generator=g)
    z = torch.randn(6, 32, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert torch.equal(sampled.x, z.reshape(6, 2, 4, 4))  # row-major unflattening


def test_nf_training_on_fields_lowers_the_loss():
    torch.manual_seed(0)
    method = build("nf", (1, 4, 4), conditional=True)
    model = method.build_model({"name": "realnvp", "blocks": 4, "hidden": 16})
    before = method.validate(model)["loss"]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(40):
        opt.zero_grad()
        method.loss(model, step)["loss"].backward()
        opt.step()
    after = method.validate(model)["loss"]
    print(f"nf on fields: val loss {before:.3f} -> {after:.3f}")
    assert after < before - 5, (before, after)


def test_nf_on_fields_still_refuses_other_models():
    with pytest.raises(PbdlError, match="trains model=realnvp, not model=unet"):
        build("nf").check_model_config({"name": "unet"})


# cnf ------------------------------------------------------------------------------------
class LinearVelocity(nn.Module):
    """A grid-model stand-in: v = M y + b from the model input [y, t, c] [B, C + 1 + C_c,
    H, W]: M a periodic 3x3 convolution (no bias), b = w c_0 on every entry (0 when
    unconditional); independent of t."""

    def __init__(self, channels: int, w: float = 0.0) -> None:
        super().__init__()
        self.channels, self.w = channels, w
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, padding_mode="circular")
        self.conv.bias = None
        with torch.no_grad():
            self.conv.weight.mul_(0.5)
        self.conv.double()

    def forward(self, x: Tensor) -> Tensor:
        v = self.conv(x[:, : self.channels])
        if x.shape[1] > self.channels + 1:
            v = v + self.w * x[:, self.channels + 1 : self.channels + 2]
        return v

    def matrix(self, shape: tuple[int, ...]) -> Tensor:
        """M [D, D] of the flattened map y -> conv(y)."""
        d = math.prod(shape)
        basis = torch.eye(d, dtype=F64).reshape(d, *shape)
        return self.conv(basis).reshape(d, d).T


def cnf_method(conditional=False, **options):
    options = {"ode": "rk4", "ode_steps": 20, **options}
    return build("cnf", (1, 4, 4), conditional, **options)


def linear_flow(model: LinearVelocity, y: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
    """The exact flow of dy/dt = M y + b over t in [0, 1]: expm of the augmented matrix
    [[M, b], [0, 0]] applied to [y, 1]; returns (z [B, D], log_det = tr M)."""
    with torch.no_grad():
        m = model.matrix((1, 4, 4))
    d = len(m)
    z = []
    for k in range(len(y)):
        b = torch.full((d, 1), model.w * (0.0 if c is None else float(c[k, 0])), dtype=F64)
        aug = torch.cat([torch.cat([m, b], 1), torch.zeros(1, d + 1, dtype=F64)])
        z.append(torch.linalg.matrix_exp(aug)[:d] @ torch.cat([y[k].reshape(d), y.new_ones(1)]))
    return torch.stack(z), torch.trace(m)


@pytest.mark.parametrize("conditional", [False, True])
def test_cnf_exact_divergence_is_the_change_of_variables_of_a_linear_grid_velocity(conditional):
    torch.manual_seed(1)
    method = cnf_method(conditional, divergence="exact")
    assert method.divergence == "exact"
    model = LinearVelocity(1, w=0.7)
    drawn = method.batch(0)
    y, c = drawn.y[:5], None if drawn.condition is None else drawn.condition[:5]
    z, log_det = linear_flow(model, y, c)
    expected = -0.5 * z.square().sum(1) - 8 * LOG_2PI + log_det
    result = method.likelihood(model, y, c)
    assert result.z.shape == (5, 1, 4, 4)
    assert torch.allclose(result.z.reshape(5, 16), z, atol=1e-7)
    assert torch.allclose(result.log_det, log_det.expand(5), atol=1e-9)
    assert torch.allclose(method.log_prob(model, y, c), expected, atol=1e-6)
    assert abs(float(log_det)) > 0.1  # the check sees the divergence
    back = method.sample(
        model,
        5,
        condition=None if c is None else c[0],
        sampler="rk4",
        steps=20,
        generator=torch.Generator(),
    )
    assert back.x.shape == (5, 1, 4, 4) and back.evaluations == 80
    if not conditional:  # sampling's map (rk4 backwards) inverts the likelihood's
        again = cnf.sample(method.velocity(model, None), result.z, method="rk4", steps=20)
        assert torch.allclose(again.x, y, atol=1e-7)


def test_cnf_hutchinson_is_the_default_for_fields_and_unbiased():
    torch.manual_seed(2)
    method = cnf_method(ode_steps=2)
    assert method.divergence == "hutchinson"
    model = LinearVelocity(1)
    y = method.batch(0).y[:1].expand(4000, 1, 4, 4)
    with torch.no_grad():
        estimate = method.likelihood(model, y, None, torch.Generator().manual_seed(5)).log_det
        trace = torch.trace(model.matrix((1, 4, 4)))
    std = float(estimate.std())
    assert std > 0.05  # stochastic, not the exact trace
    assert abs(float(estimate.mean() - trace)) < 5 * std / math.sqrt(len(y))


def test_cnf_grid_velocity_samples_fields_and_training_lowers_the_loss():
    torch.manual_seed(0)
    method = cnf_method(conditional=True, ode_steps=4)
    model = method.build_model({"name": "resnet", "width": 4, "blocks": 1})
    assert model(torch.zeros(2, 1 + 1 + 2, 4, 4, dtype=F64)).shape == (2, 1, 4, 4)
    drawn = method.draw_samples(model, 3, sampler="rk4", steps=3)
    assert drawn.samples.shape == (1, 3, 1, 4, 4) and drawn.evaluations == [12]
    before = method.validate(model)["loss"]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(15):
        opt.zero_grad()
        method.loss(model, step)["loss"].backward()
        opt.step()
    after = method.validate(model)["loss"]
    print(f"cnf on fields: val loss {before:.3f} -> {after:.3f}")
    assert after < before - 1, (before, after)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"name": "ffjord"}, "use a grid model as the velocity"),
        ({"name": "unet", "batch_norm": True}, "set model.batch_norm=false"),
    ],
)
def test_cnf_refuses_what_a_field_flow_cannot_use(model, message):
    with pytest.raises(PbdlError, match=message):
        cnf_method().build_model(model)


def test_cnf_on_points_still_refuses_a_grid_model():
    method = METHODS.build(
        {"name": "cnf", "n_train": 8, "n_val": 8},
        problem=GaussianField((3,), False),
        device=CPU,
        dtype=F64,
    )
    assert method.divergence == "exact"
    with pytest.raises(PbdlError, match="trains model=ffjord"):
        method.check_model_config({"name": "unet"})


@pytest.mark.parametrize(
    ("method", "model", "options"),
    [
        ("nf", {"name": "realnvp", "blocks": 2, "hidden": 8}, {}),
        ("cnf", {"name": "resnet", "width": 4, "blocks": 1}, {"ode_steps": 2, "sampler": "rk4"}),
    ],
)
def test_field_flows_train_and_are_scored_end_to_end(tmp_path, method, model, options):
    """``fit`` and the summary's sampling and scoring (per-pixel errors, the model's NLL of
    reference fields) run on a conditional field problem."""
    from pbdl_cli.stages.sampling import sample_and_score
    from pbdl_cli.training import TrainerConfig, fit

    m = build(method, (1, 4, 4), True, **({"ode": "rk4"} if method == "cnf" else {}), **options)
    net = m.build_model(model)
    fit(m, net, TrainerConfig(max_steps=3, lr=1e-3, log_every=1, eval_every=0), tmp_path)
    report = sample_and_score(m, net, n=20, show_progress=False)
    assert report.drawn.samples.shape == (1, 20, 1, 4, 4)
    assert math.isfinite(report.metrics["nll"]) and report.metrics["nll"] > 0
    assert {"mean_mae", "std_mae", "energy"} <= set(report.metrics)
