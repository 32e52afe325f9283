"""DDPM noise schedules and the closed-form forward (noising) process.

Book ch. 24 (Denoising / DDPM), after Ho, Jain & Abbeel, "Denoising diffusion
probabilistic models", NeurIPS 2020, and Nichol & Dhariwal, "Improved denoising diffusion
probabilistic models", ICML 2021 (the cosine schedule). With steps ``t = 1..T``:

* forward step   q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I),  alpha_t = 1 - beta_t;
* marginal       q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I),   abar_t = prod_{s<=t} alpha_s,
  so x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps with eps ~ N(0, I)  (:func:`q_sample`);
* posterior      q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I) with
  mu~_t = (sqrt(abar_{t-1}) beta_t x_0 + sqrt(alpha_t) (1 - abar_{t-1}) x_t) / (1 - abar_t),
  beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t, and abar_0 = 1 (so beta~_1 = 0).

(The book's typesetting drops some of the bars; these are the standard formulas.)

Schedules (:func:`noise_schedule`):

* ``linear``: beta_t from ``beta_start`` = 1e-4 to ``beta_end`` = 0.02 evenly over T (Ho
  et al.; the book's ``DDPMForwardProcess``, which also scales both ends by 1000 / T:
  ``rescale=True``);
* ``cosine``: abar_t = f(t) / f(0), f(t) = cos^2((t / T + s) / (1 + s) pi / 2), s = 0.008,
  beta_t = 1 - abar_t / abar_{t-1} clipped at 0.999 (Nichol & Dhariwal; book ch. 26's
  airfoil DDPM with T = 200); abar is then recomputed from the clipped betas, so it
  equals the formula except at the last step or steps, where f reaches 0;
* ``constant``: beta_t = 0.02 for every t (the book's GM notebook trains with it, ch. 24,
  while its forward-process plots use ``linear``).

Tables are float64 on the CPU; the functions below move the entries they need to the
data's device and dtype. Step indices ``t`` are integers in ``1..T`` (``0`` means the
data itself: abar_0 = 1), a Python int or a long tensor ``[B]`` (one per sample).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from pbdl_cli.errors import PbdlError, did_you_mean
from pbdl_cli.generative.common import per_sample

#: the schedule names :func:`noise_schedule` knows
SCHEDULES = ("linear", "cosine", "constant")


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """The variances beta_t of a DDPM forward process and the tables derived from them.

    Attributes:
        name: the schedule's name (one of :data:`SCHEDULES`, or any label).
        betas: ``[T]`` float64, ``betas[t - 1] = beta_t`` for ``t = 1..T``, in (0, 1).
    """

    name: str
    betas: Tensor

    def __post_init__(self) -> None:
        if self.betas.ndim != 1 or len(self.betas) == 0:
            raise PbdlError(f"schedule {self.name}: betas must be a non-empty vector [T]")
        if not bool(((self.betas > 0) & (self.betas < 1)).all()):
            raise PbdlError(f"schedule {self.name}: every beta_t must lie in (0, 1)")

    @property
    def T(self) -> int:
        """The number of diffusion steps."""
        return len(self.betas)

    @cached_property
    def alphas(self) -> Tensor:
        """``[T]``: alpha_t = 1 - beta_t."""
        return 1 - self.betas

    @cached_property
    def alpha_bar(self) -> Tensor:
        """``[T]``: abar_t = prod_{s <= t} alpha_s (``alpha_bar[t - 1]``)."""
        return torch.cumprod(self.alphas, 0)

    @cached_property
    def alpha_bar0(self) -> Tensor:
        """``[T + 1]``: abar_t indexed by ``t = 0..T`` directly, abar_0 = 1."""
        return torch.cat([self.alpha_bar.new_ones(1), self.alpha_bar])

    @cached_property
    def posterior_variance(self) -> Tensor:
        """``[T]``: beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t; beta~_1 = 0."""
        abar, prev = self.alpha_bar0[1:], self.alpha_bar0[:-1]
        return (1 - prev) / (1 - abar) * self.betas

    def at(self, table: str, t: int | Tensor, like: Tensor) -> Tensor:
        """Entry ``t`` (``1..T``) of ``table`` (``betas``, ``alphas``, ``alpha_bar``,
        ``posterior_variance``) as a scalar tensor (int ``t``) or broadcastable to
        ``like`` (``t`` a long tensor ``[B]``)."""
        values = getattr(self, table)
        index = torch.as_tensor(t, device="cpu").long()
        _check_steps(index, self.T, low=1)
        return per_sample(values[index - 1], like)

    def alpha_bar_at(self, t: int | Tensor, like: Tensor) -> Tensor:
        """abar_t for ``t`` in ``0..T`` (abar_0 = 1), as :meth:`at` shapes it."""
        index = torch.as_tensor(t, device="cpu").long()
        _check_steps(index, self.T, low=0)
        return per_sample(self.alpha_bar0[index], like)


def noise_schedule(
    name: str,
    T: int = 1000,
    *,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    rescale: bool = False,
    beta: float = 0.02,
    s: float = 0.008,
    max_beta: float = 0.999,
) -> NoiseSchedule:
    """The schedule ``name`` over ``T`` steps (see the module docstring for each).

    Args:
        name: ``linear``, ``cosine`` or ``constant``.
        T: number of steps.
        beta_start, beta_end: the ``linear`` schedule's end points.
        rescale: ``linear`` only: multiply both ends by 1000 / T (the book's
            ``DDPMForwardProcess``), keeping abar_T about the same for any T.
        beta: the ``constant`` schedule's value.
        s: the ``cosine`` schedule's offset (Nichol & Dhariwal: 0.008).
        max_beta: the ``cosine`` schedule's clip (0.999).
    """
    if T < 1:
        raise PbdlError(f"noise schedule: T must be at least 1, got {T}")
    if name == "linear":
        scale = 1000 / T if rescale else 1.0
        betas = torch.linspace(scale * beta_start, scale * beta_end, T, dtype=torch.float64)
    elif name == "cosine":
        steps = torch.arange(T + 1, dtype=torch.float64)
        f = torch.cos((steps / T + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
    elif name == "constant":
        betas = torch.full((T,), float(beta), dtype=torch.float64)
    else:
        raise PbdlError(
            f"unknown noise schedule '{name}'{did_you_mean(name, SCHEDULES)}; "
            f"choose one of {', '.join(SCHEDULES)}"
        )
    return NoiseSchedule(name, betas)


def cosine_alpha_bar(t: Tensor, T: int, s: float = 0.008) -> Tensor:
    """The cosine schedule's defining formula abar(t) = f(t) / f(0) (before clipping),
    f(t) = cos^2((t / T + s) / (1 + s) pi / 2), for any real ``t`` (float64)."""
    t = torch.as_tensor(t, dtype=torch.float64)

    def f(u: Tensor) -> Tensor:
        return torch.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2

    return f(t) / f(torch.zeros_like(t))


def q_sample(x0: Tensor, t: int | Tensor, eps: Tensor, schedule: NoiseSchedule) -> Tensor:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps: a draw from q(x_t | x_0).

    Args:
        x0: data ``[B, D]`` or ``[B, C, *spatial]``.
        t: steps in ``0..T`` (``0``: x0 itself), an int or a long tensor ``[B]``.
        eps: standard normal noise, shape of ``x0``.
    """
    abar = schedule.alpha_bar_at(t, x0)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * eps


