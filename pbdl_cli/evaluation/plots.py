"""Figures of ``pbdl evaluate`` (prediction against reference, errors, loss curves) and of
``pbdl report`` (one curve per run).

Every function takes numpy arrays (one trajectory), draws one figure with matplotlib's
object API and writes a PNG atomically (:func:`~pbdl_cli.evaluation.figures.save_figure`).

Conventions: the reference is drawn solid, the prediction dashed in the same colour;
observations are points. Shapes are named per function; ``T`` frames, ``C`` channels,
``X`` (``Y``) cells along a spatial axis, ``N`` observations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from pbdl_cli.evaluation.comparison import Report
from pbdl_cli.evaluation.comparison import label as run_label
from pbdl_cli.evaluation.figures import save_figure, spread_frames

#: colour of the reference in line plots
REF_COLOUR = "black"


# -- 1D space-time -------------------------------------------------------------------------
def plot_space_time(
    path: Path,
    prediction: np.ndarray,
    reference: np.ndarray | None,
    t: np.ndarray,
    x: np.ndarray,
    *,
    field: str = "u",
    points: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Space-time images: prediction, reference and |error| side by side.

    Args:
        prediction, reference: [T, X] (reference may be None: prediction only).
        t: [T] times; x: [X] cell centres.
        points: optional observation positions ``(x [N], t [N])``, marked on the prediction.
    """
    panels = 1 if reference is None else 3
    fig = Figure(figsize=(4.2 * panels + 0.6, 3.6), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False, sharey=True)[0]
    both = [prediction] if reference is None else [prediction, reference]
    vmin = float(min(np.nanmin(a) for a in both))
    vmax = float(max(np.nanmax(a) for a in both))
    images = [(f"prediction {field}(x, t)", prediction)]
    if reference is not None:
        images.append((f"reference {field}(x, t)", reference))
    for ax, (title, data) in zip(axes, images, strict=False):
        mesh = ax.pcolormesh(x, t, data, shading="nearest", cmap="RdBu_r", vmin=vmin, vmax=vmax)
        ax.set_title(title)
        ax.set_xlabel("x")
    fig.colorbar(mesh, ax=list(axes[: len(images)]), shrink=0.9, label=field)
    if points is not None and len(points[0]):
        axes[0].scatter(points[0], points[1], s=6, c="black", marker="x", linewidths=0.6)
    if reference is not None:
        error = np.abs(prediction - reference)
        mesh = axes[2].pcolormesh(x, t, error, shading="nearest", cmap="magma")
        axes[2].set_title(f"|error|  (max {np.nanmax(error):.2e})")
        axes[2].set_xlabel("x")
        fig.colorbar(mesh, ax=axes[2], shrink=0.9)
    axes[0].set_ylabel("t")
    return save_figure(fig, path)


def plot_slices(
    path: Path,
    prediction: np.ndarray,
    reference: np.ndarray | None,
    t: np.ndarray,
    x: np.ndarray,
    *,
    field: str = "u",
    count: int = 5,
) -> Path:
    """``field(x)`` at ``count`` times spread over the run: reference solid, prediction dashed.

    Args:
        prediction, reference: [T, X] (reference may be None).
        t: [T] times; x: [X] cell centres.
    """
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    frames = spread_frames(len(t), count)
    colours = [colormaps["viridis"](v) for v in np.linspace(0.0, 0.9, len(frames))]
    for k, colour in zip(frames, colours, strict=True):
        label = f"t = {t[k]:.3g}"
        if reference is not None:
            ax.plot(x, reference[k], color=colour, lw=1.5, label=label)
            ax.plot(x, prediction[k], color=colour, lw=1.5, ls="--")
        else:
            ax.plot(x, prediction[k], color=colour, lw=1.5, ls="--", label=label)
    ax.set_xlabel("x")
    ax.set_ylabel(field)
    style = "reference solid, prediction dashed" if reference is not None else "prediction"
    ax.set_title(f"{field}(x) at {len(frames)} times ({style})")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


