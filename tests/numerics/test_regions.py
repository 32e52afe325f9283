"""Connected fluid regions (pbdl_cli/numerics/regions.py) and the pressure solves on
obstacles that enclose a pocket of fluid (a hollow box): every closed region gets its
own null-space constant, so ``direct`` factorizes and both solvers project to a
divergence-free field and agree."""

from __future__ import annotations

import pytest
import torch

from pbdl_cli.numerics.geometry import Boundary, Side
from pbdl_cli.numerics.mac import MacGrid
from pbdl_cli.numerics.pressure import PressureSystem, project
from pbdl_cli.numerics.regions import FluidRegions, label_cells

F64 = torch.float64
WALL, PERIODIC = Side("no_slip"), Side("periodic")
BOUNDARIES = {
    "closed": Boundary.closed(),
    "channel": Boundary(WALL, WALL, Side("inflow", (0.0, 1.0)), Side("outflow")),
    "periodic_x": Boundary(PERIODIC, PERIODIC, WALL, WALL),
    "periodic_y_outflow": Boundary(Side("inflow", (1.0, 0.0)), Side("outflow"), PERIODIC, PERIODIC),
}


def reference_labels(mac: MacGrid) -> list[set[tuple[int, int]]]:
    """Components of the coupled cells by breadth-first search in plain Python."""
    coupled = (mac.pressure_diagonal()[0] > 0).tolist()
    ox, oy = mac.open_x[0].tolist(), mac.open_y[0].tolist()
    nx, ny = mac.nx, mac.ny
    px, py = mac.periodic

    def neighbours(i, j):
        # u face f joins cells f - 1 and f (mod n when periodic); v faces likewise
        for k, face in ((i - 1, i), (i + 1, i + 1)):
            if px:
                k, face = k % nx, face % nx
            if 0 <= k < nx and ox[face][j]:
                yield k, j
        for k, face in ((j - 1, j), (j + 1, j + 1)):
            if py:
                k, face = k % ny, face % ny
            if 0 <= k < ny and oy[i][face]:
                yield i, k

    seen, comps = set(), []
    for i in range(nx):
        for j in range(ny):
            if not coupled[i][j] or (i, j) in seen:
                continue
            comp, todo = set(), [(i, j)]
            while todo:
                c = todo.pop()
                if c in comp:
                    continue
                comp.add(c)
                todo.extend(n for n in neighbours(*c) if n not in comp)
            seen |= comp
            comps.append(comp)
    return comps


def hollow_box(shape, lo, hi, thickness=1) -> torch.Tensor:
    """Solid ring: the cells of the box [lo, hi) (indices) minus its interior."""
    solid = torch.zeros(1, *shape, dtype=torch.bool)
    solid[0, lo[0] : hi[0], lo[1] : hi[1]] = True
    t = thickness
    solid[0, lo[0] + t : hi[0] - t, lo[1] + t : hi[1] - t] = False
    return solid


