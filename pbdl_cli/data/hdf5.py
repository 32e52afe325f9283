"""HDF5 dataset files, schema version 1.

One file per split (``train.h5``, ``val.h5``, ``test.h5``) laid out as::

    /fields/<name>   float32 [N, T, C, *spatial]   one trajectory per chunk
    /params/<name>   float32 [N, ...]              per-trajectory physical parameters
    /coords/t        float64 [T]                   output times
    /coords/<axis>   float64 [S_k]                 cell centres of spatial axis k

Root attributes: ``schema_version``, ``problem``, ``solver``, ``dt``, ``created``,
``pbdl_version``, ``seed``, ``split``, ``config`` (the resolved YAML), ``checksum`` and any
extra attributes the generator passes. Spatial coordinate datasets carry an ``axis``
attribute (their index into ``*spatial``) so the axis order does not depend on names.

The checksum is ``"sha256:" + hexdigest`` of, for every dataset in sorted path order,
``f"{path}\\n{dtype.str}\\n{shape!r}\\n"`` (UTF-8) followed by the 32-byte sha256 digest of
the dataset's raw C-order bytes. :class:`TrajectoryWriter` builds the per-dataset digests
while appending trajectories, and :func:`compute_checksum` rebuilds them by reading
bounded blocks, so neither ever holds a whole field in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
from rich.console import Console, Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from pbdl_cli.errors import PbdlError

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "SCHEMA_VERSION",
    "DatasetError",
    "DatasetInfo",
    "TrajectoryWriter",
    "compute_checksum",
    "open_dataset",
    "print_info",
    "read_info",
    "read_trajectories",
    "render_info",
    "verify_checksum",
]

SCHEMA_VERSION = 1

PARTIAL_SUFFIX = ".partial"
FIELD_DTYPE = np.dtype("<f4")
PARAM_DTYPE = np.dtype("<f4")
COORD_DTYPE = np.dtype("<f8")

#: attributes the writer owns; callers may not pass them
_RESERVED_ATTRS = frozenset({"schema_version", "checksum"})
#: expected python types of the standard attributes, checked when a caller passes them
_ATTR_TYPES: dict[str, tuple[type, ...]] = {
    "problem": (str,),
    "solver": (str,),
    "split": (str,),
    "config": (str,),
    "created": (str,),
    "pbdl_version": (str,),
    "dt": (int, float),
    "seed": (int,),
}
#: verification reads at most this many bytes at once (more only for one compressed chunk)
_READ_BUDGET = 8 * 2**20
#: HDF5 refuses chunks of 4 GiB or more
_MAX_CHUNK_BYTES = 2**32 - 1
#: params and coords up to this many elements get min/max/mean in the summary
_STATS_MAX_ELEMENTS = 1_000_000
#: conventional spatial axis order for files whose coords lack the ``axis`` attribute
_AXIS_NAMES = ("x", "y", "z")


class DatasetError(PbdlError):
    """A dataset file is missing, unreadable, corrupt or not in the expected schema."""


# --------------------------------------------------------------------------- helpers


def _partial_path(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL_SUFFIX)


def _as_array(x: Any, dtype: np.dtype, what: str) -> np.ndarray:
    """``x`` (tensor, array or nested sequence) as a C-contiguous array of ``dtype``.

    The result is exactly the bytes HDF5 stores, so it is also what gets hashed.
    """
    # torch is looked up, not imported: if it was never imported, x cannot be a tensor,
    # and readers such as ``pbdl info`` stay free of torch's import time.
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        if x.is_complex():
            raise ValueError(f"{what} is a complex tensor; expected real numbers")
        torch_dtype = torch.float64 if dtype.itemsize == 8 else torch.float32
        x = x.detach().to(device="cpu", dtype=torch_dtype).numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{what} has dtype {arr.dtype}; expected real numbers")
    return np.ascontiguousarray(arr, dtype=dtype)


def _check_name(name: Any, what: str) -> None:
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid {what} name {name!r}: use a non-empty name without '/'")


def _check_shape(shape: Any, what: str) -> tuple[int, ...]:
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


def _check_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"attribute names must be non-empty strings, got {key!r}")
        if key in _RESERVED_ATTRS:
            raise ValueError(f"attribute '{key}' is written by the dataset writer itself")
        if isinstance(value, np.generic):
            value = value.item()
        expected = _ATTR_TYPES.get(key)
        if expected is not None and (isinstance(value, bool) or not isinstance(value, expected)):
            names = " or ".join(t.__name__ for t in expected)
            raise ValueError(f"attribute '{key}' must be {names}, got {type(value).__name__}")
        if key == "dt":
            value = float(value)
        out[key] = _attr_value(key, value)
    return out


def _py_value(value: Any) -> Any:
    """An attribute as read by h5py, as a plain python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [_py_value(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, h5py.Empty):
        return None
    return value


def _dataset_header(path: str, dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    return f"{path}\n{dtype.str}\n{shape!r}\n".encode()


def _combine(entries: Sequence[tuple[str, np.dtype, tuple[int, ...], bytes]]) -> str:
    """The file checksum from ``(path, dtype, shape, digest)`` per dataset."""
    outer = hashlib.sha256()
    for path, dtype, shape, digest in sorted(entries, key=lambda e: e[0]):
        outer.update(_dataset_header(path, dtype, shape))
        outer.update(digest)
    return "sha256:" + outer.hexdigest()


def _iter_blocks(ds: h5py.Dataset, budget: int = _READ_BUDGET) -> Iterator[np.ndarray]:
    """The dataset's contents in C order, as contiguous blocks of about ``budget`` bytes.

    Blocks are slices along axis 0 when one row fits the budget; otherwise the slicing
    moves to the first axis whose sub-blocks fit, so even a huge trajectory is read in
    pieces.
    """
    shape = tuple(ds.shape)
    itemsize = ds.dtype.itemsize
    if ds.compression is not None and ds.chunks is not None:
        # a compressed chunk is decompressed whole on every partial read: read whole chunks
        budget = max(budget, math.prod(ds.chunks) * itemsize)
    if math.prod(shape) * itemsize <= budget or not shape:
        yield np.ascontiguousarray(ds[()])
        return
    axis = next(k for k in range(len(shape)) if math.prod(shape[k + 1 :]) * itemsize <= budget)
    step = max(1, budget // (math.prod(shape[axis + 1 :]) * itemsize))
    for outer in np.ndindex(*shape[:axis]):
        for start in range(0, shape[axis], step):
            yield np.ascontiguousarray(ds[(*outer, slice(start, start + step))])


def _dataset_digest(ds: h5py.Dataset) -> bytes:
    h = hashlib.sha256()
    for block in _iter_blocks(ds):
        h.update(block)
    return h.digest()


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------- writer


class TrajectoryWriter:
    """Streams trajectories into a new schema-v1 dataset file.

    Data goes to ``<path>.partial``; :meth:`close` writes the attributes (checksum last),
    closes the file and renames it to ``path``, replacing any file there. Used as a
    context manager, an exception in the block (``KeyboardInterrupt`` included) deletes
    the partial file instead. Only the current batch is ever held in memory.

    Example::

        with TrajectoryWriter("train.h5", num_trajectories=N, num_times=T,
                              fields={"u": (1, 64)}, params={"nu": ()},
                              coords={"t": t, "x": x}, attrs=attrs) as w:
            for u, nu in batches:       # u [b, T, 1, 64], nu [b]
                w.write({"u": u}, {"nu": nu})
    """

    def __init__(
        self,
        path: str | Path,
        *,
        num_trajectories: int,
        num_times: int,
        fields: Mapping[str, tuple[int, ...]],
        params: Mapping[str, tuple[int, ...]],
        coords: Mapping[str, Tensor | np.ndarray],
        attrs: Mapping[str, Any],
        compression: str | None = None,
    ) -> None:
        """Validates the layout and creates ``<path>.partial`` with coords written.

        Args:
            path: final file path, e.g. ``data/train.h5``.
            num_trajectories: N, the exact number of trajectories that will be written.
            num_times: T, frames per trajectory.
            fields: name -> per-frame shape ``(C, *spatial)``; all fields share ``spatial``.
            params: name -> per-trajectory shape (``()`` for a scalar such as ``nu``).
            coords: ``"t"`` -> ``[T]`` times and one ``[S_k]`` array per spatial axis, in
                axis order; stored as float64.
            attrs: root attributes (``problem``, ``solver``, ``dt``, ``seed``, ``split``,
                ``config``, extras): str, int, float, bool or flat lists of numbers.
                ``created`` and ``pbdl_version`` default to now and this version.
            compression: ``None``, ``"gzip"`` or ``"lzf"`` for the fields.

        Raises:
            ValueError: on an inconsistent layout or unsupported attribute.
            DatasetError: if the partial file cannot be created.
        """
        self.path = Path(path)
        self.partial_path = _partial_path(self.path)
        n, t = int(num_trajectories), int(num_times)
        if n < 1 or t < 1:
            raise ValueError(f"num_trajectories ({n}) and num_times ({t}) must be >= 1")
        if compression not in (None, "gzip", "lzf"):
            raise ValueError(f"compression must be None, 'gzip' or 'lzf', got {compression!r}")
        if not fields:
            raise ValueError("a dataset needs at least one field")
        self.num_trajectories, self.num_times = n, t

        self._field_shapes: dict[str, tuple[int, ...]] = {}
        for name, shape in fields.items():
            _check_name(name, "field")
            frame = _check_shape(shape, f"field '{name}'")
            if not frame:
                raise ValueError(f"field '{name}': per-frame shape must be (C, *spatial)")
            self._field_shapes[name] = frame
        spatial_shapes = {s[1:] for s in self._field_shapes.values()}
        if len(spatial_shapes) > 1:
            raise ValueError(f"fields disagree on their spatial shape: {self._field_shapes}")
        spatial = spatial_shapes.pop()

        self._param_shapes: dict[str, tuple[int, ...]] = {}
        for name, shape in params.items():
            _check_name(name, "param")
            self._param_shapes[name] = _check_shape(shape, f"param '{name}'")

        coord_arrays: dict[str, np.ndarray] = {}
        for name, values in coords.items():
            _check_name(name, "coord")
            arr = _as_array(values, COORD_DTYPE, f"coord '{name}'")
            if arr.ndim != 1:
                raise ValueError(f"coord '{name}' must be 1-D, got shape {arr.shape}")
            coord_arrays[name] = arr
        if "t" not in coord_arrays:
            raise ValueError("coords must include 't', the output times")
        if len(coord_arrays["t"]) != t:
            raise ValueError(f"coords['t'] has {len(coord_arrays['t'])} entries, num_times={t}")
        axes = [name for name in coord_arrays if name != "t"]
        if len(axes) != len(spatial):
            raise ValueError(
                f"fields have {len(spatial)} spatial dims {spatial} but coords give "
                f"{len(axes)} spatial axes {axes}"
            )
        for k, name in enumerate(axes):
            if len(coord_arrays[name]) != spatial[k]:
                raise ValueError(
                    f"coords['{name}'] has {len(coord_arrays[name])} entries but spatial "
                    f"axis {k} of the fields has size {spatial[k]}"
                )

        self._attrs = _check_attrs(attrs)
        frame_bytes = (
            math.prod(spatial)
            * FIELD_DTYPE.itemsize
            * max(s[0] for s in self._field_shapes.values())
        )
        if frame_bytes > _MAX_CHUNK_BYTES:
            raise ValueError(f"one frame is {_human_size(frame_bytes)}; HDF5 chunks max 4 GiB")

        self._count = 0
        self._closed = False
        self._broken = False
        self._hashes: dict[str, Any] = {}
        self._meta: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}

        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file = h5py.File(self.partial_path, "w")
        except OSError as e:
            raise DatasetError(
                f"cannot create {self.partial_path}: is another write to it still running, "
                "or is the directory read-only?"
            ) from e
        try:
            self._create(coord_arrays, axes, compression)
        except BaseException:
            self.abort()
            raise

    def _create(
        self, coords: dict[str, np.ndarray], axes: list[str], compression: str | None
    ) -> None:
        n, t = self.num_trajectories, self.num_times
        gf = self._file.create_group("fields")
        gp = self._file.create_group("params")
        gc = self._file.create_group("coords")
        for name, frame in self._field_shapes.items():
            shape = (n, t, *frame)
            # one trajectory per chunk, split along T only if that would exceed 4 GiB
            frame_bytes = math.prod(frame) * FIELD_DTYPE.itemsize
            chunks = (1, min(t, _MAX_CHUNK_BYTES // frame_bytes), *frame)
            gf.create_dataset(
                name,
                shape=shape,
                dtype=FIELD_DTYPE,
                chunks=chunks,
                compression=compression,
                shuffle=compression is not None,
            )
            self._track(f"fields/{name}", FIELD_DTYPE, shape)
        for name, pshape in self._param_shapes.items():
            shape = (n, *pshape)
            gp.create_dataset(name, shape=shape, dtype=PARAM_DTYPE)
            self._track(f"params/{name}", PARAM_DTYPE, shape)
        for name, arr in coords.items():
            ds = gc.create_dataset(name, data=arr, dtype=COORD_DTYPE)
            if name != "t":
                ds.attrs["axis"] = np.int64(axes.index(name))
            self._track(f"coords/{name}", COORD_DTYPE, arr.shape)
            self._hashes[f"coords/{name}"].update(arr)

    def _track(self, path: str, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        self._hashes[path] = hashlib.sha256()
        self._meta[path] = (dtype, tuple(int(d) for d in shape))

    @property
    def num_written(self) -> int:
        """Trajectories appended so far."""
        return self._count

    def write(
        self,
        fields: Mapping[str, Tensor | np.ndarray],
        params: Mapping[str, Tensor | np.ndarray] | None = None,
    ) -> None:
        """Appends a batch of ``b`` trajectories.

        Args:
            fields: every declared field, each ``[b, T, C, *spatial]``.
            params: every declared param, each ``[b, *param_shape]``.

        Raises:
            ValueError: on missing/extra names, wrong shapes, or more trajectories than
                declared. Nothing is written then, and the writer stays usable.
        """
        if self._closed:
            raise ValueError(f"writer for {self.path} is already closed")
        if self._broken:
            raise ValueError(f"an earlier write to {self.partial_path} failed; start over")
        params = params or {}
        batch: dict[str, np.ndarray] = {}
        for kind, given, declared, dtype, lead in (
            ("field", fields, self._field_shapes, FIELD_DTYPE, (self.num_times,)),
            ("param", params, self._param_shapes, PARAM_DTYPE, ()),
        ):
            missing = sorted(set(declared) - set(given))
            extra = sorted(set(given) - set(declared))
            if missing or extra:
                raise ValueError(
                    f"{kind}s do not match the declared ones {sorted(declared)}: "
                    f"missing {missing}, unexpected {extra}"
                )
            for name, values in given.items():
                arr = _as_array(values, dtype, f"{kind} '{name}'")
                expected = (*lead, *declared[name])
                if arr.ndim == 0 or tuple(arr.shape[1:]) != expected:
                    raise ValueError(
                        f"{kind} '{name}' has shape {tuple(arr.shape)}, "
                        f"expected [b, {', '.join(map(str, expected))}]"
                    )
                batch[f"{kind}s/{name}"] = arr
        sizes = {path: arr.shape[0] for path, arr in batch.items()}
        b = next(iter(sizes.values()))
        if any(s != b for s in sizes.values()):
            raise ValueError(f"batch sizes differ between fields and params: {sizes}")
        if self._count + b > self.num_trajectories:
            raise ValueError(
                f"writing {b} more trajectories would make {self._count + b}, but "
                f"{self.path.name} was declared with num_trajectories={self.num_trajectories}"
            )
        start = self._count
        try:
            for path, arr in batch.items():
                self._file[path][start : start + b] = arr
                self._hashes[path].update(arr)
        except BaseException:
            self._broken = True  # file and running digests may disagree now
            raise
        self._count += b

    def close(self) -> Path:
        """Writes the attributes and checksum, closes and renames the file into place.

        Returns:
            The final path.

        Raises:
            ValueError: if fewer trajectories than declared were written (the writer stays
                open; write more or call :meth:`abort`).
        """
        if self._closed:
            return self.path
        if self._broken:
            raise ValueError(f"an earlier write to {self.partial_path} failed; start over")
        if self._count != self.num_trajectories:
            raise ValueError(
                f"{self.path.name} was declared with num_trajectories="
                f"{self.num_trajectories} but {self._count} were written"
            )
        from pbdl_cli import __version__

        attrs = self._file.attrs
        attrs["schema_version"] = np.int64(SCHEMA_VERSION)
        attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        attrs["pbdl_version"] = __version__
        for key, value in self._attrs.items():
            attrs[key] = value
        entries = [
            (p, dt, shape, self._hashes[p].digest()) for p, (dt, shape) in self._meta.items()
        ]
        attrs["checksum"] = _combine(entries)
        self._file.close()
        with open(self.partial_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self.partial_path, self.path)
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Closes and deletes the partial file; the final path is left untouched."""
        self._closed = True
        file = getattr(self, "_file", None)
        if file is not None and file.id.valid:
            # already failing; the unlink below is what matters
            with contextlib.suppress(Exception):
                file.close()
        self.partial_path.unlink(missing_ok=True)

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
            return
        try:
            self.close()
        except BaseException:
            self.abort()
            raise


# ---------------------------------------------------------------------------- reader


@dataclass
class DatasetInfo:
    """Summary of one dataset file.

    Attributes:
        path: the file.
        schema_version: layout version (always :data:`SCHEMA_VERSION` once validated).
        split, problem, solver: from the root attributes, ``None`` where absent.
        num_trajectories, num_times: N and T.
        fields: name -> full shape ``(N, T, C, *spatial)``.
        params: name -> full shape ``(N, ...)``.
        coords: name -> shape ``(T,)`` for ``t``, ``(S_k,)`` for spatial axes.
        attrs: every root attribute as a python value (``config`` YAML included).
        checksum: the stored checksum, ``None`` if the file has none.
        checksum_ok: whether recomputation matched; ``None`` if not verified.
        size_bytes: file size on disk.
        dtypes: dataset path (``"fields/u"``) -> numpy dtype string (``"<f4"``).
        stats: dataset path -> ``(min, max, mean)`` for small params and coords.
    """

    path: Path
    schema_version: int
    split: str | None
    problem: str | None
    solver: str | None
    num_trajectories: int
    num_times: int
    fields: dict[str, tuple[int, ...]]
    params: dict[str, tuple[int, ...]]
    coords: dict[str, tuple[int, ...]]
    attrs: dict[str, Any]
    checksum: str | None
    checksum_ok: bool | None
    size_bytes: int
    dtypes: dict[str, str] = field(default_factory=dict)
    stats: dict[str, tuple[float, float, float]] = field(default_factory=dict)


def _open_h5(path: Path) -> h5py.File:
    """Opens any HDF5 file read-only, turning every failure into one DatasetError."""
    if not path.exists():
        msg = f"no such dataset file: {path}"
        if _partial_path(path).exists():
            msg += (
                f" (only {_partial_path(path).name} exists: an interrupted or still running "
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


def _spatial_coord_names(coords: h5py.Group) -> list[str]:
    names = [n for n in coords if n != "t"]
    if all("axis" in coords[n].attrs for n in names):
        return sorted(names, key=lambda n: int(coords[n].attrs["axis"]))
    return sorted(names, key=lambda n: (_AXIS_NAMES.index(n) if n in _AXIS_NAMES else 99, n))


def _validate(f: h5py.File, path: Path) -> tuple[int, int]:
    """Checks the schema and shape consistency of an open file; returns ``(N, T)``."""
    if "schema_version" not in f.attrs:
        if path.name.endswith(PARTIAL_SUFFIX):
            raise DatasetError(_partial_message(path))
        raise DatasetError(
            f"{path} is an HDF5 file but not a pbdl dataset (no schema_version attribute)"
        )
    version = _py_value(f.attrs["schema_version"])
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
    if len({s[3:] for s in shapes.values()}) > 1:
        raise DatasetError(f"{path}: fields disagree on their spatial shape: {shapes}")
    n, t = next(iter(shapes.values()))[:2]
    spatial = next(iter(shapes.values()))[3:]

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
    axes = _spatial_coord_names(coords)
    if len(axes) != len(spatial):
        raise DatasetError(
            f"{path}: fields have {len(spatial)} spatial dims {spatial} but coords give "
            f"{len(axes)} spatial axes {axes}"
        )
    for k, name in enumerate(axes):
        if coords[name].shape != (spatial[k],):
            raise DatasetError(
                f"{path}: /coords/{name} has shape {coords[name].shape}, but spatial axis {k} "
                f"of the fields has size {spatial[k]}"
            )
    return int(n), int(t)


def _corrupt(path: Path) -> DatasetError:
    return DatasetError(f"{path} is corrupt: reading its contents failed (truncated or damaged)")


def open_dataset(path: str | Path) -> h5py.File:
    """Opens and validates a dataset file.

    Returns:
        A read-only ``h5py.File``; the caller closes it (it is a context manager).

    Raises:
        DatasetError: with a one-line explanation if the file is missing, unreadable,
            not a pbdl dataset, of another schema version or internally inconsistent.
    """
    path = Path(path)
    f = _open_h5(path)
    try:
        _validate(f, path)
    except DatasetError:
        f.close()
        raise
    except (OSError, RuntimeError, KeyError) as e:
        f.close()
        raise _corrupt(path) from e
    return f


def compute_checksum(h5file_or_path: h5py.File | str | Path) -> str:
    """Recomputes the checksum of every dataset in a file, reading bounded blocks.

    Args:
        h5file_or_path: an open ``h5py.File`` or a path (any HDF5 file).

    Returns:
        ``"sha256:<hex>"``.
    """
    if not isinstance(h5file_or_path, (h5py.File, h5py.Group)):
        path = Path(h5file_or_path)
        with _open_h5(path) as f:
            try:
                return compute_checksum(f)
            except (OSError, RuntimeError, KeyError) as e:
                raise _corrupt(path) from e
    root = h5file_or_path
    names: list[str] = []
    root.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    entries = []
    for name in names:
        ds = root[name]
        entries.append((name, ds.dtype, tuple(int(d) for d in ds.shape), _dataset_digest(ds)))
    return _combine(entries)


def verify_checksum(path: str | Path) -> tuple[str | None, str]:
    """The stored and the recomputed checksum of a dataset file.

    Returns:
        ``(stored, recomputed)``; ``stored`` is ``None`` if the file has no checksum.
    """
    path = Path(path)
    with open_dataset(path) as f:
        stored = _py_value(f.attrs["checksum"]) if "checksum" in f.attrs else None
        try:
            return stored, compute_checksum(f)
        except (OSError, RuntimeError, KeyError) as e:
            raise _corrupt(path) from e


def read_info(path: str | Path, *, verify: bool = True) -> DatasetInfo:
    """Summarises a dataset file without loading its fields.

    Args:
        path: the file.
        verify: recompute the checksum (reads every byte, in bounded blocks) and set
            ``checksum_ok``; a mismatch is reported there, not raised.

    Raises:
        DatasetError: if the file fails validation (see :func:`open_dataset`).
    """
    path = Path(path)
    with open_dataset(path) as f:
        try:
            return _read_info(f, path, verify)
        except (OSError, RuntimeError, KeyError) as e:
            raise _corrupt(path) from e


def _read_info(f: h5py.File, path: Path, verify: bool) -> DatasetInfo:
    attrs = {key: _py_value(value) for key, value in f.attrs.items()}
    fields = {n: tuple(ds.shape) for n, ds in f["fields"].items()}
    params = {n: tuple(ds.shape) for n, ds in f.get("params", {}).items()}
    axes = ["t", *_spatial_coord_names(f["coords"])]
    coords = {n: tuple(f["coords"][n].shape) for n in axes}
    dtypes: dict[str, str] = {}
    stats: dict[str, tuple[float, float, float]] = {}
    for group in ("fields", "params", "coords"):
        for name, ds in f.get(group, {}).items():
            dtypes[f"{group}/{name}"] = ds.dtype.str
            if group != "fields" and 0 < ds.size <= _STATS_MAX_ELEMENTS:
                data = ds[()].astype(np.float64)
                stats[f"{group}/{name}"] = (
                    float(data.min()),
                    float(data.max()),
                    float(data.mean()),
                )
    checksum = attrs.get("checksum")
    checksum_ok: bool | None = None
    if verify:
        checksum_ok = checksum is not None and compute_checksum(f) == checksum
    n, t = next(iter(fields.values()))[:2]

    def text(key: str) -> str | None:
        value = attrs.get(key)
        return value if isinstance(value, str) else None

    return DatasetInfo(
        path=path,
        schema_version=int(attrs["schema_version"]),
        split=text("split"),
        problem=text("problem"),
        solver=text("solver"),
        num_trajectories=int(n),
        num_times=int(t),
        fields=fields,
        params=params,
        coords=coords,
        attrs=attrs,
        checksum=checksum if isinstance(checksum, str) else None,
        checksum_ok=checksum_ok,
        size_bytes=path.stat().st_size,
        dtypes=dtypes,
        stats=stats,
    )


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
        n = next(iter(f["fields"].values())).shape[0]
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
                "fields": {name: take(ds) for name, ds in f["fields"].items()},
                "params": {name: take(ds) for name, ds in f.get("params", {}).items()},
                "coords": {name: ds[()] for name, ds in f["coords"].items()},
                "attrs": {key: _py_value(value) for key, value in f.attrs.items()},
            }
        except (OSError, RuntimeError, KeyError) as e:
            raise _corrupt(path) from e


# ---------------------------------------------------------------------------- render


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _fmt_value(value: Any, limit: int = 60) -> str:
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_info(info: DatasetInfo, *, show_config: bool = False) -> RenderableType:
    """A compact rich summary of a dataset file.

    Args:
        info: from :func:`read_info`.
        show_config: also print the full resolved config YAML.
    """
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold", no_wrap=True)
    head.add_column(overflow="fold")
    head.add_row("file", str(info.path))
    head.add_row("size", _human_size(info.size_bytes))
    head.add_row("schema", f"version {info.schema_version}")
    head.add_row(
        "problem / solver / split",
        " / ".join(v or "?" for v in (info.problem, info.solver, info.split)),
    )
    head.add_row("trajectories", f"{info.num_trajectories} trajectories × {info.num_times} times")
    shown = {"schema_version", "problem", "solver", "split", "checksum", "config"}
    for key in ("dt", "seed", "created", "pbdl_version"):
        if key in info.attrs:
            head.add_row(key, _fmt_value(info.attrs[key]))
    for key, value in sorted(info.attrs.items()):
        if key not in shown and key not in ("dt", "seed", "created", "pbdl_version"):
            head.add_row(key, _fmt_value(value))

    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("dataset", "dtype", "shape"):
        table.add_column(col)
    for col in ("min", "max", "mean"):
        table.add_column(col, justify="right")
    for group, shapes in (
        ("fields", info.fields),
        ("params", info.params),
        ("coords", info.coords),
    ):
        for name, shape in shapes.items():
            key = f"{group}/{name}"
            stats = info.stats.get(key)
            cells = [f"{v:.4g}" for v in stats] if stats else ["", "", ""]
            table.add_row(key, info.dtypes.get(key, "?"), _fmt_shape(shape), *cells)

    if info.checksum is None:
        mark = Text("no checksum stored", style="bold red")
    elif info.checksum_ok is None:
        mark = Text("not verified", style="yellow")
    elif info.checksum_ok:
        mark = Text("verified", style="bold green")
    else:
        mark = Text("MISMATCH", style="bold red")
    check = Text.assemble(("checksum ", "bold"), (info.checksum or "-", ""), "  ", mark)

    parts: list[RenderableType] = [head, Text(""), table, Text(""), check]
    config = info.attrs.get("config")
    if show_config and isinstance(config, str):
        parts += [Text(""), Text("config", style="bold"), Syntax(config, "yaml")]
    return Group(*parts)


def print_info(info: DatasetInfo, console: Console, *, show_config: bool = False) -> None:
    """Prints :func:`render_info` to ``console``."""
    console.print(render_info(info, show_config=show_config))
