"""Boundary handling for 1D cell-centred grids by periodic extension.

A homogeneous Dirichlet wall on a cell-centred grid is the odd reflection of the field
about the wall face: extending ``u`` [.., N] to ``[u, -flip(u)]`` [.., 2N] gives a
periodic sequence whose ghost values are ``u_{-1} = -u_0`` and ``u_N = -u_{N-1}``, so
u = 0 exactly on both faces (second order). Any periodic stencil, interpolation or FFT
applied to the extension and cropped back to N cells then honours the walls. This is the
discrete odd extension behind sine transforms.
"""

from __future__ import annotations

import torch
from torch import Tensor


def extend(u: Tensor, periodic: bool) -> Tensor:
    """Periodic extension along the last axis: [.., N] -> [.., N] (periodic) or [.., 2N] (odd)."""
    if periodic:
        return u
    return torch.cat([u, -u.flip(-1)], dim=-1)


def pad_ghosts(u: Tensor, periodic: bool) -> Tensor:
    """One ghost cell per side along the last axis: [.., N] -> [.., N + 2].

    Periodic: the opposite end; Dirichlet: the odd reflection ``-u_0`` and ``-u_{N-1}``.
    Equal to ``extend(u)`` read at indices -1..N, without building the full extension.
    """
    if periodic:
        return torch.cat([u[..., -1:], u, u[..., :1]], dim=-1)
    return torch.cat([-u[..., :1], u, -u[..., -1:]], dim=-1)
