"""The pinn method: residual, constraints, sampling."""

from __future__ import annotations

import math

import pytest
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods import METHODS
from tests.conftest import build

CPU = torch.device("cpu")


def pinn(dtype=torch.float64, **options):
    problem, _ = build(
        {"ic": "sine", "bc": "dirichlet", "nu": 0.01 / math.pi, "nx": 32, "dt": 0.25}
    )
    method = METHODS.build({"name": "pinn", **options}, problem=problem, device=CPU, dtype=dtype)
    return problem, method


def test_burgers_residual_vanishes_for_the_viscous_shock():
    """u = -tanh(x / (2 nu)) is a steady solution: u u_x = nu u_xx."""
    problem, _ = pinn()
    nu = 0.05
    x = torch.linspace(-1, 1, 101, dtype=torch.float64)[:, None].requires_grad_(True)
    t = torch.rand(101, 1, dtype=torch.float64).requires_grad_(True)
    u = -torch.tanh(x / (2 * nu)) + 0 * t
    r = problem.pde_residual(u, x, t, {"nu": torch.tensor(nu, dtype=torch.float64)})
    assert r.abs().max() < 1e-12
    bad = problem.pde_residual(u, x, t, {"nu": torch.tensor(2 * nu, dtype=torch.float64)})
    assert bad.abs().max() > 1  # the residual sees a wrong viscosity


def test_hard_constraints_hold_exactly():
    _, method = pinn()
    model = method.build_model({"name": "mlp", "depth": 2, "width": 8})
    x = torch.linspace(-1, 1, 33, dtype=torch.float64)[:, None]
    at_zero = method.evaluate(model, x, torch.zeros_like(x))
    torch.testing.assert_close(at_zero, -torch.sin(math.pi * x))
    t = torch.rand(10, 1, dtype=torch.float64)
    for wall in (-1.0, 1.0):
        values = method.evaluate(model, torch.full_like(t, wall), t)
        assert values.abs().max() < 1e-15


@pytest.mark.parametrize("sampler", ["uniform", "lhs", "sobol"])
def test_collocation_points_cover_the_domain_and_resampling_follows_the_step(sampler):
    _, method = pinn(sampler=sampler, n_collocation=512, resample_every=3)
    x, t = method.points
    assert x.shape == t.shape == (512, 1)
    assert x.min() >= -1 and x.max() <= 1 and t.min() >= 0 and t.max() <= 1
    assert x.std() > 0.5 and t.std() > 0.25  # spread over the domain, not clumped
    model = method.build_model({"name": "mlp", "depth": 1, "width": 4})
    _, fresh = pinn(sampler=sampler, n_collocation=512, resample_every=3)
    for step in range(8):  # run through rounds 0, 1, 2
        method.loss(model, step)
    jump = fresh.loss(model, 7)  # a resumed run starts at step 7: same points (round 2)
    assert torch.equal(jump["loss"], method.loss(model, 7)["loss"])


def test_soft_constraints_and_errors():
    _, method = pinn(constraints="soft")
    model = method.build_model({"name": "mlp", "depth": 1, "width": 4})
    terms = method.loss(model, 0)
    assert set(terms) == {"pde", "ic", "bc", "loss"}
    assert torch.isclose(terms["loss"], terms["pde"] + terms["ic"] + terms["bc"])
    problem, _ = build({"ic": "sines", "bc": "dirichlet"})
    with pytest.raises(PbdlError, match=r"problem\.ic=sine"):
        METHODS.build({"name": "pinn"}, problem=problem, device=CPU, dtype=torch.float32)
