"""Numerics: plain-torch discretizations shared by problems, solvers and methods.

No plugins and no registries; nothing here imports problems or solvers. One concern per
module: :mod:`.ghosts` (ghost cells of 1D cell-centred grids by periodic or odd
extension) and, for batched, differentiable 2D incompressible flow on a staggered (MAC)
grid, :mod:`.geometry` (sides, boundaries, velocity regions, disc and box masks),
:mod:`.mac` (layout, boundary faces, obstacles, operators, sampling), :mod:`.pressure`
(projection and its FFT/DCT/CG/block-Cholesky solves with adjoint gradients),
:mod:`.advection` (semi-Lagrangian, MacCormack) and :mod:`.diffusion` (explicit,
implicit). The solver plugin that chains them is :mod:`pbdl_cli.solvers.ns_mac`.
"""
