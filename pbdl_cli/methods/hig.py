"""Half-inverse gradients, HIG (PBDL book ch. 40; Schnell, Holl & Thuerey 2022).

Per batch of B samples, with y_i = P(f(input_i; theta); c_i) and the mean loss
L = mean_i L_y(y_i, y*_i):

    J = dy/dtheta     [B m, p]   (the per-sample Jacobians stacked: rows = batch x dim y)
    J = U Lambda V^T             (thin SVD)
    Delta theta = V Lambda^-beta U^T dL/dy,   lambda_k^-beta := 0 where lambda_k < tau lambda_max
    theta <- theta - eta Delta theta

with eta = ``trainer.lr`` through ``trainer.optimizer`` (the book: SGD, lr 1, no
momentum; the optimizer receives Delta theta as the gradient). beta = 1/2 is HIG,
beta = 1 the Gauss-Newton step J^+ dL/dy (for a full-rank J, (J^T J)^-1 J^T dL/dy);
singular values below tau lambda_max are truncated to zero, not clamped. J inverts the
network and the physics jointly, which fixes both their scalings.

J comes from ``torch.func``: ``jacrev`` of one sample's y with respect to all network
parameters, ``vmap``-ed over the batch (no Python loop over samples or parameters); it
needs a differentiable P. Cost per step: B m reverse passes (vectorized) and an SVD of
a [B m, p] matrix, O(B m p min(B m, p)); memory B m p numbers, refused above
``max_jacobian_gb``.

Logged: ``loss`` = ``y_loss`` (the objective) and ``x_loss`` where x* is known,
``rank`` (singular values kept), ``sigma_max`` and ``step_norm`` = |Delta theta|.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods.base import METHODS
from pbdl_cli.methods.inversion import InversionConfig, InversionMethod, model_input
from pbdl_cli.problems.inversion import Samples
from pbdl_cli.training import updates


@dataclasses.dataclass
class HIGConfig(InversionConfig):
    """Options of ``hig`` (``method.<key>``), beside the shared ones.

    Attributes:
        beta: the power of the inverted singular values (0.5: HIG; 1: Gauss-Newton).
        tau: singular values below tau x the largest are dropped (book: 1e-10).
        max_jacobian_gb: refuse a model whose stacked Jacobian [B m, p] would exceed
            this many GB.
    """

    batch_size: int = 32
    beta: float = 0.5
    tau: float = 1e-10
    max_jacobian_gb: float = 4.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0 or self.tau < 0 or self.max_jacobian_gb <= 0:
            raise ValueError("beta and max_jacobian_gb must be > 0, tau >= 0")


@METHODS.register("hig")
class HIG(InversionMethod):
    """Half-inverse gradients of the joint network-physics Jacobian (module docstring)."""

    Config = HIGConfig
    config: HIGConfig

    def __init__(self, config: HIGConfig, **deps) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, **deps)
        if not self.problem.differentiable:
            raise PbdlError(
                f"method 'hig' needs the Jacobian dy/dtheta through the physics, but problem "
                f"'{self.problem.name}' is not differentiable"
            )
        self._delta = torch.zeros(0)

    def check_model_config(self, model_config: Any) -> None:
        """Also refuse a model whose stacked Jacobian [B m, p] exceeds
        ``max_jacobian_gb`` (counted on a model built on the meta device)."""
        super().check_model_config(model_config)
        with torch.device("meta"):
            params = sum(p.numel() for p in self._network(model_config).parameters())
        rows = self.config.batch_size * self.problem.y_size
        size = rows * params * torch.finfo(self.dtype).bits / 8 / 1e9
        if size > self.config.max_jacobian_gb:
            raise PbdlError(
                f"method 'hig' would build a Jacobian of {rows} x {params} = {size:.1f} GB "
                f"(batch {self.config.batch_size} x dim y {self.problem.y_size} rows, "
                f"{params} parameters), above method.max_jacobian_gb="
                f"{self.config.max_jacobian_gb:g}: lower method.batch_size or use a smaller model"
            )

    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        """The terms at the batch of ``step``; also computes the step's Delta theta, which
        :meth:`step` hands to the optimizer. y and the loss come from the Jacobian's pass:
        no separate forward pass, and no backward pass through the network (``loss`` is a
        leaf: the trainer's ``backward`` on it is free, Delta theta is the update)."""
        samples = self.batch(step)
        y, jac = self.jacobian(model, samples)
        y = y.detach().requires_grad_(True)
        shaped = y.reshape(len(samples), *self.problem.y_shape)
        y_loss = self.problem.loss_y(shaped, samples.target).mean()
        (g,) = torch.autograd.grad(y_loss, y)
        terms = {"y_loss": y_loss.detach()}
        with torch.no_grad():
            if samples.truth is not None:
                x = self.unknowns(model, samples)
                terms["x_loss"] = self.problem.loss_x(x, samples.truth).mean()
            self._delta, sigma, power = updates.hig_step(
                jac, g.flatten(), self.config.tau, self.config.beta
            )
        rank = (power > 0).sum().to(y.dtype)
        return {
            "loss": terms["y_loss"].clone().requires_grad_(True),
            **terms,
            "rank": rank,
            "sigma_max": sigma[0].detach(),
            # |Delta theta|: a non-finite step stops the trainer like a non-finite loss
            "step_norm": self._delta.norm(),
        }

    def jacobian(self, model: nn.Module, samples: Samples) -> tuple[Tensor, Tensor]:
        """y [B, m] of the batch and the stacked Jacobian dy/dtheta [B m, p] (parameters
        in ``model.parameters()`` order, each flattened), from ``vmap(jacrev)``."""
        named = [(n, q) for n, q in model.named_parameters() if q.requires_grad]
        params = {n: q.detach() for n, q in named}
        problem = self.problem

        def one(
            theta: dict[str, Tensor],
            inp: Tensor,
            target: Tensor,
            cond: Tensor | None,
            truth: Tensor | None,
        ) -> tuple[Tensor, Tensor]:
            batch = Samples(
                input=inp[None],
                target=target[None],
                condition=None if cond is None else cond[None],
                truth=None if truth is None else truth[None],
            )
            raw = functional_call(model, theta, (model_input(problem, model, batch.input),))
            x = problem.correct(raw.reshape(1, *problem.x_shape), batch)
            y = problem.forward(x, batch.condition).flatten()
            return y, y

        dims = (None, 0, 0, _dim(samples.condition), _dim(samples.truth))
        jac, y = vmap(jacrev(one, has_aux=True), in_dims=dims)(
            params, samples.input, samples.target, samples.condition, samples.truth
        )  # name -> [B, m, *shape]; y [B, m]
        b, m = len(samples), problem.y_size
        stacked = torch.cat([jac[n].reshape(b, m, -1) for n, _ in named], dim=-1)
        return y, stacked.reshape(b * m, -1)

    def step(self, optimizer: torch.optim.Optimizer, closure: Callable[[], Tensor]) -> bool:
        """Evaluate the terms and Delta theta (``closure``), then hand the optimizer
        Delta theta as the gradient: with SGD, theta <- theta - lr Delta theta."""
        closure()
        if not torch.isfinite(self._delta).all():
            return True  # not taken: the trainer stops on the non-finite step_norm
        offset = 0
        for group in optimizer.param_groups:
            for q in group["params"]:
                if q.requires_grad:
                    q.grad = self._delta[offset : offset + q.numel()].reshape(q.shape)
                    offset += q.numel()
        optimizer.step()
        return True


def _dim(t: Tensor | None) -> int | None:
    return None if t is None else 0
