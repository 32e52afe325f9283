"""DDPM samplers for an epsilon-predicting network: ancestral sampling and DDIM.

The network is any callable ``eps(x, t) -> eps_hat`` with ``x`` of shape ``[B, D]`` or
``[B, C, *spatial]``, ``t`` a long tensor ``[B]`` of step indices in ``1..T`` (wrap the
network to feed it t / T or an embedding), and ``eps_hat`` of ``x``'s shape. Sampling
does not switch autograd off: wrap the call in ``torch.no_grad()`` unless gradients are
wanted (e.g. for guidance). Every sampler returns :class:`~.common.Sampled` with the
number of network evaluations.

* :func:`ancestral_sample`, book ch. 24, Alg. 2 (Ho et al. 2020): from x_T ~ N(0, I), for
  t = T..1,
  x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps_hat(x_t, t)) / sqrt(alpha_t) + sigma_t z,
  z ~ N(0, I) for t > 1 and z = 0 at t = 1; sigma_t^2 = beta_t (``sigma="beta"``, the
  book's GM notebook) or beta~_t (``sigma="posterior"``, the book's airfoil DDPM,
  ch. 26). T evaluations.
* :func:`ddim_sample`, Song, Meng & Ermon, "Denoising diffusion implicit models", ICLR
  2021: on a subsequence tau_K > ... > tau_1 of 1..T (evenly spaced, :func:`ddim_steps`)
  with tau_0 = 0 (abar_0 = 1), from t = tau_i to p = tau_{i-1}:
  x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t),
  sigma = eta sqrt((1 - abar_p) / (1 - abar_t)) sqrt(1 - abar_t / abar_p),
  x_p = sqrt(abar_p) x0_hat + sqrt(1 - abar_p - sigma^2) eps_hat + sigma z.
  eta = 0 is deterministic (the probability-flow ODE's discretization); eta = 1 with
  K = T is ancestral sampling with sigma_t^2 = beta~_t. K evaluations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from pbdl_cli.errors import PbdlError
from pbdl_cli.generative.common import (
    Sampled,
    StepCallback,
    batch_vector,
    normal_like,
    start_state,
)
from pbdl_cli.generative.schedules import NoiseSchedule

#: an epsilon-prediction network: eps(x [B, ...], t [B] long in 1..T) -> eps_hat [B, ...]
EpsFn = Callable[[Tensor, Tensor], Tensor]
#: the choices of the ancestral sampler's noise: sigma_t^2 = beta_t or beta~_t
SIGMAS = ("beta", "posterior")


def ancestral_sample(
    eps: EpsFn,
    schedule: NoiseSchedule,
    start: Tensor | Sequence[int],
    *,
    sigma: str = "beta",
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Sampled:
    """DDPM ancestral sampling over all T steps (module docstring; book ch. 24, Alg. 2).

    Args:
        eps: the epsilon-prediction callable.
        schedule: the noise schedule the network was trained with.
        start: x_T itself, or its shape (then drawn from N(0, I) with ``generator``,
            on ``device`` in ``dtype``).
        sigma: ``beta`` (sigma_t^2 = beta_t) or ``posterior`` (sigma_t^2 = beta~_t).
        generator: the source of all noise (start and per-step z).
        callback: called as ``callback(step, t - 1, x_{t-1})`` after each of the T steps.

    Returns:
        the samples x_0 (shape of ``start``) and T evaluations.
    """
    if sigma not in SIGMAS:
        raise PbdlError(f"ancestral sampling: sigma must be one of {', '.join(SIGMAS)}")
    variances = schedule.betas if sigma == "beta" else schedule.posterior_variance
    x = start_state(start, generator, device=device, dtype=dtype)
    evaluations = 0
    for step, t in enumerate(range(schedule.T, 0, -1), start=1):
        eps_hat = eps(x, batch_vector(t, x, torch.long))
        evaluations += 1
        beta = float(schedule.betas[t - 1])
        abar = float(schedule.alpha_bar[t - 1])
        x = (x - beta / math.sqrt(1 - abar) * eps_hat) / math.sqrt(1 - beta)
        if t > 1:
            x = x + math.sqrt(float(variances[t - 1])) * normal_like(x, generator)
        if callback is not None:
            callback(step, t - 1, x)
    return Sampled(x, evaluations)


def ddim_steps(T: int, K: int) -> list[int]:
    """K steps of ``1..T`` evenly spaced and including both ends (K = 1: ``[T]``),
    ascending: round(1 + (T - 1) i / (K - 1)), i = 0..K-1 (distinct for K <= T)."""
    if not 1 <= K <= T:
        raise PbdlError(f"DDIM: the number of steps must lie in 1..T = 1..{T}, got {K}")
    if K == 1:
        return [T]
    return [round(1 + (T - 1) * i / (K - 1)) for i in range(K)]


def ddim_sample(
    eps: EpsFn,
    schedule: NoiseSchedule,
    start: Tensor | Sequence[int],
    steps: int,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Sampled:
    """DDIM sampling on ``steps`` = K of the T steps (module docstring; Song et al. 2021).

    Args:
        eps, schedule, start, generator, device, dtype: as :func:`ancestral_sample`.
        steps: K, the subsequence length (:func:`ddim_steps`), 1..T.
        eta: 0 deterministic; > 0 adds noise (1: DDPM-like with beta~).
        callback: ``callback(step, p, x_p)`` after each of the K steps (p = next step
            index, 0 at the end).

    Returns:
        the samples x_0 and K evaluations.
    """
    if eta < 0:
        raise PbdlError(f"DDIM: eta must be non-negative, got {eta}")
    taus = ddim_steps(schedule.T, steps)
    x = start_state(start, generator, device=device, dtype=dtype)
    evaluations = 0
    pairs = zip(reversed(taus), [*reversed(taus[:-1]), 0], strict=True)
    for step, (t, p) in enumerate(pairs, start=1):
        eps_hat = eps(x, batch_vector(t, x, torch.long))
        evaluations += 1
        abar_t = float(schedule.alpha_bar0[t])
        abar_p = float(schedule.alpha_bar0[p])
        x0_hat = (x - math.sqrt(1 - abar_t) * eps_hat) / math.sqrt(abar_t)
        sigma = eta * math.sqrt((1 - abar_p) / (1 - abar_t) * (1 - abar_t / abar_p))
        x = math.sqrt(abar_p) * x0_hat + math.sqrt(max(1 - abar_p - sigma**2, 0.0)) * eps_hat
        if sigma > 0:
            x = x + sigma * normal_like(x, generator)
        if callback is not None:
            callback(step, p, x)
    return Sampled(x, evaluations)
