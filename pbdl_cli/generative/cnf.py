"""Continuous normalizing flows: the divergence of a velocity field, the augmented ODE of
state and log-density, and the exact log-likelihood and samples of a learned flow.

Book ch. 22.6 (Neural ODEs, FFJORD) after Chen, Rubanova, Bettencourt & Duvenaud, "Neural
ordinary differential equations" (NeurIPS 2018) and Grathwohl et al., "FFJORD" (ICLR
2019). A velocity v(z, t) moves a state by dz/dt = v, and the log-density along a path
changes by the instantaneous change of variables

    d log p_t(z(t)) / dt = -tr(dv/dz) = -div v(z(t), t).

**Time convention (the book's code): data y at t = 0, latent z at t = 1**, z ~ N(0, I)
(the book's text puts the Gaussian at t = 0; the network learns either, v -> -v with
t -> 1 - t). The augmented state [z, delta] with delta(t0) = 0 solves

    d/dt [z, delta] = [v(z, t), -div v(z, t)],

so integrating data y from t0 = 0 to t1 = 1 gives the latent z(1) and

    log q(y) = log N(z(1); 0, I) - delta(1) = log N(z(1); 0, I) + int_0^1 div v dt

(:func:`log_likelihood`; the book's ``ldj`` is -delta(1) = ``log_det`` here). With t0 in
(0, 1) it is the marginal density of the flow at time t0. Sampling integrates z ~ N(0, I)
from t = 1 back to t = 0 without the density (:func:`sample`).

Divergence: ``exact`` takes one backward pass per dimension (D passes, the book's loop);
``hutchinson`` (Hutchinson 1989; FFJORD) takes one vector-Jacobian product,
eps^T (dv/dz) eps, an unbiased estimate of the trace for probes with E[eps eps^T] = I
(``rademacher`` +-1 or ``gaussian``), one probe per sample held fixed over the solve: the
option for large D. Both assume that v's samples do not interact (no batch statistics):
the batch sum of v_i is differentiated, so d v_i(b) / d z_i(b') must vanish for b != b'.

Integration: :func:`pbdl_cli.generative.flow_matching.integrate` (fixed ``euler``,
``midpoint``, ``rk4`` with a step count; adaptive ``dopri5`` etc. via torchdiffeq with
rtol / atol, the book: dopri5 at 1e-5), backpropagating through the solver's steps; with
``adjoint=True`` torchdiffeq's ``odeint_adjoint`` instead (gradients by solving the
adjoint ODE backwards, memory independent of the step count; its fixed-step ``rk4`` is
torchdiffeq's 3/8-rule variant). Every result carries the number of velocity evaluations
(NFE) of the forward solve.

The velocity is any callable ``v(z, t) -> dz/dt`` with z ``[B, D]`` or ``[B, C, *spatial]``
and t a float tensor ``[B]``; fields are flattened per sample for the divergence and the
augmented state is ``[B, D + 1]`` (D = C * prod(spatial)).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from pbdl_cli.errors import PbdlError, did_you_mean
from pbdl_cli.generative.common import Sampled, StepCallback, normal_like
from pbdl_cli.generative.flow_matching import ADAPTIVE, FIXED_STEP, METHODS, integrate

#: a velocity field: v(z [B, ...], t [B] float) -> dz/dt [B, ...]
VelocityFn = Callable[[Tensor, Tensor], Tensor]
#: how the divergence is computed
DIVERGENCES = ("exact", "hutchinson")
#: the Hutchinson probes (both have E[eps eps^T] = I)
PROBES = ("rademacher", "gaussian")
#: the time of the data and of the latent (the book's code)
T_DATA, T_LATENT = 0.0, 1.0


class Likelihood(NamedTuple):
    """:func:`log_likelihood`'s result: log q(y) [B], the latent z(t1) (shape of y), the
    log-determinant int div v dt [B] and the velocity evaluations of the solve."""

    log_prob: Tensor
    z: Tensor
    log_det: Tensor
    evaluations: int


def _choice(value: str, choices: Sequence[str], what: str) -> None:
    if value not in choices:
        raise PbdlError(
            f"unknown {what} '{value}'{did_you_mean(value, choices)}; "
            f"choose one of {', '.join(choices)}"
        )


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) per sample [B] = -|z|^2 / 2 - D / 2 log(2 pi), D = z[0].numel()."""
    flat = z.reshape(z.shape[0], -1)
    return -0.5 * flat.square().sum(1) - 0.5 * flat.shape[1] * math.log(2 * math.pi)


