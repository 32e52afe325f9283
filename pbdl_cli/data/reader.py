"""The validating reader of schema-v1 dataset files (layout: :mod:`pbdl_cli.data.schema`).

:func:`open_dataset` checks a file once and returns a :class:`DatasetFile`, a read-only
view whose ``fields``/``params``/``coords`` map names to ``h5py`` datasets (read lazily)
and whose ``attrs`` are plain python values. Every failure is one :class:`DatasetError`
with a one-line explanation; no torch import, so ``pbdl info`` stays fast.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from pbdl_cli.data.schema import (
    PARTIAL_SUFFIX,
    SCHEMA_VERSION,
    DatasetError,
    check_spatial_axes,
    partial_path,
    py_value,
    spatial_coord_names,
    spatial_shape,
)


def open_h5(path: Path) -> h5py.File:
    """Opens any HDF5 file read-only, turning every failure into one DatasetError."""
    if not path.exists():
        msg = f"no such dataset file: {path}"
        if partial_path(path).exists():
            msg += (
                f" (only {partial_path(path).name} exists: an interrupted or still running "
                "write left a partial file; wait for it or generate the data again)"
            )
        raise DatasetError(msg)
    if path.is_dir():
        raise DatasetError(f"{path} is a directory, expected a dataset file such as train.h5")
    if not os.access(path, os.R_OK):
        raise DatasetError(f"cannot read {path}: permission denied")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        if path.name.endswith(PARTIAL_SUFFIX):
            raise DatasetError(_partial_message(path)) from e
        raise DatasetError(f"{path} is not a readable HDF5 file (truncated or not HDF5)") from e


def _partial_message(path: Path) -> str:
    return (
        f"{path} is a partial file left by an interrupted or still running write, "
        "not a finished dataset"
    )


def corrupt(path: Path) -> DatasetError:
    """The error for a file that validated but whose contents could not be read."""
    return DatasetError(f"{path} is corrupt: reading its contents failed (truncated or damaged)")


def datasets_of(root: h5py.Group) -> dict[str, h5py.Dataset]:
    """Every dataset below ``root`` by its path (``"fields/u"``), in visiting order."""
    found: dict[str, h5py.Dataset] = {}

    def visit(name: str, obj: object) -> None:  # returning a value would stop the visit
        if isinstance(obj, h5py.Dataset):
            found[name] = obj

    root.visititems(visit)
    return found


def _validate(f: h5py.File, path: Path) -> tuple[int, int]:
    """Checks the schema and shape consistency of an open file; returns ``(N, T)``."""
    if "schema_version" not in f.attrs:
        if path.name.endswith(PARTIAL_SUFFIX):
            raise DatasetError(_partial_message(path))
        raise DatasetError(
            f"{path} is an HDF5 file but not a pbdl dataset (no schema_version attribute)"
        )
    version = py_value(f.attrs["schema_version"])
    if not isinstance(version, int) or isinstance(version, bool):
        raise DatasetError(f"{path}: schema_version is {version!r}, not an integer")
    if version != SCHEMA_VERSION:
        hint = "upgrade pbdl" if version > SCHEMA_VERSION else "regenerate the dataset"
        raise DatasetError(
            f"{path}: dataset schema version {version}, this pbdl reads version "
            f"{SCHEMA_VERSION} ({hint})"
        )
    for group in ("fields", "coords"):
        if not isinstance(f.get(group), h5py.Group):
            raise DatasetError(f"{path} is not a valid pbdl dataset (no /{group} group)")
    groups: dict[str, h5py.Group] = {"fields": f["fields"], "coords": f["coords"]}
    if "params" in f:
        if not isinstance(f["params"], h5py.Group):
            raise DatasetError(f"{path}: /params is not a group")
        groups["params"] = f["params"]
    for gname, group in groups.items():
        for name, obj in group.items():
            if not isinstance(obj, h5py.Dataset):
                raise DatasetError(f"{path}: /{gname}/{name} is not a dataset")
            if obj.dtype.kind != "f":
                raise DatasetError(f"{path}: /{gname}/{name} has dtype {obj.dtype}, not float")

    fields = groups["fields"]
    if not len(fields):
        raise DatasetError(f"{path}: /fields is empty")
    shapes = {name: tuple(ds.shape) for name, ds in fields.items()}
    if any(len(s) < 3 for s in shapes.values()):
        raise DatasetError(f"{path}: fields must be [N, T, C, *spatial], got shapes {shapes}")
    if len({s[:2] for s in shapes.values()}) > 1:
        raise DatasetError(f"{path}: fields disagree on trajectories N or times T: {shapes}")
    try:
        spatial = spatial_shape({name: s[2:] for name, s in shapes.items()}, shapes)
    except ValueError as e:
        raise DatasetError(f"{path}: {e}") from None
    n, t = next(iter(shapes.values()))[:2]

    for name, ds in groups.get("params", {}).items():
        if ds.ndim < 1 or ds.shape[0] != n:
            raise DatasetError(
                f"{path}: param '{name}' has shape {ds.shape}, expected {n} trajectories first"
            )

    coords = groups["coords"]
    if "t" not in coords:
        raise DatasetError(f"{path}: missing /coords/t")
    if coords["t"].shape != (t,):
        raise DatasetError(f"{path}: /coords/t has shape {coords['t'].shape}, expected ({t},)")
    axes = spatial_coord_names(coords)
    try:
        check_spatial_axes(
            spatial,
            axes,
            {name: coords[name].shape for name in axes},
            lambda name: f"/coords/{name} has shape {coords[name].shape},",
        )
    except ValueError as e:
        raise DatasetError(f"{path}: {e}") from None
    return int(n), int(t)


class DatasetFile:
    """A validated, read-only dataset file; a context manager that closes it.

    Attributes:
        path: the file.
        num_trajectories, num_times: N and T.
    """

    def __init__(self, file: h5py.File, path: Path, num_trajectories: int, num_times: int) -> None:
        self._file = file
        self.path = path
        self.num_trajectories = num_trajectories
        self.num_times = num_times

    @property
    def fields(self) -> Mapping[str, h5py.Dataset]:
        """Field name -> ``[N, T, C, *spatial]`` dataset."""
        return self._file["fields"]

    @property
    def params(self) -> Mapping[str, h5py.Dataset]:
        """Param name -> ``[N, ...]`` dataset (empty when the file has no params)."""
        return self._file.get("params", {})

    @property
    def coords(self) -> Mapping[str, h5py.Dataset]:
        """Coord name -> ``[T]`` (``t``) or ``[S_k]`` dataset."""
        return self._file["coords"]

    @property
    def axes(self) -> list[str]:
        """The spatial coord names in axis order."""
        return spatial_coord_names(self._file["coords"])

    @cached_property
    def attrs(self) -> dict[str, Any]:
        """Every root attribute as a plain python value."""
        return {key: py_value(value) for key, value in self._file.attrs.items()}

    @property
    def config(self) -> str | None:
        """The resolved config YAML the data were generated with, if stored."""
        text = self.attrs.get("config")
        return text if isinstance(text, str) else None

    def datasets(self) -> dict[str, h5py.Dataset]:
        """Every dataset of the file by its path (``"fields/u"``)."""
        return datasets_of(self._file)

    @property
    def root(self) -> h5py.Group:
        """The file's root group, read-only (for checksums over every object)."""
        return self._file

    def close(self) -> None:
        """Closes the file; datasets taken from it cannot be read afterwards."""
        self._file.close()

    def __enter__(self) -> DatasetFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_dataset(path: str | Path) -> DatasetFile:
    """Opens and validates a dataset file.

    Returns:
        A read-only :class:`DatasetFile`; the caller closes it (it is a context manager).

    Raises:
        DatasetError: with a one-line explanation if the file is missing, unreadable,
            not a pbdl dataset, of another schema version or internally inconsistent.
    """
    path = Path(path)
    f = open_h5(path)
    try:
        n, t = _validate(f, path)
    except DatasetError:
        f.close()
        raise
    except (OSError, RuntimeError, KeyError) as e:
        f.close()
        raise corrupt(path) from e
    return DatasetFile(f, path, n, t)


