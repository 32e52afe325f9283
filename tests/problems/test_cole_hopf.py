"""Tests of the Cole–Hopf exact solution of 1D viscous Burgers with u(x, 0) = -sin(pi x)."""

from __future__ import annotations

import math

import pytest
import torch

from pbdl_cli.problems import cole_hopf
from pbdl_cli.problems.cole_hopf import burgers_sine_exact, default_num_nodes

NU_BENCH = 0.01 / math.pi  # Basdevant et al. 1986 / Raissi et al. 2019


def _f64(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return (torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)).item()


def test_initial_state_is_exact() -> None:
    x = torch.linspace(-1.0, 1.0, 257, dtype=torch.float64)
    u = burgers_sine_exact(x, _f64([0.0, 0.0]), NU_BENCH)
    assert u.shape == (2, 257) and u.dtype == torch.float64
    assert torch.equal(u[0], -torch.sin(math.pi * x))
    assert torch.equal(u[1], u[0])


@pytest.mark.parametrize("t", [0.25, 0.5, 1.0])
def test_quadrature_converged_under_node_doubling(t: float) -> None:
    x = torch.linspace(-1.0, 1.0, 1025, dtype=torch.float64)
    n = default_num_nodes(NU_BENCH, t)
    u = burgers_sine_exact(x, _f64([t]), NU_BENCH)
    u_same = burgers_sine_exact(x, _f64([t]), NU_BENCH, num_nodes=n)
    u_double = burgers_sine_exact(x, _f64([t]), NU_BENCH, num_nodes=2 * n)
    assert torch.equal(u, u_same)
    assert _rel_l2(u, u_double) < 1e-12