def divergence_exact(v: Tensor, z: Tensor, *, create_graph: bool = False) -> Tensor:
    """div v = sum_i dv_i / dz_i per sample [B], one backward pass per dimension.

    Args:
        v: the velocity ``[B, ...]``, computed from ``z`` in the autograd graph.
        z: the state ``[B, ...]`` (shape of ``v``), requiring grad.
        create_graph: keep the divergence differentiable (training).
    """
    batch = v.shape[0]
    flat = v.reshape(batch, -1)
    div = flat.new_zeros(batch)
    if not v.requires_grad:  # v does not depend on z
        return div
    for i in range(flat.shape[1]):
        (grad,) = torch.autograd.grad(
            flat[:, i].sum(), z, create_graph=create_graph, retain_graph=True, allow_unused=True
        )
        if grad is not None:
            div = div + grad.reshape(batch, -1)[:, i]
    return div


def divergence_hutchinson(
    v: Tensor, z: Tensor, probe: Tensor, *, create_graph: bool = False
) -> Tensor:
    """Hutchinson's estimate eps^T (dv/dz) eps of div v per sample [B] (one
    vector-Jacobian product); unbiased for probes ``eps`` (shape of z) with
    E[eps eps^T] = I."""
    batch = v.shape[0]
    if not v.requires_grad:
        return v.new_zeros(batch)
    (grad,) = torch.autograd.grad(
        (v * probe).sum(), z, create_graph=create_graph, retain_graph=True, allow_unused=True
    )
    if grad is None:
        return v.new_zeros(batch)
    return (grad * probe).reshape(batch, -1).sum(1)


def draw_probe(like: Tensor, kind: str = "rademacher", generator: torch.Generator | None = None):
    """A Hutchinson probe of ``like``'s shape, dtype and device: ``rademacher`` (+-1 with
    probability 1/2 each) or ``gaussian`` (standard normal), drawn from ``generator``."""
    _choice(kind, PROBES, "Hutchinson probe")
    if kind == "gaussian":
        return normal_like(like, generator)
    device = generator.device if generator is not None else like.device
    bits = torch.randint(0, 2, like.shape, generator=generator, device=device)
    return (2 * bits - 1).to(device=like.device, dtype=like.dtype)


def velocity_and_divergence(
    v: VelocityFn,
    z: Tensor,
    t: Tensor,
    *,
    divergence: str = "exact",
    probe: Tensor | None = None,
    create_graph: bool = False,
) -> tuple[Tensor, Tensor]:
    """v(z, t) ``[B, ...]`` and its divergence ``[B]`` (exact, or Hutchinson with
    ``probe``). Gradients are switched on for the divergence even under ``no_grad``;
    without ``create_graph`` both results are detached."""
    _choice(divergence, DIVERGENCES, "divergence")
    if divergence == "hutchinson" and probe is None:
        raise PbdlError("the Hutchinson divergence needs a probe (draw_probe)")
    with torch.enable_grad():
        if not z.requires_grad:
            z = z.detach().requires_grad_(True)
        out = v(z, t)
        if divergence == "exact":
            div = divergence_exact(out, z, create_graph=create_graph)
        else:
            div = divergence_hutchinson(out, z, probe, create_graph=create_graph)
    if not create_graph:
        out, div = out.detach(), div.detach()
    return out, div


def augmented_dynamics(
    v: VelocityFn,
    shape: Sequence[int],
    *,
    divergence: str = "exact",
    probe: Tensor | None = None,
) -> Callable[[Tensor, Tensor], Tensor]:
    """The right-hand side of the augmented ODE on the flat state s = [z, delta]
    ``[B, D + 1]`` (z of ``shape`` [B, ...] flattened): ds/dt = [v(z, t), -div v(z, t)].

    The divergence is differentiable (``create_graph``) whenever gradients are enabled
    at the call, i.e. during training and in the adjoint's backward solve.
    """
    shape = tuple(shape)

    def f(s: Tensor, t: Tensor) -> Tensor:
        z = s[:, :-1].reshape(shape)
        out, div = velocity_and_divergence(
            v, z, t, divergence=divergence, probe=probe, create_graph=torch.is_grad_enabled()
        )
        return torch.cat([out.reshape(shape[0], -1), -div[:, None]], dim=1)

    return f


