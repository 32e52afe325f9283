"""The point-sample figures of :mod:`~pbdl_cli.evaluation.sample_figures` (2D scatter
with marginals, samples-and-density panels, 1D histograms per condition) and the helpers
the figures share: arrays from tensors, plotting windows, log-densities on grids, KDE.

Shapes: points [n, D] per condition (D = 1 or 2); a log-density maps y [B, D] (float64
CPU tensor) and one condition [*condition_shape] (or None) to [B] (or None).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from pbdl_cli.evaluation.figures import save_figure, spread_frames

LogDensity = Callable[[Tensor, Tensor | None], Tensor | None]

MODEL_COLOUR = "tab:red"
REFERENCE_COLOUR = "0.45"
#: points per side of the grid a density is evaluated on
GRID = 96
#: points per call of a log-density
CHUNK = 4096
#: quantiles of all samples that bound the plotted window (outliers stay outside)
WINDOW_QUANTILES = (0.002, 0.998)


# -- helpers ------------------------------------------------------------------------------
def as_numpy(values: Any) -> np.ndarray:
    """An array or tensor as float64 numpy."""
    if isinstance(values, Tensor):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def finite_rows(points: np.ndarray) -> tuple[np.ndarray, int]:
    """The samples [n, ...] whose values are all finite, and how many were not."""
    keep = np.isfinite(points.reshape(len(points), -1)).all(axis=1)
    return points[keep], int((~keep).sum())


def plot_window(*sets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds [D] of the plotted window around point sets [n, D]: the
    outer quantiles of their finite values, widened by 10 % on each side."""
    given = [s for s in sets if s is not None]
    rows = [s for s in given if len(s)]
    stacked = np.concatenate(rows) if rows else np.zeros((1, given[0].shape[1]))
    lo = np.quantile(stacked, WINDOW_QUANTILES[0], axis=0)
    hi = np.quantile(stacked, WINDOW_QUANTILES[1], axis=0)
    pad = np.maximum(0.1 * (hi - lo), 1e-3 * np.maximum(1.0, np.abs(hi) + np.abs(lo)))
    return lo - pad, hi + pad


def overlay_histograms(
    ax: Axes,
    model: np.ndarray,
    reference: np.ndarray | None,
    bins: np.ndarray,
    orientation: Literal["vertical", "horizontal"] = "vertical",
) -> None:
    """Density histograms of model values [n] (an outline) over reference values [n_ref]
    (filled) on the same bins; an empty set is left out (all its samples non-finite)."""
    style = {"bins": bins, "density": True, "orientation": orientation}
    if reference is not None and reference.size:
        ax.hist(
            reference,
            histtype="stepfilled",
            color=REFERENCE_COLOUR,
            alpha=0.35,
            label="reference",
            **style,
        )
    if model.size:
        ax.hist(model, histtype="step", color=MODEL_COLOUR, lw=1.3, label="model", **style)


def legend(ax: Axes, **kwargs: Any) -> None:
    """A small legend, where the axes hold labelled artists."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="x-small", **kwargs)


def log_density_on(
    log_density: LogDensity | None, points: np.ndarray, condition: np.ndarray | None
) -> np.ndarray | None:
    """log p at points [P, *shape] in chunks, as float64 [P]; None when the callable is
    None or returns None. Non-finite values become -inf (zero density)."""
    if log_density is None:
        return None
    c = None if condition is None else torch.as_tensor(condition, dtype=torch.float64)
    values = []
    for start in range(0, len(points), CHUNK):
        chunk = torch.as_tensor(points[start : start + CHUNK], dtype=torch.float64)
        out = log_density(chunk, c)
        if out is None:
            return None
        out = as_numpy(out)
        if out.shape != (len(chunk),):
            raise ValueError(
                f"a log-density must map [B, ...] to [B], got {list(out.shape)} for B = "
                f"{len(chunk)}"
            )
        values.append(out)
    result = np.concatenate(values)
    return np.where(np.isfinite(result), result, -np.inf)


def window_grid(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Axes xs [G], ys [G] of the window and its points [G * G, 2], y slowest (row i of a
    [G, G] image is ys[i], as ``contour(xs, ys, Z)`` expects)."""
    xs, ys = np.linspace(lo[0], hi[0], GRID), np.linspace(lo[1], hi[1], GRID)
    gx, gy = np.meshgrid(xs, ys, indexing="xy")
    return xs, ys, np.stack([gx.ravel(), gy.ravel()], axis=1)


