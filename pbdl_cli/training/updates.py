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
vmapped; ``forward`` and ``inverse`` act on the last axis of batched tensors. The later
network-training rules (SIP, HIG) build on these.
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
