"""The dataset file layout, schema version 1, described once for the writer and the reader.

One file per split (``train.h5``, ``val.h5``, ``test.h5``) laid out as::

    /fields/<name>   float32 [N, T, C, *spatial]   one trajectory per chunk
    /params/<name>   float32 [N, ...]              per-trajectory physical parameters
    /coords/t        float64 [T]                   output times
    /coords/<axis>   float64 [S_k]                 cell centres of spatial axis k

Root attributes: ``schema_version``, ``problem``, ``solver``, ``dt``, ``created``,
``pbdl_version``, ``seed``, ``split``, ``config`` (the resolved YAML), ``checksum``,
``attributes_checksum`` and any
extra attributes the generator passes. Spatial coordinate datasets carry an ``axis``
attribute (their index into ``*spatial``) so the axis order does not depend on names.

The shape rules shared by :mod:`pbdl_cli.data.writer` (checking what a caller declares) and
:mod:`pbdl_cli.data.reader` (checking what a file holds) are :func:`spatial_shape` and
:func:`check_spatial_axes`; the checksum is specified in :mod:`pbdl_cli.data.checksum`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pbdl_cli.errors import PbdlError

SCHEMA_VERSION = 1

PARTIAL_SUFFIX = ".partial"
FIELD_DTYPE = np.dtype("<f4")
PARAM_DTYPE = np.dtype("<f4")
COORD_DTYPE = np.dtype("<f8")

#: attributes the writer owns; callers may not pass them
RESERVED_ATTRS = frozenset({"schema_version", "checksum", "attributes_checksum"})
#: expected python types of the standard attributes, checked when a caller passes them
ATTR_TYPES: dict[str, tuple[type, ...]] = {
    "problem": (str,),
    "solver": (str,),
    "split": (str,),
    "config": (str,),
    "created": (str,),
    "pbdl_version": (str,),
    "dt": (int, float),
    "seed": (int,),
}
#: HDF5 refuses chunks of 4 GiB or more
MAX_CHUNK_BYTES = 2**32 - 1
#: conventional spatial axis order for files whose coords lack the ``axis`` attribute
AXIS_NAMES = ("x", "y", "z")


class DatasetError(PbdlError):
    """A dataset file is missing, unreadable, corrupt or not in the expected schema."""


def partial_path(path: Path) -> Path:
    """Where a split is written before it is renamed into place: ``<path>.partial``."""
    return path.with_name(path.name + PARTIAL_SUFFIX)


# ------------------------------------------------------------------------ shape rules


def spatial_shape(
    frames: Mapping[str, tuple[int, ...]], shown: Mapping[str, tuple[int, ...]]
) -> tuple[int, ...]:
    """The spatial shape all fields share; ValueError if they disagree.

    Args:
        frames: field name -> per-frame shape ``(C, *spatial)``.
        shown: the shapes to name in the error (declared frames or stored full shapes).
    """
    spatial = {s[1:] for s in frames.values()}
    if len(spatial) > 1:
        raise ValueError(f"fields disagree on their spatial shape: {dict(shown)}")
    return spatial.pop()


def check_spatial_axes(
    spatial: tuple[int, ...],
    axes: Sequence[str],
    shapes: Mapping[str, tuple[int, ...]],
    describe: Callable[[str], str],
) -> None:
    """ValueError unless there is one coord per spatial axis, of that axis' size.

    Args:
        spatial: the fields' spatial shape.
        axes: the spatial coord names in axis order.
        shapes: coord name -> its shape (1-D, ``(S_k,)`` when consistent).
        describe: coord name -> how the error names it and its size.
    """
    if len(axes) != len(spatial):
        raise ValueError(
            f"fields have {len(spatial)} spatial dims {spatial} but coords give "
            f"{len(axes)} spatial axes {list(axes)}"
        )
    for k, name in enumerate(axes):
        if tuple(shapes[name]) != (spatial[k],):
            raise ValueError(
                f"{describe(name)} but spatial axis {k} of the fields has size {spatial[k]}"
            )


def spatial_coord_names(coords: h5py.Group) -> list[str]:
    """The spatial coord names of a stored ``/coords`` group, in axis order."""
    names = [n for n in coords if n != "t"]
    if all("axis" in coords[n].attrs for n in names):
        return sorted(names, key=lambda n: int(coords[n].attrs["axis"]))
    return sorted(names, key=lambda n: (AXIS_NAMES.index(n) if n in AXIS_NAMES else 99, n))


# ------------------------------------------------------------------------- names, attrs


def check_name(name: Any, what: str) -> None:
    """ValueError unless ``name`` can name a field, param or coord."""
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid {what} name {name!r}: use a non-empty name without '/'")


def check_shape(shape: Any, what: str) -> tuple[int, ...]:
    """``shape`` as a tuple of positive ints, or ValueError."""
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: shape {shape!r} is not a tuple of ints") from None
    if any(d < 1 for d in dims):
        raise ValueError(f"{what}: shape {dims} has a dimension < 1")
    return dims


def _attr_value(key: str, value: Any) -> Any:
    """A caller's attribute as something h5py stores faithfully, or ValueError."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value)
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "biuf"):
            raise ValueError(f"attribute '{key}': only flat lists of numbers are supported")
        return arr.astype(np.float64) if arr.size == 0 else arr
    if isinstance(value, bool):
        return np.bool_(value)
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return np.int64(value)
        if 0 <= value < 2**64:
            return np.uint64(value)
        raise ValueError(f"attribute '{key}': integer {value} does not fit in 64 bits")
    if isinstance(value, (float, str)):
        return value
    raise ValueError(
        f"attribute '{key}' has type {type(value).__name__}; "
        "use str, int, float, bool or a list of numbers"
    )


def check_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """A caller's root attributes, type-checked and converted for h5py, or ValueError."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"attribute names must be non-empty strings, got {key!r}")
        if key in RESERVED_ATTRS:
            raise ValueError(f"attribute '{key}' is written by the dataset writer itself")
        if isinstance(value, np.generic):
            value = value.item()
        expected = ATTR_TYPES.get(key)
        if expected is not None and (isinstance(value, bool) or not isinstance(value, expected)):
            names = " or ".join(t.__name__ for t in expected)
            raise ValueError(f"attribute '{key}' must be {names}, got {type(value).__name__}")
        if key == "dt":
            value = float(value)
        out[key] = _attr_value(key, value)
    return out


def py_value(value: Any) -> Any:
    """An attribute as read by h5py, as a plain python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [py_value(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, h5py.Empty):
        return None
    return value


def human_size(n: int) -> str:
    """``n`` bytes as ``"512 B"``, ``"18.8 KiB"``, ``"1.2 GiB"``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