def test_max_gradient_benchmark_value() -> None:
    """max_t |u_x(0, t)| = 152.00516 at t ≈ 0.5100 for nu = 0.01/pi (Basdevant et al. 1986)."""
    h = 1e-6
    x = _f64([-h, h])

    def slope(t: float) -> float:
        u = burgers_sine_exact(x, _f64([t]), NU_BENCH)[0]
        return abs((u[1] - u[0]).item()) / (2.0 * h)

    lo, hi = 0.45, 0.6  # golden-section search for the maximum
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fc, fd = slope(c), slope(d)
    for _ in range(40):
        if fc > fd:
            hi, d, fd = d, c, fc
            c = hi - ratio * (hi - lo)
            fc = slope(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + ratio * (hi - lo)
            fd = slope(d)
    t_star = 0.5 * (lo + hi)
    assert slope(t_star) == pytest.approx(152.00516, rel=1e-3)
    assert abs(t_star - 0.5100) < 0.002


@pytest.mark.parametrize(
    ("nu", "times"),
    [
        (0.1 / math.pi, [0.2, 0.45, 0.7, 1.0]),  # quadrature
        (1.0 / math.pi, [0.05, 0.2, 0.5]),  # Fourier–Bessel series
        (0.01 / math.pi, [0.3, 0.6]),  # quadrature, steep front
    ],
)
def test_pde_residual_small(nu: float, times: list[float]) -> None:
    h = 1e-4
    x0 = _f64([-0.83, -0.41, -0.12, 0.07, 0.33, 0.68, 0.95])
    offsets = _f64([-h, 0.0, h])
    x = (x0[:, None] + offsets[None, :]).reshape(-1)  # [7 * 3]
    t0 = _f64(times)
    t = (t0[:, None] + offsets[None, :]).reshape(-1)  # [T * 3]
    u = burgers_sine_exact(x, t, nu).reshape(len(times), 3, x0.shape[0], 3)  # [t, dt, x, dx]
    centre = u[:, 1, :, 1]
    u_t = (u[:, 2, :, 1] - u[:, 0, :, 1]) / (2.0 * h)
    u_x = (u[:, 1, :, 2] - u[:, 1, :, 0]) / (2.0 * h)
    u_xx = (u[:, 1, :, 2] - 2.0 * centre + u[:, 1, :, 0]) / h**2
    residual = u_t + centre * u_x - nu * u_xx
    scale = torch.stack((u_t.abs(), (centre * u_x).abs(), (nu * u_xx).abs())).amax(dim=0)
    assert (residual.abs() / scale).max().item() < 1e-5


def test_odd_symmetry_and_boundary_values() -> None:
    x = torch.linspace(0.0, 1.0, 201, dtype=torch.float64)
    t = _f64([0.1, 0.5, 2.0, 8.0])
    for nu in (NU_BENCH, 0.1 / math.pi, 1.0):
        u_pos = burgers_sine_exact(x, t, nu)
        u_neg = burgers_sine_exact(-x, t, nu)
        torch.testing.assert_close(u_neg, -u_pos, rtol=0.0, atol=1e-14)
        boundary = burgers_sine_exact(_f64([-1.0, 0.0, 1.0]), t, nu)
        assert boundary.abs().max().item() < 1e-13


def test_batch_of_times_and_tensor_nu() -> None:
    x = torch.linspace(-1.0, 1.0, 65, dtype=torch.float64)
    t = _f64([0.1, 0.5, 0.9])
    u_float = burgers_sine_exact(x, t, NU_BENCH)
    u_tensor = burgers_sine_exact(x, t, torch.tensor(NU_BENCH, dtype=torch.float64))
    assert u_float.shape == (3, 65)
    assert torch.equal(u_float, u_tensor)
    for i in range(3):  # each row equals the single-time evaluation
        single = burgers_sine_exact(x, t[i : i + 1], NU_BENCH)[0]
        torch.testing.assert_close(u_float[i], single, rtol=0.0, atol=1e-14)
    # float32 inputs are promoted; unsorted times with a zero are handled row by row
    u32 = burgers_sine_exact(x.float(), _f64([0.5, 0.0, 0.1]).float(), torch.tensor(NU_BENCH))
    assert u32.dtype == torch.float64
    torch.testing.assert_close(u32[0], u_float[1], rtol=0.0, atol=1e-6)
    torch.testing.assert_close(u32[1], -torch.sin(math.pi * x.float().double()))


def test_series_and_quadrature_agree() -> None:
    """Late times use the Fourier–Bessel series; a forced fine quadrature must agree."""
    nu = 0.1 / math.pi
    x = torch.linspace(-1.0, 1.0, 129, dtype=torch.float64)
    t = _f64([1.5, 2.0, 3.0, 5.0])
    u = burgers_sine_exact(x, t, nu)
    u_quad = burgers_sine_exact(x, t, nu, num_nodes=4 * default_num_nodes(nu, 5.0))
    torch.testing.assert_close(u, u_quad, rtol=0.0, atol=1e-13)
    # and the series keeps relative accuracy once u has decayed below the quadrature's floor
    nu, t_late = 1.0, 10.0
    expected_amp = math.exp(-nu * math.pi**2 * t_late)  # heat decay: u ≈ -exp(-nu pi² t) sin(pi x)
    u_late = burgers_sine_exact(_f64([0.5]), _f64([t_late]), nu)[0, 0].item()
    assert u_late < 0.0 and abs(u_late) == pytest.approx(expected_amp, rel=0.1)


def test_small_viscosity_is_finite() -> None:
    x = torch.linspace(-1.0, 1.0, 513, dtype=torch.float64)
    t = _f64([1e-3, 0.3, 1.0, 5.0])
    u = burgers_sine_exact(x, t, 1e-4)
    assert torch.isfinite(u).all()
    assert u.abs().max().item() <= 1.0 + 1e-12


def test_chunking_does_not_change_result(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.linspace(-1.0, 1.0, 300, dtype=torch.float64)
    t = _f64([0.9, 0.05, 0.4, 0.0, 0.2])
    for nu in (NU_BENCH, 1.0 / math.pi):
        u = burgers_sine_exact(x, t, nu)
        monkeypatch.setattr(cole_hopf, "_CHUNK_ELEMENTS", 5000)
        u_chunked = burgers_sine_exact(x, t, nu)
        monkeypatch.undo()
        torch.testing.assert_close(u_chunked, u, rtol=0.0, atol=1e-14)


def test_invalid_arguments() -> None:
    x = torch.zeros(4, dtype=torch.float64)
    with pytest.raises(ValueError):
        burgers_sine_exact(x, _f64([-0.1]), NU_BENCH)
    with pytest.raises(ValueError):
        burgers_sine_exact(x, _f64([0.1]), 0.0)
    with pytest.raises(ValueError):
        burgers_sine_exact(x[None], _f64([0.1]), NU_BENCH)
