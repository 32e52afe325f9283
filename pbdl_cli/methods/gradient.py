"""Plain gradients through the physics (the book's "GD" / Adam baseline of ch. 38-41):

    theta <- optimizer(dL/dtheta),  L = mean_i L_y(P(f(input_i; theta); c_i), y*_i)

dL/dtheta = (dL/dy)(dy/dx)(dx/dtheta) by backpropagation through P, then any
``trainer.optimizer`` (Adam by default). The physics part dy/dx keeps P's scaling:
a stiff or badly scaled P gives gradients of the wrong size and direction, which SIP
and HIG correct. Needs a differentiable P. Shapes: see
:mod:`pbdl_cli.methods.inversion`.
"""

from __future__ import annotations

from torch import Tensor, nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods.base import METHODS
from pbdl_cli.methods.inversion import InversionConfig, InversionMethod


@METHODS.register("gradient")
class Gradient(InversionMethod):
    """Backpropagation through the physics, then the trainer's optimizer."""

    Config = InversionConfig

    def __init__(self, config: InversionConfig, **deps) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, **deps)
        if not self.problem.differentiable:
            raise PbdlError(
                f"method 'gradient' backpropagates through the physics, but problem "
                f"'{self.problem.name}' is not differentiable (use method=sip with its inverse)"
            )

    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        samples = self.batch(step)
        terms = self.objective_terms(self.unknowns(model, samples), samples)
        return {"loss": terms["y_loss"], **{k: v.detach() for k, v in terms.items()}}
