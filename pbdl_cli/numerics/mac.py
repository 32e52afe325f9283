"""Staggered (MAC) grid geometry: boundaries, obstacles, divergence, gradient, sampling.

A 2D flow state is a tensor ``[B, C, nx, ny]`` (x axis first). Cell (i, j) has its centre
at ``lower + ((i + 1/2) dx, (j + 1/2) dy)``. Channel 0 is ``u``, stored on the LEFT face
of each cell (x = lower_x + i dx, y = centre), channel 1 is ``v``, on the BOTTOM face
(x = centre, y = lower_y + j dy); further channels are cell-centred passive scalars.

Internally a velocity component is held in *unique-face* form, which adds the faces the
state does not store:

    fx: [B, nx, ny]      if x is periodic (face nx is face 0), else [B, nx + 1, ny]
    fy: [B, nx, ny]      if y is periodic,                     else [B, nx, ny + 1]

Boundary faces follow their side's kind (:class:`Kind`): ``no_slip`` and ``free_slip``
walls have zero normal velocity (and, for the tangential component, a ghost value
-inside or +inside: zero velocity or zero shear at the wall; a moving no-slip wall
with tangential velocity U, 2 U - inside), ``inflow`` prescribes both
components, ``outflow`` leaves the normal face free (its pressure is p = 0 on the face)
with zero-gradient ghosts. A far face (x = upper, y = upper) that the state does not
store is rebuilt by :meth:`MacGrid.extend`: the prescribed value for walls and inflow, a
copy of the last stored face for outflow (zero normal gradient); the projection then
corrects it, but cropping drops it again.

Obstacles are a cell mask ``solid`` [B or 1, nx, ny] (True = solid). Every face touching
a solid cell is *fixed* at zero normal velocity; free faces next to it see the zero as
a neighbour (a first-order no-slip treatment).

Velocity regions (:class:`~pbdl_cli.numerics.geometry.VelocityRegion`, e.g. an inflow strip)
fix every face whose position lies in their box at the region's velocity component, in
the same way: boundary sides first, then the regions in order, then obstacles (zero).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from pbdl_cli.numerics.geometry import (
    Boundary,
    Kind,
    Profile,
    VelocityRegion,
    parabola,
    parabola_mean,
)

_FIXED_KINDS = (Kind.no_slip, Kind.free_slip, Kind.inflow)


class MacGrid:
    """Geometry and operators of one staggered grid (see the module docstring).

    Args:
        shape: ``(nx, ny)`` cells; lower, upper: domain corners.
        boundary: the four sides.
        solid: optional obstacle mask [B or 1, nx, ny] (bool or 0/1).
        regions: interior faces of prescribed velocity (:class:`VelocityRegion`).
        device, dtype: where the masks live (match the state).
    """

    def __init__(
        self,
        shape: Sequence[int],
        lower: Sequence[float],
        upper: Sequence[float],
        boundary: Boundary,
        solid: Tensor | None = None,
        *,
        regions: Sequence[VelocityRegion] = (),
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.nx, self.ny = (int(n) for n in shape)
        if min(self.nx, self.ny) < 2:
            raise ValueError("a MAC grid needs at least 2 cells per axis")
        self.lower = tuple(float(v) for v in lower)
        self.upper = tuple(float(v) for v in upper)
        self.dx = (self.upper[0] - self.lower[0]) / self.nx
        self.dy = (self.upper[1] - self.lower[1]) / self.ny
        self.boundary = boundary
        self.periodic = boundary.periodic_axes
        self.device, self.dtype = torch.device(device or "cpu"), dtype
        if solid is not None:
            solid = solid.to(self.device).bool()
            if solid.dim() == 2:
                solid = solid[None]
            if tuple(solid.shape[1:]) != (self.nx, self.ny):
                raise ValueError(f"obstacle mask {list(solid.shape)} does not match the grid")
            solid = solid if bool(solid.any()) else None
        self.solid = solid
        self.regions = tuple(regions)
        self.fluid = None if solid is None else (~solid).to(dtype)
        self.fixed_x, self.value_x = self._fixed(0)
        self.fixed_y, self.value_y = self._fixed(1)
        #: 1 on faces the projection may change (the A of L p = div(A grad p)), else 0
        self.open_x = (~self.fixed_x).to(dtype)
        self.open_y = (~self.fixed_y).to(dtype)

    # -- construction -----------------------------------------------------------------
    @property
    def has_obstacles(self) -> bool:
        return self.solid is not None

    def _fixed(self, axis: int) -> tuple[Tensor, Tensor]:
        """Which unique faces of component ``axis`` are prescribed, and their values."""
        n_normal = (self.nx, self.ny)[axis] + (0 if self.periodic[axis] else 1)
        shape = [1, self.nx, self.ny]
        shape[1 + axis] = n_normal
        fixed = torch.zeros(shape, dtype=torch.bool, device=self.device)
        value = torch.zeros(shape, dtype=self.dtype, device=self.device)
        if not self.periodic[axis]:
            for upper in (False, True):
                side = self.boundary.side(axis, upper)
                index = n_normal - 1 if upper else 0
                if side.kind in _FIXED_KINDS:
                    fixed.select(1 + axis, index).fill_(True)
                    if side.kind is Kind.inflow and side.profile is Profile.uniform:
                        value.select(1 + axis, index).fill_(side.velocity[axis])
                    elif side.kind is Kind.inflow:  # face means of the profile
                        along = 1 - axis
                        h = (self.dx, self.dy)[along]
                        n = (self.nx, self.ny)[along]
                        lo = torch.arange(n, dtype=torch.float64, device=self.device) * h
                        length = self.upper[along] - self.lower[along]
                        shape = parabola_mean(lo, lo + h, length).to(self.dtype)
                        row = side.velocity[axis] * shape
                        value.select(1 + axis, index).copy_(
                            row.view(value.select(1 + axis, index).shape)
                        )
        if self.regions:
            x, y = self.face_positions(axis)
            for region in self.regions:
                inside = region.contains(x, y)[None]
                fixed = fixed | inside
                speed = region.component(axis, device=self.device, dtype=self.dtype)
                value = torch.where(inside, speed, value)
        if self.solid is not None:
            s = self.solid
            if self.periodic[axis]:
                touch = s | s.roll(1, dims=1 + axis)
            else:
                pad = [0, 0, 1, 1] if axis == 0 else [1, 1]
                padded = torch.nn.functional.pad(s.to(torch.uint8), pad).bool()
                touch = padded.narrow(1 + axis, 0, n_normal) | padded.narrow(1 + axis, 1, n_normal)
            fixed = fixed | touch
            value = torch.where(touch, torch.zeros((), dtype=self.dtype), value)
        return fixed, value

    # -- state <-> unique faces -------------------------------------------------------
    def extend(self, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Stored components [B, nx, ny] -> unique faces, far faces rebuilt, BCs applied."""
        fx = u if self.periodic[0] else torch.cat([u, u[:, -1:]], dim=1)
        fy = v if self.periodic[1] else torch.cat([v, v[:, :, -1:]], dim=2)
        return self.apply_bc(fx, fy)

    def crop(self, fx: Tensor, fy: Tensor) -> tuple[Tensor, Tensor]:
        """Unique faces -> the stored components [B, nx, ny] (drops the far faces)."""
        return fx[:, : self.nx], fy[:, :, : self.ny]

    def apply_bc(self, fx: Tensor, fy: Tensor) -> tuple[Tensor, Tensor]:
        """Set walls, inflow and obstacle faces to their prescribed normal velocity."""
        return (
            torch.where(self.fixed_x, self.value_x, fx),
            torch.where(self.fixed_y, self.value_y, fy),
        )

    def full(self, f: Tensor, axis: int) -> Tensor:
        """All n + 1 faces along ``axis`` (periodic: face n repeats face 0)."""
        if not self.periodic[axis]:
            return f
        return torch.cat([f, f.narrow(1 + axis, 0, 1)], dim=1 + axis)

    # -- discrete operators -----------------------------------------------------------
    def divergence(self, fx: Tensor, fy: Tensor) -> Tensor:
        """Cell-centred div u = (u_{i+1} - u_i)/dx + (v_{j+1} - v_j)/dy: [B, nx, ny]."""
        gx, gy = self.full(fx, 0), self.full(fy, 1)
        return (gx[:, 1:] - gx[:, :-1]) / self.dx + (gy[:, :, 1:] - gy[:, :, :-1]) / self.dy

    def gradient(self, p: Tensor) -> tuple[Tensor, Tensor]:
        """grad p on the unique faces: (p_i - p_{i-1}) / dx, ... ; boundary faces use the
        ghost p = -p_inside (p = 0 on the face: the outflow condition); the caller masks
        closed faces with ``open_x``/``open_y``."""
        out = []
        for axis, h in ((0, self.dx), (1, self.dy)):
            d = 1 + axis
            if self.periodic[axis]:
                out.append((p - p.roll(1, dims=d)) / h)
                continue
            n = p.shape[d]
            inner = (p.narrow(d, 1, n - 1) - p.narrow(d, 0, n - 1)) / h
            first, last = p.narrow(d, 0, 1), p.narrow(d, n - 1, 1)
            out.append(torch.cat([2 * first / h, inner, -2 * last / h], dim=d))
        return out[0], out[1]

    def pressure_laplacian(self, p: Tensor) -> Tensor:
        """L p = div(A grad p) [B, nx, ny]: the operator the projection inverts."""
        gx, gy = self.gradient(p)
        return self.divergence(self.open_x * gx, self.open_y * gy)

    def pressure_diagonal(self) -> Tensor:
        """Diagonal of -L [1 or B, nx, ny] (0 on cells with no open face)."""
        diag = 0
        for axis, h in ((0, self.dx), (1, self.dy)):
            a = self.full(self.open_x if axis == 0 else self.open_y, axis)
            if not self.periodic[axis]:  # boundary faces couple to a ghost -p: weight 2
                weight = torch.ones(a.shape[1 + axis], dtype=self.dtype, device=self.device)
                weight[0] = weight[-1] = 2
                a = a * (weight.view(-1, 1) if axis == 0 else weight)
            n = a.shape[1 + axis]
            diag = diag + (a.narrow(1 + axis, 1, n - 1) + a.narrow(1 + axis, 0, n - 1)) / h**2
        return diag

    def to_centres(self, fx: Tensor, fy: Tensor) -> tuple[Tensor, Tensor]:
        """Face -> centre interpolation (mean of the two faces): two [B, nx, ny]."""
        gx, gy = self.full(fx, 0), self.full(fy, 1)
        return 0.5 * (gx[:, 1:] + gx[:, :-1]), 0.5 * (gy[:, :, 1:] + gy[:, :, :-1])

    def centre_to_faces(self, c: Tensor, axis: int) -> Tensor:
        """Centre -> unique faces of component ``axis`` (mean of the two cells; boundary
        faces take the adjacent cell, i.e. a zero-gradient scalar)."""
        d = 1 + axis
        if self.periodic[axis]:
            return 0.5 * (c + c.roll(1, dims=d))
        n = c.shape[d]
        inner = 0.5 * (c.narrow(d, 1, n - 1) + c.narrow(d, 0, n - 1))
        return torch.cat([c.narrow(d, 0, 1), inner, c.narrow(d, n - 1, 1)], dim=d)

    # -- ghosts -------------------------------------------------------------------------
    def pad_faces(self, f: Tensor, axis: int, *, homogeneous: bool = False) -> Tensor:
        """Component ``axis`` in unique-face form with one ghost layer on every side.

        Along its own (normal) axis: periodic wrap, else a copy of the boundary face (zero
        normal gradient; walls and inflow faces are fixed anyway). Along the tangential
        axis: periodic wrap, else ``-inside`` (no-slip, inflow: + 2 u_in, a moving
        no-slip wall: + 2 u_wall, unless ``homogeneous``) or ``+inside`` (free-slip,
        outflow).
        """
        out = f
        for ax in (0, 1):
            d = 1 + ax
            n = out.shape[d]
            lo, hi = out.narrow(d, 0, 1), out.narrow(d, n - 1, 1)
            if self.periodic[ax]:
                out = torch.cat([hi, out, lo], dim=d)
            elif ax == axis:
                out = torch.cat([lo, out, hi], dim=d)
            else:
                ghosts = []
                for edge, upper in ((lo, False), (hi, True)):
                    side = self.boundary.side(ax, upper)
                    if side.kind in (Kind.free_slip, Kind.outflow):
                        ghosts.append(edge)
                    elif side.kind is Kind.inflow and side.profile is not Profile.uniform:
                        if not homogeneous:
                            speed = side.velocity[axis] * self._along_side(axis, edge, ax)
                            ghosts.append(2 * speed - edge)
                        else:
                            ghosts.append(-edge)
                    elif side.kind is Kind.inflow and not homogeneous:
                        ghosts.append(2 * side.velocity[axis] - edge)
                    elif side.kind is Kind.no_slip and side.velocity[axis] and not homogeneous:
                        ghosts.append(2 * side.velocity[axis] - edge)  # a moving wall
                    else:
                        ghosts.append(-edge)
                out = torch.cat([ghosts[0], out, ghosts[1]], dim=d)
        return out

    def _along_side(self, axis: int, edge: Tensor, side_axis: int) -> Tensor:
        """The profile shape (:func:`parabola`) at the faces of component ``axis`` in
        ``edge``, a ghost row of a side normal to ``side_axis``; ``edge`` runs along
        ``axis`` over its unique faces, plus one ghost each end if already padded."""
        d = 1 + axis
        count = edge.shape[d]
        start = (count - (self.nx, self.ny)[axis] - 1) // 2  # 1: padded along axis
        h = (self.dx, self.dy)[axis]
        s = (torch.arange(count, dtype=torch.float64, device=self.device) - start) * h
        shape = parabola(s, self.upper[axis] - self.lower[axis]).to(self.dtype)
        view = [1, 1, 1]
        view[d] = count
        return shape.view(view)

    # -- sampling -----------------------------------------------------------------------
    def centres(self) -> tuple[Tensor, Tensor]:
        """Cell-centre coordinates X, Y [nx, ny]."""
        return self._positions(0.5, 0.5, self.nx, self.ny)

    def face_positions(self, axis: int) -> tuple[Tensor, Tensor]:
        """Coordinates X, Y of the unique faces of component ``axis``."""
        if axis == 0:
            return self._positions(0.0, 0.5, self.nx + (not self.periodic[0]), self.ny)
        return self._positions(0.5, 0.0, self.nx, self.ny + (not self.periodic[1]))

    def _positions(self, ox: float, oy: float, mx: int, my: int) -> tuple[Tensor, Tensor]:
        kw = {"dtype": self.dtype, "device": self.device}
        x = self.lower[0] + (torch.arange(mx, **kw) + ox) * self.dx
        y = self.lower[1] + (torch.arange(my, **kw) + oy) * self.dy
        return torch.meshgrid(x, y, indexing="ij")

    def _clamp(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Points outside a non-periodic side are moved onto it."""
        if not self.periodic[0]:
            x = x.clamp(self.lower[0], self.upper[0])
        if not self.periodic[1]:
            y = y.clamp(self.lower[1], self.upper[1])
        return x, y

    def sample_centred(
        self, c: Tensor, x: Tensor, y: Tensor, *, bounds: bool = False
    ) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """Bilinear interpolation of a cell-centred field [B, nx, ny] at points x, y
        [B, ...]; non-periodic sides extend the field constantly (zero gradient)."""
        x, y = self._clamp(x, y)
        fi = (x - self.lower[0]) / self.dx - 0.5
        fj = (y - self.lower[1]) / self.dy - 0.5
        return bilinear(c, fi, fj, self.periodic, bounds=bounds)

    def sample_faces(
        self, f: Tensor, axis: int, x: Tensor, y: Tensor, *, bounds: bool = False
    ) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """Bilinear interpolation of component ``axis`` (unique-face form) at points x, y
        [B, ...], honouring the tangential ghosts of :meth:`pad_faces`."""
        x, y = self._clamp(x, y)
        fi = (x - self.lower[0]) / self.dx - (0.0 if axis == 0 else 0.5)
        fj = (y - self.lower[1]) / self.dy - (0.5 if axis == 0 else 0.0)
        tangent = 1 - axis
        if not self.periodic[tangent]:  # ghost layer on the tangential axis only
            padded = self.pad_faces(f, axis)
            f = padded.narrow(1 + axis, 1, padded.shape[1 + axis] - 2)
            if tangent == 0:
                fi = fi + 1
            else:
                fj = fj + 1
        return bilinear(f, fi, fj, self.periodic, bounds=bounds)

    def velocity_at(self, fx: Tensor, fy: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(u, v) at points x, y [B, ...]."""
        return self.sample_faces(fx, 0, x, y), self.sample_faces(fy, 1, x, y)


def bilinear(
    values: Tensor,
    fi: Tensor,
    fj: Tensor,
    periodic: tuple[bool, bool],
    *,
    bounds: bool = False,
) -> Tensor | tuple[Tensor, Tensor, Tensor]:
    """Bilinear interpolation of ``values`` [B or 1, n0, n1] at fractional indices
    ``fi``, ``fj`` [B, ...]. Periodic axes wrap; others clamp to [0, n - 1].

    With ``bounds``, also return the min and max of the four stencil values (the
    MacCormack limiter). Differentiable in the values and in the positions.
    """
    batch = fi.shape[0]
    n0, n1 = values.shape[-2:]
    if values.shape[0] != batch:
        values = values.expand(batch, n0, n1)

    def axis(f: Tensor, n: int, wrap: bool) -> tuple[Tensor, Tensor, Tensor]:
        if wrap:
            left = torch.floor(f)
            i0 = left.to(torch.int64).remainder(n)
            return i0, (i0 + 1).remainder(n), f - left
        f = f.clamp(0, n - 1)
        left = torch.floor(f).clamp(max=n - 2)
        i0 = left.to(torch.int64)
        return i0, i0 + 1, f - left

    i0, i1, wi = axis(fi, n0, periodic[0])
    j0, j1, wj = axis(fj, n1, periodic[1])
    flat = values.reshape(batch, n0 * n1)

    def at(i: Tensor, j: Tensor) -> Tensor:
        return flat.gather(1, (i * n1 + j).reshape(batch, -1)).view(fi.shape)

    v00, v10, v01, v11 = at(i0, j0), at(i1, j0), at(i0, j1), at(i1, j1)
    out = (1 - wi) * ((1 - wj) * v00 + wj * v01) + wi * ((1 - wj) * v10 + wj * v11)
    if not bounds:
        return out
    lo = torch.minimum(torch.minimum(v00, v10), torch.minimum(v01, v11))
    hi = torch.maximum(torch.maximum(v00, v10), torch.maximum(v01, v11))
    return out, lo, hi