def predict_x0(x_t: Tensor, t: int | Tensor, eps: Tensor, schedule: NoiseSchedule) -> Tensor:
    """The x0 that :func:`q_sample` with noise ``eps`` maps to ``x_t``:
    x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
    abar = schedule.alpha_bar_at(t, x_t)
    return (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()


def posterior(
    x0: Tensor, x_t: Tensor, t: int | Tensor, schedule: NoiseSchedule
) -> tuple[Tensor, Tensor]:
    """Mean mu~_t(x_t, x0) and variance beta~_t of q(x_{t-1} | x_t, x_0), ``t`` in 1..T
    (the mean has ``x_t``'s shape; the variance broadcasts to it)."""
    beta = schedule.at("betas", t, x_t)
    alpha = 1 - beta
    abar = schedule.alpha_bar_at(t, x_t)
    prev = schedule.alpha_bar_at(torch.as_tensor(t) - 1, x_t)
    mean = (prev.sqrt() * beta * x0 + alpha.sqrt() * (1 - prev) * x_t) / (1 - abar)
    return mean, schedule.at("posterior_variance", t, x_t)


def _check_steps(index: Tensor, T: int, low: int) -> None:
    if index.numel() and (int(index.min()) < low or int(index.max()) > T):
        raise PbdlError(
            f"diffusion step out of range {low}..{T}: {int(index.min())}..{int(index.max())}"
        )
