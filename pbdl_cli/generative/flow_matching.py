"""Conditional flow matching: the interpolant, its regression target, and ODE integration
of a learned velocity.

Book ch. 25 (Flow matching) and ch. 26 (DDPM vs flow matching on RANS airfoils), after
Lipman, Chen, Ben-Hamu, Nickel & Le, "Flow matching for generative modeling", ICLR 2023.
Noise x0 ~ N(0, I) sits at t = 0 and data x1 at t = 1 (the book's convention):

* interpolant (the optimal-transport conditional path with sigma_min):
  x_t = (1 - (1 - sigma_min) t) x0 + t x1, so x_0 = x0 and x_1 = sigma_min x0 + x1;
* target (``form="derivative"``, ch. 26 and Lipman et al.): u = dx_t/dt = x1 - (1 - sigma_min) x0;
  (``form="difference"``, the ch. 25 GM notebook): u = x1 - x0, which differs from the
  derivative by sigma_min x0 (negligible for its sigma_min = 1e-4);
* training: regress v_theta(x_t, t) on u with t ~ U(0, 1) (``L_CFM``);
* sampling: integrate dx/dt = v(x, t) from t = 0 to 1 starting at x0 ~ N(0, I), without
  added noise: fixed steps (``euler``, ``midpoint``, ``rk4``; 1, 2, 4 evaluations per
  step) or adaptive through torchdiffeq's ``odeint`` (``dopri5`` etc. with rtol / atol;
  the book's GM notebook uses dopri5 at 1e-5). The result always carries the number of
  velocity evaluations.

The velocity is any callable ``v(x, t) -> dx/dt`` with ``x`` of shape ``[B, D]`` or
``[B, C, *spatial]`` and ``t`` a float tensor ``[B]`` (one time per sample, equal here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from pbdl_cli.errors import PbdlError, did_you_mean
from pbdl_cli.generative.common import Sampled, StepCallback, batch_vector, per_sample

#: a velocity field: v(x [B, ...], t [B] float) -> dx/dt [B, ...]
VelocityFn = Callable[[Tensor, Tensor], Tensor]
#: the regression targets: the interpolant's time derivative (ch. 26) or x1 - x0 (ch. 25)
TARGETS = ("derivative", "difference")
#: fixed-step methods and their velocity evaluations per step
FIXED_STEP = {"euler": 1, "midpoint": 2, "rk4": 4}
#: adaptive methods, handed to torchdiffeq's odeint
ADAPTIVE = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
METHODS = (*FIXED_STEP, *ADAPTIVE)


def interpolant(x0: Tensor, x1: Tensor, t: float | Tensor, sigma_min: float = 0.0) -> Tensor:
    """x_t = (1 - (1 - sigma_min) t) x0 + t x1.

    Args:
        x0: noise, ``[B, D]`` or ``[B, C, *spatial]``.
        x1: data, shape of ``x0``.
        t: times in [0, 1], a float or a tensor ``[B]``.
        sigma_min: the path's width at t = 1 (book: 1e-4 in ch. 25, 1e-3 in ch. 26).
    """
    t = per_sample(t, x0)
    return (1 - (1 - sigma_min) * t) * x0 + t * x1


def target(x0: Tensor, x1: Tensor, sigma_min: float = 0.0, form: str = "derivative") -> Tensor:
    """The conditional velocity u to regress on: ``derivative`` x1 - (1 - sigma_min) x0
    (d x_t / dt of :func:`interpolant`), or ``difference`` x1 - x0. Independent of t."""
    if form == "derivative":
        return x1 - (1 - sigma_min) * x0
    if form == "difference":
        return x1 - x0
    raise PbdlError(
        f"unknown flow-matching target '{form}'{did_you_mean(form, TARGETS)}; "
        f"choose one of {', '.join(TARGETS)}"
    )


def integrate(
    v: VelocityFn,
    x: Tensor,
    *,
    method: str = "euler",
    steps: int | None = None,
    t0: float = 0.0,
    t1: float = 1.0,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    snapshots: Sequence[float] = (),
    callback: StepCallback | None = None,
) -> Sampled:
    """Integrate dx/dt = v(x, t) from ``t0`` to ``t1`` (either direction) starting at ``x``.

    Fixed-step methods with h = (t1 - t0) / steps, t_n = t0 + n h:

    * ``euler``:    x += h v(x, t);
    * ``midpoint``: x += h v(x + h/2 v(x, t), t + h/2);
    * ``rk4``:      k1 = v(x, t), k2 = v(x + h/2 k1, t + h/2), k3 = v(x + h/2 k2, t + h/2),
      k4 = v(x + h k3, t + h), x += h/6 (k1 + 2 k2 + 2 k3 + k4).

    Global errors fall as h^1, h^2, h^4; the evaluations are exactly steps x (1, 2, 4).
    Adaptive methods (``dopri5``, ...: torchdiffeq's ``odeint`` with ``rtol``/``atol``)
    choose their own steps; the evaluations are counted as they happen.

    Args:
        v: the velocity callable (module docstring).
        x: the state at ``t0``, ``[B, D]`` or ``[B, C, *spatial]``.
        method: one of :data:`METHODS`.
        steps: the number of steps; required for (and only for) fixed-step methods.
        snapshots: adaptive methods only: times strictly between t0 and t1 at which
            ``callback`` also sees the state.
        callback: ``callback(step, t, x)`` after each fixed step, or at each snapshot
            time and at t1 for adaptive methods.

    Returns:
        the state at ``t1`` and the number of velocity evaluations.
    """
    if method in FIXED_STEP:
        if steps is None or steps < 1:
            raise PbdlError(f"ODE method {method} needs steps >= 1, got {steps}")
        return _fixed(v, x, method, steps, t0, t1, callback)
    if method in ADAPTIVE:
        if steps is not None:
            raise PbdlError(f"ODE method {method} chooses its own steps: leave steps unset")
        return _adaptive(v, x, method, t0, t1, rtol, atol, snapshots, callback)
    raise PbdlError(
        f"unknown ODE method '{method}'{did_you_mean(method, METHODS)}; "
        f"choose one of {', '.join(METHODS)}"
    )


def _fixed(
    v: VelocityFn,
    x: Tensor,
    method: str,
    steps: int,
    t0: float,
    t1: float,
    callback: StepCallback | None,
) -> Sampled:
    h = (t1 - t0) / steps

    def f(y: Tensor, t: float) -> Tensor:
        return v(y, batch_vector(t, y))

    for n in range(steps):
        t = t0 + n * h
        if method == "euler":
            x = x + h * f(x, t)
        elif method == "midpoint":
            x = x + h * f(x + h / 2 * f(x, t), t + h / 2)
        else:
            k1 = f(x, t)
            k2 = f(x + h / 2 * k1, t + h / 2)
            k3 = f(x + h / 2 * k2, t + h / 2)
            k4 = f(x + h * k3, t + h)
            x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        if callback is not None:
            callback(n + 1, t0 + (n + 1) * h, x)
    return Sampled(x, steps * FIXED_STEP[method])


def _adaptive(
    v: VelocityFn,
    x: Tensor,
    method: str,
    t0: float,
    t1: float,
    rtol: float,
    atol: float,
    snapshots: Sequence[float],
    callback: StepCallback | None,
) -> Sampled:
    odeint = _odeint()
    lo, hi = sorted((t0, t1))
    if any(not lo < s < hi for s in snapshots):
        raise PbdlError(f"ODE snapshots must lie strictly between {t0} and {t1}")
    times = [t0, *sorted(snapshots, reverse=t1 < t0), t1]
    grid = torch.tensor(times, dtype=x.dtype, device=x.device)
    evaluations = 0

    def f(t: Tensor, y: Tensor) -> Tensor:
        nonlocal evaluations
        evaluations += 1
        return v(y, t.expand(y.shape[0]))

    path = odeint(f, x, grid, rtol=rtol, atol=atol, method=method)
    if callback is not None:
        for k in range(1, len(times)):
            callback(k, times[k], path[k])
    return Sampled(path[-1], evaluations)


def _odeint() -> Callable[..., Tensor]:
    try:
        from torchdiffeq import odeint
    except ImportError:
        raise PbdlError(
            "adaptive ODE integration needs the torchdiffeq package: "
            "pip install 'pbdl[generative]' (or use method=euler|midpoint|rk4 with steps)"
        ) from None
    return odeint
