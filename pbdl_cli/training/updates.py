"""Update rules for the unknowns x of a physics optimization (PBDL book ch. 36-37).

Each rule returns the step Delta x for a batch of independent problems x [B, n] (one row
each); the caller applies x <- x + Delta x. Derivatives come from ``torch.func``
(vmapped over the batch, no Python loop over samples). With the chain x -> y = P(x) ->
L(y), g = dL/dx and H = d^2L/dx^2:

- gradient descent:    Delta x_GD = -eta g
- Newton:              Delta x_N  = -eta H^-1 g                       (exact Hessian)
- Gauss-Newton:        Delta x_GN = -eta (J^T J)^-1 J^T r = -eta J^+ r for L = c |r(x)|^2
                       (any c > 0), J = dr/dx [m, n]; J^+ is the pseudo-inverse, so a
                       rank-deficient J gives the minimum-norm step
- inverse simulator:   Delta x_PG = P^-1(y + Delta y; x) - x, with y = P(x) and the Newton
  (PG, "physical       step of L in y-space Delta y = -eta (d^2L/dy^2)^-1 dL/dy; for
  gradient")           L = |y - y*|^2 that is Delta y = eta (y* - y)

Functions of one sample (``loss``: [n] -> scalar, ``residual``: [n] -> [m]) are
vmapped; ``forward`` and ``inverse`` act on the last axis of batched tensors.

For training a network x = f(input; theta) through the physics (ch. 38-41):

- SIP target:          x~ = P^-1(y + eta (y* - y); x), the point a scale-invariant
                       physics update moves x to (the proxy loss is 1/2 |x - sg(x~)|^2);
                       without an inverse simulator x~ = x + J_x^+ eta (y* - y), the
                       Gauss-Newton local inverse (:func:`pinv_inverse`)
- HIG direction:       Delta theta = V Lambda^-beta U^T g for the stacked Jacobian
                       J = dy/dtheta = U Lambda V^T [B m, p] and g = dL/dy [B m], singular
                       values below tau sigma_max set to zero (beta = 1/2: half-inverse
                       gradients, beta = 1: Gauss-Newton); the update is -eta Delta theta
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import grad, hessian, jacrev, vmap

#: one sample's scalar loss, [n] -> []
Loss = Callable[[Tensor], Tensor]


def gradient_step(loss: Loss, x: Tensor, lr: float) -> Tensor:
    """Delta x = -lr dL/dx for every row of ``x`` [B, n]: [B, n]."""
    return -lr * vmap(grad(loss))(x)


def newton_step(loss: Loss, x: Tensor, lr: float) -> Tensor:
    """Delta x = -lr H^-1 dL/dx with the exact Hessian H [B, n, n] of every row of ``x``
    [B, n]: [B, n]. A singular H raises torch's LinAlgError."""
    g = vmap(grad(loss))(x)
    h = vmap(hessian(loss))(x)
    return -lr * torch.linalg.solve(h, g)


def gauss_newton_step(residual: Callable[[Tensor], Tensor], x: Tensor, lr: float) -> Tensor:
    """Delta x = -lr J^+ r for L = c |r(x)|^2, r: [n] -> [m], J = dr/dx [B, m, n], for
    every row of ``x`` [B, n]: [B, n]."""
    r = vmap(residual)(x)
    jac = vmap(jacrev(residual))(x)
    return -lr * (torch.linalg.pinv(jac) @ r[..., None])[..., 0]


def inverse_simulator_step(
    forward: Callable[[Tensor], Tensor],
    inverse: Callable[[Tensor, Tensor], Tensor],
    loss_y: Loss,
    x: Tensor,
    lr: float,
) -> Tensor:
    """Delta x = P^-1(y + Delta y; x) - x, y = P(x), Delta y the Newton step of
    ``loss_y`` ([m] -> scalar) at y with step size ``lr``; ``x`` [B, n] -> [B, n].
    ``forward`` = P ([B, n] -> [B, m]), ``inverse`` = P^-1(y; x0) ([B, m], [B, n] -> [B, n])."""
    y = forward(x)
    return inverse(y + newton_step(loss_y, y, lr), x) - x


def pinv_inverse(
    forward: Callable[[Tensor, Tensor | None], Tensor],
    x: Tensor,
    dy: Tensor,
    rcond: float,
    condition: Tensor | None = None,
) -> Tensor:
    """The Gauss-Newton local inverse x + J^+ dy at every row of ``x`` [B, n] for output
    steps ``dy`` [B, m]: [B, n]. ``forward(x_i, c_i)`` is one sample's P ([n] -> [m]; c_i a
    row of ``condition`` [B, ...] or None); J = dP/dx [B, m, n] comes from
    ``vmap(jacrev)``, and singular values below ``rcond`` sigma_max are dropped
    (``torch.linalg.pinv(rtol=rcond)``, as TensorFlow's ``pinv(rcond)``)."""
    if condition is None:
        jac = vmap(jacrev(lambda v: forward(v, None)))(x)
    else:
        jac = vmap(jacrev(forward))(x, condition)
    return x + (torch.linalg.pinv(jac, rtol=rcond) @ dy[..., None])[..., 0]


def truncated_power(s: Tensor, tau: float, beta: float) -> Tensor:
    """s^-beta for the singular values ``s`` [k] (descending) at or above tau s[0], zero for
    the others (truncated, not clamped; book ch. 40): [k]."""
    keep = s >= tau * s[0]
    safe = torch.where(keep, s, torch.ones_like(s))
    return torch.where(keep, safe.pow(-beta), torch.zeros_like(s))


def thin_svd(a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The thin SVD a = U diag(s) V^T of ``a`` [R, p]: U [R, k], s [k], V^T [k, p] with
    k = min(R, p), as ``torch.linalg.svd(a, full_matrices=False)``. A wide ``a`` (R < p,
    e.g. HIG's Jacobian of 128 rows and 1,444 parameters) is decomposed as its transpose,
    which LAPACK (MKL's gesdd) does about 2.5x faster on the CPU; the factors are the same
    up to rounding (and the signs of singular-vector pairs)."""
    if a.shape[-2] < a.shape[-1]:
        v, s, uh = torch.linalg.svd(a.transpose(-2, -1), full_matrices=False)
        return uh.transpose(-2, -1), s, v.transpose(-2, -1)
    return torch.linalg.svd(a, full_matrices=False)


def hig_direction(jac: Tensor, g: Tensor, tau: float, beta: float) -> Tensor:
    """Delta theta = V Lambda^-beta U^T g for the stacked Jacobian ``jac`` [R, p] (R =
    batch x dim y rows) and the loss gradient ``g`` = dL/dy [R]: [p]. The step is
    theta <- theta - eta Delta theta; beta = 1 with a full-rank ``jac`` is the Gauss-Newton
    step J^+ g."""
    return hig_step(jac, g, tau, beta)[0]


def hig_step(jac: Tensor, g: Tensor, tau: float, beta: float) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`hig_direction` with what it saw: (Delta theta [p], the singular values of
    ``jac`` [k] descending, the inverted powers [k], zero where truncated)."""
    u, s, vh = thin_svd(jac)
    power = truncated_power(s, tau, beta)
    return vh.transpose(-2, -1) @ (power * (u.transpose(-2, -1) @ g)), s, power