# -- time only, static ---------------------------------------------------------------------
def _curves(
    path: Path,
    axis: np.ndarray,
    prediction: np.ndarray,
    reference: np.ndarray | None,
    fields: Sequence[str],
    points: tuple[np.ndarray, np.ndarray] | None,
    *,
    xlabel: str,
    point_style: Mapping[str, Any],
) -> Path:
    """One panel per channel: prediction [L, C] (and reference [L, C]) against ``axis`` [L],
    plus optional points ``(position [N], values [N, C])``."""
    channels = prediction.shape[1]
    fig = Figure(figsize=(6.4, 2.2 + 1.8 * channels), layout="constrained")
    axes = fig.subplots(channels, 1, squeeze=False, sharex=True)[:, 0]
    for c, ax in enumerate(axes):
        name = fields[c] if c < len(fields) else f"channel {c}"
        if points is not None and len(points[0]):
            ax.scatter(points[0], points[1][:, c], label="observations", **point_style)
        if reference is not None:
            ax.plot(axis, reference[:, c], color=REF_COLOUR, lw=1.5, label="reference")
        ax.plot(axis, prediction[:, c], color="tab:red", lw=1.5, ls="--", label="prediction")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    axes[-1].set_xlabel(xlabel)
    return save_figure(fig, path)


