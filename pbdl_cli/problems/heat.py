"""Inverting heat conduction (PBDL book ch. 39; Holl, Koltun & Thuerey 2022, SIP).

Heat u diffuses on a periodic square of ``resolution`` x ``resolution`` unit cells,

    du/dt = nu Laplace(u),   y = P(x) = u(t*) for x = u(t0),

solved exactly in Fourier space (``diffuse``):

    y^_k = x^_k exp(-|2 pi f_k|^2 t nu),   f_k = fftfreq(N) (cycles per cell),

the convention of phiflow's ``diffuse.fourier(x, t nu, 1)`` (book: t nu = 8). The
network sees y* = P(x*) and predicts x; the ground truth x* is known. In the
:class:`~pbdl_cli.problems.inversion.Inversion` terms: input = y*, target = y*,
truth = x*, no condition; x_shape = y_shape = input_shape = (1, N, N).

Data (``sample``, the book's ``generate_heat_example``): per sample int(4 + 7 U) of 10
candidate boxes are "hot": box i has its centre uniform in the central 80 % of the
domain (then clipped so that the box stays inside), half-sizes 10 U per axis and
strength U (0 for the inactive ones), all U ~ U[0, 1) independent. The boxes are
rasterized softly like phiflow's ``SoftGeometryMask``: a cell with centre p gets the
fraction clip(1/2 - d(p) / r, 0, 1) of a box, with d the signed L-infinity distance of
p to the box surface and r = sqrt(2)/2 the half diagonal of a cell.

Inverse (``stabilized_inverse_diffuse``, the book's ``inv_diffuse``): the exact inverse
multiplies mode k by exp(+L_k), L_k = |2 pi f_k|^2 t nu, which amplifies noise without
bound. The book weighs each mode of the step dy by the probability that it is signal,

    p_k = S_k / (S_k + N_k),  S_k = 1/2 exp(-1/2 (|dy^_k| / (N e^-L_k))^2),
                              N_k = 1/2 exp(-1/2 (|dy^_k| / sigma)^2),

sigma = ``noise`` |dy|_2 (book: 1e-6), and applies exp(L_k a_k) with the action
a_k = 2 (p_k - 1/2) where p_k <= 0.5 or p_k >= 0.68, else 0 (a = 1: exact inversion,
a = -1: one more forward diffusion). SIP's local inverse (:meth:`Heat.inverse`) is
x~ = x0 + stabilized_inverse(y - P(x0)), the book's ``x + inv_diffuse(y* - y)``.

Physics runs in float64 whatever the network's dtype (cast inside ``forward`` and
``inverse``; results come back in the input's dtype), as in the book.

Shapes: x, y [B, 1, N, N].
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from pbdl_cli.problems.base import PROBLEMS
from pbdl_cli.problems.inversion import Inversion, Samples
from pbdl_cli.registry import PluginConfig

#: floor(log(float32 max)): the largest exponent of an applied inverse kernel
LOG_KERNEL_MAX = math.floor(math.log(torch.finfo(torch.float32).max))
#: candidate boxes per sample and the range of active ones, int(4 + 7 U) (book)
CANDIDATES = 10
MIN_ACTIVE, ACTIVE_SPAN = 4, 7
#: largest box half-size (cells) and the central fraction of the domain for the centres
MAX_HALF_SIZE = 10.0
CENTRAL = 0.8


def log_decay(n: int, amount: float) -> Tensor:
    """L_k = |2 pi f_k|^2 t nu on the ``torch.fft.rfft2`` grid of an n x n field of unit
    cells, float64 [n, n // 2 + 1]; P multiplies mode k by exp(-L_k)."""
    fx = torch.fft.fftfreq(n, dtype=torch.float64)
    fy = torch.fft.rfftfreq(n, dtype=torch.float64)
    return (2 * math.pi) ** 2 * (fx[:, None] ** 2 + fy[None, :] ** 2) * amount


def diffuse(x: Tensor, amount: float) -> Tensor:
    """Exact periodic diffusion by t nu = ``amount``: [..., n, n] -> [..., n, n] (same
    dtype; differentiable)."""
    n = x.shape[-1]
    kernel = torch.exp(-log_decay(n, amount)).to(x.device, x.dtype)
    return torch.fft.irfft2(torch.fft.rfft2(x) * kernel, s=x.shape[-2:])


def signal_probability(dy: Tensor, amount: float, noise: float) -> tuple[Tensor, Tensor]:
    """The book's per-mode signal probability p and action a of a step dy [..., n, n]
    (float64): both [..., n, n // 2 + 1] on the rfft2 grid (module docstring).

    Follows the book's float64 arithmetic: S_k that is not finite counts as 0, and
    p = 0 where S_k + N_k is 0 (a mode more than about 38 times above its expected
    amplitude then gets p = 0, a = -1: it is damped, not amplified)."""
    n = dy.shape[-1]
    log_kernel = log_decay(n, amount).to(dy.device)
    amp = torch.fft.rfft2(dy).abs()
    expected = n * torch.exp(-log_kernel)
    sigma = noise * dy.flatten(-2).norm(dim=-1)[..., None, None]
    signal = 0.5 * torch.exp(-0.5 * (amp / expected) ** 2)
    signal = torch.where(torch.isfinite(signal), signal, torch.zeros_like(signal))
    noise_like = 0.5 * torch.exp(-0.5 * (amp / sigma) ** 2)
    total = signal + noise_like
    p = torch.where(total > 0, signal / total, torch.zeros_like(total))
    act = torch.isfinite(p) & ((p <= 0.5) | (p >= 0.68))
    action = torch.where(act, 2 * (p - 0.5), torch.zeros_like(p))
    return p, action


def stabilized_inverse_diffuse(dy: Tensor, amount: float, noise: float = 1e-6) -> Tensor:
    """The book's probability-weighted inverse diffusion of a step dy [..., n, n]:
    mode k times exp(min(L_k a_k, log float32 max)). Computed in float64, returned in
    dy's dtype; finite for any t nu."""
    d64 = dy.to(torch.float64)
    _, action = signal_probability(d64, amount, noise)
    log_kernel = log_decay(d64.shape[-1], amount).to(d64.device)
    kernel = torch.exp(torch.clamp(log_kernel * action, max=LOG_KERNEL_MAX))
    out = torch.fft.irfft2(torch.fft.rfft2(d64) * kernel, s=d64.shape[-2:])
    return out.to(dy.dtype)


def box_mask(centre: Tensor, half: Tensor, n: int) -> Tensor:
    """Soft masks of axis-aligned boxes on an n x n grid of unit cells (cell centres at
    i + 1/2), like phiflow's ``SoftGeometryMask``: centre, half [B, 2] -> [B, n, n]."""
    cells = torch.arange(n, dtype=centre.dtype, device=centre.device) + 0.5
    dist = (cells[None, None, :] - centre[:, :, None]).abs() - half[:, :, None]  # [B, 2, n]
    linf = torch.maximum(dist[:, 0, :, None], dist[:, 1, None, :])
    return torch.clamp(0.5 - linf / math.sqrt(0.5), 0.0, 1.0)


@dataclasses.dataclass
class HeatConfig(PluginConfig):
    """Configuration of :class:`Heat` (``problem.<key>``).

    Attributes:
        resolution: cells per axis N (book: 64).
        amount: t nu, the diffusion of P (book: 8).
        noise: sigma / |dy|_2 of the stabilized inverse (book: 1e-6).
        mean_correction: shift each predicted x to the ground truth's mean before the
            physics, x + mean(x*) - mean(x) (the book does; off by default because it
            feeds the network's output with the answer's mean, docs/problems/heat.md).
    """

    resolution: int = 64
    amount: float = 8.0
    noise: float = 1e-6
    mean_correction: bool = False

    def __post_init__(self) -> None:
        if self.resolution < 2 or self.amount < 0 or self.noise <= 0:
            raise ValueError("resolution must be >= 2, amount >= 0 and noise > 0")


@PROBLEMS.register("heat")
class Heat(Inversion):
    """Recover the initial heat x* from y* = P(x*), exact periodic diffusion (module
    docstring)."""

    Config = HeatConfig
    config: HeatConfig

    @property  # type: ignore[override]
    def x_shape(self) -> tuple[int, ...]:
        n = self.config.resolution
        return (1, n, n)

    y_shape = x_shape  # type: ignore[assignment]
    input_shape = x_shape  # type: ignore[assignment]

    def slug(self) -> str:
        c = self.config
        return f"heat_n{c.resolution}_t{c.amount:g}"

    def boxes(self, n: int, generator: torch.Generator) -> Tensor:
        """x* of ``n`` samples, the book's random hot boxes: [n, 1, N, N] float64."""
        size = self.config.resolution

        def uniform(*shape: int) -> Tensor:
            return torch.rand(*shape, generator=generator, dtype=torch.float64)

        active = torch.floor(MIN_ACTIVE + ACTIVE_SPAN * uniform(n))
        centres = (uniform(n, CANDIDATES, 2) - 0.5) * size * CENTRAL + size * 0.5
        x = torch.zeros(n, size, size, dtype=torch.float64)
        for i in range(CANDIDATES):
            half = uniform(n, 2) * MAX_HALF_SIZE
            strength = uniform(n) * (i < active).to(torch.float64)
            centre = torch.clamp(centres[:, i], min=half, max=size - half)
            x = x + box_mask(centre, half, size) * strength[:, None, None]
        return x[:, None]

    def sample(self, n: int, generator: torch.Generator) -> Samples:
        """``n`` random box fields x* and y* = P(x*), float64."""
        truth = self.boxes(n, generator)
        target = self.forward(truth)
        return Samples(input=target, target=target, truth=truth)

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """y = P(x), exact diffusion by t nu in float64: [B, 1, N, N] -> [B, 1, N, N]."""
        return diffuse(x.to(torch.float64), self.config.amount).to(x.dtype)

    def inverse(self, y: Tensor, x0: Tensor, condition: Tensor | None = None) -> Tensor:
        """x~ = x0 + stabilized_inverse(y - P(x0)) (P is linear: SIP's goal y = P(x0) +
        eta (y* - P(x0)) gives the book's x + inv_diffuse(eta (y* - y)))."""
        c = self.config
        x64 = x0.to(torch.float64)
        dy = y.to(torch.float64) - diffuse(x64, c.amount)
        return (x64 + stabilized_inverse_diffuse(dy, c.amount, c.noise)).to(x0.dtype)

    def correct(self, x: Tensor, samples: Samples) -> Tensor:
        """The book's mean correction x + mean(x*) - mean(x) per sample where
        ``mean_correction`` is on (it needs x*), else x."""
        if not self.config.mean_correction or samples.truth is None:
            return x
        dims = tuple(range(1, x.dim()))
        return x + samples.truth.mean(dims, keepdim=True) - x.mean(dims, keepdim=True)