def random_hollow(shape, generator) -> torch.Tensor:
    """One or two hollow boxes with a fluid interior of at least one cell."""
    solid = torch.zeros(1, *shape, dtype=torch.bool)
    for _ in range(int(torch.randint(1, 3, (1,), generator=generator))):
        t = int(torch.randint(1, 3, (1,), generator=generator))
        size = [int(torch.randint(2 * t + 1, n // 2 + 1, (1,), generator=generator)) for n in shape]
        lo = [
            int(torch.randint(1, n - s, (1,), generator=generator))
            for n, s in zip(shape, size, strict=True)
        ]
        hi = [a + s for a, s in zip(lo, size, strict=True)]
        solid |= hollow_box(shape, lo, hi, t)
    return solid


def grid(name: str, solid: torch.Tensor, shape=(16, 20)) -> MacGrid:
    return MacGrid(shape, (0, 0), (float(shape[0]), 1.3 * shape[1]), BOUNDARIES[name], solid)


@pytest.mark.parametrize("name", list(BOUNDARIES))
def test_labels_match_a_breadth_first_search(name):
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        solid = torch.rand(1, 16, 20, generator=g) < 0.35  # many small components
        mac = grid(name, solid | random_hollow((16, 20), g))
        labels = label_cells(mac.pressure_diagonal() > 0, mac.open_x, mac.open_y, mac.periodic)[0]
        found = {}
        for i in range(mac.nx):
            for j in range(mac.ny):
                if int(labels[i, j]) >= 0:
                    found.setdefault(int(labels[i, j]), set()).add((i, j))
        expected = reference_labels(mac)
        assert len(expected) >= 2  # the masks do cut the fluid into pieces
        assert sorted(map(sorted, found.values())) == sorted(map(sorted, expected))
        # the label is the smallest flat index i * ny + j of the component
        for label, comp in found.items():
            assert label == min(i * mac.ny + j for i, j in comp)


def test_a_hollow_box_makes_a_closed_pocket_even_with_an_outflow():
    solid = hollow_box((16, 20), (4, 6), (11, 14))
    regions = FluidRegions(grid("channel", solid))
    assert regions.count == 2 and regions.num_singular == 1
    pocket = torch.zeros(16, 20, dtype=torch.bool)
    pocket[5:10, 7:13] = True
    assert torch.equal(regions.singular[0], pocket)
    closed = FluidRegions(grid("closed", solid))
    assert closed.count == 2 and closed.num_singular == 2


def random_velocity(mac: MacGrid, batch: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    fx = torch.randn(batch, *mac.open_x.shape[1:], generator=g, dtype=F64)
    fy = torch.randn(batch, *mac.open_y.shape[1:], generator=g, dtype=F64)
    return fx, fy


def check_both_solvers(mac: MacGrid, seed: int = 0) -> None:
    fx, fy = random_velocity(mac, 2, seed)
    direct = PressureSystem(mac, "direct")
    dx, dy, p_d, info_d = project(mac, fx, fy, direct)
    cg = PressureSystem(mac, "cg", tol=1e-12, max_iter=20_000)
    cx, cy, p_c, info_c = project(mac, fx, fy, cg)
    # both return the pseudo-inverse: zero mean on every closed region, pocket included
    regions = FluidRegions(mac)
    for b in range(2):
        labels, singular = (t[b % t.shape[0]] for t in (regions.labels, regions.singular))
        for label in torch.unique(labels[singular]).tolist():
            cells = (labels == label) & singular
            for p in (p_d, p_c):
                assert abs(float(p[b][cells].mean())) < 1e-10
    coupled = regions.labels >= 0
    assert torch.allclose(p_d * coupled, p_c * coupled, atol=1e-8, rtol=0)
    # measured: direct 3e-14 .. 2e-13, cg 1e-12 .. 1e-11 (max |div u*| is about 5)
    assert float(info_d.divergence.max()) < 1e-10
    assert bool(info_c.converged.all()) and float(info_c.divergence.max()) < 1e-9
    assert torch.allclose(dx, cx, atol=1e-9, rtol=0) and torch.allclose(dy, cy, atol=1e-9, rtol=0)


@pytest.mark.parametrize("name", list(BOUNDARIES))
def test_hollow_box_direct_and_cg_project_to_the_same_divergence_free_field(name):
    check_both_solvers(grid(name, hollow_box((16, 20), (4, 6), (11, 14))))


def test_random_hollow_geometries_project_with_both_solvers():
    g = torch.Generator().manual_seed(7)
    names = list(BOUNDARIES)
    for k in range(6):
        mac = grid(names[k % len(names)], random_hollow((16, 20), g))
        assert FluidRegions(mac).count >= 2
        check_both_solvers(mac, seed=k)


def test_a_batch_of_geometries_with_and_without_a_pocket():
    ring = hollow_box((16, 20), (4, 6), (11, 14))
    plain = torch.zeros_like(ring)
    plain[0, 6:9, 8:11] = True
    check_both_solvers(grid("closed", torch.cat([ring, plain])))