def read_trajectories(
    path: str | Path, indices: slice | Sequence[int] | None = None
) -> dict[str, dict[str, Any]]:
    """Loads whole trajectories into memory (for small files, inspection and tests).

    Args:
        path: the file.
        indices: which trajectories, in the order given (negative indices count from the
            end); ``None`` for all.

    Returns:
        ``{"fields": {name: [n, T, C, *spatial]}, "params": {name: [n, ...]},
        "coords": {name: [T] or [S_k]}, "attrs": {...}}`` as numpy arrays / python values.

    Raises:
        DatasetError: if the file fails validation.
        IndexError: if an index is out of range.
    """
    path = Path(path)
    with open_dataset(path) as f:
        n = f.num_trajectories
        if indices is None:
            idx = np.arange(n)
        elif isinstance(indices, slice):
            idx = np.arange(n)[indices]
        else:
            idx = np.asarray(indices, dtype=np.int64).reshape(-1)
            if idx.size and (idx.min() < -n or idx.max() >= n):
                raise IndexError(f"trajectory index out of range for {n} trajectories")
            idx = np.where(idx < 0, idx + n, idx)
        # h5py needs increasing unique indices: read those, then restore the order given
        unique, inverse = np.unique(idx, return_inverse=True)

        def take(ds: h5py.Dataset) -> np.ndarray:
            if unique.size == 0:
                return np.empty((0, *ds.shape[1:]), dtype=ds.dtype)
            if unique[-1] - unique[0] + 1 == unique.size:
                data = ds[int(unique[0]) : int(unique[-1]) + 1]
            else:
                data = ds[unique]
            return data[inverse.reshape(-1)]

        try:
            return {
                "fields": {name: take(ds) for name, ds in f.fields.items()},
                "params": {name: take(ds) for name, ds in f.params.items()},
                "coords": {name: ds[()] for name, ds in f.coords.items()},
                "attrs": dict(f.attrs),
            }
        except (OSError, RuntimeError, KeyError) as e:
            raise corrupt(path) from e
