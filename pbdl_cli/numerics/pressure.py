"""Pressure projection on a MAC grid and the symmetric linear solves behind it.

The projection (Chorin) makes a velocity u* divergence-free:

    L p = div u*,    L p = div(A grad p),    u = u* - A grad p,

with the time step folded into p (p = dt p_phys / rho) and A the 0/1 mask of faces the
projection may change (closed walls, inflow and obstacle faces keep their value: the
pressure is Neumann there; an outflow face sees p = 0). Then div u = div u* - L p is
exactly the residual of the solve. Three solvers of L p = r, all on [B, nx, ny]:

* ``fft``: exact, periodic box without obstacles (eigenvalues of the 5-point stencil).
* ``dct``: exact, closed or half-periodic box without obstacles or outflow; the
  Neumann problem is the periodic one on the even (mirror) extension, solved by FFT.
* ``cg``: matrix-free Jacobi-preconditioned conjugate gradients on -L (SPD), batched
  with per-sample convergence; any boundary and obstacle (solid cells get p = 0).
* ``direct``: exact block-Cholesky factorization of -L
  (:class:`~pbdl_cli.numerics.cholesky.BlockCholesky`), made
  once per geometry and reused by every solve; any boundary and obstacle as long as one
  axis is not periodic. Fastest for fixed geometries (obstacles, inflow, outflow), e.g.
  32x faster than ``cg`` on 128 x 256 cells with a cylinder.

Without an outflow the constant pressure is a null space: the right-hand side is made
zero-mean over the fluid cells and so is p (the pseudo-inverse). With pockets of fluid
enclosed by an obstacle, every connected region without an outflow face has its own
constant (:class:`~pbdl_cli.numerics.regions.FluidRegions`): the means are removed per
region and ``direct`` pins one cell per region. All three are
symmetric, so :class:`SymmetricSolve` differentiates a solve by one more solve of the
same system with the incoming gradient as right-hand side (implicit function theorem),
never by backpropagating through iterations.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

from pbdl_cli.numerics.cholesky import BlockCholesky
from pbdl_cli.numerics.mac import MacGrid
from pbdl_cli.numerics.regions import FluidRegions


class PressureMethod(str, enum.Enum):
    auto = "auto"
    fft = "fft"
    dct = "dct"
    cg = "cg"
    direct = "direct"


@dataclasses.dataclass
class SolveInfo:
    """Diagnostics of one batched solve (tensors [B]).

    Attributes:
        iterations: CG iterations per sample (0 for direct solves).
        residual: max |b - A x| per sample after the solve (the true residual,
            recomputed from the final iterate, not CG's recursive one).
        converged: residual <= threshold, the tolerance that was asked for (a CG that
            stopped on its recursive residual while the true one is above the
            threshold, e.g. stalled in float32, did not converge).
        divergence: max |div u| over fluid cells after a projection (else None).
        threshold: the requested absolute tolerance max(tol max|b|, atol) per sample
            (None for exact solves).
    """

    iterations: Tensor
    residual: Tensor
    converged: Tensor
    divergence: Tensor | None = None
    threshold: Tensor | None = None


class LinearSystem(Protocol):
    """A symmetric system that :class:`SymmetricSolve` can solve and differentiate."""

    def solve(self, rhs: Tensor, backward: bool) -> Tensor: ...


class SymmetricSolve(torch.autograd.Function):
    """x = A^+ b for a symmetric A; the backward pass is the adjoint solve A^+ g."""

    @staticmethod
    def forward(ctx: Any, rhs: Tensor, system: LinearSystem) -> Tensor:
        ctx.system = system
        return system.solve(rhs.detach(), False)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return ctx.system.solve(grad.contiguous(), True), None


def pcg(
    apply: Callable[[Tensor], Tensor],
    b: Tensor,
    inv_diag: Tensor,
    *,
    x0: Tensor | None = None,
    tol: float = 1e-6,
    atol: float = 0.0,
    max_iter: int = 1000,
    project: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, SolveInfo]:
    """Batched Jacobi-preconditioned conjugate gradients for an SPD ``apply``.

    ``b`` [B, ...]; a sample stops once its recursive residual max|r| <= max(tol max|b|,
    atol) (its iterate is then frozen, so it does not depend on the rest of the batch).
    The returned :class:`SolveInfo` reports the true residual max|b - A x| of the final
    iterate and calls a sample converged only when that meets the same threshold. ``project`` (e.g.
    removing the mean) is applied to the residual to stay in the range of a singular A.
    """
    batch = b.shape[0]
    dims = tuple(range(1, b.dim()))
    shape = (batch,) + (1,) * (b.dim() - 1)

    def amax(t: Tensor) -> Tensor:
        return t.abs().amax(dim=dims)

    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - apply(x) if x0 is not None else b.clone()
    if project is not None:
        r = project(r)
    threshold = torch.clamp(tol * amax(b), min=atol)
    active = amax(r) > threshold
    iterations = torch.zeros(batch, dtype=torch.int64, device=b.device)
    z = inv_diag * r
    p = z
    rz = (r * z).sum(dim=dims)
    for _ in range(max_iter):
        if not bool(active.any()):
            break
        ap = apply(p)
        pap = (p * ap).sum(dim=dims)
        alpha = torch.where(active, rz / torch.where(pap == 0, 1, pap), 0).view(shape)
        x = x + alpha * p
        r = r - alpha * ap
        if project is not None:
            r = project(r)
        iterations += active.to(torch.int64)
        active = active & (amax(r) > threshold)
        z = inv_diag * r
        rz_new = (r * z).sum(dim=dims)
        beta = (rz_new / torch.where(rz == 0, 1, rz)).view(shape)
        p = z + beta * p
        rz = rz_new
    true = b - apply(x)
    if project is not None:
        true = project(true)
    residual = amax(true)
    return x, SolveInfo(iterations, residual, residual <= threshold, threshold=threshold)


_EIGEN_CACHE: dict[tuple, Tensor] = {}


def _eigenvalues(
    n: tuple[int, int], h: tuple[float, float], device: torch.device, dtype: torch.dtype
) -> Tensor:
    """Eigenvalues of the periodic 5-point Laplacian on the rfft2 modes [n0, n1 // 2 + 1]
    (the zero mode set to 1)."""
    key = (n, h, device, dtype)
    if key not in _EIGEN_CACHE:
        k0 = torch.arange(n[0], dtype=torch.float64)
        k1 = torch.arange(n[1] // 2 + 1, dtype=torch.float64)
        l0 = (2 * torch.cos(2 * math.pi * k0 / n[0]) - 2) / h[0] ** 2
        l1 = (2 * torch.cos(2 * math.pi * k1 / n[1]) - 2) / h[1] ** 2
        lam = l0[:, None] + l1[None, :]
        lam[0, 0] = 1.0
        _EIGEN_CACHE[key] = lam.to(device=device, dtype=dtype)
    return _EIGEN_CACHE[key]


class PressureSystem:
    """L p = r for one :class:`MacGrid` with a chosen method (see module docstring).

    Args:
        mac: the grid (boundaries, obstacles).
        method: ``auto`` picks fft (all periodic), dct (no outflow) or cg (obstacles or
            outflow).
        tol, atol, max_iter: CG stopping rule (see :func:`pcg`).
        warm_start: start CG from the previous forward solution when shapes match.
    """

    def __init__(
        self,
        mac: MacGrid,
        method: PressureMethod | str = PressureMethod.auto,
        *,
        tol: float = 1e-6,
        atol: float = 0.0,
        max_iter: int = 1000,
        warm_start: bool = False,
    ) -> None:
        method = PressureMethod(method)
        direct_ok = not mac.has_obstacles and not mac.boundary.has_outflow
        if method is PressureMethod.auto:
            if not direct_ok:
                method = PressureMethod.cg
            else:
                method = PressureMethod.fft if all(mac.periodic) else PressureMethod.dct
        if method is PressureMethod.fft and not (all(mac.periodic) and direct_ok):
            raise ValueError("pressure solver fft needs a periodic box without obstacles")
        if method is PressureMethod.dct and not direct_ok:
            raise ValueError("pressure solver dct needs a box without obstacles or outflow")
        if method is PressureMethod.direct and all(mac.periodic):
            raise ValueError("pressure solver direct needs a non-periodic axis (use fft)")
        self.mac, self.method = mac, method
        self.tol, self.atol, self.max_iter, self.warm_start = tol, atol, max_iter, warm_start
        #: constant pressures are a null space (no Dirichlet condition anywhere)
        self.singular = not mac.boundary.has_outflow
        self.info: SolveInfo | None = None
        self.backward_info: SolveInfo | None = None
        self._last: Tensor | None = None
        #: the connected fluid regions (cg, direct); None: spectral (one region)
        self.regions: FluidRegions | None = None
        self._project: Callable[[Tensor], Tensor] | None = (
            self._remove_mean if self.singular else None
        )
        singular_cells = None
        if method in (PressureMethod.cg, PressureMethod.direct):
            diag = mac.pressure_diagonal()
            isolated = diag == 0  # solid cells (and fluid cells with no open face)
            self._pin = isolated.to(mac.dtype)
            self._inv_diag = 1 / torch.where(isolated, 1.0, diag)
            self.regions = FluidRegions(mac)
            if self.regions.count > 1 or (self.regions.num_singular > 0) != self.singular:
                # pockets of fluid: one null-space constant per closed region
                self.singular = self.regions.num_singular > 0
                self._project = self.regions.remove_means if self.singular else None
            if self.singular:
                singular_cells = self.regions.singular
        self._factor: BlockCholesky | None = None
        if method is PressureMethod.direct:
            assert self.regions is not None
            self._factor = BlockCholesky(mac, self._pin, self.regions.labels, singular_cells)

    # -- helpers ------------------------------------------------------------------------
    def _remove_mean(self, r: Tensor) -> Tensor:
        """r minus its mean over the fluid cells (fluid only; solid cells stay 0)."""
        fluid = self.mac.fluid
        if fluid is None:
            return r - r.mean(dim=(1, 2), keepdim=True)
        mean = (r * fluid).sum(dim=(1, 2), keepdim=True) / fluid.sum(dim=(1, 2), keepdim=True)
        return (r - mean) * fluid

    def apply(self, p: Tensor) -> Tensor:
        """The SPD operator CG works on: -L p on fluid cells, p on isolated cells."""
        return -self.mac.pressure_laplacian(p) + self._pin * p

    # -- the solve ----------------------------------------------------------------------
    def solve(self, rhs: Tensor, backward: bool = False) -> Tensor:
        """p [B, nx, ny] with L p = rhs (zero-mean pseudo-inverse when singular)."""
        batch = rhs.shape[0]
        zeros = torch.zeros(batch, dtype=torch.int64, device=rhs.device)
        project = self._project
        if self.method is PressureMethod.cg:
            b = rhs if self.mac.fluid is None else rhs * self.mac.fluid
            if project is not None:
                b = project(b)
            x0 = None
            if self.warm_start and not backward and self._last is not None:
                x0 = self._last if self._last.shape == b.shape else None
            x, info = pcg(
                self.apply,
                -b,
                self._inv_diag,
                x0=x0,
                tol=self.tol,
                atol=self.atol,
                max_iter=self.max_iter,
                project=project,
            )
            p = x  # -L p = -rhs
            if project is not None:
                p = project(p)
        elif self.method is PressureMethod.direct:
            assert self._factor is not None
            b = rhs if self.mac.fluid is None else rhs * self.mac.fluid
            if project is not None:
                b = project(b)
            p = self._factor.solve(-b)  # -L p = -rhs
            if project is not None:
                p = project(p)
            true = -b - self.apply(p)
            if project is not None:
                true = project(true)
            res = true.abs().amax(dim=(1, 2))
            info = SolveInfo(zeros, res, torch.ones_like(res, dtype=torch.bool))
        else:
            p = self._spectral(rhs)
            target = self._remove_mean(rhs) if self.singular else rhs
            res = (self.mac.pressure_laplacian(p) - target).abs().amax(dim=(1, 2))
            info = SolveInfo(zeros, res, torch.ones_like(res, dtype=torch.bool))
        if backward:
            self.backward_info = info
        else:
            self.info = info
            if self.warm_start:
                self._last = p.detach()
        return p

    def _spectral(self, rhs: Tensor) -> Tensor:
        """FFT solve; non-periodic (closed) axes by the even extension."""
        nx, ny = rhs.shape[-2:]
        ext = rhs
        if not self.mac.periodic[0]:
            ext = torch.cat([ext, ext.flip(1)], dim=1)
        if not self.mac.periodic[1]:
            ext = torch.cat([ext, ext.flip(2)], dim=2)
        n = (ext.shape[1], ext.shape[2])
        lam = _eigenvalues(n, (self.mac.dx, self.mac.dy), rhs.device, rhs.dtype)
        modes = torch.fft.rfft2(ext) / lam
        modes[:, 0, 0] = 0
        p = torch.fft.irfft2(modes, s=n)
        return p[:, :nx, :ny]


def pressure_solve(rhs: Tensor, system: PressureSystem) -> Tensor:
    """Differentiable p = L^+ rhs [B, nx, ny] (the backward pass is the adjoint solve)."""
    return SymmetricSolve.apply(rhs, system)


def project(
    mac: MacGrid, fx: Tensor, fy: Tensor, system: PressureSystem
) -> tuple[Tensor, Tensor, Tensor, SolveInfo]:
    """Make unique-face velocities divergence-free: (fx, fy, p, info).

    Obstacle cells get no divergence right-hand side; ``info.divergence`` is max |div u|
    over fluid cells after the projection (per sample).
    """
    fx, fy = mac.apply_bc(fx, fy)
    div = mac.divergence(fx, fy)
    if mac.fluid is not None:
        div = div * mac.fluid
    p = pressure_solve(div, system)
    gx, gy = mac.gradient(p)
    fx = fx - mac.open_x * gx
    fy = fy - mac.open_y * gy
    info = system.info
    assert info is not None
    with torch.no_grad():
        after = mac.divergence(fx, fy)
        if mac.fluid is not None:
            after = after * mac.fluid
        info = dataclasses.replace(info, divergence=after.abs().amax(dim=(1, 2)))
    system.info = info
    return fx, fy, p, info
