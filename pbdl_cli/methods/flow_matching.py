"""``flow_matching``: conditional flow matching (PBDL book ch. 25-26; Lipman, Chen,
Ben-Hamu, Nickel & Le 2023, "Flow matching for generative modeling").

Noise x0 ~ N(0, I) sits at t = 0 and data x1 = y at t = 1. For a training pair (y, c):
t ~ U(0, 1), x0 ~ N(0, I) and the interpolant
x_t = (1 - (1 - sigma_min) t) x0 + t x1 (:func:`~pbdl_cli.generative.flow_matching.interpolant`);
the network v_theta(x_t, t, c) regresses the conditional velocity u
(:func:`~pbdl_cli.generative.flow_matching.target`, ``method.target``):

* ``derivative`` (default; ch. 26, Lipman et al.): u = d x_t / dt = x1 - (1 - sigma_min) x0;
* ``difference`` (the book's ch. 25 GM notebook): u = x1 - x0, which misses the path's
  derivative by sigma_min x0 (at the book's sigma_min = 1e-4 a negligible change).

    L_CFM = mean over the batch and the sample's entries of (v_theta - u)^2

(``nn.MSELoss``, the book's printed loss).

Sampling integrates dx/dt = v_theta(x, t, c) from x0 ~ N(0, I) at t = 0 to t = 1 with no
added noise: ``euler``, ``midpoint`` or ``rk4`` with K = ``steps`` (default
``fixed_steps`` = 20) fixed steps, K, 2K or 4K network evaluations; or ``adaptive``
(torchdiffeq's ``odeint`` with ``adaptive_method``, rtol / atol; the book's GM notebook:
dopri5 at 1e-5), which counts its evaluations as they happen.

Shapes: samples y [B, D] (model=mlp, input [y, t, c]) or [B, C, *spatial] (a grid model,
t as a constant channel), as :class:`~pbdl_cli.methods.generative.GenerativeMethod`.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import ClassVar

import torch
from torch import Tensor, nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.generative.common import Sampled, StepCallback, normal_like, start_state
from pbdl_cli.generative.flow_matching import VelocityFn, integrate, interpolant, target
from pbdl_cli.methods.base import METHODS
from pbdl_cli.methods.generative import GenerativeConfig, GenerativeMethod

#: the fixed-step samplers (the adaptive one is ``adaptive``)
FIXED = ("euler", "midpoint", "rk4")


class Target(str, enum.Enum):
    derivative = "derivative"  # x1 - (1 - sigma_min) x0 (ch. 26)
    difference = "difference"  # x1 - x0 (the ch. 25 GM notebook)


class AdaptiveMethod(str, enum.Enum):
    """torchdiffeq's adaptive integrators (:data:`~pbdl_cli.generative.flow_matching.ADAPTIVE`)."""

    dopri5 = "dopri5"
    dopri8 = "dopri8"
    bosh3 = "bosh3"
    fehlberg2 = "fehlberg2"
    adaptive_heun = "adaptive_heun"


@dataclasses.dataclass
class FlowMatchingConfig(GenerativeConfig):
    """Options of ``flow_matching`` (``method.<key>``; the rest as every probabilistic
    method).

    Attributes:
        sigma_min: the width of the conditional path at t = 1 (book: 1e-4).
        target: derivative (x1 - (1 - sigma_min) x0) or difference (x1 - x0).
        fixed_steps: the steps of euler, midpoint and rk4 when ``steps`` is 0.
        adaptive_method: the torchdiffeq integrator of ``sampler=adaptive``.
        rtol, atol: its tolerances (book: 1e-5).
    """

    sigma_min: float = 1e-4
    target: Target = Target.derivative
    fixed_steps: int = 20
    adaptive_method: AdaptiveMethod = AdaptiveMethod.dopri5
    rtol: float = 1e-5
    atol: float = 1e-5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.sigma_min < 1:
            raise ValueError(f"sigma_min must lie in [0, 1), got {self.sigma_min}")
        if self.fixed_steps < 1:
            raise ValueError("fixed_steps must be >= 1")
        if self.rtol <= 0 or self.atol <= 0:
            raise ValueError("rtol and atol must be > 0")
        if self.sampler == "adaptive" and self.steps:
            raise ValueError(
                f"sampler=adaptive chooses its own steps: drop steps={self.steps} "
                "(or use euler, midpoint or rk4)"
            )


@METHODS.register("flow_matching")
class FlowMatching(GenerativeMethod):
    """Conditional flow matching; fixed-step and adaptive ODE sampling (module docstring)."""

    Config = FlowMatchingConfig
    config: FlowMatchingConfig
    samplers: ClassVar[tuple[str, ...]] = (*FIXED, "adaptive")

    def velocity(self, model: nn.Module, condition: Tensor | None) -> VelocityFn:
        """v(x [B, ...], t [B]) of the network at one condition [1, *condition_shape]
        (or None), broadcast over the batch."""

        def v(x: Tensor, t: Tensor) -> Tensor:
            c = None if condition is None else condition.expand(len(x), *condition.shape[1:])
            return model(self.model_input(x, t, c))

        return v

    def sample_loss(
        self, model: nn.Module, y: Tensor, condition: Tensor | None, noise: torch.Generator
    ) -> dict[str, Tensor]:
        """The book's MSE between v_theta(x_t, t, c) and u, x0 ~ N(0, I), t ~ U(0, 1)."""
        c = self.config
        x0 = normal_like(y, noise)
        t = torch.rand(len(y), generator=noise, dtype=torch.float64).to(y.device, y.dtype)
        x_t = interpolant(x0, y, t, c.sigma_min)
        u = target(x0, y, c.sigma_min, c.target.value)
        predicted = model(self.model_input(x_t, t, condition))
        return {"loss": (predicted - u).square().mean()}

    def expected_steps(self, sampler: str, steps: int) -> int | None:
        """K = ``steps`` (or ``fixed_steps``) for the fixed-step samplers; None for
        ``adaptive`` (it chooses)."""
        if sampler == "adaptive":
            return None
        return steps or self.config.fixed_steps

    def sample(
        self,
        model: nn.Module,
        n: int,
        *,
        condition: Tensor | None,
        sampler: str,
        steps: int,
        generator: torch.Generator,
        callback: StepCallback | None = None,
    ) -> Sampled:
        c = self.config
        sampler = self.check_sampler(sampler)
        x0 = start_state((n, *self.sample_shape), generator, device=self.device, dtype=self.dtype)
        v = self.velocity(model, None if condition is None else condition[None])
        if sampler == "adaptive":
            if steps:
                raise PbdlError(
                    f"sampler=adaptive chooses its own steps: drop steps={steps} "
                    "(or use euler, midpoint or rk4)"
                )
            return integrate(
                v,
                x0,
                method=c.adaptive_method.value,
                rtol=c.rtol,
                atol=c.atol,
                callback=callback,
            )
        return integrate(v, x0, method=sampler, steps=steps or c.fixed_steps, callback=callback)
