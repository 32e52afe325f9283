"""Autoregressive rollouts, shared by solvers, surrogates and corrected solvers.

:func:`rollout` steps one state [B, C, *spatial] with a :data:`Stepper` (a solver, or a
network wrapped as one); :func:`unroll` steps a window of the last k states
[B, k, C, *spatial] with a :data:`FrameStepper`, the form of the grid methods'
steppers (a surrogate s_{t+1} = D(f(N(s_{t-k+1..t}), p)), a corrected solver
q = P_s(s_t), s_{t+1} = q + sigma c(N(q), p), or the solver alone): each new state
drops the oldest frame of the window and is appended as its newest.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from pbdl_cli.problems.base import Params

#: anything that maps (state [B, C, *spatial], dt, params) to the next state
Stepper = Callable[[Tensor, float, Params], Tensor]
#: anything that maps the last k states [B, k, C, *spatial] (oldest first) to the next
#: state [B, C, *spatial]
FrameStepper = Callable[[Tensor], Tensor]


def rollout(
    stepper: Stepper,
    state: Tensor,
    num_steps: int,
    dt: float,
    params: Params,
    *,
    every: int = 1,
    include_init: bool = True,
) -> Tensor:
    """Apply ``stepper`` ``num_steps`` times and stack every ``every``-th state.

    Args:
        stepper: one step of size ``dt`` (a :class:`Solver`, a network wrapper, ...).
        state: initial state [B, C, *spatial].
        num_steps: number of steps to take.
        every: keep one state out of ``every`` (``num_steps`` must be a multiple).
        include_init: put ``state`` itself first.

    Returns:
        Tensor [B, T, C, *spatial] with ``T = num_steps // every (+ 1 if include_init)``.
    """
    if every < 1 or num_steps % every:
        raise ValueError(f"num_steps={num_steps} must be a positive multiple of every={every}")
    count = num_steps // every + (1 if include_init else 0)
    if count == 0:
        raise ValueError("nothing to return: num_steps=0 and include_init=False")
    if torch.is_grad_enabled() and state.requires_grad:
        frames = [state] if include_init else []
        for k in range(1, num_steps + 1):
            state = stepper(state, dt, params)
            if k % every == 0:
                frames.append(state)
        return torch.stack(frames, dim=1)
    # without autograd, fill one preallocated tensor: half the peak memory of a stack
    out: Tensor | None = None
    index = 0
    if include_init:
        out = state.new_empty((state.shape[0], count, *state.shape[1:]))
        out[:, 0] = state
        index = 1
    for k in range(1, num_steps + 1):
        state = stepper(state, dt, params)
        if k % every == 0:
            if out is None:
                out = state.new_empty((state.shape[0], count, *state.shape[1:]))
            out[:, index] = state
            index += 1
    assert out is not None
    return out


def unroll(stepper: FrameStepper, history: Tensor, num_steps: int) -> Tensor:
    """Apply ``stepper`` ``num_steps`` times to a sliding window of states.

    Args:
        stepper: the next state [B, C, *spatial] from the window [B, k, C, *spatial].
        history: the first window, k given states [B, k, C, *spatial], oldest first.
        num_steps: number of predicted states.

    Returns:
        The predicted states [B, num_steps, C, *spatial] (``history`` left out), with
        gradients through every step where the stepper has them.
    """
    frames, out = history, []
    for _ in range(num_steps):
        state = stepper(frames)
        out.append(state)
        frames = torch.cat([frames[:, 1:], state[:, None]], dim=1)
    return torch.stack(out, dim=1)
