"""Euler-Maruyama for SDEs with additive noise, dx = f(x) dt + g dW.

One substep of size h on a state x [B, C, *spatial]:

    x <- x + h f(x) + g sqrt(h) z,    z ~ N(0, I) from the trajectory's own stream

(Kloeden & Platen 1992, ch. 10: strong order 1/2, weak order 1; for additive noise the
strong order is 1). The problem supplies the SDE: ``drift(x, params)`` (f, [B, ...]) and
``diffusion(x, params)`` (g, broadcasting over x), e.g. :mod:`pbdl_cli.problems.sde_toy`.
The internal step is at most ``solver.dt`` (the book's dt0 = 0.01); ``pbdl generate``
stores one frame per output interval ``problem.dt`` (sde_toy: 10 / 499, three equal
substeps). The book instead steps 0.01 and evaluates the linear interpolant of its Euler
path at linspace(0, 10, 500), which lowers the variance of the stored increments (by
about a sixth); here every frame is an Euler-Maruyama point.

Noise: every trajectory draws its normals from a CPU generator seeded by its
``noise_seed`` parameter (:func:`~pbdl_cli.utils.seeding.generator`), in float64, so a
trajectory's path depends neither on its batch nor on the device; the solver keeps
these streams for as long as the batch's parameter tensor lives (one rollout of
``pbdl generate``), so a new rollout with new parameter tensors starts them afresh.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any

import torch
from torch import Tensor

from pbdl_cli.problems.base import Params, Problem
from pbdl_cli.solvers.base import SOLVERS, Solver, SolverConfig
from pbdl_cli.utils.seeding import generator

#: the per-trajectory parameter the streams are seeded with
SEED_PARAM = "noise_seed"


@dataclasses.dataclass
class SdeEulerConfig(SolverConfig):
    """Options of ``sde_euler`` (``solver.<key>``).

    Attributes:
        dt: the largest internal step; an output interval ``problem.dt`` takes
            ceil(problem.dt / dt) equal substeps (unless ``substeps`` fixes their number).
    """

    dt: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dt <= 0:
            raise ValueError("dt must be > 0")


@SOLVERS.register("sde_euler")
class SdeEuler(Solver):
    """Euler-Maruyama with per-trajectory seeded noise (module docstring)."""

    Config = SdeEulerConfig
    config: SdeEulerConfig

    def __init__(self, config: SdeEulerConfig, problem: Problem) -> None:
        super().__init__(config, problem)
        # id(noise_seed tensor) -> (weak reference to it, one generator per trajectory)
        self._streams: dict[int, tuple[weakref.ref[Tensor], list[torch.Generator]]] = {}

    @classmethod
    def supports(cls, problem: Problem) -> bool:
        return callable(getattr(problem, "drift", None)) and callable(
            getattr(problem, "diffusion", None)
        )

    @classmethod
    def supported(cls) -> str:
        return "problems with drift(x, params) and diffusion(x, params) (e.g. sde_toy)"

    def stable_dt(self, state: Tensor, params: Params) -> Tensor:
        return torch.full((state.shape[0],), self.config.dt, dtype=torch.float64)

    def prepare(self, dt: Tensor, params: Params, like: Tensor) -> list[torch.Generator]:
        """The noise streams of the batch's trajectories (created at their first step)."""
        if SEED_PARAM not in params:
            raise KeyError(f"sde_euler needs the per-trajectory parameter '{SEED_PARAM}'")
        seeds = params[SEED_PARAM]
        entry = self._streams.get(id(seeds))
        if entry is not None and entry[0]() is seeds:
            return entry[1]
        self._streams = {k: v for k, v in self._streams.items() if v[0]() is not None}
        streams = [generator("sde_euler", round(float(s))) for s in seeds.tolist()]
        self._streams[id(seeds)] = (weakref.ref(seeds), streams)
        return streams

    def substep(self, state: Tensor, dt: Tensor, params: Params, context: Any) -> Tensor:
        h = dt.to(state.device).view(-1, *([1] * (state.dim() - 1)))
        shape = tuple(state.shape[1:])
        z = torch.stack([torch.randn(shape, generator=g, dtype=torch.float64) for g in context])
        noise = z.to(state.device, state.dtype)
        f = self.problem.drift(state, params)  # type: ignore[attr-defined]
        g = self.problem.diffusion(state, params)  # type: ignore[attr-defined]
        return state + h * f + g * torch.sqrt(h) * noise
