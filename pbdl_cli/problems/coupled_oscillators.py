"""Controlling a chain of coupled oscillators (PBDL book ch. 41, "Coupled Oscillators with
Half-Inverse Gradients"; Schnell, Holl & Thuerey 2022).

N oscillators with positions x_i and velocities v_i, state s = [x_1..x_N, v_1..v_N], and
a scalar control u(t) that pushes the last one:

    x' = v,    v' = -x + k Lap x + u e_N                        (``coupling: linear``)

Lap is the chain's graph Laplacian, tridiag(1, -2, 1) with free ends (the corners are -1,
the book's ``build_laplace(n, boundary='0')``; for N = 2 it is [[-1, 1], [1, -1]]) and
k = 0.2 (``strength``). This is the book's code. The book's text states the Hamiltonian

    H = sum_i x_i^2 / 2 + p_i^2 / 2 + alpha (x_i - x_{i+1})^4 + u(t) x_i c_i,

whose quartic coupling ``coupling: quartic`` gives (with the same free ends, pairs i, i+1
of the chain only): v_i' = -x_i - 4 alpha [(x_i - x_{i+1})^3 - (x_{i-1} - x_i)^3] + u c_i.
The control enters with the code's sign (+u; the Hamiltonian's -u only flips the sign
the network learns).

The control is piecewise constant: u_k over RK4 step k of ``time_step`` (0.5), ``steps``
(24) steps in all. The learning task: return to the initial state. Per sample:

    unknowns x = u [steps],   condition = s_0 [2N],   y = P(u; s_0) = s(steps dt) [2N],
    target y* = s_0,          network input = y*,     L_y = |y - y*|^2

with s_0 ~ uniform[0, 1)^{2N} (the book's X_TRAIN = Y_TRAIN, 4096 samples). L_y has no
1/2: the book's loss is the sum of squares, its derivatives those of the batch mean
(loss / batch_size), which is exactly what ``gradient``, ``sip`` and ``hig`` differentiate
with this L_y. No ground-truth controls (many controls reach y*); no analytic inverse
(``sip`` uses the pseudo-inverse of dy/du, ``method.inverse=pinv``).

Shapes: u [B, steps], s_0 and y [B, 2N]. Everything is differentiable by autograd and
``torch.func`` (vmap, jacrev) and works in any floating dtype on any device.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import ClassVar

import torch
from torch import Tensor

from pbdl_cli.problems.base import PROBLEMS
from pbdl_cli.problems.inversion import Inversion, Samples
from pbdl_cli.registry import PluginConfig


class Coupling(str, enum.Enum):
    """The force between neighbouring oscillators."""

    linear = "linear"  # k Lap x: the book's code
    quartic = "quartic"  # from alpha (x_i - x_{i+1})^4: the book's Hamiltonian


@dataclasses.dataclass
class CoupledOscillatorsConfig(PluginConfig):
    """Configuration of :class:`CoupledOscillators` (``problem.<key>``).

    Attributes:
        oscillators: N, the number of oscillators (book: 2).
        steps: RK4 steps, one control value each (book: 24).
        time_step: the RK4 step dt (book: 0.5).
        coupling: ``linear`` (k Lap x, the book's code) or ``quartic`` (the Hamiltonian's
            alpha (x_i - x_{i+1})^4).
        strength: k of the linear coupling (book: 0.2).
        alpha: alpha of the quartic coupling (0.05: the force 4 alpha d^3 equals the
            linear one, 0.2 d, at a unit distance d).
    """

    oscillators: int = 2
    steps: int = 24
    time_step: float = 0.5
    coupling: Coupling = Coupling.linear
    strength: float = 0.2
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if self.coupling not in {c.value for c in Coupling}:
            raise ValueError(f"coupling must be linear or quartic, got {self.coupling!r}")
        self.coupling = Coupling(self.coupling)
        if self.oscillators < 1 or self.steps < 1:
            raise ValueError("oscillators and steps must be >= 1")
        if self.time_step <= 0:
            raise ValueError("time_step must be > 0")
        if self.strength < 0 or self.alpha < 0:
            raise ValueError("strength and alpha must be >= 0")


def chain_laplacian(n: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """The free-ended chain's Laplacian tridiag(1, -2, 1) with corners -1 (the book's
    ``build_laplace(n, '0')``; zero for n = 1): [n, n]."""
    if n == 1:
        return torch.zeros(1, 1, dtype=dtype)
    lap = -2 * torch.eye(n, dtype=dtype)
    lap += torch.diag(torch.ones(n - 1, dtype=dtype), 1) + torch.diag(
        torch.ones(n - 1, dtype=dtype), -1
    )
    lap[0, 0] = lap[-1, -1] = -1
    return lap


@PROBLEMS.register("coupled_oscillators")
class CoupledOscillators(Inversion):
    """Find the 24 controls that bring N coupled oscillators back to their start (module
    docstring)."""

    Config = CoupledOscillatorsConfig
    config: CoupledOscillatorsConfig
    fields: ClassVar[tuple[str, ...]] = ("u",)

    def __init__(self, config: CoupledOscillatorsConfig) -> None:
        super().__init__(config)
        n = config.oscillators
        self.x_shape = (config.steps,)  # type: ignore[misc]
        self.y_shape = (2 * n,)  # type: ignore[misc]
        self.input_shape = (2 * n,)  # type: ignore[misc]
        self._lap = chain_laplacian(n)
        self._push = torch.zeros(n, dtype=torch.float64)
        self._push[-1] = 1.0  # the control acts on the last oscillator
        self._affine: dict[float, tuple[Tensor, Tensor]] = {}

    def slug(self) -> str:
        c = self.config
        return f"coupled_oscillators_n{c.oscillators}_{c.coupling.value}"

    # the physics ------------------------------------------------------------------------
    def rhs(self, s: Tensor, u: Tensor) -> Tensor:
        """s' = f(s, u): states s [B, 2N] and one control value per sample u [B] -> [B, 2N]."""
        c, n = self.config, self.config.oscillators
        x, v = s[..., :n], s[..., n:]
        if c.coupling is Coupling.linear:
            coupling = c.strength * x @ self._lap.to(x)  # Lap is symmetric
        else:  # -d/dx_i of alpha sum_i (x_i - x_{i+1})^4 over the chain's n - 1 pairs
            bond = 4 * c.alpha * (x[..., :-1] - x[..., 1:]) ** 3  # [B, n - 1]
            zero = torch.zeros_like(x[..., :1])
            coupling = torch.cat([zero, bond], -1) - torch.cat([bond, zero], -1)
        return torch.cat([v, -x + coupling + u[..., None] * self._push.to(x)], -1)

    def rk4_step(self, s: Tensor, u: Tensor, dt: float) -> Tensor:
        """One classical RK4 step of s' = f(s, u) with u held constant: [B, 2N] -> [B, 2N]."""
        k1 = self.rhs(s, u)
        k2 = self.rhs(s + 0.5 * dt * k1, u)
        k3 = self.rhs(s + 0.5 * dt * k2, u)
        k4 = self.rhs(s + dt * k3, u)
        return s + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    def simulate(self, s0: Tensor, u: Tensor, dt: float | None = None) -> Tensor:
        """The state after ``u.shape[-1]`` RK4 steps of ``dt`` (default ``time_step``), one
        control value each: s0 [B, 2N], u [B, T] -> [B, 2N]. The linear coupling applies
        each step as its affine map (:meth:`rk4_affine`), the quartic one the four stages."""
        dt = self.config.time_step if dt is None else dt
        s = s0
        if self.config.coupling is Coupling.linear:
            r, q = (t.to(s0) for t in self.rk4_affine(dt))
            for k in range(u.shape[-1]):
                s = s @ r.T + u[..., k, None] * q
            return s
        for k in range(u.shape[-1]):
            s = self.rk4_step(s, u[..., k], dt)
        return s

    def rk4_affine(self, dt: float) -> tuple[Tensor, Tensor]:
        """For the linear coupling, one RK4 step as the affine map s -> R s + q u it is
        (f is affine in s and u, so the four stages compose to one): R [2N, 2N] (the step of
        the basis states without control) and q [2N] (the step of s = 0 with u = 1), in
        float64. Identical to :meth:`rk4_step` up to rounding, with 2 tensor operations
        instead of about 40: this is what makes the Jacobians of ``hig`` and ``sip`` cheap."""
        if dt not in self._affine:
            n2 = 2 * self.config.oscillators
            basis = torch.eye(n2, dtype=torch.float64)
            r = self.rk4_step(basis, torch.zeros(n2, dtype=torch.float64), dt).T
            q = self.rk4_step(torch.zeros(1, n2, dtype=torch.float64), torch.ones(1), dt)[0]
            self._affine[dt] = (r, q)
        return self._affine[dt]

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """y = P(u; s_0): controls x [B, steps] and initial states ``condition`` [B, 2N] ->
        final states [B, 2N]."""
        assert condition is not None, "coupled_oscillators needs the initial states"
        return self.simulate(condition, x)

    def energy(self, s: Tensor) -> Tensor:
        """The uncontrolled system's energy sum_i x_i^2/2 + v_i^2/2 plus the coupling's
        potential (-k/2 x^T Lap x, or alpha sum (x_i - x_{i+1})^4): [B, 2N] -> [B]."""
        c, n = self.config, self.config.oscillators
        x, v = s[..., :n], s[..., n:]
        e = 0.5 * (x.square().sum(-1) + v.square().sum(-1))
        if c.coupling is Coupling.linear:
            return e - 0.5 * c.strength * ((x @ self._lap.to(x)) * x).sum(-1)
        return e + c.alpha * ((x[..., :-1] - x[..., 1:]) ** 4).sum(-1)

    # the learning task ------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator) -> Samples:
        """Initial states s_0 ~ uniform[0, 1)^{2N}, which are also the targets and the
        network's input."""
        s0 = torch.rand(n, 2 * self.config.oscillators, generator=generator, dtype=torch.float64)
        return Samples(input=s0, target=s0, condition=s0)

    def loss_y(self, y: Tensor, target: Tensor) -> Tensor:
        """The book's per-sample loss L_y = |y - y*|^2 (a sum of squares, no 1/2): [B]."""
        return (y - target).flatten(1).square().sum(1)
