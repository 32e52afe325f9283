"""Reverse-time SDE and probability-flow ODE with a learned score and known physics (SMDP).

Score matching via differentiable physics (Holzschuh, Vegetti & Thuerey, ICML 2023; PBDL
book ch. 27.3 and 28). The forward process is the physics dx = f(x) dt + g dW; with a
network s(x, t) ~ g^2 grad_x log p_t(x) (g^2 absorbed into s) time runs back from t_start
to t_end < t_start in Euler(-Maruyama) steps of size h > 0:

    reverse SDE:       x <- x - h [f(x) - s(x, t)] + g sqrt(h) z,   z ~ N(0, I)
    probability flow:  x <- x - h [f(x) - s(x, t) / 2]

(t: the time the step starts from). Training (:func:`probability_flow_rollout_loss`)
rolls the probability-flow step out along a window of a trajectory: for consecutive
times t1, t0 of the window,

    x <- x - (t1 - t0) [f(x) - s(x, t1) / 2],    loss += mean((x - x_true(t0))^2)

starting from the window's first state. With t descending (a time-reversed trajectory)
this is the reverse step; with t ascending (t0 > t1, the book's ``bidirectional``
option) the same expression is the forward probability-flow step. A window of two
states is the single-step loss, equivalent to score matching; longer windows approach
maximum likelihood training of the probability flow (book ch. 27.3).

Callables: ``score(x [B, ...], t [B]) -> [B, ...]``, ``drift(x [B, ...]) -> [B, ...]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Generator, Tensor

from pbdl_cli.errors import PbdlError
from pbdl_cli.generative.common import Sampled, StepCallback, batch_vector, normal_like

#: a time-dependent score with g^2 absorbed: s(x [B, ...], t [B]) -> [B, ...]
TimeScoreFn = Callable[[Tensor, Tensor], Tensor]
#: the physics' drift f(x [B, ...]) -> [B, ...]
DriftFn = Callable[[Tensor], Tensor]


def probability_flow_rollout_loss(
    score: TimeScoreFn, drift: DriftFn, x: Tensor, t: Tensor
) -> tuple[Tensor, Tensor]:
    """The rollout loss of one window (module docstring), with gradients through all steps.

    Args:
        x: the window's true states [B, S, ...] (S >= 1), in the order they are predicted.
        t: their times, [S] (shared) or [B, S] (per sample).

    Returns:
        The loss (sum over the S - 1 steps of the mean squared error over the batch and
        the state's axes; 0 for S = 1) and the predicted states [B, S - 1, ...].
    """
    if x.dim() < 2:
        raise ValueError(f"x must be [B, S, ...], got {list(x.shape)}")
    steps = x.shape[1]
    if t.shape not in ((steps,), x.shape[:2]):
        raise ValueError(f"times {list(t.shape)} do not fit the window {list(x.shape)}")
    times = t.to(x) if t.dim() == 2 else t.to(x)[None].expand(x.shape[0], steps)
    state, loss, predicted = x[:, 0], x.new_zeros(()), []
    trailing = [1] * (x.dim() - 2)
    for i in range(1, steps):
        t1, t0 = times[:, i - 1], times[:, i]
        delta = (t1 - t0).view(-1, *trailing)
        state = state - delta * (drift(state) - 0.5 * score(state, t1))
        loss = loss + torch.mean((state - x[:, i]) ** 2)
        predicted.append(state)
    empty = x.new_zeros((x.shape[0], 0, *x.shape[2:]))
    return loss, torch.stack(predicted, 1) if predicted else empty


def reverse_sde(
    score: TimeScoreFn,
    drift: DriftFn,
    diffusion: float,
    x: Tensor,
    *,
    t_start: float,
    t_end: float,
    steps: int,
    generator: Generator | None = None,
    callback: StepCallback | None = None,
) -> Sampled:
    """Euler-Maruyama of the reverse-time SDE from ``x`` [B, ...] at ``t_start`` back to
    ``t_end`` in ``steps`` equal steps; ``diffusion`` is g. One evaluation per step."""
    return _integrate(score, drift, diffusion, x, t_start, t_end, steps, 1.0, generator, callback)


def probability_flow(
    score: TimeScoreFn,
    drift: DriftFn,
    x: Tensor,
    *,
    t_start: float,
    t_end: float,
    steps: int,
    callback: StepCallback | None = None,
) -> Sampled:
    """Euler steps of the probability-flow ODE (drift f - s / 2, no noise) from ``x`` at
    ``t_start`` back to ``t_end``. One evaluation per step."""
    return _integrate(score, drift, 0.0, x, t_start, t_end, steps, 0.5, None, callback)


def _integrate(
    score: TimeScoreFn,
    drift: DriftFn,
    diffusion: float,
    x: Tensor,
    t_start: float,
    t_end: float,
    steps: int,
    weight: float,
    generator: Generator | None,
    callback: StepCallback | None,
) -> Sampled:
    if steps < 1:
        raise PbdlError(f"the sampler needs steps >= 1, got {steps}")
    if not t_end < t_start:
        raise PbdlError(f"time runs back: need t_end < t_start, got {t_end} and {t_start}")
    h = (t_start - t_end) / steps
    noise = diffusion * math.sqrt(h)
    for i in range(steps):
        t = t_start - i * h
        x = x - h * (drift(x) - weight * score(x, batch_vector(t, x)))
        if noise:
            x = x + noise * normal_like(x, generator)
        if callback is not None:
            callback(i + 1, t_start - (i + 1) * h, x)
    return Sampled(x, steps)
