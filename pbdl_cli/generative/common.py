"""What the samplers share: the result type, the step callback, per-sample broadcasting
and seeded Gaussian noise.

Every sampler works on point data ``[B, D]`` and on fields ``[B, C, *spatial]`` alike: a
per-sample quantity (a time, a noise level, a schedule coefficient) is a vector ``[B]``
that :func:`per_sample` reshapes to ``[B, 1, ..., 1]`` so it broadcasts over the
trailing axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

import torch
from torch import Tensor


class Sampled(NamedTuple):
    """A sampler's or integrator's output: the final state (shape of the start) and the
    number of calls of the network callable (network function evaluations, NFE)."""

    x: Tensor
    evaluations: int


class StepCallback(Protocol):
    """Called after every step: ``step`` counts from 1, ``t`` is the time (or step index,
    or noise level) the state has reached, ``x`` the state (do not modify it in place;
    clone it to keep a snapshot)."""

    def __call__(self, step: int, t: float, x: Tensor) -> None: ...


def per_sample(values: Tensor, like: Tensor) -> Tensor:
    """``values`` of shape ``[B]`` (or a scalar) as ``[B, 1, ..., 1]`` with ``like.ndim``
    axes, on ``like``'s device and in its dtype."""
    values = torch.as_tensor(values).to(device=like.device, dtype=like.dtype)
    if values.ndim == 0:
        return values
    return values.reshape(values.shape[0], *([1] * (like.ndim - 1)))


def batch_vector(value: float | int, like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """The vector ``[B]`` filled with ``value``, ``B = like.shape[0]``, on ``like``'s device
    (dtype: ``like``'s unless given, e.g. ``torch.long`` for step indices)."""
    return torch.full(
        (like.shape[0],), value, device=like.device, dtype=dtype if dtype else like.dtype
    )


def normal_like(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard normal noise of ``x``'s shape, dtype and device, drawn from ``generator``
    (which may live on another device than ``x``, e.g. a CPU generator for CUDA data)."""
    device = generator.device if generator is not None else x.device
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device)
    return z.to(x.device)


def start_state(
    start: Tensor | Sequence[int],
    generator: torch.Generator | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The initial state of a sampler: ``start`` itself when it is a tensor, otherwise
    standard normal noise of shape ``start`` drawn from ``generator``."""
    if isinstance(start, Tensor):
        return start
    like = torch.empty(tuple(start), dtype=dtype, device=device)
    return normal_like(like, generator)
