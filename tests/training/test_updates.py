"""The update rules of pbdl_cli.training.updates: GD, Newton, Gauss-Newton and the
inverse simulator step, against closed forms (quadratics, linear least squares)."""

from __future__ import annotations

import pytest
import torch

from pbdl_cli.training import updates

A = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)  # SPD
B = torch.tensor([1.0, -2.0], dtype=torch.float64)


def quadratic(x):
    """1/2 x^T A x - b^T x: minimizer A^-1 b, gradient A x - b, Hessian A."""
    return 0.5 * x @ A @ x - B @ x


def test_gradient_step_is_minus_lr_times_the_gradient_per_row():
    x = torch.tensor([[1.0, 2.0], [-3.0, 0.5]], dtype=torch.float64)
    step = updates.gradient_step(quadratic, x, lr=0.1)
    torch.testing.assert_close(step, -0.1 * (x @ A - B), rtol=1e-14, atol=1e-14)


def test_newton_on_a_quadratic_converges_in_one_step_with_lr_1():
    x = torch.tensor([[5.0, -7.0], [0.0, 1.0], [100.0, 3.0]], dtype=torch.float64)
    optimum = torch.linalg.solve(A, B)
    torch.testing.assert_close(x + updates.newton_step(quadratic, x, lr=1.0), optimum.expand(3, 2))
    # a smaller step goes part of the way along the same direction
    half = updates.newton_step(quadratic, x, lr=0.5)
    torch.testing.assert_close(half, 0.5 * (optimum - x))


def test_gauss_newton_equals_newton_on_linear_least_squares():
    generator = torch.Generator().manual_seed(0)
    m = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    d = torch.randn(5, generator=generator, dtype=torch.float64)

    def residual(x):
        return m @ x - d

    def loss(x):
        return residual(x).square().sum()

    x = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    gn = updates.gauss_newton_step(residual, x, lr=0.7)
    torch.testing.assert_close(gn, updates.newton_step(loss, x, lr=0.7))
    # with lr = 1: the least-squares solution, from every start
    solution = torch.linalg.lstsq(m, d[:, None]).solution[:, 0]
    full = x + updates.gauss_newton_step(residual, x, lr=1.0)
    torch.testing.assert_close(full, solution.expand(4, 3))


def test_gauss_newton_of_a_nonlinear_residual_uses_its_jacobian():
    def residual(x):  # J = diag(1, 2 x1)
        return torch.stack([x[0], x[1].square()])

    x = torch.tensor([[3.0, 3.0]], dtype=torch.float64)
    step = updates.gauss_newton_step(residual, x, lr=1.0)
    torch.testing.assert_close(step, torch.tensor([[-3.0, -1.5]], dtype=torch.float64))


def test_inverse_simulator_step_is_the_y_newton_step_mapped_back():
    def forward(x):
        return torch.stack([2 * x[..., 0], x[..., 1] ** 3], dim=-1)

    def inverse(y, x0):
        return torch.stack([y[..., 0] / 2, y[..., 1].sign() * y[..., 1].abs() ** (1 / 3)], -1)

    def loss_y(y):  # |y - y*|^2: the y-Newton step is lr (y* - y)
        return (y - torch.tensor([1.0, 8.0], dtype=y.dtype)).square().sum()

    x = torch.tensor([[3.0, 1.0], [-1.0, 3.0]], dtype=torch.float64)
    y = forward(x)
    step = updates.inverse_simulator_step(forward, inverse, loss_y, x, lr=0.25)
    expected_y = y + 0.25 * (torch.tensor([1.0, 8.0], dtype=torch.float64) - y)
    torch.testing.assert_close(forward(x + step), expected_y)
    # lr = 1 lands on the target's preimage in one step
    full = x + updates.inverse_simulator_step(forward, inverse, loss_y, x, lr=1.0)
    torch.testing.assert_close(full, torch.tensor([[0.5, 2.0]] * 2, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(6, 17), (17, 6), (5, 5)])
def test_thin_svd_of_wide_tall_and_square_matrices_is_torchs(shape):
    """thin_svd decomposes a wide matrix as its transpose: same singular values, factors
    that reconstruct it, orthonormal columns of U and rows of V^T."""
    a = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    u, s, vh = updates.thin_svd(a)
    k = min(shape)
    assert u.shape == (shape[0], k) and s.shape == (k,) and vh.shape == (k, shape[1])
    assert torch.allclose(s, torch.linalg.svdvals(a))
    assert torch.allclose(u @ torch.diag(s) @ vh, a)
    assert torch.allclose(u.T @ u, torch.eye(k, dtype=torch.float64))
    assert torch.allclose(vh @ vh.T, torch.eye(k, dtype=torch.float64))
