"""Flow problems: what a 2D incompressible-flow problem tells its solver.

A problem whose states are ``[B, 2 + S, nx, ny]`` (``u`` on the left faces, ``v`` on the
bottom faces, S cell-centred scalars; the MAC layout of :mod:`pbdl_cli.numerics.mac`)
implements the :class:`FlowProblem` protocol: ``flow_setup(params) -> FlowSetup``, its
boundaries (:class:`~pbdl_cli.numerics.geometry.Boundary`), obstacles, forcing, sources
and velocity regions. The ``ns_mac`` solver calls it once per output interval with the
trajectories' parameters, so all of these may depend on them. Also: the coarsening of a
staggered state (``data.refine``).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from pbdl_cli.numerics.geometry import Boundary, VelocityRegion
from pbdl_cli.problems.base import Grid, Params


@dataclasses.dataclass
class FlowSetup:
    """Boundaries, obstacles and forcing of a flow (tensors on any device; the solver
    moves them to the state's device and dtype).

    Attributes:
        boundary: the four sides (periodic, walls, inflow, outflow).
        obstacle: solid cells, bool or 0/1 [B or 1, nx, ny]; None: no obstacle.
        buoyancy: Boussinesq factor xi (float or [B]): the y-velocity gains
            ``dt * xi * s`` with s the scalar ``buoyancy_scalar`` interpolated to the
            y-faces (after the scalar was advected).
        buoyancy_scalar: name of the scalar channel that drives buoyancy.
        body_force: constant acceleration (g_x, g_y) added to every free face.
        sources: scalar channel name -> source rate [B or 1, nx, ny] per unit time: the
            scalar gains ``dt * rate`` every substep (smoke inflow regions).
        velocity_regions: interior faces with a prescribed velocity
            (:class:`VelocityRegion`, e.g. an inflow strip); later regions win where
            they overlap, obstacles win over all.
    """

    boundary: Boundary
    obstacle: Tensor | None = None
    buoyancy: float | Tensor = 0.0
    buoyancy_scalar: str = "marker"
    body_force: tuple[float, float] = (0.0, 0.0)
    sources: dict[str, Tensor] = dataclasses.field(default_factory=dict)
    velocity_regions: tuple[VelocityRegion, ...] = ()


@runtime_checkable
class FlowProblem(Protocol):
    """A problem that ``ns_mac`` can integrate: fields ``("u", "v", *scalars)``."""

    fields: tuple[str, ...]

    @property
    def grid(self) -> Grid: ...

    def flow_setup(self, params: Params) -> FlowSetup: ...


def coarsen_state(state: Tensor, factor: int) -> Tensor:
    """A ``factor`` times finer state [B, C, F nx, F ny] on the coarse MAC grid.

    Velocities are averaged over the coarse face (the fine faces on it: a flux average,
    so a divergence-free fine field stays divergence-free); scalars are cell averages.
    """
    if factor == 1:
        return state
    pool = torch.nn.functional.avg_pool1d
    u, v, rest = state[:, 0], state[:, 1], state[:, 2:]
    b, nx, ny = u.shape
    u = pool(u[:, ::factor].reshape(-1, 1, ny), factor).view(b, nx // factor, ny // factor)
    vt = v[:, :, ::factor].transpose(1, 2).reshape(-1, 1, nx)
    v = pool(vt, factor).view(b, ny // factor, nx // factor).transpose(1, 2)
    out = [u[:, None], v[:, None]]
    if rest.shape[1]:
        out.append(torch.nn.functional.avg_pool2d(rest, factor))
    return torch.cat(out, dim=1)
