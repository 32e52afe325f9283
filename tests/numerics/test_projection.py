"""Pressure projection on the MAC grid: divergence, idempotence, agreement of the FFT,
DCT and CG solves, adjoint gradients (gradcheck, dense solve) and batch independence."""

from __future__ import annotations

import math

import pytest
import torch

from pbdl_cli.numerics.geometry import Boundary, Side, box_mask, sphere_mask
from pbdl_cli.numerics.mac import MacGrid
from pbdl_cli.numerics.pressure import PressureSystem, pressure_solve, project

F64 = torch.float64


def grid(kind: str, n=(16, 12), obstacle: bool = False) -> MacGrid:
    boundary = {
        "periodic": Boundary.periodic(),
        "closed": Boundary.closed(),
        "channel": Boundary(
            Side("no_slip"), Side("free_slip"), Side("inflow", (0.0, 1.0)), Side("outflow")
        ),
        "x_outflow": Boundary(
            Side("inflow", (1.0, 0.0)), Side("outflow"), Side("no_slip"), Side("no_slip")
        ),
    }[kind]
    upper = (float(n[0]), float(n[1]) * 1.3)
    solid = None
    if obstacle:
        solid = sphere_mask(n, (0, 0), upper, (n[0] / 2, upper[1] / 2), n[0] / 5)
        solid = solid | box_mask(n, (0, 0), upper, (1, 1), (3, 2))
    return MacGrid(n, (0.0, 0.0), upper, boundary, solid, dtype=F64)


def random_faces(mac: MacGrid, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, mac.nx, mac.ny, generator=g, dtype=F64)
    v = torch.randn(batch, mac.nx, mac.ny, generator=g, dtype=F64)
    return mac.extend(u, v)


def fluid_div(mac, fx, fy):
    div = mac.divergence(fx, fy)
    return div if mac.fluid is None else div * mac.fluid


CASES = [
    ("periodic", False, "fft"),
    ("periodic", False, "cg"),
    ("closed", False, "dct"),
    ("closed", False, "cg"),
    ("closed", True, "cg"),
    ("channel", True, "cg"),
    ("x_outflow", True, "cg"),
]


@pytest.mark.parametrize(("kind", "obstacle", "method"), CASES)
def test_projection_is_divergence_free_idempotent_and_keeps_fixed_faces(kind, obstacle, method):
    mac = grid(kind, obstacle=obstacle)
    system = PressureSystem(mac, method, tol=1e-10, max_iter=5000)
    fx, fy = random_faces(mac)
    before = fluid_div(mac, fx, fy).abs().amax()
    px, py, _, info = project(mac, fx, fy, system)
    assert bool(info.converged.all())
    assert float(info.divergence.max()) <= 1e-9 * float(before)
    assert torch.allclose(info.divergence, fluid_div(mac, px, py).abs().amax(dim=(1, 2)))
    if method == "cg":
        assert int(info.iterations.max()) > 0
    # fixed faces (walls, inflow, obstacles) keep their prescribed values
    bx, by = mac.apply_bc(px, py)
    assert torch.equal(bx, px) and torch.equal(by, py)
    # idempotent: a divergence-free field is (almost) unchanged
    qx, qy, _, _ = project(mac, px, py, system)
    assert torch.allclose(qx, px, atol=1e-8) and torch.allclose(qy, py, atol=1e-8)


def test_exact_divergence_free_field_is_unchanged_and_fft_matches_cg():
    n = 16
    mac = MacGrid((n, n), (0, 0), (2 * math.pi, 2 * math.pi), Boundary.periodic(), dtype=F64)
    x, y = mac.face_positions(0)
    u = (torch.sin(x) * torch.cos(y))[None]
    x, y = mac.face_positions(1)
    v = (-torch.cos(x) * torch.sin(y))[None]
    fft = PressureSystem(mac, "fft")
    px, py, _, _ = project(mac, u, v, fft)
    assert torch.allclose(px, u, atol=1e-12) and torch.allclose(py, v, atol=1e-12)
    fx, fy = random_faces(mac, batch=3)
    ax, _, pa, _ = project(mac, fx, fy, fft)
    bx, _, pb, _ = project(mac, fx, fy, PressureSystem(mac, "cg", tol=1e-12))
    assert torch.allclose(pa, pb, atol=1e-9) and torch.allclose(ax, bx, atol=1e-9)


def test_dct_matches_cg_on_a_closed_box():
    mac = grid("closed")
    fx, fy = random_faces(mac, batch=2, seed=3)
    _, _, pa, _ = project(mac, fx, fy, PressureSystem(mac, "dct"))
    _, _, pb, _ = project(mac, fx, fy, PressureSystem(mac, "cg", tol=1e-12))
    assert torch.allclose(pa, pb, atol=1e-9)


