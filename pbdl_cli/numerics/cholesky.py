"""Exact solves of the MAC pressure system by a block Cholesky factorization
(``pressure=direct`` of :class:`~pbdl_cli.numerics.pressure.PressureSystem`)."""

from __future__ import annotations

import torch
from torch import Tensor

from pbdl_cli.numerics.mac import MacGrid


class BlockCholesky:
    """Exact solves of the pressure system M p = b, M = -L (+ 1 on isolated cells), by a
    block Cholesky factorization: the 5-point M is block tridiagonal along a non-periodic
    axis (blocks = the lines of cells across it, coupled by the faces between lines):

        S_0 = D_0,  S_j = D_j - E_j E_j^T,  E_j = C_j L_{j-1}^{-T},  L_j = chol(S_j),

    with D_j the (tridiagonal, or cyclic for a periodic cross axis) block of line j and
    C_j the diagonal coupling of lines j and j - 1. The factors are computed once in
    float64 (per sample where the geometry has a batch dimension) and applied as two
    sweeps of small matrix products (L_j^{-1} is stored), in the mask's dtype. Without
    an outflow (singular M) one fluid cell per closed region (``labels`` where
    ``singular``; a hollow obstacle encloses a second one) is pinned (its row and
    column replaced by the identity): for a right-hand side of zero mean on every
    such region the solution differs from the pseudo-inverse's only by one constant
    per region, which the caller removes.

    Memory: (lines) x (line length)^2 x 2 numbers per distinct geometry (33 MB in
    float64 for 128 x 256 cells).
    """

    def __init__(self, mac: MacGrid, pin: Tensor, labels: Tensor, singular: Tensor | None) -> None:
        # lines along the axis that is not periodic (prefer y: lines of nx cells)
        self.axis = 1 if not mac.periodic[1] else 0
        dtype, device = torch.float64, mac.device
        coupled = mac.pressure_diagonal().to(dtype)  # [G, nx, ny]; 0: isolated cells
        d = coupled + pin.to(dtype)
        ox = mac.full(mac.open_x, 0).to(dtype)  # [G, nx + 1, ny]
        oy = mac.full(mac.open_y, 1).to(dtype)  # [G, nx, ny + 1]
        groups = max(d.shape[0], ox.shape[0], oy.shape[0])
        d, ox, oy, coupled = (t.expand(groups, *t.shape[1:]) for t in (d, ox, oy, coupled))
        if self.axis == 0:  # lines along y: swap the roles of x and y
            d, ox, oy = d.transpose(1, 2), oy.transpose(1, 2), ox.transpose(1, 2)
            coupled = coupled.transpose(1, 2)
            hx, hy, wrap = mac.dy, mac.dx, mac.periodic[1]
        else:
            hx, hy, wrap = mac.dx, mac.dy, mac.periodic[0]
        n, m = d.shape[1], d.shape[2]  # line length, number of lines
        # tridiagonal (cyclic) line blocks D [G, m, n, n] and couplings c [G, m, n]
        eye = torch.arange(n, device=device)
        blocks = torch.zeros(groups, m, n, n, dtype=dtype, device=device)
        blocks[:, :, eye, eye] = d.transpose(1, 2)
        off = -ox[:, 1:n].transpose(1, 2) / hx**2  # faces between cells i - 1 and i
        blocks[:, :, eye[1:], eye[:-1]] = off
        blocks[:, :, eye[:-1], eye[1:]] = off
        if wrap:  # periodic cross axis: face 0 joins cell n - 1 and cell 0
            corner = -ox[:, 0] / hx**2  # [G, m]
            blocks[:, :, 0, n - 1] = blocks[:, :, 0, n - 1] + corner
            blocks[:, :, n - 1, 0] = blocks[:, :, n - 1, 0] + corner
        coupling = -oy[:, :, :m].transpose(1, 2) / hy**2  # [G, m, n]; line 0: unused
        pinned = torch.zeros(groups, m, n, dtype=torch.bool, device=device)
        if singular is not None:  # pin the first cell (in line order) of each region
            labels = torch.where(singular, labels, -1).expand(groups, *labels.shape[1:])
            if self.axis == 0:
                labels = labels.transpose(1, 2)
            flat = labels.transpose(1, 2).reshape(groups, -1)
            for g, k in _first_cells(flat):
                j, i = divmod(k, n)
                pinned[g, j, i] = True
                blocks[g, j, i, :] = 0
                blocks[g, j, :, i] = 0
                blocks[g, j, i, i] = 1
                coupling[g, j, i] = 0
                if j + 1 < m:
                    coupling[g, j + 1, i] = 0
        inv_l = torch.empty_like(blocks)
        sub = torch.zeros_like(blocks)  # E_j
        previous = None
        for j in range(m):
            s = blocks[:, j]
            if previous is not None:
                # E_j = C_j L_{j-1}^{-T}: C_j diagonal, so E_j = diag(c_j) inv_l^T
                e = coupling[:, j, :, None] * previous.transpose(1, 2)
                sub[:, j] = e
                s = s - e @ e.transpose(1, 2)
            chol = torch.linalg.cholesky(s)
            eye_n = torch.eye(n, dtype=dtype, device=device).expand_as(chol)
            previous = torch.linalg.solve_triangular(chol, eye_n, upper=False)
            inv_l[:, j] = previous
        target = mac.dtype
        self.inv_l = inv_l.to(target)  # [G, m, n, n]
        self.sub = sub.to(target)
        self.n, self.m = n, m
        #: 1 except on the pinned cell (singular systems), [G, nx, ny]
        keep = (~pinned).transpose(1, 2)
        self.keep = (keep.transpose(1, 2) if self.axis == 0 else keep).to(target)

    def solve(self, b: Tensor) -> Tensor:
        """p with M p = b for b [B, nx, ny] (the factors' G is 1 or B); with a pinned
        cell, p there is 0."""
        b = b * self.keep
        rhs = b.transpose(1, 2) if self.axis == 0 else b
        # columns: [B, m, n] -> per line j a vector [B, n, 1]
        lines = rhs.transpose(1, 2).unsqueeze(-1)
        inv_l, sub = self.inv_l, self.sub
        if inv_l.shape[0] == 1:
            inv_l, sub = inv_l[0], sub[0]  # broadcast over the batch
        ys = []
        y = None
        for j in range(self.m):
            r = lines[:, j]
            if y is not None:
                r = r - _at(sub, j) @ y
            y = _at(inv_l, j) @ r
            ys.append(y)
        xs: list[Tensor] = [None] * self.m  # type: ignore[list-item]
        x = None
        for j in range(self.m - 1, -1, -1):
            r = ys[j]
            if x is not None:
                r = r - _at(sub, j + 1).transpose(-1, -2) @ x
            x = _at(inv_l, j).transpose(-1, -2) @ r
            xs[j] = x
        p = torch.stack(xs, dim=1).squeeze(-1).transpose(1, 2)  # [B, n, m]
        return p.transpose(1, 2) if self.axis == 0 else p


def _first_cells(labels: Tensor) -> list[tuple[int, int]]:
    """(g, k): the first flat index k of every label >= 0 in each row g of [G, N]."""
    out = []
    for g in range(labels.shape[0]):
        row = labels[g]
        for label in torch.unique(row[row >= 0]).tolist():
            out.append((g, int(torch.nonzero(row == label)[0])))
    return out


def _at(factors: Tensor, j: int) -> Tensor:
    """Line j of per-line factors [m, n, n] or [B, m, n, n]."""
    return factors[j] if factors.dim() == 3 else factors[:, j]
