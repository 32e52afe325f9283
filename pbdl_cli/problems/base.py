"""The Problem interface: the physics of an experiment, no networks.

A problem owns its fields and channels, domain and grid, parameters and their sampling
distributions, initial and boundary conditions, and an exact solution where one exists.

Shapes:
    State  = Tensor [B, C, *spatial]      (B trajectories, C = len(fields) channels)
    Params = dict[str, Tensor [B]]        (per-trajectory physical parameters)

Optional physics hooks for improved (inverted) updates (PBDL book ch. 36-38): a problem
whose physics is a map y = P(x) of unknowns x [..., n] to outputs y [..., m] may expose
``forward(x)`` (P) and ``inverse(y, x0)``, a (local) inverse simulator P^-1(y; x0) that
returns the x with P(x) = y nearest ``x0``. Update rules that need them (the inverse
simulator step of ``method=optimize``, later SIP) ask ``has_inverse`` first and refuse a
problem without one in one line. Optimization problems (unknowns optimized directly,
min_x L(P(x)): :mod:`pbdl_cli.problems.optimization`) provide ``forward``, the start x
and the target y*.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor

from pbdl_cli.errors import PbdlError
from pbdl_cli.registry import PluginConfig, Registry

Params = dict[str, Tensor]


@dataclasses.dataclass
class Observations:
    """Measured values of the state at scattered points (inverse problems, point data).

    Attributes:
        x: positions [N, D] (D = number of spatial dimensions, may be 0).
        t: times [N, 1].
        u: observed values [N, C].
        frame, cell: for observations that lie on the problem's output grid, the frame
            index [N] (into ``times()``) and flat cell index [N] of every point; grid-based
            methods (e.g. ``dp`` through a solver) need them. ``None`` otherwise.
    """

    x: Tensor
    t: Tensor
    u: Tensor
    frame: Tensor | None = None
    cell: Tensor | None = None

    def __len__(self) -> int:
        return self.u.shape[0]


@dataclasses.dataclass(frozen=True)
class BurnIn:
    """A simulation between a problem's initial state and its first stored frame (e.g. a
    wake that needs time to develop); ``pbdl generate`` runs it before the rollout.

    Attributes:
        steps: output intervals ``dt`` to simulate per trajectory, int64 [B].
        solver: config of the solver that simulates them (``{"name": ..., <options>}``).
        dtype: precision of the burn-in (None: the dataset's); frame 0 is its result in
            the dataset's precision.
    """

    steps: Tensor
    solver: dict[str, Any]
    dtype: torch.dtype | None = None


def check_time_grid(t_end: float, dt: float) -> None:
    """Raise ``ValueError`` unless dt, t_end > 0 and t_end is a whole multiple of dt (the
    output frames of a time-dependent problem's config)."""
    if dt <= 0 or t_end <= 0:
        raise ValueError("dt and t_end must be > 0")
    n = round(t_end / dt)
    if n < 1 or not math.isclose(n * dt, t_end, rel_tol=1e-9):
        raise ValueError(f"t_end={t_end} must be a whole multiple of dt={dt}")


@dataclasses.dataclass(frozen=True)
class Grid:
    """A uniform cell-centred grid on a box.

    Attributes:
        lower, upper: domain bounds per spatial dimension.
        shape: number of cells per spatial dimension.
        bc: boundary condition name (``"periodic"`` or ``"dirichlet"``).
    """

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    shape: tuple[int, ...]
    bc: str

    @property
    def num_spatial_dims(self) -> int:
        return len(self.shape)

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple(
            (hi - lo) / n for lo, hi, n in zip(self.lower, self.upper, self.shape, strict=True)
        )

    @property
    def is_periodic(self) -> bool:
        return self.bc == "periodic"

    def cell_centres(self, dim: int = 0, dtype: torch.dtype = torch.float64) -> Tensor:
        """Cell-centre coordinates along ``dim``: ``lower + (i + 1/2) dx``, shape [n]."""
        n, dx = self.shape[dim], self.spacing[dim]
        return self.lower[dim] + (torch.arange(n, dtype=torch.float64) + 0.5).to(dtype) * dx


class Problem(ABC):
    """Physics definition of one experiment family (see module docstring for shapes)."""

    Config: ClassVar[type]
    #: channel names, in channel order
    fields: ClassVar[tuple[str, ...]]
    #: registered name of the solver used when the user picks none (``None``: no solver)
    default_solver: ClassVar[str | None] = None
    #: how to make trajectories differ, for the settings where they are all the same
    variation_hint: ClassVar[str] = ""

    def __init__(self, config: PluginConfig) -> None:
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def num_channels(self) -> int:
        return len(self.fields)

    @property
    @abstractmethod
    def grid(self) -> Grid:
        """The spatial grid states live on."""

    @property
    def state_shape(self) -> tuple[int, ...]:
        """Shape of one state, ``(C, *spatial)``: what a solver steps and a dataset stores
        per frame (what pbdl sizes memory and disk with before a run starts)."""
        return (self.num_channels, *self.grid.shape)

    @property
    @abstractmethod
    def t_end(self) -> float:
        """Final time of a trajectory."""

    @property
    @abstractmethod
    def dt(self) -> float:
        """Output interval: spacing of the stored frames."""

    @property
    def num_steps(self) -> int:
        """Number of output intervals in ``[0, t_end]``."""
        n = round(self.t_end / self.dt)
        if not math.isclose(n * self.dt, self.t_end, rel_tol=1e-9, abs_tol=1e-12):
            raise ValueError(f"t_end={self.t_end} is not a multiple of dt={self.dt}")
        return n

    def times(self) -> Tensor:
        """Output times ``k dt`` for k = 0..num_steps, float64, shape [T]."""
        return torch.arange(self.num_steps + 1, dtype=torch.float64) * self.dt

    def coords(self) -> dict[str, Tensor]:
        """Cell-centre coordinates per spatial axis, float64 (``x``, ``y``, ``z``)."""
        axes = "xyz"
        return {axes[d]: self.grid.cell_centres(d) for d in range(self.grid.num_spatial_dims)}

    @abstractmethod
    def sample_params(self, n: int, generator: torch.Generator) -> Params:
        """Draw physical parameters for ``n`` trajectories (CPU tensors [n])."""

    @abstractmethod
    def initial_state(self, params: Params, generator: torch.Generator) -> Tensor:
        """Initial states for the trajectories of ``params``: [B, C, *spatial], float64, CPU."""

    def burn_in(self, params: Params, generator: torch.Generator) -> BurnIn | None:
        """The simulation from :meth:`initial_state` to frame 0 of the trajectories of
        ``params``, or None (frame 0 is the initial state). ``generator`` is the one
        :meth:`initial_state` just drew from (``pbdl generate`` passes the same object),
        so random burn-in lengths continue its stream."""
        return None

    def initial_function(self, x: Tensor, params: Params) -> Tensor:
        """The initial state at arbitrary points ``x`` [N, D] -> [N, C] (for PINNs).

        Only problems whose initial state is a closed-form function provide it.
        """
        raise NotImplementedError(f"problem '{self.name}' has no closed-form initial state")

    def initial_rate(self, x: Tensor, params: Params) -> Tensor | None:
        """u_t(x, 0) at points ``x`` [N, D] -> [N, C] for problems of second order in time
        (e.g. the oscillator's u'(0)); None for first-order problems."""
        return None

    def pde_residual(self, u: Tensor, x: Tensor, t: Tensor, params: Params) -> Tensor:
        """PDE residual at points: ``u`` [N, C] computed from ``x`` [N, D] and ``t`` [N, 1]
        with autograd (both require grad); returns [N, C], zero for exact solutions."""
        raise NotImplementedError(f"problem '{self.name}' has no PDE residual")

    def reference(self, t: Tensor, params: Params, x: Tensor | None = None) -> Tensor | None:
        """Exact solution at times ``t`` [T] for ``params``: [B, T, C, *spatial], or None.

        ``x`` (1D problems) evaluates at those positions instead of the cell centres.
        """
        return None

    def refined(self, factor: int) -> Problem:
        """The same problem on a grid ``factor`` times finer per axis (same domain, times,
        parameters and initial-state functions): the high-resolution reference of
        ``pbdl generate data.refine=<factor>``."""
        raise PbdlError(f"problem '{self.name}' cannot be refined (no refined() method)")

    def coarsen(self, state: Tensor, factor: int) -> Tensor:
        """Cell averages of a ``factor`` times finer state [B, C, *fine] on this grid:
        [B, C, *spatial] (blocks of ``factor`` cells per axis, conservative)."""
        dims = self.grid.num_spatial_dims
        if factor == 1:
            return state
        pool = (
            torch.nn.functional.avg_pool1d,
            torch.nn.functional.avg_pool2d,
            torch.nn.functional.avg_pool3d,
        )[dims - 1]
        return pool(state, factor)

    @property
    def is_static(self) -> bool:
        """True for problems without time (``t_end == 0``): one output frame at t = 0."""
        return self.t_end == 0

    def observations(self, params: Params) -> Observations | None:
        """The problem's measurements of the solution for ``params`` (one trajectory, B = 1),
        or None when the problem defines none. Deterministic for a given configuration."""
        return None

    def metrics(self, prediction: Tensor, params: Params) -> dict[str, float]:
        """Problem-specific scores of a prediction [B, T, C, *spatial] on the output grid
        (e.g. distance to the nearest valid branch); added to the generic metrics."""
        return {}

    def slug(self) -> str:
        """A short readable tag of the main settings, used in dataset names."""
        return self.name

    def forward(self, x: Tensor) -> Tensor:
        """The physics as a map y = P(x): unknowns [..., n] -> outputs [..., m],
        differentiable, acting on the last axis (so that it can be vmapped)."""
        raise PbdlError(f"problem '{self.name}' has no forward map y = P(x) (Problem.forward)")

    def inverse(self, y: Tensor, x0: Tensor) -> Tensor:
        """The (local) inverse simulator P^-1(y; x0): outputs y [..., m] -> the unknowns
        x [..., n] with P(x) = y, the solution branch nearest ``x0`` [..., n]. Optional:
        only problems that have one override it (see ``has_inverse``)."""
        raise PbdlError(
            f"problem '{self.name}' has no inverse simulator P^-1(y; x0) (Problem.inverse)"
        )

    @property
    def has_inverse(self) -> bool:
        """True where the problem overrides :meth:`inverse`."""
        return type(self).inverse is not Problem.inverse


class StaticProblem(Problem):
    """A problem without time: one output frame at t = 0 (``t_end = 0``, ``dt = 1``), e.g.
    an inversion or a projection; predictions are ``[B, 1, C, *spatial]``."""

    @property
    def t_end(self) -> float:
        return 0.0

    @property
    def dt(self) -> float:
        return 1.0


#: every registered problem (``problem=<name>``)
PROBLEMS: Registry[type[Problem]] = Registry("problem", group="problem")
