"""Scale-invariant physics updates, SIP (PBDL book ch. 38; Holl, Koltun & Thuerey 2022).

Per batch, with the network's x = f(input; theta) and y = P(x; c):

    x~ = P^-1(y + eta (y* - y); x, c)                  (the physics step, no gradient)
    L_proxy = mean_i 1/2 |x_i - sg(x~_i)|^2            (sg: stop-gradient)

and ``trainer.optimizer`` (Adam by default) minimizes L_proxy over theta. y + eta (y* -
y) is the Newton step of L_y = 1/2 |y - y*|^2 in y-space, so the physics part of the
update is scale-invariant: it undoes P's scaling instead of inheriting it. The
effective learning rate is about eta x ``trainer.lr``; the book recommends eta as large
as the inverse allows (1).

The local inverse P^-1 (``method.inverse``): ``analytic`` is the problem's inverse
simulator (``Problem.inverse``); ``pinv`` the Gauss-Newton local inverse
x + J^+ eta (y* - y) with J = dP/dx per sample from ``torch.func`` (vmapped, singular
values below ``rcond`` sigma_max dropped), exact where P is linear; ``auto`` takes the
analytic one where the problem has it. Cost per step: one forward pass of P and one
inverse (for ``pinv`` one Jacobian [m, n] and its pseudo-inverse per sample) beside the
network's forward and backward pass.

Logged: ``loss`` (the proxy), ``y_loss`` (the objective), ``x_loss`` (where x* is known).
"""

from __future__ import annotations

import dataclasses
import enum

import torch
from torch import Tensor, nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods.base import METHODS
from pbdl_cli.methods.inversion import InversionConfig, InversionMethod
from pbdl_cli.problems.inversion import Samples
from pbdl_cli.training import updates


class LocalInverse(str, enum.Enum):
    """Which local inverse SIP maps the y-step back with."""

    auto = "auto"
    analytic = "analytic"
    pinv = "pinv"


@dataclasses.dataclass
class SIPConfig(InversionConfig):
    """Options of ``sip`` (``method.<key>``), beside the shared ones.

    Attributes:
        eta: the y-space step size of the Newton step y + eta (y* - y) (book: 1).
        inverse: ``auto``, ``analytic`` (the problem's inverse simulator) or ``pinv``
            (Gauss-Newton pseudo-inverse of dP/dx).
        rcond: ``pinv`` drops singular values below rcond x the largest.
    """

    eta: float = 1.0
    inverse: LocalInverse = LocalInverse.auto
    rcond: float = 1e-5

    def __post_init__(self) -> None:
        super().__post_init__()
        self.inverse = LocalInverse(self.inverse)
        if self.eta <= 0 or self.rcond < 0:
            raise ValueError("eta must be > 0 and rcond >= 0")


@METHODS.register("sip")
class SIP(InversionMethod):
    """Scale-invariant physics updates through a local inverse (module docstring)."""

    Config = SIPConfig
    config: SIPConfig

    def __init__(self, config: SIPConfig, **deps) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, **deps)
        p, chosen = self.problem, config.inverse
        if chosen is LocalInverse.auto:
            chosen = LocalInverse.analytic if p.has_inverse else LocalInverse.pinv
        if chosen is LocalInverse.analytic and not p.has_inverse:
            raise PbdlError(
                f"method.inverse=analytic needs an inverse simulator P^-1(y; x0), which "
                f"problem '{p.name}' does not provide (use method.inverse=pinv)"
            )
        if chosen is LocalInverse.pinv and not p.differentiable:
            raise PbdlError(
                f"method 'sip' needs an inverse simulator or a differentiable physics for the "
                f"pseudo-inverse of its Jacobian; problem '{p.name}' provides neither"
            )
        self.local_inverse = chosen

    def corrected(self, x: Tensor, samples: Samples) -> Tensor:
        """x~ = P^-1(y + eta (y* - y); x, c) for x [B, *x_shape] (no gradient)."""
        p, eta = self.problem, self.config.eta
        with torch.no_grad():
            y = p.forward(x, samples.condition)
            goal = y + eta * (samples.target - y)
            if self.local_inverse is LocalInverse.analytic:
                return p.inverse(goal, x, samples.condition)
        return self._pinv(x, goal - y, samples.condition)

    def _pinv(self, x: Tensor, dy: Tensor, condition: Tensor | None) -> Tensor:
        p = self.problem

        def forward(row: Tensor, cond: Tensor | None) -> Tensor:  # one sample, flattened
            c = None if cond is None else cond[None]
            return p.forward(row.reshape(1, *p.x_shape), c).flatten()

        with torch.no_grad():
            flat = updates.pinv_inverse(
                forward, x.flatten(1), dy.flatten(1), self.config.rcond, condition
            )
        return flat.reshape(x.shape)

    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        samples = self.batch(step)
        x = self.unknowns(model, samples)
        target = self.corrected(x.detach(), samples)
        proxy = 0.5 * (x - target).flatten(1).square().sum(1).mean()
        with torch.no_grad():
            terms = self.objective_terms(x.detach(), samples)
        return {"loss": proxy, **terms}
