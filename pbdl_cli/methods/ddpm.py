"""``ddpm``: denoising diffusion with epsilon prediction (PBDL book ch. 24; Ho, Jain &
Abbeel 2020, "Denoising diffusion probabilistic models").

Training (Alg. 1): for a pair (y, c), t ~ U{1..T}, eps ~ N(0, I) and
x_t = sqrt(abar_t) y + sqrt(1 - abar_t) eps (:func:`~pbdl_cli.generative.schedules.q_sample`),
the network eps_theta(x_t, t / T, c) regresses eps:

    L = mean over the batch and the sample's entries of (eps - eps_theta)^2

(``nn.MSELoss``, the book's printed loss). Schedules (``method.schedule``): ``linear``
beta_start..beta_end (optionally rescaled by 1000 / T, the book's ``DDPMForwardProcess``),
``cosine`` (Nichol & Dhariwal, s = 0.008) and ``constant`` beta; the book's GM notebook
trains and samples with constant beta = 0.02 but plots the forward process with the linear
schedule.

Sampling: ``ancestral`` (Alg. 2, T evaluations; ``sigma=beta`` sigma_t^2 = beta_t as the
book's GM notebook, ``posterior`` beta~_t) or ``ddim`` (Song et al. 2021) on ``steps`` of
the T steps (``eta`` 0: deterministic), :mod:`pbdl_cli.generative.ddpm`.

Shapes: samples y [B, D] (model=mlp, input [y, t / T, c]) or [B, C, *spatial] (a grid
model, t / T as a constant channel), as :class:`~pbdl_cli.methods.generative.GenerativeMethod`.
"""

from __future__ import annotations

import dataclasses
import enum
from functools import cached_property
from typing import ClassVar

import torch
from torch import Tensor, nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.generative.common import Sampled, StepCallback, normal_like
from pbdl_cli.generative.ddpm import EpsFn, ancestral_sample, ddim_sample
from pbdl_cli.generative.schedules import NoiseSchedule, noise_schedule, q_sample
from pbdl_cli.methods.base import METHODS
from pbdl_cli.methods.generative import GenerativeConfig, GenerativeMethod


class Schedule(str, enum.Enum):
    linear = "linear"
    cosine = "cosine"
    constant = "constant"


class Sigma(str, enum.Enum):
    beta = "beta"  # sigma_t^2 = beta_t (the book's GM notebook)
    posterior = "posterior"  # sigma_t^2 = beta~_t (the book's airfoil DDPM)


@dataclasses.dataclass
class DDPMConfig(GenerativeConfig):
    """Options of ``ddpm`` (``method.<key>``; the rest as every probabilistic method).

    Attributes:
        T: diffusion steps (book: 1000).
        schedule: linear, cosine or constant.
        beta: the constant schedule's beta_t (book's GM notebook: 0.02).
        beta_start, beta_end: the linear schedule's ends (1e-4, 0.02).
        rescale: linear only: scale both ends by 1000 / T.
        cosine_s: the cosine schedule's offset s (0.008).
        sigma: the ancestral sampler's noise: beta (sigma_t^2 = beta_t) or posterior.
        eta: DDIM's noise (0: deterministic).
        ddim_steps: DDIM's default number of steps (``steps=0``).
    """

    T: int = 1000
    schedule: Schedule = Schedule.linear
    beta: float = 0.02
    beta_start: float = 1e-4
    beta_end: float = 0.02
    rescale: bool = False
    cosine_s: float = 0.008
    sigma: Sigma = Sigma.beta
    eta: float = 0.0
    ddim_steps: int = 50

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.T < 1 or self.ddim_steps < 1:
            raise ValueError("T and ddim_steps must be >= 1")
        if not 0 < self.beta < 1 or not 0 < self.beta_start <= self.beta_end < 1:
            raise ValueError("beta and 0 < beta_start <= beta_end must lie in (0, 1)")
        if self.cosine_s <= 0 or self.eta < 0:
            raise ValueError("cosine_s must be > 0 and eta >= 0")


@METHODS.register("ddpm")
class DDPM(GenerativeMethod):
    """Epsilon-prediction diffusion; ancestral and DDIM sampling (module docstring)."""

    Config = DDPMConfig
    config: DDPMConfig
    samplers: ClassVar[tuple[str, ...]] = ("ancestral", "ddim")

    @cached_property
    def schedule(self) -> NoiseSchedule:
        c = self.config
        return noise_schedule(
            c.schedule.value,
            c.T,
            beta_start=c.beta_start,
            beta_end=c.beta_end,
            rescale=c.rescale,
            beta=c.beta,
            s=c.cosine_s,
        )

    def _eps(self, model: nn.Module, condition: Tensor | None) -> EpsFn:
        """eps(x [B, ...], t [B] long) -> eps_hat of the network at a fixed condition."""
        T = self.config.T

        def eps(x: Tensor, t: Tensor) -> Tensor:
            c = None if condition is None else condition.expand(len(x), *condition.shape[1:])
            return model(self.model_input(x, t.to(x.dtype) / T, c))

        return eps

    def sample_loss(
        self, model: nn.Module, y: Tensor, condition: Tensor | None, noise: torch.Generator
    ) -> dict[str, Tensor]:
        """The book's MSE between eps and eps_theta(x_t, t / T, c), t ~ U{1..T}."""
        T = self.config.T
        t = torch.randint(1, T + 1, (len(y),), generator=noise).to(y.device)
        eps = normal_like(y, noise)
        x_t = q_sample(y, t, eps, self.schedule)
        predicted = model(self.model_input(x_t, t.to(y.dtype) / T, condition))
        return {"loss": (predicted - eps).square().mean()}

    def expected_steps(self, sampler: str, steps: int) -> int:
        """T for ancestral sampling, K = ``steps`` (or ``ddim_steps``) for DDIM."""
        if sampler == "ancestral":
            return self.config.T
        return steps or self.config.ddim_steps

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
        sampler = self.check_sampler(sampler)
        cond = None if condition is None else condition[None]
        eps = self._eps(model, cond)
        shape = (n, *self.sample_shape)
        if sampler == "ancestral":
            if steps not in (0, self.config.T):
                raise PbdlError(
                    f"ancestral sampling takes all T = {self.config.T} steps (got steps="
                    f"{steps}); use sampler=ddim for fewer"
                )
            return ancestral_sample(
                eps,
                self.schedule,
                shape,
                sigma=self.config.sigma.value,
                generator=generator,
                callback=callback,
                device=self.device,
                dtype=self.dtype,
            )
        return ddim_sample(
            eps,
            self.schedule,
            shape,
            steps or self.config.ddim_steps,
            eta=self.config.eta,
            generator=generator,
            callback=callback,
            device=self.device,
            dtype=self.dtype,
        )