def log_likelihood(
    v: VelocityFn,
    y: Tensor,
    *,
    method: str = "dopri5",
    steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    divergence: str = "exact",
    probe: str = "rademacher",
    generator: torch.Generator | None = None,
    adjoint: bool = False,
    adjoint_params: Sequence[Tensor] = (),
    t0: float = T_DATA,
) -> Likelihood:
    """log q(y) of the flow (module docstring): y at ``t0`` (0: the data) integrated to
    the latent at t = 1 with the augmented dynamics.

    Args:
        v: the velocity callable.
        y: points ``[B, D]`` or fields ``[B, C, *spatial]``.
        method, steps, rtol, atol: as :func:`~.flow_matching.integrate` (``steps`` only
            and always for the fixed-step methods).
        divergence: ``exact`` or ``hutchinson``.
        probe: the Hutchinson probe's kind (``rademacher`` or ``gaussian``), drawn once
            per sample from ``generator``.
        adjoint: gradients by torchdiffeq's adjoint method; ``adjoint_params`` are the
            tensors to differentiate (the network's parameters).
        t0: the start time in [0, 1] (0: the data; else the flow's marginal at t0).

    Returns:
        log q(y) [B], z(1), log_det = int_t0^1 div v dt [B] and the evaluations.
    """
    _choice(divergence, DIVERGENCES, "divergence")
    if not 0.0 <= t0 <= T_LATENT:
        raise PbdlError(f"CNF: the start time must lie in [0, 1], got {t0}")
    batch = y.shape[0]
    eps = draw_probe(y, probe, generator) if divergence == "hutchinson" else None
    if t0 == T_LATENT:  # nothing to integrate: q_1 is the prior
        zero = y.new_zeros(batch)
        return Likelihood(standard_normal_log_prob(y), y, zero, 0)
    f = augmented_dynamics(v, y.shape, divergence=divergence, probe=eps)
    s0 = torch.cat([y.reshape(batch, -1), y.new_zeros(batch, 1)], dim=1)
    if adjoint:
        s1, evaluations = _adjoint(f, s0, method, steps, rtol, atol, adjoint_params, t0)
    else:
        s1, evaluations = integrate(
            f, s0, method=method, steps=steps, t0=t0, t1=T_LATENT, rtol=rtol, atol=atol
        )
    z, log_det = s1[:, :-1].reshape(y.shape), -s1[:, -1]
    return Likelihood(standard_normal_log_prob(z) + log_det, z, log_det, evaluations)


def sample(
    v: VelocityFn,
    z: Tensor,
    *,
    method: str = "dopri5",
    steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    t1: float = T_DATA,
    snapshots: Sequence[float] = (),
    callback: StepCallback | None = None,
) -> Sampled:
    """Samples of the flow: latents ``z`` (``[B, ...]``, usually N(0, I)) at t = 1
    integrated to ``t1`` (0: the data) with dz/dt = v(z, t), backwards in time.

    ``snapshots`` (adaptive methods) and ``callback`` as
    :func:`~.flow_matching.integrate`; sampling does not switch autograd off.
    """
    if not 0.0 <= t1 <= T_LATENT:
        raise PbdlError(f"CNF: the end time must lie in [0, 1], got {t1}")
    if t1 == T_LATENT:
        return Sampled(z, 0)
    return integrate(
        v,
        z,
        method=method,
        steps=steps,
        t0=T_LATENT,
        t1=t1,
        rtol=rtol,
        atol=atol,
        snapshots=snapshots,
        callback=callback,
    )


def _adjoint(
    f: Callable[[Tensor, Tensor], Tensor],
    s0: Tensor,
    method: str,
    steps: int | None,
    rtol: float,
    atol: float,
    params: Sequence[Tensor],
    t0: float,
) -> tuple[Tensor, int]:
    """s(1) by torchdiffeq's ``odeint_adjoint`` and the forward solve's evaluations."""
    _choice(method, METHODS, "ODE method")
    if method in FIXED_STEP and (steps is None or steps < 1):
        raise PbdlError(f"ODE method {method} needs steps >= 1, got {steps}")
    if method in ADAPTIVE and steps is not None:
        raise PbdlError(f"ODE method {method} chooses its own steps: leave steps unset")
    params = tuple(params)
    if not params:
        raise PbdlError("CNF: the adjoint method needs the parameters to differentiate")
    try:
        from torchdiffeq import odeint_adjoint
    except ImportError:
        raise PbdlError(
            "the adjoint method needs the torchdiffeq package: pip install 'pbdl[generative]'"
        ) from None
    evaluations = 0

    def func(t: Tensor, s: Tensor) -> Tensor:
        nonlocal evaluations
        evaluations += 1
        return f(s, t.expand(s.shape[0]))

    options = {}
    if method in FIXED_STEP:  # exactly ``steps`` steps (a step_size may round to one more)

        def grid(func: object, y0: Tensor, t: Tensor) -> Tensor:
            return torch.linspace(
                float(t[0]), float(t[-1]), steps + 1, dtype=t.dtype, device=t.device
            )

        options["grid_constructor"] = grid
    times = torch.tensor([t0, T_LATENT], dtype=s0.dtype, device=s0.device)
    path = odeint_adjoint(
        func,
        s0,
        times,
        rtol=rtol,
        atol=atol,
        method=method,
        options=options,
        adjoint_params=params,
    )
    return path[-1], evaluations  # the count so far: the backward solve comes later
