"""The gallery of a 2D prediction: frames at a few times and an animation of every field.

For one trajectory of shape [T, C, X, Y] (``X`` cells along x, drawn horizontally; ``Y``
along y, drawn upwards) :func:`write_gallery` writes, per field and per derived field
(``vorticity`` where the fields include ``u`` and ``v``):

- ``frames_<field>.png``: the field at a few evenly spaced times (columns); rows
  prediction, reference and |error| (the last two only with a reference);
- ``anim_<field>.gif`` (pillow) or ``anim_<field>.mp4`` (ffmpeg): every frame (evenly
  subsampled to at most ``max_frames``), prediction beside reference and |error|.

Prediction and reference share one colour scale (diverging and symmetric about 0 where
the values change sign), the error has its own; both are fixed over time. Files are
written atomically (temporary file in the same directory, then rename), like every plot.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from pbdl_cli.errors import PbdlError
from pbdl_cli.evaluation.figures import save_figure, spread_frames
from pbdl_cli.utils.files import atomic_path

log = logging.getLogger("pbdl.evaluate")


class AnimationFormat(str, enum.Enum):
    auto = "auto"  # mp4 where ffmpeg is available, else gif
    gif = "gif"
    mp4 = "mp4"


@dataclasses.dataclass
class GalleryConfig:
    """``gallery.*`` of ``pbdl evaluate``: the figures of 2D predictions
    (:mod:`pbdl_cli.evaluation.gallery`).

    Attributes:
        fields: the fields (or derived ``vorticity``) to show; null: all.
        trajectory: the trajectory (index into B) shown.
        panels: frames in ``frames_<field>.png``, evenly spaced, first and last included.
        animate: write an animation per field.
        format: ``gif`` (pillow), ``mp4`` (ffmpeg) or ``auto`` (mp4 where ffmpeg is found).
        max_frames: most frames of an animation (evenly subsampled).
        fps: animation frames per second.
        dpi: resolution of the animations (the PNGs use the figures' usual one).
    """

    fields: list[str] | None = None
    trajectory: int = 0
    panels: int = 5
    animate: bool = True
    format: AnimationFormat = AnimationFormat.auto
    max_frames: int = 50
    fps: int = 10
    dpi: int = 72

    def __post_init__(self) -> None:
        if self.trajectory < 0:
            raise ValueError("gallery.trajectory must be >= 0")
        if min(self.panels, self.max_frames, self.fps, self.dpi) < 1:
            raise ValueError("gallery.panels, max_frames, fps and dpi must be >= 1")


#: fields computed from the channels (:func:`derived_fields`)
DERIVED = ("vorticity",)
#: font size of the gallery's small panels
FONT_SIZE = 8


def derived_fields(
    values: np.ndarray, fields: Sequence[str], x: np.ndarray, y: np.ndarray
) -> dict[str, np.ndarray]:
    """Fields computed from the channels: ``vorticity`` = dv/dx - du/dy where the channels
    include ``u`` and ``v`` (and both axes have at least 2 cells).

    The staggered velocities are taken as cell values; the derivatives are central
    differences inside and one-sided at the ends (``np.gradient`` on the coordinates: no
    periodicity assumed).

    Args:
        values: [T, C, X, Y]; fields: the channel names ([C]); x: [X], y: [Y] cell centres.

    Returns:
        name -> [T, X, Y].
    """
    names = list(fields)
    if not {"u", "v"} <= set(names) or len(x) < 2 or len(y) < 2:
        return {}
    u, v = values[:, names.index("u")], values[:, names.index("v")]
    return {"vorticity": np.gradient(v, x, axis=1) - np.gradient(u, y, axis=2)}


def check_gallery_fields(shown: Sequence[str], fields: Sequence[str], problem: str) -> None:
    """``gallery.fields`` names only ``fields`` of the problem or derived ones; PbdlError
    (exit 2) otherwise."""
    known = [*fields, *DERIVED]
    unknown = [f for f in shown if f not in known]
    if unknown:
        raise PbdlError(
            f"gallery.fields: {', '.join(unknown)} is not a field of {problem} "
            f"(choose from {', '.join(known)}; vorticity needs u and v)"
        )


def animation_format(choice: AnimationFormat | str) -> str | None:
    """The animation file type for ``gallery.format``: ``"mp4"`` where asked for (or
    ``auto``) and ffmpeg is available, else ``"gif"`` if pillow is importable, else None."""
    from matplotlib import animation

    choice = AnimationFormat(choice)
    if choice is not AnimationFormat.gif:
        if animation.writers.is_available("ffmpeg"):
            return "mp4"
        if choice is AnimationFormat.mp4:
            log.warning("gallery.format=mp4 needs ffmpeg, which is not available; writing GIFs")
    try:
        import PIL  # noqa: F401  (matplotlib's PillowWriter)
    except ImportError:
        log.warning("neither ffmpeg nor pillow is available: no animations")
        return None
    return "gif"


def _extent(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """``imshow`` extent of cells centred at x [X] and y [Y] (half a cell beyond the ends)."""

    def edges(a: np.ndarray) -> tuple[float, float]:
        if len(a) < 2:
            return float(a[0]) - 0.5, float(a[0]) + 0.5
        return float(a[0] - (a[1] - a[0]) / 2), float(a[-1] + (a[-1] - a[-2]) / 2)

    return (*edges(x), *edges(y))


def _scale(arrays: Sequence[np.ndarray]) -> tuple[float, float, str]:
    """Colour limits and map shared by ``arrays``: symmetric and diverging where the values
    change sign, else sequential."""
    finite = [a[np.isfinite(a)] for a in arrays]
    finite = [a for a in finite if a.size]
    if not finite:
        return 0.0, 1.0, "viridis"
    lo, hi = min(float(a.min()) for a in finite), max(float(a.max()) for a in finite)
    if lo < 0 < hi:
        bound = max(-lo, hi)
        return -bound, bound, "RdBu_r"
    return lo, hi, "viridis"


def _freeze(fig: Figure) -> None:
    """Lay ``fig`` out once and fix its ticks, for an animation: a changing title must not
    move the panels, and frames that only swap image data need not place ticks again."""
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            locs = axis.get_majorticklocs()
            labels = axis.get_major_formatter().format_ticks(locs)
            axis.set_major_locator(FixedLocator(locs))
            axis.set_major_formatter(FixedFormatter(labels))
            axis.set_minor_locator(NullLocator())


def _rows(
    prediction: np.ndarray, reference: np.ndarray | None, frames: Sequence[int]
) -> list[tuple[str, np.ndarray, float, float, str]]:
    """``(name, data [T, X, Y], vmin, vmax, cmap)`` of prediction, reference and |error|,
    with colour limits over ``frames``."""
    both = [prediction] if reference is None else [prediction, reference]
    lo, hi, cmap = _scale([a[frames] for a in both])
    names = ("prediction", "reference")[: len(both)]
    rows = [(name, a, lo, hi, cmap) for name, a in zip(names, both, strict=True)]
    if reference is not None:
        error = np.abs(prediction - reference)
        top = _scale([error[frames]])[1]
        # an exact prediction (e.g. method=non on its own data): a flat panel, not noise
        rows.append(("|error|", error, 0.0, top if top > 0 else 1.0, "magma"))
    return rows


def plot_frames(
    path: Path,
    prediction: np.ndarray,
    reference: np.ndarray | None,
    times: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    field: str,
    panels: int = 5,
    dpi: float = 100,
) -> Path:
    """``panels`` frames (evenly spaced, ends included) of one field as a grid of images:
    one column per time, rows prediction, reference and |error|.

    Args:
        prediction, reference: [T, X, Y] (reference may be None: one row).
        times: [T]; x: [X], y: [Y] cell centres.
    """
    frames = spread_frames(len(times), panels)
    rows = _rows(prediction, reference, frames)
    extent = _extent(x, y)
    aspect = (extent[3] - extent[2]) / max(extent[1] - extent[0], 1e-300)
    width = 1.8
    with matplotlib.rc_context({"font.size": FONT_SIZE}):
        fig = Figure(
            figsize=(width * len(frames) + 1.2, ((width - 0.35) * aspect + 0.25) * len(rows) + 0.5),
            layout="compressed",  # no gaps between the fixed-aspect images
        )
        axes = fig.subplots(len(rows), len(frames), squeeze=False, sharex=True, sharey=True)
        images: list[AxesImage] = []
        for r, (name, data, lo, hi, cmap) in enumerate(rows):
            for col, k in enumerate(frames):
                ax = axes[r, col]
                image = ax.imshow(
                    data[k].T,
                    origin="lower",
                    extent=extent,
                    cmap=cmap,
                    vmin=lo,
                    vmax=hi,
                    interpolation="nearest",
                )
                if r == 0:
                    ax.set_title(f"t = {times[k]:.3g}")
                if r == len(rows) - 1:
                    ax.set_xlabel("x")
            axes[r, 0].set_ylabel(f"{name}\ny")
            images.append(image)
        shared = 1 if reference is None else 2  # prediction and reference: one colour bar
        fig.colorbar(images[0], ax=list(axes[:shared].ravel()), shrink=0.9, label=field)
        if reference is not None:
            fig.colorbar(images[2], ax=list(axes[2]), shrink=0.9, label="|error|")
        fig.suptitle(field)
        return save_figure(fig, path, dpi=dpi)


def animate(
    path: Path,
    prediction: np.ndarray,
    reference: np.ndarray | None,
    times: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    field: str,
    max_frames: int = 50,
    fps: int = 10,
    dpi: float = 72,
) -> Path:
    """An animation of one field: prediction, reference and |error| side by side, at most
    ``max_frames`` frames evenly spaced over the run (first and last included). The writer
    follows the suffix of ``path``: ``.mp4`` ffmpeg, anything else pillow (GIF).

    Args:
        prediction, reference: [T, X, Y] (reference may be None: one panel).
        times: [T]; x: [X], y: [Y] cell centres.
    """
    from matplotlib.animation import FFMpegWriter, PillowWriter

    frames = spread_frames(len(times), max_frames)
    rows = _rows(prediction, reference, frames)
    extent = _extent(x, y)
    aspect = (extent[3] - extent[2]) / max(extent[1] - extent[0], 1e-300)
    width = 2.4
    with matplotlib.rc_context({"font.size": FONT_SIZE}):
        fig = Figure(
            figsize=(width * len(rows) + 0.6 * (1 + len(rows) // 2), width * aspect + 0.7),
            layout="compressed",
        )
        axes = fig.subplots(1, len(rows), squeeze=False, sharey=True)[0]
        images = []
        for ax, (name, data, lo, hi, cmap) in zip(axes, rows, strict=True):
            image = ax.imshow(
                data[frames[0]].T,
                origin="lower",
                extent=extent,
                cmap=cmap,
                vmin=lo,
                vmax=hi,
                interpolation="nearest",
            )
            ax.set_title(name)
            ax.set_xlabel("x")
            images.append(image)
        shared = 1 if reference is None else 2  # prediction and reference: one colour bar
        fig.colorbar(images[0], ax=list(axes[:shared]), shrink=0.85)
        if reference is not None:
            fig.colorbar(images[2], ax=axes[2], shrink=0.85)
        axes[0].set_ylabel("y")
        title = fig.suptitle(f"{field}   t = {times[frames[0]]:.3g}")
        _freeze(fig)
        writer = FFMpegWriter(fps=fps) if path.suffix == ".mp4" else PillowWriter(fps=fps)
        with atomic_path(path) as tmp, writer.saving(fig, str(tmp), dpi):
            for k in frames:
                for image, (_, data, *_) in zip(images, rows, strict=True):
                    image.set_data(data[k].T)
                title.set_text(f"{field}   t = {times[k]:.3g}")
                writer.grab_frame()
        fig.clear()
    return path


def write_gallery(
    out_dir: Path,
    prediction: np.ndarray,
    reference: np.ndarray | None,
    times: np.ndarray,
    coords: Mapping[str, np.ndarray],
    *,
    fields: Sequence[str],
    options: GalleryConfig | None = None,
) -> list[Path]:
    """``frames_<field>.png`` and (with ``options.animate``) ``anim_<field>.gif|mp4`` of
    every field of one 2D trajectory and of its derived fields; returns the files written.

    Args:
        prediction, reference: [T, C, X, Y] (reference may be None).
        times: [T]; coords: the two spatial axes -> [X] and [Y] cell centres, in order.
        fields: channel names ([C]).
        options: ``gallery.*`` of ``pbdl evaluate`` (``trajectory`` is the caller's).
    """
    options = options or GalleryConfig()
    x, y = (np.asarray(a, dtype=float) for a in list(coords.values())[:2])
    pred = {f: prediction[:, c] for c, f in enumerate(fields)}
    pred |= derived_fields(prediction, fields, x, y)
    ref = None
    if reference is not None:
        ref = {f: reference[:, c] for c, f in enumerate(fields)}
        ref |= derived_fields(reference, fields, x, y)
    names = list(pred) if options.fields is None else [f for f in options.fields if f in pred]
    missing = [] if options.fields is None else [f for f in options.fields if f not in pred]
    if missing:
        log.warning("gallery.fields: no field %s here (there are %s)", missing, list(pred))
    kind = animation_format(options.format) if options.animate else None
    written: list[Path] = []
    for name in names:
        reference_field = None if ref is None else ref[name]
        written.append(
            plot_frames(
                out_dir / f"frames_{name}.png",
                pred[name],
                reference_field,
                times,
                x,
                y,
                field=name,
                panels=options.panels,
            )
        )
        if kind is not None:
            written.append(
                animate(
                    out_dir / f"anim_{name}.{kind}",
                    pred[name],
                    reference_field,
                    times,
                    x,
                    y,
                    field=name,
                    max_frames=options.max_frames,
                    fps=options.fps,
                    dpi=options.dpi,
                )
            )
    return written
