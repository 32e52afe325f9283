"""The network-training update rules of PBDL book ch. 38-40 (``gradient``, ``sip``,
``hig``) on a linear physics y = A x, where every update has a closed form."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest
import torch
from torch import Tensor

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods.gradient import Gradient
from pbdl_cli.methods.hig import HIG, HIGConfig
from pbdl_cli.methods.inversion import InversionConfig
from pbdl_cli.methods.sip import SIP, SIPConfig
from pbdl_cli.problems.inversion import Inversion, Samples
from pbdl_cli.registry import PluginConfig
from pbdl_cli.training import updates

A = torch.tensor([[2.0, 0.5], [0.0, 30.0], [1.0, -1.0]], dtype=torch.float64)  # [m=3, n=2]
CPU, F64 = torch.device("cpu"), torch.float64


@dataclasses.dataclass
class LinearConfig(PluginConfig):
    name: str = "linear"


class Linear(Inversion):
    """y = A x with a badly scaled A, x* known; the input is y* plus noise (so that the
    inputs span R^3)."""

    x_shape: ClassVar = (2,)
    y_shape: ClassVar = (3,)
    input_shape: ClassVar = (3,)

    def sample(self, n: int, generator: torch.Generator) -> Samples:
        x = torch.randn(n, 2, generator=generator, dtype=F64)
        y = x @ A.T
        noise = 0.1 * torch.randn(n, 3, generator=generator, dtype=F64)
        return Samples(input=y + noise, target=y, truth=x)

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        return x @ A.to(x).T


class LinearWithInverse(Linear):
    def inverse(self, y: Tensor, x0: Tensor, condition: Tensor | None = None) -> Tensor:
        return y @ torch.linalg.pinv(A).to(y).T


def model_config(**kw: object) -> dict:
    return {"name": "mlp", "depth": 1, "width": 5, **kw}


def make(cls, config, problem=None):  # type: ignore[no-untyped-def]
    method = cls(config, problem=problem or Linear(LinearConfig()), device=CPU, dtype=F64)
    model = method.build_model(model_config())
    return method, model


def flat_grad(model: torch.nn.Module) -> Tensor:
    return torch.cat([q.grad.flatten() for q in model.parameters()])


@pytest.mark.parametrize("problem", [Linear, LinearWithInverse])
def test_sip_proxy_gradient_is_the_analytic_expression_on_a_linear_physics(problem):
    """On y = A x with eta: x~ = x + A^+ eta (y* - y), so the proxy gradient is
    dL/dtheta = mean_i (dx_i/dtheta)^T (x_i - x~_i)
              = -eta mean_i (dx_i/dtheta)^T A^+ (y*_i - y_i)."""
    eta = 0.7
    config = SIPConfig(name="sip", eta=eta, batch_size=8, n_train=8, n_val=0)
    method, model = make(SIP, config, problem(LinearConfig()))
    assert method.local_inverse.value == ("analytic" if problem is LinearWithInverse else "pinv")
    terms = method.loss(model, 0)
    terms["loss"].backward()
    got = flat_grad(model)

    samples = method.batch(0)
    model.zero_grad()
    x = method.unknowns(model, samples)
    residual = samples.target - x.detach() @ A.T
    direction = -eta * residual @ torch.linalg.pinv(A).T  # [B, n]
    (x * direction).sum(1).mean().backward()
    torch.testing.assert_close(got, flat_grad(model), rtol=1e-10, atol=1e-12)
    # the y loss is logged as the objective: 1/2 |A x - y*|^2 averaged over the batch
    torch.testing.assert_close(terms["y_loss"], 0.5 * residual.square().sum(1).mean())


def test_hig_with_beta_one_and_full_rank_jacobian_is_the_gauss_newton_step():
    """One linear layer x = W y* + b through y = A x, 4 samples: J [12, 8] has full column
    rank, and Delta theta at beta = 1 is (J^T J)^-1 J^T dL/dy with dL/dy = (y - y*) / B."""
    config = HIGConfig(name="hig", beta=1.0, tau=0.0, batch_size=4, n_train=4, n_val=0)
    method, _ = make(HIG, config)
    model = torch.nn.Linear(3, 2).to(F64)
    method.model = model
    samples = method.batch(0)
    y, jac = method.jacobian(model, samples)
    assert jac.shape == (12, 8) and torch.linalg.matrix_rank(jac) == 8
    method.loss(model, 0)
    g = ((y - samples.target) / 4).flatten()
    torch.testing.assert_close(method._delta, torch.linalg.solve(jac.T @ jac, jac.T @ g))


def test_hig_jacobian_equals_autograd_rows():
    config = HIGConfig(name="hig", batch_size=3, n_train=6, n_val=0)
    method, model = make(HIG, config)
    samples = method.batch(0)
    y, jac = method.jacobian(model, samples)
    rows = []
    for i in range(3):
        for k in range(3):
            model.zero_grad()
            method.problem.forward(method.unknowns(model, samples))[i, k].backward()
            rows.append(flat_grad(model))
    torch.testing.assert_close(jac, torch.stack(rows))
    torch.testing.assert_close(y, method.problem.forward(method.unknowns(model, samples)))


def test_truncation_drops_exactly_the_singular_values_below_tau_sigma_max():
    s = torch.tensor([10.0, 3.0, 1.0, 0.1 + 1e-12, 0.1, 0.1 - 1e-12, 1e-13], dtype=F64)
    power = updates.truncated_power(s, tau=0.01, beta=0.5)
    kept = s >= 0.01 * 10.0
    assert kept.tolist() == [True] * 5 + [False] * 2
    torch.testing.assert_close(power[kept], s[kept].pow(-0.5), rtol=0, atol=0)
    assert (power[~kept] == 0).all()
    # the direction has no component along the dropped singular vectors
    s = torch.tensor([10.0, 3.0, 1.0, 0.2, 0.05, 1e-12], dtype=F64)
    u, _ = torch.linalg.qr(torch.randn(6, 6, dtype=F64, generator=torch.Generator().manual_seed(1)))
    v, _ = torch.linalg.qr(torch.randn(6, 6, dtype=F64, generator=torch.Generator().manual_seed(2)))
    jac = u @ torch.diag(s) @ v.T
    g = torch.randn(6, dtype=F64, generator=torch.Generator().manual_seed(3))
    delta = updates.hig_direction(jac, g, 0.01, 0.5)
    expected = v[:, :4] @ (s[:4].pow(-0.5) * (u[:, :4].T @ g))
    torch.testing.assert_close(delta, expected, rtol=1e-10, atol=1e-12)


def test_hig_step_moves_theta_by_minus_lr_delta():
    config = HIGConfig(name="hig", batch_size=4, n_train=8, n_val=0)
    method, model = make(HIG, config)
    before = torch.cat([q.detach().flatten() for q in model.parameters()])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = method.loss(model, 0)["loss"]
        loss.backward()
        return loss

    assert method.step(optimizer, closure)
    after = torch.cat([q.detach().flatten() for q in model.parameters()])
    torch.testing.assert_close(after, before - 0.5 * method._delta)


def test_gradient_is_backpropagation_of_the_mean_y_loss():
    config = InversionConfig(name="gradient", batch_size=4, n_train=8, n_val=0)
    method, model = make(Gradient, config)
    terms = method.loss(model, 0)
    samples = method.batch(0)
    x = method.unknowns(model, samples)
    expected = 0.5 * (x @ A.T - samples.target).square().sum(1).mean()
    torch.testing.assert_close(terms["loss"], expected)
    assert set(terms) == {"loss", "y_loss", "x_loss"}


def test_batches_cycle_the_training_set_per_epoch_and_draw_fresh_ones_without_it():
    config = InversionConfig(name="gradient", batch_size=3, n_train=7, n_val=2)
    method, _ = make(Gradient, config)
    epoch = torch.cat([method.batch(s).truth for s in range(3)])  # ceil(7 / 3) = 3 steps
    assert epoch.shape == (7, 2)
    assert torch.equal(epoch.sum(0), method.train_set.truth.sum(0).to(epoch)) or torch.allclose(
        epoch.sum(0), method.train_set.truth.sum(0)
    )
    assert not torch.equal(method.batch(3).truth, method.batch(0).truth)
    fresh, _ = make(Gradient, InversionConfig(name="gradient", batch_size=3))
    assert fresh.train_set is None
    assert torch.equal(fresh.batch(5).truth, fresh.batch(5).truth)
    assert not torch.equal(fresh.batch(5).truth, fresh.batch(6).truth)


def test_update_rules_refuse_problems_that_lack_what_they_need():
    class Opaque(LinearWithInverse):
        differentiable: ClassVar = False

    class OpaqueNoInverse(Linear):
        differentiable: ClassVar = False

    opaque = Opaque(LinearConfig())
    with pytest.raises(PbdlError, match="not differentiable"):
        HIG(HIGConfig(name="hig"), problem=opaque, device=CPU, dtype=F64)
    with pytest.raises(PbdlError, match="not differentiable"):
        Gradient(InversionConfig(name="gradient"), problem=opaque, device=CPU, dtype=F64)
    SIP(SIPConfig(name="sip"), problem=opaque, device=CPU, dtype=F64)  # its inverse serves
    with pytest.raises(PbdlError, match="provides neither"):
        SIP(SIPConfig(name="sip"), problem=OpaqueNoInverse(LinearConfig()), device=CPU, dtype=F64)
    with pytest.raises(PbdlError, match="does not provide"):
        SIP(
            SIPConfig(name="sip", inverse="analytic"),
            problem=Linear(LinearConfig()),
            device=CPU,
            dtype=F64,
        )


def test_hig_refuses_a_jacobian_above_its_memory_limit():
    config = HIGConfig(name="hig", batch_size=1000, max_jacobian_gb=1e-6)
    method = HIG(config, problem=Linear(LinearConfig()), device=CPU, dtype=F64)
    with pytest.raises(PbdlError, match="max_jacobian_gb"):
        method.check_model_config(model_config())
