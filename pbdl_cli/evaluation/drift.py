r"""Drift (rollout) metrics: how a surrogate's trajectory drifts from the reference, frame by frame.

Predictions ``p`` and references ``r`` are [B, T, C, *spatial]: B trajectories of T frames,
C channels on a grid of D = 0, 1 or 2 spatial axes (``S = (S_1, .., S_D)`` cells). Every
quantity is computed per trajectory b and frame k over the ``n = C * prod(S)`` values of
that frame, giving [B, T], and then averaged over trajectories (and over frames where one
number is wanted), as in Kochkov et al. 2021 (PNAS 118, e2101784118) and Stachenfeld et
al. 2022 (ICLR, "Learned coarse models for efficient turbulence simulation").

Per trajectory and frame (sums over the n values of frame k of trajectory b):

- ``mse = (1/n) sum (p - r)^2``, ``mae = (1/n) sum |p - r|``,
  ``rel_l2 = ||p - r||_2 / ||r||_2``, ``nrmse = rms(p - r) / rms(r)``
  (the registered metrics of :mod:`pbdl_cli.evaluation.metrics`; per frame nrmse equals
  rel_l2, since both RMS run over the same n values);
- Pearson correlation ``corr = sum (p - mean p)(r - mean r) / (||p - mean p|| ||r - mean r||)``
  (one mean over channels and cells); NaN where p or r is constant (up to rounding:
  ``max|x - mean x| <= 64 eps max|x|``), and for n < 2;
- spectral quantities (D >= 1, :func:`spectral_errors`): the relative error of the
  radially binned energy spectrum, and rel_l2 split into a low and a high wavenumber half.

Aggregates (:func:`rollout_summary`): per-frame curves are trajectory means (``corr``: the
mean over trajectories where it is defined, NaN where it is defined in none); the
correlation time is the first frame whose mean correlation is below a threshold
(:func:`correlation_time`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor

from pbdl_cli.evaluation.metrics import per_frame

#: default correlation threshold of the correlation time (Stachenfeld et al. 2022 use 0.8)
CORR_THRESHOLD = 0.8
#: a field is constant where ``max|x - mean x| <= CONSTANT_TOL * eps * max|x|``
CONSTANT_TOL = 64.0
_EPS = 1e-30


# -- correlation ---------------------------------------------------------------------------
def correlation(prediction: Tensor, reference: Tensor) -> Tensor:
    r"""Pearson correlation of every trajectory and frame, over channels and cells.

    .. math::
        \rho_{bk} = \frac{\sum_i (p_i - \bar p)(r_i - \bar r)}
                         {\lVert p - \bar p\rVert_2\,\lVert r - \bar r\rVert_2},
        \qquad \bar p = \frac1n \sum_i p_i,

    with i running over the n = C * prod(S) values of frame k of trajectory b.

    Args:
        prediction, reference: [B, T, ...] (e.g. [B, T, C, *spatial]).

    Returns:
        [B, T] in [-1, 1]; NaN where the prediction or the reference frame is constant
        (the correlation is undefined: 0 / 0), which includes frames of one value.
    """
    b, t = prediction.shape[:2]
    p, r = prediction.reshape(b, t, -1), reference.reshape(b, t, -1)
    with torch.no_grad():
        pc, rc = p - p.mean(dim=-1, keepdim=True), r - r.mean(dim=-1, keepdim=True)
        # divide twice: the product of two tiny norms could underflow
        rho = (pc * rc).sum(dim=-1) / pc.norm(dim=-1) / rc.norm(dim=-1)
        undefined = _constant(p, pc) | _constant(r, rc)
        return rho.clamp(-1.0, 1.0).masked_fill(undefined, math.nan)


def _constant(x: Tensor, centred: Tensor) -> Tensor:
    """[B, T] True where the frame ``x`` [B, T, n] is constant up to rounding."""
    eps = torch.finfo(x.dtype).eps if x.is_floating_point() else 0.0
    return centred.abs().amax(dim=-1) <= CONSTANT_TOL * eps * x.abs().amax(dim=-1)


@dataclasses.dataclass(frozen=True)
class CorrelationTime:
    """The first frame whose correlation is below a threshold.

    Attributes:
        time: ``times[frame]``.
        frame: the frame index k*.
        reached: False where the correlation never dropped below the threshold; then
            ``frame`` is the last one and ``time`` only a lower bound of the correlation time.
    """

    time: float
    frame: int
    reached: bool


def correlation_time(
    corr: Tensor, times: Tensor, threshold: float = CORR_THRESHOLD
) -> CorrelationTime:
    r"""The correlation time: :math:`k^* = \min\{k : \bar\rho_k < \theta\}`, :math:`t^* = t_{k^*}`.

    Args:
        corr: [T] trajectory-mean correlation of every frame (NaN frames never count as
            below the threshold).
        times: [T] times of the frames.
        threshold: theta.

    Returns:
        ``CorrelationTime(t*, k*, reached=True)``, or the last frame with ``reached=False``
        where no frame is below the threshold. No interpolation between frames.
    """
    below = torch.nonzero(corr < threshold).flatten()  # NaN < theta is False
    if len(below):
        k = int(below[0])
        return CorrelationTime(time=float(times[k]), frame=k, reached=True)
    k = len(corr) - 1
    return CorrelationTime(time=float(times[k]), frame=k, reached=False)


# -- spectra -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Modes:
    """The Fourier modes of :func:`transform`: a real FFT over D spatial axes.

    Attributes:
        q: [*modes] wavenumber magnitude in units of the Nyquist wavenumber,
            ``q = sqrt(sum_d (2 m_d / N_d)^2)`` in ``[0, sqrt(D)]`` (``m_d / N_d``: cycles
            per cell along axis d, N_d its transformed length).
        weight: [*modes] 2 for modes whose conjugate the real FFT leaves out, else 1, so
            that ``sum weight |x_hat|^2 = sum x^2`` (Parseval, orthonormal DFT).
        shell: [*modes] radial bin ``j = round(q N_min / 2)`` (width: one mode of the
            coarsest axis; in 1D the mode number |m|).
        num_shells: J = max(shell) + 1.
        n_min: N_min, the smallest transformed length.
    """

    q: Tensor
    weight: Tensor
    shell: Tensor
    num_shells: int
    n_min: int


def transform(x: Tensor, dims: int, periodic: bool) -> tuple[Tensor, Modes]:
    """Orthonormal real FFT of ``x`` over its last ``dims`` axes.

    A non-periodic field is first extended evenly along every axis (``[x, flip(x)]``, length
    2 N_d: a DCT-II spectrum), so that the jump between its two ends does not leak into
    high wavenumbers; a periodic one is transformed as it is.

    Args:
        x: [*lead, *spatial] with ``dims`` >= 1 spatial axes.
        dims: number of spatial axes D.
        periodic: whether the field is periodic on its grid.

    Returns:
        ``x_hat`` [*lead, *modes] (complex; ``sum weight |x_hat|^2 = 2^D sum x^2`` after an
        even extension, ``sum x^2`` else) and its :class:`Modes`.
    """
    axes = tuple(range(-dims, 0))
    if not periodic:
        for d in axes:
            x = torch.cat([x, x.flip(d)], dim=d)
    shape = x.shape[-dims:]
    x_hat = torch.fft.rfftn(x, dim=axes, norm="ortho")
    freqs = [torch.fft.fftfreq(n, dtype=torch.float64) for n in shape[:-1]]
    freqs.append(torch.fft.rfftfreq(shape[-1], dtype=torch.float64))
    grids = torch.meshgrid(*freqs, indexing="ij")
    q = 2.0 * torch.stack(grids).square().sum(dim=0).sqrt()
    m = torch.arange(len(freqs[-1]))
    last = torch.where((m == 0) | (2 * m == shape[-1]), 1.0, 2.0).to(torch.float64)
    weight = last.expand(q.shape)
    shell = torch.round(q * min(shape) / 2).long()
    modes = Modes(q, weight, shell, num_shells=int(shell.max()) + 1, n_min=min(shape))
    return x_hat, modes


def energy_spectrum(x: Tensor, dims: int, periodic: bool) -> tuple[Tensor, Tensor]:
    r"""Radially binned energy spectrum, summed over channels.

    .. math::
        E_j = \sum_c \sum_{m:\ \mathrm{shell}(m) = j} w_m\, |\hat x_c(m)|^2,

    with :math:`\hat x` the orthonormal DFT of :func:`transform` and shells and weights of
    :class:`Modes`, so that :math:`\sum_j E_j = \sum x^2` (times 2^D without periodicity).

    Args:
        x: [*lead, C, *spatial] with ``dims`` >= 1 spatial axes.
        dims: D; periodic: see :func:`transform`.

    Returns:
        ``E`` [*lead, J] and the shell centres [J] in units of the Nyquist wavenumber.
    """
    x_hat, modes = transform(x, dims, periodic)
    power = x_hat.abs().square().sum(dim=-dims - 1) * modes.weight.to(x.dtype)  # [*lead, *modes]
    centres = torch.arange(modes.num_shells, dtype=torch.float64) * 2.0 / modes.n_min
    return _bin(power, modes, dims), centres


def _bin(power: Tensor, modes: Modes, dims: int) -> Tensor:
    """Sum ``power`` [*lead, *modes] over the modes of each shell: [*lead, J]."""
    lead = power.shape[: power.ndim - dims]
    flat = power.reshape(-1, modes.shell.numel())
    spectrum = flat.new_zeros(flat.shape[0], modes.num_shells)
    spectrum.index_add_(1, modes.shell.flatten(), flat)
    return spectrum.reshape(*lead, modes.num_shells)


def spectral_errors(
    prediction: Tensor, reference: Tensor, *, periodic: bool = False
) -> dict[str, Tensor] | None:
    r"""Spectral errors of every trajectory and frame.

    With :math:`E^p_j, E^r_j` the binned energy spectra of :func:`energy_spectrum` and
    :math:`\hat e, \hat r` the transforms of p - r and r (:func:`transform`), q the
    wavenumber in units of the Nyquist wavenumber:

    .. math::
        \mathrm{spectral\_error} = \frac{\sum_j |E^p_j - E^r_j|}{\sum_j E^r_j},\qquad
        \mathrm{rel\_l2\_low} = \sqrt{\frac{\sum_{q \le 1/2} w |\hat e|^2}
                                           {\sum_{\mathrm{all}} w |\hat r|^2}},\qquad
        \mathrm{rel\_l2\_high} = \sqrt{\frac{\sum_{q > 1/2} w |\hat e|^2}
                                            {\sum_{\mathrm{all}} w |\hat r|^2}}

    (sums also over channels). By Parseval ``rel_l2_low^2 + rel_l2_high^2 = rel_l2^2``:
    the two halves split the relative L2 error of the frame by wavenumber. The spectral
    error ignores phases (a shifted field has none) and measures misplaced energy: 0 for
    equal spectra, 3 for p = 2 r. Zero denominators are clamped to 1e-30, as in rel_l2.

    Args:
        prediction, reference: [B, T, C, *spatial].
        periodic: whether the fields are periodic (else evenly extended, :func:`transform`).

    Returns:
        ``{"spectral_error", "rel_l2_low", "rel_l2_high"}``, each [B, T]; None without space
        (D = 0: time-only problems). Radial shells make sense for any D; 1D and 2D are tested.
    """
    dims = prediction.ndim - 3
    if dims < 1:
        return None
    with torch.no_grad():
        p_hat, modes = transform(prediction, dims, periodic)
        r_hat, _ = transform(reference, dims, periodic)
        weight = modes.weight.to(prediction.dtype)
        channel = -dims - 1

        def power(z: Tensor) -> Tensor:  # [B, T, *modes], summed over channels
            return z.abs().square().sum(dim=channel) * weight

        power_r, power_e = power(r_hat), power(p_hat - r_hat)
        e_p, e_r = _bin(power(p_hat), modes, dims), _bin(power_r, modes, dims)  # [B, T, J]
        axes = tuple(range(-dims, 0))
        total = power_r.sum(dim=axes).clamp_min(_EPS)  # ||r||^2 (times 2^D extended)
        low = modes.q <= 0.5
        return {
            "spectral_error": (e_p - e_r).abs().sum(dim=-1) / e_r.sum(dim=-1).clamp_min(_EPS),
            "rel_l2_low": (power_e * low).sum(dim=axes).div(total).sqrt(),
            "rel_l2_high": (power_e * ~low).sum(dim=axes).div(total).sqrt(),
        }


# -- everything for one evaluation ---------------------------------------------------------
@dataclasses.dataclass
class RolloutSummary:
    """The rollout metrics of one evaluation (see :func:`rollout_summary`).

    Attributes:
        per_time: {name: [T]} trajectory means per frame (NaN where undefined).
        metrics: {name: value} single numbers.
        info: how they were computed (threshold, whether it was reached, periodicity).
    """

    per_time: dict[str, list[float]]
    metrics: dict[str, float]
    info: dict[str, Any]


def rollout_summary(
    prediction: Tensor,
    reference: Tensor,
    times: Tensor,
    *,
    periodic: bool = False,
    threshold: float = CORR_THRESHOLD,
) -> RolloutSummary | None:
    """Per-frame curves and single numbers of a rollout.

    ``per_time``: ``mse``, ``nrmse`` (trajectory means), and with space (D >= 1) ``corr``
    (mean over the trajectories where it is defined) and ``spectral_error``.

    ``metrics``: ``rel_l2_last`` (rel_l2 of the last frame, mean over trajectories); with
    space also ``corr_time`` and ``corr_time_frame`` (:func:`correlation_time` of the mean
    correlation; the last frame where it never drops below ``threshold``), and
    ``spectral_error``, ``rel_l2_low``, ``rel_l2_high`` (:func:`spectral_errors`, mean over
    trajectories and frames k >= 1: frame 0 is usually the given initial state).

    Args:
        prediction, reference: [B, T, C, *spatial].
        times: [T] frame times.
        periodic: whether the fields are periodic (spectra, :func:`transform`).
        threshold: correlation threshold theta of the correlation time.

    Returns:
        The summary, or None for a single frame (T < 2: a static problem has no rollout).
    """
    t = prediction.shape[1]
    if t < 2:
        return None
    dims = prediction.ndim - 3
    curves = {name: per_frame(name, prediction, reference).mean(dim=0) for name in ("mse", "nrmse")}
    metrics = {"rel_l2_last": float(per_frame("rel_l2", prediction, reference)[:, -1].mean())}
    info: dict[str, Any] = {"spatial_dims": dims}
    if dims >= 1:
        curves["corr"] = torch.nanmean(correlation(prediction, reference), dim=0)
        crossing = correlation_time(curves["corr"], times, threshold)
        metrics |= {"corr_time": crossing.time, "corr_time_frame": float(crossing.frame)}
        info |= {"corr_threshold": threshold, "corr_time_reached": crossing.reached}
        spectral = spectral_errors(prediction, reference, periodic=periodic)
        if spectral is not None:
            curves["spectral_error"] = spectral["spectral_error"].mean(dim=0)
            metrics |= {k: float(v[:, 1:].mean()) for k, v in spectral.items()}
            info["periodic"] = periodic
    return RolloutSummary(
        per_time={k: v.tolist() for k, v in curves.items()}, metrics=metrics, info=info
    )
