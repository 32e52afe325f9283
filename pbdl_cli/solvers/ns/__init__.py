"""Batched, differentiable 2D incompressible Navier-Stokes numerics on a MAC grid.

One concern per module: :mod:`.mac` (layout, boundaries, obstacles, operators,
sampling), :mod:`.pressure` (projection and its FFT/DCT/CG solves with adjoint
gradients), :mod:`.advection` (semi-Lagrangian, MacCormack) and :mod:`.diffusion`
(explicit, implicit). The problem -> solver protocol (boundaries, obstacles, forces)
lives on the physics side, :mod:`pbdl_cli.problems.flow`, and is re-exported here. The solver
plugin that chains them is :mod:`pbdl_cli.solvers.ns_mac`.
"""

from pbdl_cli.problems.flow import (
    Boundary,
    FlowProblem,
    FlowSetup,
    Kind,
    Side,
    VelocityRegion,
    box_mask,
    coarsen_state,
    sphere_mask,
)
from pbdl_cli.solvers.ns.advection import Scheme, advect_centred, advect_velocity
from pbdl_cli.solvers.ns.diffusion import diffuse_explicit, diffuse_implicit, face_laplacian
from pbdl_cli.solvers.ns.mac import MacGrid
from pbdl_cli.solvers.ns.pressure import (
    PressureMethod,
    PressureSystem,
    SolveInfo,
    SymmetricSolve,
    pcg,
    pressure_solve,
    project,
)

__all__ = [
    "Boundary",
    "FlowProblem",
    "FlowSetup",
    "Kind",
    "MacGrid",
    "PressureMethod",
    "PressureSystem",
    "Scheme",
    "Side",
    "SolveInfo",
    "SymmetricSolve",
    "VelocityRegion",
    "advect_centred",
    "advect_velocity",
    "box_mask",
    "coarsen_state",
    "diffuse_explicit",
    "diffuse_implicit",
    "face_laplacian",
    "pcg",
    "pressure_solve",
    "project",
    "sphere_mask",
]
