"""The rotated sine of PBDL book ch. 38.4: P(x) = (sin(x^_1) / xi, x^_2 xi), x^ = R_phi x,
its analytic local inverse, the Jacobian SIP's pinv inverse uses, and short trainings
with gradient and sip (analytic and pinv)."""

from __future__ import annotations

import math

import pytest
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods import METHODS
from pbdl_cli.models.base import MODELS
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.training import updates
from pbdl_cli.utils.seeding import generator

CPU, F64 = torch.device("cpu"), torch.float64


def sine(**options):
    return PROBLEMS.build({"name": "rotated_sine", **options})


def test_forward_is_the_books_formula():
    p = sine(xi=4.0, phi=30.0)
    x = torch.tensor([[0.3, -0.2], [1.0, 0.5]], dtype=F64)
    phi = math.radians(30.0)
    for row, y in zip(x, p.forward(x), strict=True):
        xh1 = math.cos(phi) * row[0] - math.sin(phi) * row[1]
        xh2 = math.sin(phi) * row[0] + math.cos(phi) * row[1]
        torch.testing.assert_close(y, torch.tensor([math.sin(xh1) / 4.0, xh2 * 4.0], dtype=F64))


def test_rotation_is_orthogonal_and_turns_by_phi():
    p = sine(phi=90.0)
    e1 = torch.tensor([[1.0, 0.0]], dtype=F64)
    torch.testing.assert_close(p.rotate(e1), torch.tensor([[0.0, 1.0]], dtype=F64))
    p = sine(phi=37.0)
    r = p.rotation(e1)
    torch.testing.assert_close(r @ r.T, torch.eye(2, dtype=F64))
    x = torch.randn(5, 2, dtype=F64)
    torch.testing.assert_close(p.unrotate(p.rotate(x)), x)
    assert sine().rotation(e1).equal(torch.eye(2, dtype=F64))  # phi = 0: uncoupled


@pytest.mark.parametrize(("xi", "phi"), [(1.0, 0.0), (32.0, 45.0), (5.0, 15.0)])
def test_samples_lie_in_the_box_and_the_inverse_recovers_them(xi, phi):
    p = sine(xi=xi, phi=phi, box=1.3)
    s = p.sample(500, generator(0, "t"))
    assert s.input.shape == s.target.shape == s.truth.shape == (500, 2)
    assert p.rotate(s.truth).abs().max() <= 1.3
    torch.testing.assert_close(p.forward(s.truth), s.target)
    # normalized input: y* / (1/xi, xi) = (sin(x^*_1), x^*_2)
    xh = p.rotate(s.truth)
    torch.testing.assert_close(s.input, torch.stack([xh[:, 0].sin(), xh[:, 1]], 1))
    # round trip from a start on the same branch: x^_1 moved by at most 0.25 stays below
    # pi/2 and nearer arcsin(s) than pi - arcsin(s); x^_2 is arbitrary
    shift = torch.rand(500, 2, generator=generator(1, "t"), dtype=F64) - 0.5
    start = p.unrotate(p.rotate(s.truth) + shift * torch.tensor([0.5, 20.0], dtype=F64))
    torch.testing.assert_close(p.inverse(s.target, start), s.truth, rtol=0, atol=1e-12)
    raw = sine(xi=xi, phi=phi, normalize_input=False).sample(500, generator(0, "t"))
    torch.testing.assert_close(raw.input, raw.target)


def test_inverse_takes_the_branch_nearest_the_start():
    p = sine(xi=2.0, phi=20.0)
    for xh1 in (0.4, math.pi - 0.4, 0.4 + 2 * math.pi, -math.pi - 0.4, 1.5):
        x = p.unrotate(torch.tensor([[xh1, -0.3]], dtype=F64))
        y = p.forward(x)
        near = p.unrotate(torch.tensor([[xh1 + 0.05, 5.0]], dtype=F64))
        torch.testing.assert_close(p.inverse(y, near), x, rtol=0, atol=1e-12)
        torch.testing.assert_close(p.forward(p.inverse(y, near)), y, rtol=0, atol=1e-14)