def test_auto_choice_and_invalid_choices():
    assert PressureSystem(grid("periodic"), "auto").method.value == "fft"
    assert PressureSystem(grid("closed"), "auto").method.value == "dct"
    assert PressureSystem(grid("closed", obstacle=True), "auto").method.value == "cg"
    assert PressureSystem(grid("channel"), "auto").method.value == "cg"
    with pytest.raises(ValueError, match="fft"):
        PressureSystem(grid("closed"), "fft")
    with pytest.raises(ValueError, match="dct"):
        PressureSystem(grid("channel"), "dct")


@pytest.mark.parametrize(
    ("kind", "obstacle", "method", "n"),
    [
        ("periodic", False, "fft", (8, 8)),
        ("closed", False, "dct", (6, 5)),
        ("closed", True, "cg", (8, 7)),
        ("channel", True, "cg", (6, 7)),
    ],
)
def test_projection_gradcheck(kind, obstacle, method, n):
    mac = grid(kind, n=n, obstacle=obstacle)
    system = PressureSystem(mac, method, tol=1e-13, max_iter=10_000)
    fx, fy = random_faces(mac, batch=2, seed=1)
    fx.requires_grad_(True)
    fy.requires_grad_(True)

    def f(a, b):
        px, py, p, _ = project(mac, a, b, system)
        return px, py, p

    assert torch.autograd.gradcheck(f, (fx, fy), atol=1e-6, fast_mode=True)


def test_adjoint_backward_matches_a_dense_linear_solve():
    mac = grid("channel", n=(6, 7), obstacle=True)  # outflow: the system is non-singular
    system = PressureSystem(mac, "cg", tol=1e-14, max_iter=10_000)
    cells = mac.nx * mac.ny
    eye = torch.eye(cells, dtype=F64).view(cells, mac.nx, mac.ny)
    dense = torch.stack([system.apply(e[None])[0].flatten() for e in eye], dim=1)  # -L (+pins)
    assert torch.allclose(dense, dense.T, atol=1e-12)  # symmetric: the adjoint is a solve
    g = torch.Generator().manual_seed(5)
    rhs = torch.randn(1, mac.nx, mac.ny, generator=g, dtype=F64) * mac.fluid
    weight = torch.randn(1, mac.nx, mac.ny, generator=g, dtype=F64)
    r1 = rhs.clone().requires_grad_(True)
    (pressure_solve(r1, system) * weight).sum().backward()
    r2 = rhs.clone().requires_grad_(True)
    p2 = -torch.linalg.solve(dense, r2.flatten()).view_as(r2)
    (p2 * weight).sum().backward()
    # the backward pass was one adjoint CG solve, not backpropagation through iterations
    assert int(system.backward_info.iterations.max()) > 0
    assert torch.allclose(pressure_solve(rhs, system), p2.detach(), atol=1e-10)
    assert torch.allclose(r1.grad * mac.fluid, r2.grad * mac.fluid, atol=1e-10)


@pytest.mark.parametrize(("kind", "obstacle", "method"), [CASES[0], CASES[2], CASES[5]])
def test_batch_of_three_matches_one_at_a_time(kind, obstacle, method):
    mac = grid(kind, obstacle=obstacle)
    fx, fy = random_faces(mac, batch=3, seed=7)
    fx[1] *= 10  # very different magnitudes: per-sample convergence
    fy[2] *= 0.01
    system = PressureSystem(mac, method, tol=1e-8)
    bx, _, bp, binfo = project(mac, fx, fy, system)
    for k in range(3):
        sx, _, sp, sinfo = project(mac, fx[k : k + 1], fy[k : k + 1], system)
        assert torch.allclose(sx[0], bx[k], atol=1e-12, rtol=0)
        assert torch.allclose(sp[0], bp[k], atol=1e-12, rtol=0)
        assert int(sinfo.iterations[0]) == int(binfo.iterations[k])


def test_float32_projection_reaches_the_tolerance():
    mac = MacGrid(
        (32, 32),
        (0, 0),
        (1, 1),
        Boundary.closed(),
        sphere_mask((32, 32), (0, 0), (1, 1), (0.5, 0.5), 0.15),
        dtype=torch.float32,
    )
    g = torch.Generator().manual_seed(0)
    fx, fy = mac.extend(*torch.randn(2, 2, 32, 32, generator=g).unbind(1))
    system = PressureSystem(mac, "cg", tol=1e-5, max_iter=2000)
    _, _, p, info = project(mac, fx, fy, system)
    assert p.dtype == torch.float32 and bool(info.converged.all())
    before = mac.divergence(fx, fy).abs().amax()
    assert float(info.divergence.max()) <= 1e-4 * float(before)
