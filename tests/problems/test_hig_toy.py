"""The half-inverse-gradient toy (PBDL book ch. 40.3): targets, physics, inverse, and the
update rules refusing what they cannot train."""

from __future__ import annotations

import torch

from pbdl_cli.methods.hig import HIG, HIGConfig
from pbdl_cli.methods.inversion import activation_stats
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.problems.hig_toy import HIGToy
from tests.conftest import run_cli

CPU, F64 = torch.device("cpu"), torch.float64


def toy(scale: float = 0.01) -> HIGToy:
    return PROBLEMS.build({"name": "hig_toy", "scale": scale})


def test_targets_physics_and_inverse():
    p = toy()
    s = p.sample(64, torch.Generator().manual_seed(0))
    x = s.input[:, 0]
    assert s.input.shape == (64, 1) and (x.abs() <= 1).all()
    torch.testing.assert_close(s.target, torch.stack([torch.sin(6 * x), torch.cos(9 * x)], 1))
    # the truth z* solves P(z*) = y^ exactly, and P^-1 inverts P
    torch.testing.assert_close(p.forward(s.truth), s.target)
    z = torch.randn(5, 2, dtype=F64)
    torch.testing.assert_close(p.inverse(p.forward(z), z), z)
    torch.testing.assert_close(p.forward(z)[:, 1], 0.01 * z[:, 1])
    assert torch.autograd.gradcheck(lambda v: p.forward(v), (z.requires_grad_(),))
    # the test inputs: an even grid on [-1, 1]; the optimum scores zero
    test = p.test_samples()
    assert test.input[0, 0] == -1 and test.input[-1, 0] == 1 and len(test) == 256
    metrics = p.metrics(p.as_prediction(test.truth), {})
    assert metrics["y_loss"] < 1e-30 and metrics["x_loss"] == 0


def test_loss_is_the_books_scaled_loss():
    p = toy(0.01)
    z = torch.tensor([[0.5, 30.0]], dtype=F64)
    y_hat = torch.tensor([[0.1, 0.2]], dtype=F64)
    book = 0.5 * (0.5 - 0.1) ** 2 + 0.5 * (0.01 * 30.0 - 0.2) ** 2
    torch.testing.assert_close(p.loss_y(p.forward(z), y_hat), torch.tensor([book], dtype=F64))


def test_activation_stats_see_saturated_units():
    method = HIG(HIGConfig(name="hig", n_train=32, n_val=0), problem=toy(), device=CPU, dtype=F64)
    model = method.build_model({"name": "mlp", "depth": 1, "width": 7})
    inputs = method.val_set.input
    fresh = activation_stats(model, inputs)
    assert fresh["saturated"] == 0 and fresh["activation_spread"] > 0
    with torch.no_grad():
        model.net[0].weight.zero_()
        model.net[0].bias.fill_(20.0)  # every unit at tanh(20) ~ 1 for every input
    dead = activation_stats(model, inputs)
    assert dead["saturated"] == 1 and dead["activation_spread"] < 1e-12
    assert abs(dead["activation_mean"] - 1) < 1e-12
    assert {"activation_mean", "saturated"} <= set(method.validate(model))


def test_update_rules_are_refused_in_one_line_where_they_do_not_apply(workdir):
    for args, message in (
        (("problem=burgers", "method=sip"), "is not an inversion problem"),
        (("problem=hig_toy", "method=hig", "model=unet"), "use model=mlp"),
        (("problem=hig_toy", "method=hig", "method.beta=0"), "beta"),
    ):
        result = run_cli("train", *args, "trainer.max_steps=1", cwd=workdir)
        assert result.returncode != 0, args
        err = result.stderr.strip()
        assert message in err and "Traceback" not in err, (args, err)
        assert len(err.splitlines()) == 1, err