def test_inverse_of_an_unreachable_y_is_the_nearest_extremum():
    p = sine(xi=2.0)
    y = torch.tensor([[0.9, 1.0]], dtype=F64)  # xi y_1 = 1.8 > 1: no preimage
    x = p.inverse(y, torch.zeros(1, 2, dtype=F64))
    torch.testing.assert_close(x, torch.tensor([[math.pi / 2, 0.5]], dtype=F64))


def test_forward_passes_gradcheck_and_its_jacobian_is_the_analytic_one():
    p = sine(xi=8.0, phi=25.0)
    x = torch.tensor([[0.3, -0.7], [-1.1, 0.2]], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(p.forward, (x,))
    # the Jacobian that sip's pinv inverse takes (vmapped jacrev) is diag(cos/xi, xi) R
    rows = x.detach()

    def one(row, cond):
        return p.forward(row[None]).flatten()

    jac = torch.func.vmap(torch.func.jacrev(lambda v: one(v, None)))(rows)
    r = p.rotation(rows)
    for i, row in enumerate(rows):
        xh1 = float(p.rotate(row[None])[0, 0])
        scale = torch.diag(torch.tensor([math.cos(xh1) / 8.0, 8.0], dtype=F64))
        torch.testing.assert_close(jac[i], scale @ r)
        auto = torch.autograd.functional.jacobian(lambda v: p.forward(v[None])[0], row)
        torch.testing.assert_close(jac[i], auto)
    # one Gauss-Newton step as sip's pinv takes it: exact in x^_2 (linear), and from a
    # nearby start within 1e-2 of the truth in x^_1
    truth = rows
    y_star = p.forward(truth)
    start = truth + torch.tensor([[0.05, 0.3], [-0.05, -0.2]], dtype=F64)
    step = updates.pinv_inverse(one, start, y_star - p.forward(start), 1e-5)
    assert (p.rotate(step) - p.rotate(truth))[:, 1].abs().max() < 1e-12
    assert (step - truth).abs().max() < 1e-2


def test_config_errors():
    for bad in ({"xi": 0.0}, {"box": 2.0}, {"n_test": 0}):
        with pytest.raises(PbdlError, match="must"):
            sine(**bad)


def test_test_set_and_metrics():
    p = sine(xi=32.0, phi=45.0, n_test=64)
    test = p.test_samples()
    assert len(test) == 64 and test.truth.equal(p.test_samples().truth)
    metrics = p.metrics(p.as_prediction(test.truth), {})
    assert metrics["x_loss"] == 0.0 and metrics["y_loss"] < 1e-25
    zero = p.metrics(p.as_prediction(torch.zeros_like(test.truth)), {})
    torch.testing.assert_close(zero["x_loss"], float(0.5 * test.truth.square().sum(1).mean()))


@pytest.mark.parametrize(
    ("method", "xi", "options"),
    [
        ("sip", 4.0, {"inverse": "analytic"}),
        ("sip", 4.0, {"inverse": "pinv"}),
        ("gradient", 1.0, {}),
    ],
)
def test_training_steps_reduce_the_x_error(method, xi, options):
    """A few Adam steps on the proxy (sip, xi = 4) or through the physics (gradient, at
    the well-conditioned xi = 1): the x-space error of a fixed batch goes down."""
    p = sine(xi=xi, phi=30.0)
    config = METHODS.config(
        {"name": method, "batch_size": 64, "n_train": 64, "n_val": 0, **options}
    )
    m = METHODS.create(config, problem=p, device=CPU, dtype=F64)
    if options:
        assert m.local_inverse.value == options["inverse"]
    model = m.build_model(MODELS.config({"name": "mlp", "depth": 2, "width": 16}))
    before = m.validate(model)["x_loss"]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(40):
        opt.zero_grad()
        m.loss(model, step)["loss"].backward()
        opt.step()
    after = m.validate(model)["x_loss"]
    assert after < 0.5 * before
