"""Viscous diffusion of the staggered velocity: u_t = nu lap u, per face component.

The Laplacian is the 5-point stencil on each component's unique faces, with the ghost
values of :meth:`MacGrid.pad_faces` (walls, inflow, outflow, periodic wrap); fixed faces
(walls, inflow, obstacles) keep their value.

* explicit (forward Euler): u += nu dt lap u, stable for nu dt (1/dx^2 + 1/dy^2) <= 1/2;
* implicit (backward Euler): (I - nu dt lap) u^{n+1} = u^n on the free faces, with the
  fixed faces and inhomogeneous ghosts moved to the right-hand side. The operator is SPD,
  solved by :func:`pbdl_cli.numerics.pressure.pcg`; its gradient is the adjoint solve
  of the same system (:class:`SymmetricSolve`). ``nu`` gets no gradient through it.
"""

from __future__ import annotations

from torch import Tensor

from pbdl_cli.numerics.mac import MacGrid
from pbdl_cli.numerics.pressure import SolveInfo, SymmetricSolve, pcg


def face_laplacian(mac: MacGrid, f: Tensor, axis: int, *, homogeneous: bool = False) -> Tensor:
    """5-point Laplacian of component ``axis`` (unique-face form), same shape as ``f``."""
    g = mac.pad_faces(f, axis, homogeneous=homogeneous)
    c = g[:, 1:-1, 1:-1]
    return (g[:, 2:, 1:-1] - 2 * c + g[:, :-2, 1:-1]) / mac.dx**2 + (
        g[:, 1:-1, 2:] - 2 * c + g[:, 1:-1, :-2]
    ) / mac.dy**2


def explicit_stable_dt(mac: MacGrid, nu: Tensor, number: float = 0.5) -> Tensor:
    """Largest explicit step: number / (nu (1/dx^2 + 1/dy^2)) per sample [B]."""
    return number / (nu * (1 / mac.dx**2 + 1 / mac.dy**2))


def _coef(nu: Tensor | float, dt: Tensor | float, like: Tensor) -> Tensor | float:
    a = nu * dt
    return a.view(-1, 1, 1).to(like.dtype) if isinstance(a, Tensor) else a


def diffuse_explicit(
    mac: MacGrid, fx: Tensor, fy: Tensor, nu: Tensor | float, dt: Tensor | float
) -> tuple[Tensor, Tensor]:
    """One forward-Euler diffusion step of both components (free faces only)."""
    a = _coef(nu, dt, fx)
    fx = fx + a * mac.open_x * face_laplacian(mac, fx, 0)
    fy = fy + a * mac.open_y * face_laplacian(mac, fy, 1)
    return fx, fy


class ImplicitDiffusion:
    """The SPD system (I - a lap) x = b of one component on its free faces.

    Args:
        mac: the grid; axis: which component; a: nu dt, [B, 1, 1] tensor or float.
        tol, atol, max_iter: CG stopping rule.
    """

    def __init__(
        self,
        mac: MacGrid,
        axis: int,
        a: Tensor | float,
        *,
        tol: float = 1e-8,
        atol: float = 0.0,
        max_iter: int = 500,
    ) -> None:
        self.mac, self.axis, self.a = mac, axis, a
        self.free = mac.open_x if axis == 0 else mac.open_y
        self.tol, self.atol, self.max_iter = tol, atol, max_iter
        self.inv_diag = 1 / (1 + a * 2 * (1 / mac.dx**2 + 1 / mac.dy**2))
        self.info: SolveInfo | None = None
        self.backward_info: SolveInfo | None = None

    def apply(self, x: Tensor) -> Tensor:
        x = self.free * x
        return x - self.a * self.free * face_laplacian(self.mac, x, self.axis, homogeneous=True)

    def solve(self, rhs: Tensor, backward: bool = False) -> Tensor:
        x, info = pcg(
            self.apply,
            self.free * rhs,
            self.inv_diag,
            tol=self.tol,
            atol=self.atol,
            max_iter=self.max_iter,
        )
        if backward:
            self.backward_info = info
        else:
            self.info = info
        return x

    def __call__(self, f: Tensor) -> Tensor:
        """Backward-Euler step of ``f`` (fixed faces keep their values)."""
        fixed = (1 - self.free) * f
        rhs = self.free * (f + self.a * face_laplacian(self.mac, fixed, self.axis))
        return fixed + SymmetricSolve.apply(rhs, self)


def diffuse_implicit(
    mac: MacGrid,
    fx: Tensor,
    fy: Tensor,
    nu: Tensor | float,
    dt: Tensor | float,
    **cg: float | int,
) -> tuple[Tensor, Tensor]:
    """One backward-Euler diffusion step of both components (CG, adjoint backward)."""
    a = _coef(nu, dt, fx)
    fx = ImplicitDiffusion(mac, 0, a, **cg)(fx)  # type: ignore[arg-type]
    fy = ImplicitDiffusion(mac, 1, a, **cg)(fy)  # type: ignore[arg-type]
    return fx, fy


__all__ = [
    "ImplicitDiffusion",
    "diffuse_explicit",
    "diffuse_implicit",
    "explicit_stable_dt",
    "face_laplacian",
]
