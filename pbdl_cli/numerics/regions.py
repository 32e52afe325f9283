"""Connected fluid regions of a MAC grid, for the pressure solve.

The pressure operator L p = div(A grad p) couples two cells only through an open face
(A = 1), so its null space is one constant per connected set of cells (a *region*)
that has no open boundary face (an outflow, where p = 0 on the face). An obstacle that
encloses a pocket of fluid (a hollow box) makes a second such region: each needs its
own mean removal (the right-hand side must be zero-mean on it) and, for a
factorization, its own pinned cell.

:func:`label_cells` is a vectorized connected-components labelling (min-label
propagation through open faces, sped up by pointer jumping: a cell takes the label of
the cell its label names); :class:`FluidRegions` holds the result for one grid.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pbdl_cli.numerics.mac import MacGrid


def _links(open_faces: Tensor, axis: int, periodic: bool) -> tuple[Tensor, Tensor]:
    """Per cell: is its face towards the lower / upper neighbour along ``axis`` open?
    Both bool [G, nx, ny]; boundary faces of a non-periodic axis link nothing."""
    d = 1 + axis
    faces = open_faces.bool()
    if periodic:  # face i joins cells i - 1 and i (mod n)
        return faces, faces.roll(-1, dims=d)
    n = faces.shape[d] - 1
    lo, hi = faces.narrow(d, 0, n).clone(), faces.narrow(d, 1, n).clone()
    lo.select(d, 0).fill_(False)
    hi.select(d, n - 1).fill_(False)
    return lo, hi


def label_cells(
    cells: Tensor, open_x: Tensor, open_y: Tensor, periodic: tuple[bool, bool]
) -> Tensor:
    """Connected components of ``cells`` (bool [G, nx, ny]) joined through open faces.

    ``open_x``, ``open_y``: unique-face masks (:class:`MacGrid` layout, broadcastable
    to G). Returns int64 [G, nx, ny]: for each cell the smallest flat index
    ``i * ny + j`` of its component, -1 outside ``cells``.
    """
    groups = max(cells.shape[0], open_x.shape[0], open_y.shape[0])
    nx, ny = cells.shape[1:]
    cells = cells.expand(groups, nx, ny)
    links = []
    for axis, faces in ((0, open_x), (1, open_y)):
        lo, hi = _links(faces, axis, periodic[axis])
        links.append((axis, lo.expand(groups, nx, ny), hi.expand(groups, nx, ny)))
    big = nx * ny
    index = torch.arange(big, device=cells.device).view(1, nx, ny).expand(groups, nx, ny)
    label = torch.where(cells, index, big)
    while True:
        new = label
        for axis, lo, hi in links:
            d = 1 + axis
            new = torch.minimum(new, torch.where(lo, label.roll(1, dims=d), big))
            new = torch.minimum(new, torch.where(hi, label.roll(-1, dims=d), big))
        flat = torch.where(cells, new, big).reshape(groups, big)
        for _ in range(4):  # pointer jumping: labels name cells of the same component
            flat = torch.minimum(flat, flat.clamp(max=big - 1).gather(1, flat.clamp(max=big - 1)))
        flat = torch.where(cells.reshape(groups, big), flat, big)
        new = flat.view(groups, nx, ny)
        if torch.equal(new, label):
            break
        label = new
    return torch.where(cells, label, -1)


class FluidRegions:
    """The regions of one grid's pressure system (see the module docstring).

    Attributes:
        labels: int64 [G, nx, ny], a region id per coupled cell (a cell with at least
            one open face), -1 elsewhere.
        singular: bool [G, nx, ny], the cells of regions without an open boundary face
            (their pressure is defined up to a constant).
        count: the largest number of regions of one geometry (G entries).
        num_singular: the largest number of singular regions of one geometry.
    """

    def __init__(self, mac: MacGrid) -> None:
        coupled = mac.pressure_diagonal() > 0
        self.labels = label_cells(coupled, mac.open_x, mac.open_y, mac.periodic)
        groups, nx, ny = self.labels.shape
        # cells next to an open boundary face (outflow): Dirichlet, no null space
        touch = torch.zeros(groups, nx, ny, dtype=torch.bool, device=mac.device)
        for axis, faces in ((0, mac.open_x), (1, mac.open_y)):
            if mac.periodic[axis]:
                continue
            d, n = 1 + axis, faces.shape[1 + axis]
            middle = torch.zeros_like(faces.narrow(d, 0, n - 3), dtype=torch.bool)
            edge = torch.cat(
                [faces.narrow(d, 0, 1).bool(), middle, faces.narrow(d, n - 1, 1).bool()], d
            )
            touch = touch | edge
        flat = self.labels.reshape(groups, -1)
        inside = flat >= 0
        ids = flat.clamp(min=0)
        hits = torch.zeros(groups, nx * ny, dtype=torch.int64, device=mac.device)
        hits.scatter_add_(1, ids, (touch.reshape(groups, -1) & inside).to(torch.int64))
        open_region = hits > 0
        self.singular = (inside & ~open_region.gather(1, ids)).view(groups, nx, ny)
        roots = inside & (flat == torch.arange(nx * ny, device=mac.device))
        self.count = int(roots.sum(dim=1).max()) if flat.numel() else 0
        singular_roots = roots & self.singular.reshape(groups, -1)
        self.num_singular = int(singular_roots.sum(dim=1).max()) if flat.numel() else 0
        self._ids = ids
        self._counts = torch.zeros(groups, nx * ny, dtype=mac.dtype, device=mac.device)
        self._counts.scatter_add_(1, ids, self.singular.reshape(groups, -1).to(mac.dtype))

    def remove_means(self, r: Tensor) -> Tensor:
        """r [B, nx, ny] minus its mean over each singular region on that region's
        cells; unchanged on the cells of the other regions, 0 on uncoupled cells."""
        batch = r.shape[0]
        groups, nx, ny = self.labels.shape
        flat = r.reshape(batch, nx * ny)
        member = self.singular.reshape(groups, -1)
        ids = self._ids.expand(batch, -1)
        sums = torch.zeros_like(flat).scatter_add_(1, ids, flat * member)
        mean = sums.gather(1, ids) / self._counts.expand(batch, -1).gather(1, ids).clamp(min=1)
        out = torch.where(member, flat - mean, flat)
        out = torch.where((self.labels >= 0).reshape(groups, -1), out, 0)
        return out.view(batch, nx, ny)