def density_image(
    log_density: LogDensity | None, lo: np.ndarray, hi: np.ndarray, condition: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(xs, ys, p [G, G]) of exp(log_density) on the window; None without a density."""
    xs, ys, points = window_grid(lo, hi)
    values = log_density_on(log_density, points, condition)
    if values is None:
        return None
    return xs, ys, np.exp(values).reshape(GRID, GRID)


def density_levels(p: np.ndarray, count: int) -> np.ndarray | None:
    """``count`` contour levels of a density image, geometrically spaced from 1e-3 of its
    peak to 0.9 of it, so that a broad mode shows next to a narrow, tall one (even
    spacing would give the broad one no level at all); None for an image without a
    positive finite peak."""
    finite = p[np.isfinite(p)]
    peak = float(finite.max()) if finite.size else 0.0
    if peak <= 0.0:
        return None
    return peak * np.geomspace(1e-3, 0.9, count)


def kde_2d(points: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """A Gaussian kernel density estimate of points [N, 2] on the grid xs [Gx] x ys [Gy]
    -> [Gy, Gx] (integrates to about 1 over the plane).

    Product kernel with Scott's bandwidth per axis, h_d = sigma_d N^(-1/6) (d = 2); the
    sum factorizes, p(x, y) = (1/N) sum_i K_h(x - x_i) K_h(y - y_i) = (Ky Kx^T) / N.
    """
    n = len(points)
    if n < 2:
        raise ValueError(f"a density estimate needs at least 2 points, got {n}")
    h = np.maximum(points.std(axis=0, ddof=1), 1e-12) * n ** (-1 / 6)

    def kernel(grid: np.ndarray, values: np.ndarray, width: float) -> np.ndarray:
        z = (grid[:, None] - values[None, :]) / width
        return np.exp(-0.5 * z**2) / (width * math.sqrt(2 * math.pi))  # [G, N]

    return kernel(ys, points[:, 1], h[1]) @ kernel(xs, points[:, 0], h[0]).T / n


def axis_names(names: Sequence[str] | None, count: int, default: str) -> list[str]:
    if names is not None and len(names) >= count:
        return list(names[:count])
    return [default] if count == 1 else [f"{default}{k + 1}" for k in range(count)]


def condition_text(condition: np.ndarray | None, names: Sequence[str] | None) -> str:
    """``"x = 0.25"`` for a condition of at most 3 values, else ``"condition [C, H, W]"``."""
    if condition is None:
        return ""
    values = np.ravel(condition)
    if values.size > 3:
        return f"condition {list(np.shape(condition))}"
    labels = axis_names(names, values.size, "c")
    return ", ".join(f"{n} = {v:.3g}" for n, v in zip(labels, values, strict=True))


def titled(base: str, condition_text: str, dropped: int) -> str:
    text = f"{base} | {condition_text}" if condition_text else base
    return text + (f"  ({dropped} non-finite left out)" if dropped else "")


def check_points(values: Any, dim: int, what: str) -> np.ndarray:
    arr = as_numpy(values)
    if arr.ndim != 2 or arr.shape[1] != dim or len(arr) == 0:
        raise ValueError(f"{what} must be points [n, {dim}], got shape {list(arr.shape)}")
    return arr


# -- 2D points ----------------------------------------------------------------------------
def plot_scatter_2d(
    path: Path,
    samples: Any,
    reference: Any = None,
    *,
    log_density: LogDensity | None = None,
    condition: Any = None,
    names: Sequence[str] | None = None,
    condition_names: Sequence[str] | None = None,
) -> Path:
    """Model samples [n, 2] as a scatter over the true density, with marginal histograms
    of model against reference samples [n_ref, 2] on the top and right axes.

    The density is exp(log_density) on a grid (filled contours) where given, else a
    Gaussian KDE of the reference (:func:`kde_2d`, contour lines); the marginals add the
    true density's (a numerical integral over the window) where it is known.
    """
    model, dropped = finite_rows(check_points(samples, 2, "samples"))
    ref = None if reference is None else finite_rows(check_points(reference, 2, "reference"))[0]
    cond = None if condition is None else as_numpy(condition)
    lo, hi = plot_window(model, ref)
    labels = axis_names(names, 2, "y")

    fig = Figure(figsize=(6.4, 6.4), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=(4, 1), height_ratios=(1, 4))
    ax = fig.add_subplot(grid[1, 0])
    top = fig.add_subplot(grid[0, 0], sharex=ax)
    right = fig.add_subplot(grid[1, 1], sharey=ax)
    image = density_image(log_density, lo, hi, cond)
    if image is not None:
        xs, ys, p = image
        levels = density_levels(p, 12)
        if levels is not None:
            ax.contourf(xs, ys, p, levels=[0.0, *levels], cmap="Blues", extend="max")
        marginals = (p.sum(axis=0) * (ys[1] - ys[0]), p.sum(axis=1) * (xs[1] - xs[0]))
        top.plot(xs, marginals[0], color="black", lw=1.2, label="true")
        right.plot(marginals[1], ys, color="black", lw=1.2)
    elif ref is not None and len(ref) >= 2:
        xs, ys, _ = window_grid(lo, hi)
        kde = kde_2d(ref, xs, ys)
        levels = density_levels(kde, 8)
        if levels is not None:
            ax.contour(xs, ys, kde, levels=levels, colors="0.35", linewidths=0.7)
    alpha = float(np.clip(3000 / max(len(model), 1), 0.08, 0.7))
    ax.scatter(model[:, 0], model[:, 1], s=3, color=MODEL_COLOUR, alpha=alpha, linewidths=0)
    for axis, k, orientation in ((top, 0, "vertical"), (right, 1, "horizontal")):
        bins = np.linspace(lo[k], hi[k], 48)
        overlay_histograms(axis, model[:, k], None if ref is None else ref[:, k], bins, orientation)
    legend(top, loc="upper right")
    top.tick_params(labelbottom=False)
    right.tick_params(labelleft=False)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    density = "true density" if image is not None else "reference KDE" if ref is not None else ""
    base = f"{len(model)} model samples" + (f" over the {density}" if density else "")
    top.set_title(titled(base, condition_text(cond, condition_names), dropped), fontsize="small")
    return save_figure(fig, path)


def _hist_panel(
    ax: Axes, points: np.ndarray | None, lo: np.ndarray, hi: np.ndarray, bins: int
) -> Any:
    """A 2D histogram (a density: it integrates to 1 over the window) of points [n, 2]."""
    if points is None or not len(points):
        what = "no reference samples" if points is None else "no finite samples"
        ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes)
        return None
    counts, _, _ = np.histogram2d(
        points[:, 0], points[:, 1], bins=bins, range=[[lo[0], hi[0]], [lo[1], hi[1]]], density=True
    )
    return ax.imshow(
        counts.T, origin="lower", extent=(lo[0], hi[0], lo[1], hi[1]), aspect="auto", cmap="magma"
    )


def plot_density_panels(
    path: Path,
    samples: Any,
    reference: Any = None,
    *,
    log_density: LogDensity | None = None,
    model_log_density: LogDensity | None = None,
    condition: Any = None,
    names: Sequence[str] | None = None,
    condition_names: Sequence[str] | None = None,
) -> Path:
    """Samples and density side by side (the book's 2 x 2 figure, ch. 23): 2D histograms
    of model samples [n, 2] | reference samples [n_ref, 2] on the top row, and model
    likelihood exp(model_log_density) | true likelihood exp(log_density) on a grid below
    (the row only where one of them is given; both rows share colour scales)."""
    model, dropped = finite_rows(check_points(samples, 2, "samples"))
    ref = None if reference is None else finite_rows(check_points(reference, 2, "reference"))[0]
    cond = None if condition is None else as_numpy(condition)
    lo, hi = plot_window(model, ref)
    images = [density_image(f, lo, hi, cond) for f in (model_log_density, log_density)]
    rows = 2 if any(i is not None for i in images) else 1
    labels = axis_names(names, 2, "y")

    fig = Figure(figsize=(8.4, 3.8 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, 2, squeeze=False, sharex=True, sharey=True)
    smallest = len(model) if ref is None else min(len(model), len(ref))
    bins = int(np.clip(math.sqrt(smallest), 16, 80))  # sqrt(n) per axis: ~1 sample per bin
    drawn = [
        _hist_panel(axes[0, 0], model, lo, hi, bins),
        _hist_panel(axes[0, 1], ref, lo, hi, bins),
    ]
    top = max((float(d.get_array().max()) for d in drawn if d is not None), default=1.0)
    for d in drawn:
        if d is not None:
            d.set_clim(0.0, top)
    axes[0, 0].set_title(f"model samples ({len(model)})")
    axes[0, 1].set_title("reference samples" + (f" ({len(ref)})" if ref is not None else ""))
    if rows == 2:
        peak = max((float(i[2].max()) for i in images if i is not None), default=1.0)
        for ax, image, what in zip(axes[1], images, ("model", "true"), strict=True):
            if image is None:
                ax.text(
                    0.5,
                    0.5,
                    f"no {what} likelihood",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                )
            else:
                ax.imshow(
                    image[2],
                    origin="lower",
                    extent=(lo[0], hi[0], lo[1], hi[1]),
                    aspect="auto",
                    cmap="magma",
                    vmin=0.0,
                    vmax=peak,
                )
            ax.set_title(f"{what} likelihood")
    for ax in axes[-1]:
        ax.set_xlabel(labels[0])
    for ax in axes[:, 0]:
        ax.set_ylabel(labels[1])
    axes[0, 0].set_xlim(lo[0], hi[0])
    axes[0, 0].set_ylim(lo[1], hi[1])
    fig.suptitle(titled("samples and density", condition_text(cond, condition_names), dropped))
    return save_figure(fig, path)


# -- 1D points ----------------------------------------------------------------------------
def panel_grid(count: int, cols_max: int = 4) -> tuple[int, int]:
    cols = min(count, cols_max)
    return math.ceil(count / cols), cols


def plot_histograms_1d(
    path: Path,
    samples: Any,
    reference: Any = None,
    *,
    condition: Any = None,
    log_density: LogDensity | None = None,
    names: Sequence[str] | None = None,
    condition_names: Sequence[str] | None = None,
    max_conditions: int = 8,
) -> Path:
    """Overlaid histograms of model samples [M, n, 1] against reference samples
    [M, n_ref, 1], one small panel per condition [M, *condition_shape] (at most
    ``max_conditions``, spread over M), with the true density where known."""
    model = as_numpy(samples)
    if model.ndim != 3 or model.shape[2] != 1 or 0 in model.shape:
        raise ValueError(f"samples must be [M, n, 1], got shape {list(model.shape)}")
    ref = None if reference is None else as_numpy(reference)
    if ref is not None and (ref.ndim != 3 or ref.shape[0] != len(model) or ref.shape[2] != 1):
        raise ValueError(f"reference must be [{len(model)}, n_ref, 1], got {list(ref.shape)}")
    cond = None if condition is None else as_numpy(condition)
    shown = spread_frames(len(model), max(1, max_conditions))
    rows, cols = panel_grid(len(shown))
    label = axis_names(names, 1, "y")[0]

    fig = Figure(figsize=(3.2 * cols + 0.4, 2.6 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, m in zip(axes, shown, strict=False):
        y, dropped = finite_rows(model[m])
        r = None if ref is None else finite_rows(ref[m])[0]
        c = None if cond is None else cond[m]
        lo, hi = plot_window(y, r)
        bins = np.linspace(lo[0], hi[0], 100)
        overlay_histograms(ax, y[:, 0], None if r is None else r[:, 0], bins)
        line = np.linspace(lo[0], hi[0], 400)
        logp = log_density_on(log_density, line[:, None], c)
        if logp is not None:
            ax.plot(line, np.exp(logp), color="black", lw=1.0, label="true")
        where = condition_text(c, condition_names)
        ax.set_title(
            titled(f"p({label} | {where})" if where else f"p({label})", "", dropped),
            fontsize="small",
        )
        ax.set_xlabel(label)
    for ax in axes[len(shown) :]:
        ax.set_axis_off()
    legend(axes[0])
    return save_figure(fig, path)
