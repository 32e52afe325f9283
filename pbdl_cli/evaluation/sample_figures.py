"""Figures of a probabilistic model's samples against the true distribution (book Part V):
chosen from the samples' shape by :func:`sample_figures`, or drawn one by one.

===========================  ================================================================
samples [M, n, *shape]       figures (one per condition m, suffix ``-c<m>`` when M > 1)
===========================  ================================================================
points, shape (2,)           ``scatter.png``: samples over the true density (its contours,
                             else a KDE of the reference) with marginal histograms;
                             ``density.png``: model | reference samples, and model | true
                             likelihood where densities are given (the book's 2 x 2 figure)
points, shape (1,)           ``histograms.png``: model against reference per condition,
                             small multiples (e.g. the parabola's p(y | x) at a few x)
fields, shape (C, H, W)      ``fields.png``: per-pixel mean and std of the samples next to
                             the reference ensemble's, one row per channel
snapshots (any of these)     ``trajectory.png``: the sampler's state at a few steps
===========================  ================================================================

Inputs are numpy arrays or tensors (any device). A log-density is a callable
``(y [B, *shape] float64 CPU tensor, condition [*condition_shape] or None) -> [B] or None``
with one condition for the whole batch, the signature of ``Distribution.log_density``; a
model's is ``lambda y, c: method.log_prob(model, y, c)``. Every figure uses matplotlib's
object API and is written atomically (:func:`~pbdl_cli.evaluation.figures.save_figure`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from matplotlib.figure import Figure

from pbdl_cli.evaluation.distribution import pixel_moments
from pbdl_cli.evaluation.figures import save_figure, spread_frames
from pbdl_cli.evaluation.sample_points import (
    MODEL_COLOUR,
    LogDensity,
    as_numpy,
    axis_names,
    condition_text,
    density_image,
    density_levels,
    finite_rows,
    kde_2d,
    panel_grid,
    plot_density_panels,
    plot_histograms_1d,
    plot_scatter_2d,
    plot_window,
    titled,
)

__all__ = [
    "LogDensity",
    "SampleKind",
    "kde_2d",
    "plot_density_panels",
    "plot_field_moments",
    "plot_histograms_1d",
    "plot_scatter_2d",
    "plot_trajectory",
    "sample_figures",
    "sample_kind",
]

SampleKind = Literal["points1d", "points2d", "fields"]


def sample_kind(sample_shape: Sequence[int]) -> SampleKind | None:
    """Which figures fit one sample's shape: ``points1d`` (1,), ``points2d`` (2,),
    ``fields`` (C, H, W); None for any other shape (no figures)."""
    shape = tuple(sample_shape)
    if shape == (1,):
        return "points1d"
    if shape == (2,):
        return "points2d"
    if len(shape) == 3 and min(shape) >= 1:
        return "fields"
    return None


# -- grid fields --------------------------------------------------------------------------
def plot_field_moments(
    path: Path,
    samples: Any,
    reference: Any = None,
    *,
    names: Sequence[str] | None = None,
    title: str = "",
) -> Path:
    """Per-pixel mean and standard deviation of an ensemble [n, C, H, W] (n >= 2) next to
    those of the reference ensemble [n_ref, C, H, W] (the book's ch. 26 airfoil figures),
    one row per channel; mean pairs and std pairs share their colour scales. Fields are
    drawn x to the right (axis H), y up (axis W), as the 2D gallery does."""
    model = torch.as_tensor(as_numpy(samples))
    if model.ndim != 4 or model.shape[0] < 2:
        raise ValueError(f"samples must be fields [n >= 2, C, H, W], got {list(model.shape)}")
    ref = None if reference is None else torch.as_tensor(as_numpy(reference))
    if ref is not None and (ref.ndim != 4 or ref.shape[1:] != model.shape[1:] or len(ref) < 2):
        raise ValueError(
            f"reference must be fields [n_ref >= 2, {', '.join(map(str, model.shape[1:]))}], "
            f"got {list(ref.shape)}"
        )
    moments = {"model": pixel_moments(model)}
    if ref is not None:
        moments["reference"] = pixel_moments(ref)
    channels = model.shape[1]
    labels = axis_names(names, channels, "channel ")
    columns = [(stat, who) for stat in (0, 1) for who in moments]

    fig = Figure(figsize=(3.0 * len(columns) + 0.8, 2.8 * channels + 0.6), layout="constrained")
    axes = fig.subplots(channels, len(columns), squeeze=False)
    for c in range(channels):
        for stat in (0, 1):
            pair = [moments[who][stat][c].numpy() for who in moments]
            finite = [p[np.isfinite(p)] for p in pair]
            lo = min((float(f.min()) for f in finite if f.size), default=0.0)
            hi = max((float(f.max()) for f in finite if f.size), default=1.0)
            cmap = "RdBu_r" if stat == 0 else "magma"
            image = None
            for k, who in enumerate(moments):
                ax = axes[c, columns.index((stat, who))]
                image = ax.imshow(pair[k].T, origin="lower", cmap=cmap, vmin=lo, vmax=hi)
                ax.set_title(
                    f"{who} {'mean' if stat == 0 else 'std'}: {labels[c]}", fontsize="small"
                )
                ax.set_xticks([])
                ax.set_yticks([])
            fig.colorbar(
                image, ax=[axes[c, columns.index((stat, w))] for w in moments], shrink=0.85
            )
    suffix = f", reference {len(ref)}" if ref is not None else ""
    fig.suptitle(f"{title + ': ' if title else ''}ensemble of {len(model)} samples{suffix}")
    return save_figure(fig, path)


# -- sampler trajectories -----------------------------------------------------------------
def plot_trajectory(
    path: Path,
    snapshots: Sequence[tuple[str, Any]],
    *,
    log_density: LogDensity | None = None,
    condition: Any = None,
    names: Sequence[str] | None = None,
    condition_names: Sequence[str] | None = None,
    max_snapshots: int = 8,
    max_paths: int = 100,
) -> Path:
    """A sampler's state at a few steps: ``snapshots`` are ``(label, x [n, *shape])``
    in sampling order, all of one shape (at most ``max_snapshots`` drawn, spread evenly,
    first and last included).

    - points (2,): one scatter per snapshot over the target density's contours;
    - points (1,): the paths of up to ``max_paths`` samples through the snapshots, with a
      histogram of the last state on the right;
    - fields (C, H, W): channel 0 of the first sample per snapshot.
    """
    if not snapshots:
        raise ValueError("need at least one snapshot (label, x [n, ...])")
    states = [(str(label), as_numpy(x)) for label, x in snapshots]
    shapes = {s.shape for _, s in states}
    if len(shapes) > 1:
        raise ValueError(f"snapshots differ in shape: {sorted(shapes)}")
    shape = states[0][1].shape
    kind = sample_kind(shape[1:]) if len(shape) >= 2 and shape[0] >= 1 else None
    if kind is None:
        raise ValueError(
            f"snapshots must be points [n, 1], [n, 2] or fields [n, C, H, W], got {list(shape)}"
        )
    cond = None if condition is None else as_numpy(condition)
    where = condition_text(cond, condition_names)
    if kind == "points1d":
        return _paths_1d(path, states, names, where, max_paths)
    states = [states[k] for k in spread_frames(len(states), max(1, max_snapshots))]
    rows, cols = panel_grid(len(states), 4)
    fig = Figure(figsize=(3.0 * cols + 0.4, 3.0 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    if kind == "points2d":
        finite = [finite_rows(s)[0] for _, s in states]
        lo, hi = plot_window(*finite)
        image = density_image(log_density, lo, hi, cond)
        levels = None if image is None else density_levels(image[2], 6)
        labels = axis_names(names, 2, "y")
        for ax, (label, _), x in zip(axes, states, finite, strict=False):
            if levels is not None:
                ax.contour(*image, levels=levels, colors="tab:blue", alpha=0.5, linewidths=0.7)
            alpha = float(np.clip(2000 / max(len(x), 1), 0.08, 0.7))
            ax.scatter(x[:, 0], x[:, 1], s=2, color=MODEL_COLOUR, alpha=alpha, linewidths=0)
            ax.set_xlim(lo[0], hi[0])
            ax.set_ylim(lo[1], hi[1])
            ax.set_title(label, fontsize="small")
            ax.set_xlabel(labels[0])
            ax.set_ylabel(labels[1])
    else:
        frames = [s[0, 0] for _, s in states]
        finite = [f[np.isfinite(f)] for f in frames]
        lo = min((float(f.min()) for f in finite if f.size), default=0.0)
        hi = max((float(f.max()) for f in finite if f.size), default=1.0)
        for ax, (label, _), frame in zip(axes, states, frames, strict=False):
            ax.imshow(frame.T, origin="lower", cmap="RdBu_r", vmin=lo, vmax=hi)
            ax.set_title(label, fontsize="small")
            ax.set_xticks([])
            ax.set_yticks([])
    for ax in axes[len(states) :]:
        ax.set_axis_off()
    fig.suptitle(titled("sampler trajectory", where, 0))
    return save_figure(fig, path)


def _paths_1d(
    path: Path,
    states: Sequence[tuple[str, np.ndarray]],
    names: Sequence[str] | None,
    where: str,
    max_paths: int,
) -> Path:
    """Paths of up to ``max_paths`` samples through 1D snapshots [n, 1]."""
    values = np.stack([s[:, 0] for _, s in states], axis=1)  # [n, K]
    values = values[: max(1, max_paths)]
    steps = np.arange(values.shape[1])
    fig = Figure(figsize=(7.6, 4.2), layout="constrained")
    grid = fig.add_gridspec(1, 2, width_ratios=(5, 1))
    ax = fig.add_subplot(grid[0, 0])
    side = fig.add_subplot(grid[0, 1], sharey=ax)
    ax.plot(steps, values.T, color=MODEL_COLOUR, lw=0.7, alpha=0.35)
    ticks = spread_frames(len(steps), 8)
    ax.set_xticks(steps[ticks], [states[k][0] for k in ticks], rotation=30, fontsize="small")
    label = axis_names(names, 1, "y")[0]
    ax.set_ylabel(label)
    ax.set_title(titled(f"{len(values)} sample paths", where, 0), fontsize="small")
    last = states[-1][1][:, 0]
    last = last[np.isfinite(last)]
    if last.size:
        side.hist(last, bins=40, orientation="horizontal", color=MODEL_COLOUR, alpha=0.6)
    side.tick_params(labelleft=False)
    side.set_title(states[-1][0], fontsize="small")
    return save_figure(fig, path)


# -- entry point --------------------------------------------------------------------------
def sample_figures(
    out_dir: Path,
    samples: Any,
    reference: Any,
    *,
    condition: Any = None,
    log_density: LogDensity | None = None,
    model_log_density: LogDensity | None = None,
    snapshots: Sequence[tuple[str, Any]] | None = None,
    names: Sequence[str] | None = None,
    condition_names: Sequence[str] | None = None,
    max_conditions: int = 4,
) -> list[Path]:
    """The figures that fit the samples' shape (module docstring); returns the files.

    Args:
        out_dir: folder of the figures (created).
        samples: [M, n, *sample_shape] model samples per condition (M = 1: unconditional).
        reference: [M, n_ref, *sample_shape] true samples, or None.
        condition: [M, *condition_shape], or None when unconditional.
        log_density, model_log_density: log p(y | c) and log q(y | c) callables
            (module docstring), used for 2D and 1D points.
        snapshots: ``(label, x [n, *sample_shape])`` states of one sampler run, of the
            first condition, in sampling order (``trajectory.png``).
        names: the sample's coordinates (points) or channels (fields).
        condition_names: the condition's features (titles such as ``p(y | x = 0.25)``).
        max_conditions: at most this many conditions (spread over M) get figures of
            their own (2D points, fields); 1D histograms show up to twice as many.

    Raises:
        ValueError: for a sample shape without figures (see :func:`sample_kind`) or
            reference / condition arrays that do not match the samples.
    """
    model = as_numpy(samples)
    kind = sample_kind(model.shape[2:]) if model.ndim >= 3 and 0 not in model.shape else None
    if kind is None:
        raise ValueError(
            f"no sample figures for samples of shape {list(model.shape)}: expected [M, n, 1], "
            "[M, n, 2] (points) or [M, n, C, H, W] (fields)"
        )
    m_count = len(model)
    ref = None if reference is None else as_numpy(reference)
    if ref is not None and (
        ref.ndim != model.ndim or ref.shape[0] != m_count or ref.shape[2:] != model.shape[2:]
    ):
        raise ValueError(
            f"reference has shape {list(ref.shape)}, expected [{m_count}, n_ref, "
            f"{', '.join(map(str, model.shape[2:]))}]"
        )
    cond = None if condition is None else as_numpy(condition)
    if cond is not None and (cond.ndim < 1 or len(cond) != m_count):
        raise ValueError(f"condition has shape {list(cond.shape)}, expected [{m_count}, ...]")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shown = spread_frames(m_count, max(1, max_conditions))

    def name(stem: str, m: int) -> Path:
        return out_dir / (f"{stem}-c{m}.png" if m_count > 1 else f"{stem}.png")

    paths: list[Path] = []
    labels = {"names": names, "condition_names": condition_names}
    for m in shown if kind != "points1d" else ():
        r = None if ref is None else ref[m]
        c = None if cond is None else cond[m]
        if kind == "points2d":
            where = {"condition": c, **labels}
            paths.append(
                plot_scatter_2d(name("scatter", m), model[m], r, log_density=log_density, **where)
            )
            paths.append(
                plot_density_panels(
                    name("density", m),
                    model[m],
                    r,
                    log_density=log_density,
                    model_log_density=model_log_density,
                    **where,
                )
            )
        else:
            title = condition_text(c, condition_names) if c is not None else ""
            if c is not None and np.size(c) > 3:  # a field condition: its index
                title = f"condition {m}"
            paths.append(
                plot_field_moments(name("fields", m), model[m], r, names=names, title=title)
            )
    if kind == "points1d":
        paths.append(
            plot_histograms_1d(
                out_dir / "histograms.png",
                model,
                ref,
                condition=cond,
                log_density=log_density,
                max_conditions=2 * max_conditions,
                **labels,
            )
        )
    if snapshots:
        c = None if cond is None else cond[0]
        paths.append(
            plot_trajectory(
                out_dir / "trajectory.png",
                snapshots,
                log_density=log_density,
                condition=c,
                **labels,
            )
        )
    return paths
