"""Figure helpers shared by every plot of pbdl: writing a figure, choosing frames.

Figures are drawn with matplotlib's object API (:class:`~matplotlib.figure.Figure`, never
pyplot: no global state, no display, nothing left open) and written as PNGs atomically
(:func:`~pbdl_cli.utils.files.atomic_path`), so a reader never sees half an image.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from pbdl_cli.utils.files import default_mode

#: resolution of the PNG figures
DPI = 120


def save_figure(fig: Figure, path: Path, *, dpi: float = DPI) -> Path:
    """Write ``fig`` as a PNG to ``path`` through a temporary file; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, default_mode())
    try:
        fig.savefig(tmp, format="png", dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        fig.clear()
    return path


def spread_frames(count: int, wanted: int) -> list[int]:
    """Up to ``wanted`` frame indices spread evenly over ``count`` frames (ends included)."""
    return sorted({round(float(i)) for i in np.linspace(0, count - 1, min(wanted, count))})