def plot_time_series(
    path: Path,
    prediction: np.ndarray,
    reference: np.ndarray | None,
    t: np.ndarray,
    *,
    fields: Sequence[str] = ("u",),
    points: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Curves ``u_c(t)`` of a problem without space.

    Args:
        prediction, reference: [T, C] (reference may be None).
        t: [T] times.
        points: optional observations ``(t [N], u [N, C])``.
    """
    style = {"s": 18, "color": "tab:blue", "zorder": 3}
    return _curves(path, t, prediction, reference, fields, points, xlabel="t", point_style=style)


def plot_profile(
    path: Path,
    prediction: np.ndarray,
    reference: np.ndarray | None,
    x: np.ndarray,
    *,
    fields: Sequence[str] = ("y",),
    points: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Curves ``y_c(x)`` of a static problem (one frame), observations as a light scatter.

    Args:
        prediction, reference: [X, C] (reference may be None).
        x: [X] cell centres.
        points: optional observations ``(x [N], y [N, C])``.
    """
    dense = points is not None and len(points[0]) > 1000  # thousands of samples: fainter
    style = {"s": 3 if dense else 8, "color": "tab:blue", "alpha": 0.12 if dense else 0.3}
    style["linewidths"] = 0
    return _curves(path, x, prediction, reference, fields, points, xlabel="x", point_style=style)


# -- training curves -----------------------------------------------------------------------
def plot_losses(path: Path, records: Sequence[Mapping[str, Any]]) -> Path | None:
    """Training terms (``train/<term>``) and validation metrics (``val/<name>``) against the
    step, from the records of a run's ``metrics.jsonl``; log scale where all values are
    positive, a dotted line where the optimizer phase changes. None if nothing to plot."""
    series: dict[str, dict[str, tuple[list[float], list[float]]]] = {"train": {}, "val": {}}
    switches: list[int] = []
    phase = None
    for record in records:
        step = record.get("step")
        if not isinstance(step, (int, float)):
            continue
        if "phase" in record:
            if phase is not None and record["phase"] != phase:
                switches.append(int(step))
            phase = record["phase"]
        for key, value in record.items():
            group, _, name = key.partition("/")
            if group in series and name and isinstance(value, (int, float)):
                steps, values = series[group].setdefault(name, ([], []))
                steps.append(float(step))
                values.append(float(value))
    groups = [g for g in ("train", "val") if series[g]]
    if not groups:
        return None
    fig = Figure(figsize=(6.0 * len(groups), 4.0), layout="constrained")
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    titles = {"train": "training loss terms", "val": "validation"}
    for ax, group in zip(axes, groups, strict=True):
        positive = True
        # the total loss last, thick and black, so that a single term cannot hide it
        for name, (steps, values) in sorted(series[group].items(), key=lambda e: e[0] == "loss"):
            marker = "o" if len(steps) < 30 else None
            total = group == "train" and name == "loss"
            ax.plot(
                steps,
                values,
                marker=marker,
                ms=3,
                lw=2.0 if total else 1.2,
                color=REF_COLOUR if total else None,
                zorder=3 if total else 2,
                label=name,
            )
            positive &= bool(np.all(np.asarray(values) > 0))
        if positive:
            ax.set_yscale("log")
        for step in switches:
            ax.axvline(step, color="grey", ls=":", lw=1)
        ax.set_xlabel("step")
        ax.set_title(titles[group])
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    return save_figure(fig, path)


# -- rollouts -------------------------------------------------------------------------------
def plot_error_vs_step(
    path: Path,
    t: Sequence[float],
    rel_l2: Sequence[float | None],
    corr: Sequence[float | None] | None = None,
    *,
    threshold: float | None = None,
    corr_frame: int | None = None,
) -> Path:
    """Relative L2 error and decorrelation ``1 - corr`` of every frame on a log y axis.

    The curves are what ``metrics.json`` ``per_time`` holds (trajectory means), not the first
    trajectory. A dotted line marks ``1 - threshold`` and the frame of the correlation time;
    the top axis gives the time of a frame (uniform frames). Values that are None, not finite
    or not positive (an exact frame) are left out of the log axis.

    Args:
        path: the PNG to write.
        t: [T] frame times.
        rel_l2: [T] relative L2 error per frame.
        corr: [T] Pearson correlation per frame (None: no correlation curve).
        threshold: correlation threshold theta of the correlation time (None: no line).
        corr_frame: frame index of the correlation time (None: no line).
    """

    def values(curve: Sequence[float | None]) -> np.ndarray:
        return np.array([np.nan if v is None else float(v) for v in curve])

    frames = np.arange(len(t))
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    curves = {"rel_l2": values(rel_l2)}
    if corr is not None:
        curves["1 - corr"] = 1.0 - values(corr)
    shown = []
    for (label, curve), colour in zip(curves.items(), ("tab:red", "tab:blue"), strict=False):
        curve = np.where(np.isfinite(curve) & (curve > 0), curve, np.nan)
        marker = "o" if len(frames) < 30 else None
        ax.plot(frames, curve, color=colour, marker=marker, ms=3, lw=1.5, label=label)
        shown.append(curve)
    if threshold is not None and corr is not None:
        ax.axhline(1.0 - threshold, color="tab:blue", ls=":", lw=1, label=f"1 - {threshold:g}")
    if corr_frame is not None:
        ax.axvline(
            corr_frame, color="grey", ls=":", lw=1, label=f"correlation time (frame {corr_frame})"
        )
    if any(np.isfinite(c).any() for c in shown):
        ax.set_yscale("log")
    times = np.asarray(t, dtype=float)
    if len(times) > 1 and np.allclose(np.diff(times), times[1] - times[0]):
        t0, dt = float(times[0]), float(times[1] - times[0])
        if dt > 0:
            top = ax.secondary_xaxis(
                "top", functions=(lambda k: t0 + k * dt, lambda s: (s - t0) / dt)
            )
            top.set_xlabel("t")
    ax.set_xlabel("frame")
    ax.set_title("error against rollout step (mean over trajectories)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return save_figure(fig, path)


# -- comparing runs (pbdl report) ------------------------------------------------------
def _run_colours(count: int) -> list[Any]:
    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    return [colormaps["viridis"](v) for v in np.linspace(0.0, 0.95, count)]


def _line_figure(
    path: Path,
    report: Report,
    curves: Mapping[int, tuple[Sequence[float], Sequence[float | None]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
) -> Path | None:
    """One line per run (``run index -> (x, y)``) on a log y-axis, in the same colour in
    every figure (values <= 0 or missing are gaps); None when nothing is positive."""
    colours = _run_colours(len(report.runs))
    data = []
    for index, (x, y) in curves.items():
        values = np.array([np.nan if v is None or v <= 0 else v for v in y], dtype=float)
        if np.isfinite(values).any():
            data.append((index, np.asarray(x, dtype=float), values))
    if not data:
        return None
    fig = Figure(figsize=(7.0, 4.4), layout="constrained")
    ax = fig.subplots()
    for index, x, y in data:
        run = report.runs[index]
        marker = "o" if len(x) <= 30 else None
        ax.plot(
            x, y, color=colours[index], marker=marker, ms=3, lw=1.4, label=run_label(run, report)
        )
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small", ncol=1 if len(data) <= 8 else 2)
    return save_figure(fig, path)


def plot_error_vs_time(path: Path, report: Report) -> Path | None:
    """Per-frame rel_l2 (``eval/metrics.json`` ``per_time``) of every evaluated run."""
    curves = {}
    for index, run in enumerate(report.runs):
        if run.per_time and run.per_time.get("rel_l2"):
            t = [np.nan if v is None else v for v in run.per_time["t"]]
            curves[index] = (t, run.per_time["rel_l2"])
    title = "relative L2 error per frame (eval/metrics.json)"
    return _line_figure(path, report, curves, xlabel="t", ylabel="rel_l2", title=title)


def plot_loss_curves(path: Path, report: Report) -> Path | None:
    """``train/loss`` against the step (``metrics.jsonl``) of every run."""
    curves = {i: run.loss for i, run in enumerate(report.runs) if run.loss[0]}
    title = "training loss (metrics.jsonl)"
    return _line_figure(path, report, curves, xlabel="step", ylabel="train/loss", title=title)
