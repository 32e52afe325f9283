"""``cnf``: a continuous normalizing flow trained by maximum likelihood (PBDL book ch.
22.6; Chen et al. 2018, Grathwohl et al. 2019 "FFJORD").

A velocity network v_theta(t, y, c) (``model=ffjord``) defines the flow dy/dt = v; the
data sit at t = 0 and the latent z ~ N(0, I) at t = 1 (the book's code). The exact
log-likelihood follows from integrating the augmented ODE d[z, delta]/dt = [v, -div v]
from the data to the latent (:func:`pbdl_cli.generative.cnf.log_likelihood`):

    log q(y | c) = log N(z(1); 0, I) + int_0^1 div v(z(t), t, c) dt,

and the loss is the batch's mean negative log-likelihood (``loss``, nats). The book's
notebook adds the prior's -1/2 log(2 pi) once rather than D times; ``book_nll`` =
``loss`` - (D - 1) / 2 log(2 pi) is its printed number (0.919 lower for D = 2,
:func:`pbdl_cli.models.realnvp.book_offset`). ``nfe`` logs the velocity evaluations of
the forward solve.

The likelihood's ODE solve (``ode``: dopri5 at ``rtol``/``atol`` = 1e-5 as the book, or
a fixed-step ``rk4``/``midpoint``/``euler`` with ``ode_steps``) runs in training,
validation and the evaluation's NLL; the gradient backpropagates through the solver's
steps, or with ``adjoint=true`` comes from torchdiffeq's adjoint ODE. The divergence is
``exact`` (D backward passes, the book's) or ``hutchinson`` (one probe per sample and
solve, drawn from the step's noise generator). Sampling integrates z ~ N(0, I) from
t = 1 back to 0 with the ``sampler`` (``dopri5`` at the same tolerances, or fixed steps).

Shapes: points y [B, D] with ``model=ffjord``, conditions [B, *condition_shape]
flattened into the velocity's first layer (``condition_features``); or fields y [B, C,
*spatial] with a grid model (``unet``, ``fno``, ``resnet``) as the velocity, fed by
:meth:`~pbdl_cli.methods.generative.GenerativeMethod.model_input` (t as one constant
channel, the condition as further channels). The divergence flattens each field to
D = C * prod(spatial) entries; ``divergence=auto`` (the default) is ``exact`` for points
and ``hutchinson`` for fields, where the exact trace costs D backward passes per
velocity evaluation.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.generative import cnf
from pbdl_cli.generative.common import Sampled, StepCallback, start_state
from pbdl_cli.generative.flow_matching import FIXED_STEP
from pbdl_cli.methods.base import METHODS
from pbdl_cli.methods.generative import GenerativeConfig, GenerativeMethod
from pbdl_cli.models.base import MODELS, GridModel
from pbdl_cli.models.realnvp import book_offset

#: ODE integrators for the likelihood and for sampling (the first is the default)
SAMPLERS = ("dopri5", "rk4", "midpoint", "euler")
#: steps of a fixed-step integrator when none are given (about dopri5's NFE on the GM)
DEFAULT_STEPS = {"rk4": 8, "midpoint": 16, "euler": 32}


class Divergence(str, enum.Enum):
    auto = "auto"  # exact for points, hutchinson for fields
    exact = "exact"  # one backward pass per dimension (the book)
    hutchinson = "hutchinson"  # eps^T (dv/dz) eps, unbiased; for large D


class Probe(str, enum.Enum):
    rademacher = "rademacher"
    gaussian = "gaussian"


@dataclasses.dataclass
class CNFConfig(GenerativeConfig):
    """Options of ``cnf`` (``method.<key>``; the rest as every probabilistic method).

    Attributes:
        n_train: training points (book: 5,000, fewer than its RealNVP's 50,000).
        ode: the likelihood's integrator in training, validation and the NLL: dopri5
            (adaptive) or rk4, midpoint, euler (fixed steps).
        ode_steps: the fixed-step integrator's steps (0: its default, rk4 8, midpoint
            16, euler 32); must be 0 for dopri5.
        rtol, atol: dopri5's tolerances, for the likelihood and for sampling (book: 1e-5).
        divergence: exact (the book; D backward passes per evaluation), hutchinson (a
            stochastic trace estimate) or auto: exact for points, hutchinson for fields.
        probe: Hutchinson's probe: rademacher (+-1) or gaussian.
        adjoint: gradients from the adjoint ODE (torchdiffeq's ``odeint_adjoint``)
            instead of backpropagating through the solver's steps.
    """

    n_train: int = 5000
    ode: str = "dopri5"
    ode_steps: int = 0
    rtol: float = 1e-5
    atol: float = 1e-5
    divergence: Divergence = Divergence.auto
    probe: Probe = Probe.rademacher
    adjoint: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ode not in SAMPLERS:
            raise ValueError(f"ode must be one of {', '.join(SAMPLERS)}, got '{self.ode}'")
        if self.ode_steps < 0:
            raise ValueError("ode_steps must be >= 0")
        if self.ode_steps and self.ode not in FIXED_STEP:
            raise ValueError(f"ode={self.ode} chooses its own steps: leave ode_steps at 0")
        if not (self.rtol > 0 and self.atol > 0):
            raise ValueError("rtol and atol must be > 0")


def ode_steps(method: str, steps: int) -> int | None:
    """The step count handed to the integrator: None for adaptive methods (a positive
    ``steps`` is refused), ``steps`` or the default for fixed-step ones."""
    if method not in FIXED_STEP:
        if steps:
            raise PbdlError(f"sampler {method} chooses its own steps: leave steps at 0")
        return None
    return steps or DEFAULT_STEPS[method]


@METHODS.register("cnf")
class CNF(GenerativeMethod):
    """Continuous normalizing flow with an exact (ODE) likelihood (module docstring)."""

    Config = CNFConfig
    config: CNFConfig
    samplers: ClassVar[tuple[str, ...]] = SAMPLERS
    has_likelihood: ClassVar[bool] = True

    # the network ------------------------------------------------------------------------
    def check_model_config(self, model_config: Any) -> None:
        """Points with ``model=ffjord`` (the velocity takes t, y and c itself); fields with
        a grid model without batch statistics (the divergence needs samples that do not
        interact)."""
        config = MODELS.config(model_config)
        name = config.name
        if self.is_field:
            if not issubclass(MODELS.get(name), GridModel):
                raise PbdlError(
                    f"method 'cnf': problem '{self.problem.name}' has field samples "
                    f"{list(self.sample_shape)}: use a grid model as the velocity "
                    f"(model=unet, fno or resnet), not model={name}"
                )
            if getattr(config, "batch_norm", False):
                raise PbdlError(
                    "method 'cnf': batch normalization couples the samples of a batch, so "
                    "the divergence is wrong: set model.batch_norm=false"
                )
        elif name != "ffjord":
            raise PbdlError(f"method 'cnf' trains model=ffjord (its velocity), not model={name}")

    def network(self, model_config: Any) -> nn.Module:
        """``ffjord`` for points; for fields the grid model of :meth:`model_input`."""
        if self.is_field:
            return super().network(model_config)
        return MODELS.build(
            model_config,
            features=self.sample_shape[0],
            condition_features=self.condition_features,
        )

    @property
    def divergence(self) -> str:
        """The divergence used: ``method.divergence``, auto resolved (module docstring)."""
        choice = self.config.divergence
        if choice is Divergence.auto:
            return Divergence.hutchinson.value if self.is_field else Divergence.exact.value
        return choice.value

    def velocity(self, model: nn.Module, condition: Tensor | None) -> cnf.VelocityFn:
        """v(z [B, *sample_shape], t [B]) of the network at conditions [B,
        *condition_shape] or at one condition [1, *condition_shape] shared by the batch
        (None: unconditional)."""
        if self.is_field:

            def v_field(z: Tensor, t: Tensor) -> Tensor:
                c = None
                if condition is not None:
                    c = condition.expand(len(z), *condition.shape[1:])
                return model(self.model_input(z, t, c))

            return v_field
        flat = None if condition is None else condition.reshape(len(condition), -1)

        def v(z: Tensor, t: Tensor) -> Tensor:
            c = None if flat is None else flat.expand(len(z), -1)
            return model(t, z, c)

        return v

    # the objective ----------------------------------------------------------------------
    def likelihood(
        self,
        model: nn.Module,
        y: Tensor,
        condition: Tensor | None,
        noise: torch.Generator | None = None,
        *,
        t0: float = cnf.T_DATA,
    ) -> cnf.Likelihood:
        """log q_t0(y | c) with the configured integrator, divergence and gradients."""
        c = self.config
        params = [p for p in model.parameters() if p.requires_grad] if c.adjoint else ()
        return cnf.log_likelihood(
            self.velocity(model, condition),
            y,
            method=c.ode,
            steps=ode_steps(c.ode, c.ode_steps),
            rtol=c.rtol,
            atol=c.atol,
            divergence=self.divergence,
            probe=c.probe.value,
            generator=noise,
            adjoint=c.adjoint and torch.is_grad_enabled(),
            adjoint_params=params,
            t0=t0,
        )

    def sample_loss(
        self, model: nn.Module, y: Tensor, condition: Tensor | None, noise: torch.Generator
    ) -> dict[str, Tensor]:
        """The mean NLL (nats), the book's units of it and the solve's evaluations."""
        result = self.likelihood(model, y, condition, noise)
        nll = -result.log_prob.mean()
        return {
            "loss": nll,
            "book_nll": nll.detach() - book_offset(math.prod(self.sample_shape)),
            "nfe": torch.tensor(float(result.evaluations)),
        }

    def log_prob(self, model: nn.Module, y: Tensor, condition: Tensor | None) -> Tensor:
        """log q(y | c) [n] in chunks of ``method.chunk`` (Hutchinson: a fixed probe seed)."""
        noise = torch.Generator().manual_seed(0)
        parts = []
        for start in range(0, len(y), self.config.chunk):
            part = slice(start, start + self.config.chunk)
            cond = None if condition is None else condition[part]
            parts.append(self.likelihood(model, y[part], cond, noise).log_prob)
        return torch.cat(parts)

    # sampling ---------------------------------------------------------------------------
    def expected_steps(self, sampler: str, steps: int) -> int | None:
        """The fixed-step sampler's steps; None for dopri5 (it chooses)."""
        return ode_steps(sampler, steps)

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
        t1: float = cnf.T_DATA,
    ) -> Sampled:
        """z ~ N(0, I) [n, D] from ``generator`` integrated from t = 1 to ``t1`` (0: the
        data) at one shared condition [*condition_shape] (or None)."""
        sampler = self.check_sampler(sampler)
        z = start_state((n, *self.sample_shape), generator, dtype=self.dtype)
        z = z.to(self.device)
        cond = None if condition is None else condition.to(self.device, self.dtype)[None]
        c = self.config
        return cnf.sample(
            self.velocity(model, cond),
            z,
            method=sampler,
            steps=ode_steps(sampler, steps),
            rtol=c.rtol,
            atol=c.atol,
            t1=t1,
            callback=callback,
        )
