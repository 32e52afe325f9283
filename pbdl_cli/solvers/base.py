"""The Solver interface: batched, differentiable time steppers in plain torch.

A solver advances a state ``[B, C, *spatial]`` by one *output interval* ``dt`` with
:meth:`Solver.step`. Internally it takes ``n`` equal substeps of size ``dt / n``, where
``n`` is the smallest count that keeps every substep below the scheme's stable step
(:meth:`Solver.stable_dt`), chosen per trajectory. A trajectory therefore gives the same
result whatever else is in its batch, and the output interval is independent of the
solver's stability limit.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor

from pbdl_cli.errors import PbdlError
from pbdl_cli.problems.base import Params, Problem
from pbdl_cli.registry import PluginConfig, Registry


@dataclasses.dataclass
class SolverConfig(PluginConfig):
    """Options every solver has.

    Attributes:
        substeps: fixed number of internal steps per output interval; ``None`` picks the
            smallest stable number automatically (per trajectory, every interval).
        max_substeps: give up (with an error) if one interval would need more substeps;
            this catches blow-ups and absurd settings instead of hanging.
    """

    substeps: int | None = None
    max_substeps: int = 100_000

    def __post_init__(self) -> None:
        if self.substeps is not None and self.substeps < 1:
            raise ValueError("substeps must be >= 1 (or null for automatic)")
        if self.max_substeps < 1:
            raise ValueError("max_substeps must be >= 1")


class Solver(ABC):
    """Numerics for one problem family; see the module docstring."""

    Config: ClassVar[type[SolverConfig]]
    #: names of the problems this solver can integrate (empty: any; see :meth:`supports`)
    problems: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: SolverConfig, problem: Problem) -> None:
        if not self.supports(problem):
            raise PbdlError(
                f"solver '{config.name}' cannot solve problem '{problem.name}'; "
                f"it supports: {self.supported()}"
            )
        self.config = config
        self.problem = problem
        self.grid = problem.grid

    @classmethod
    def supports(cls, problem: Problem) -> bool:
        """Whether this solver can integrate ``problem`` (checked when it is built).

        By default, whether the problem's name is in :attr:`problems` (any problem when
        that is empty); a solver for a family of problems checks their structure instead.
        """
        return not cls.problems or problem.name in cls.problems

    @classmethod
    def supported(cls) -> str:
        """What :meth:`supports` accepts, in words (for the error when it does not)."""
        return ", ".join(cls.problems) if cls.problems else "any problem"

    # -- the scheme: two small hooks -----------------------------------------------------
    @abstractmethod
    def stable_dt(self, state: Tensor, params: Params) -> Tensor:
        """Largest stable internal step per trajectory, float64 [B] (``inf``: no limit)."""

    @abstractmethod
    def substep(self, state: Tensor, dt: Tensor, params: Params, context: Any) -> Tensor:
        """One internal step of size ``dt`` [B] on the :meth:`encode`-d state."""

    def prepare(self, dt: Tensor, params: Params, like: Tensor) -> Any:
        """Precompute what all substeps of size ``dt`` [B] (float64) share, e.g. ETD
        coefficients; ``like`` is the state, for the device and dtype of the result."""
        return None

    def encode(self, state: Tensor) -> Tensor:
        """Map a state to the representation substeps work on (e.g. Fourier modes)."""
        return state

    def decode(self, internal: Tensor) -> Tensor:
        """Inverse of :meth:`encode`."""
        return internal

    # -- the public step ------------------------------------------------------------------
    def num_substeps(self, state: Tensor, dt: float, params: Params) -> Tensor:
        """Substeps per trajectory for an interval ``dt``: int64 [B] on the state's device."""
        batch = state.shape[0]
        if self.config.substeps is not None:
            return torch.full(
                (batch,), self.config.substeps, dtype=torch.int64, device=state.device
            )
        with torch.no_grad():
            limit = self.stable_dt(state.detach(), {k: v.detach() for k, v in params.items()})
            ratio = dt / limit.to(torch.float64)
            peak = state.detach().abs().amax()  # NaN or inf if any value is
            if not bool(torch.isfinite(peak)) or bool(torch.isnan(ratio).any()):
                raise PbdlError(
                    f"solver '{self.config.name}': the state is no longer finite "
                    "(the simulation blew up); lower dt or check the parameters"
                )
            # a tiny tolerance keeps exact multiples (dt = k * limit) at k substeps
            return torch.ceil(ratio * (1 - 1e-12)).clamp(min=1).to(torch.int64)

    def step(self, state: Tensor, dt: float, params: Params) -> Tensor:
        """Advance ``state`` [B, C, *spatial] by the output interval ``dt``."""
        n = self.num_substeps(state, dt, params)
        n_max = int(n.max())
        if n_max > self.config.max_substeps:
            raise PbdlError(
                f"solver '{self.config.name}' would need {n_max} substeps for one interval "
                f"dt={dt} (max_substeps={self.config.max_substeps}); the state may have blown "
                "up, or dt is far above the stable step: lower problem.dt or raise "
                "solver.max_substeps"
            )
        h64 = dt / n.to(torch.float64)
        context = self.prepare(h64, params, state)  # coefficients from the exact step
        h = h64.to(state.dtype)
        uniform = bool((n == n_max).all())
        internal = self.encode(state)
        mask_shape = (-1,) + (1,) * (internal.dim() - 1)
        for k in range(n_max):
            new = self.substep(internal, h, params, context)
            # trajectories that already finished their n_b substeps keep their state
            internal = new if uniform else torch.where((k < n).view(mask_shape), new, internal)
        return self.decode(internal)

    def __call__(self, state: Tensor, dt: float, params: Params) -> Tensor:
        expected = (self.problem.num_channels, *self.grid.shape)
        if tuple(state.shape[1:]) != expected:
            raise ValueError(
                f"{type(self).__name__} expects states [B, {', '.join(map(str, expected))}], "
                f"got {list(state.shape)}; add a batch dimension with state[None]"
            )
        return self.step(state, dt, params)


#: the solver option of a problem without a default solver (``solver: {name: none}``)
NO_SOLVER = "none"

#: every registered solver (``solver=<name>``)
SOLVERS: Registry[type[Solver]] = Registry("solver", group="solver")
