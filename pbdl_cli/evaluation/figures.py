"""Figure helpers shared by every plot of pbdl: writing a figure, choosing frames.

Figures are drawn with matplotlib's object API (:class:`~matplotlib.figure.Figure`, never
pyplot: no global state, no display, nothing left open) and written as PNGs atomically
(:func:`~pbdl_cli.utils.files.atomic_path`), so a reader never sees half an image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from pbdl_cli.utils.files import atomic_path

#: resolution of the PNG figures
DPI = 120


def save_figure(fig: Figure, path: Path, *, dpi: float = DPI) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically; returns ``path``."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        fig.clear()
    return path


def spread_frames(count: int, wanted: int) -> list[int]:
    """Up to ``wanted`` frame indices spread evenly over ``count`` frames (ends included)."""
    return sorted({round(float(i)) for i in np.linspace(0, count - 1, min(wanted, count))})
