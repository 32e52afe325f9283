"""The atomic, streaming writer of schema-v1 dataset files (layout:
:mod:`pbdl_cli.data.schema`, checksum: :mod:`pbdl_cli.data.checksum`).

Data go to ``<path>.partial`` and are renamed into place only once complete; the
per-dataset digests of the checksum are built while trajectories are appended, so only
the current batch is ever held in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from pbdl_cli.data.checksum import attributes_checksum, combine
from pbdl_cli.data.schema import (
    COORD_DTYPE,
    FIELD_DTYPE,
    MAX_CHUNK_BYTES,
    PARAM_DTYPE,
    SCHEMA_VERSION,
    DatasetError,
    check_attrs,
    check_name,
    check_shape,
    check_spatial_axes,
    human_size,
    partial_path,
    spatial_shape,
)
from pbdl_cli.utils.space import disk_full_as_error, disk_full_error, is_disk_full

if TYPE_CHECKING:
    from torch import Tensor


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
        self.partial_path = partial_path(self.path)
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
            check_name(name, "field")
            frame = check_shape(shape, f"field '{name}'")
            if not frame:
                raise ValueError(f"field '{name}': per-frame shape must be (C, *spatial)")
            self._field_shapes[name] = frame
        spatial = spatial_shape(self._field_shapes, self._field_shapes)

        self._param_shapes: dict[str, tuple[int, ...]] = {}
        for name, shape in params.items():
            check_name(name, "param")
            self._param_shapes[name] = check_shape(shape, f"param '{name}'")

        coord_arrays: dict[str, np.ndarray] = {}
        for name, values in coords.items():
            check_name(name, "coord")
            arr = _as_array(values, COORD_DTYPE, f"coord '{name}'")
            if arr.ndim != 1:
                raise ValueError(f"coord '{name}' must be 1-D, got shape {arr.shape}")
            coord_arrays[name] = arr
        if "t" not in coord_arrays:
            raise ValueError("coords must include 't', the output times")
        if len(coord_arrays["t"]) != t:
            raise ValueError(f"coords['t'] has {len(coord_arrays['t'])} entries, num_times={t}")
        axes = [name for name in coord_arrays if name != "t"]
        check_spatial_axes(
            spatial,
            axes,
            {name: coord_arrays[name].shape for name in axes},
            lambda name: f"coords['{name}'] has {len(coord_arrays[name])} entries",
        )

        self._attrs = check_attrs(attrs)
        frame_bytes = (
            math.prod(spatial)
            * FIELD_DTYPE.itemsize
            * max(s[0] for s in self._field_shapes.values())
        )
        if frame_bytes > MAX_CHUNK_BYTES:
            raise ValueError(f"one frame is {human_size(frame_bytes)}; HDF5 chunks max 4 GiB")

        #: bytes of the uncompressed data: what the file needs on disk, about
        self.nbytes = FIELD_DTYPE.itemsize * n * t * sum(
            math.prod(shape) for shape in self._field_shapes.values()
        ) + PARAM_DTYPE.itemsize * n * sum(
            math.prod(shape) for shape in self._param_shapes.values()
        )
        self._count = 0
        self._closed = False
        self._broken = False
        self._hashes: dict[str, Any] = {}
        self._meta: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}

        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # no chunk cache: each chunk goes to disk when written, so a full disk fails
            # the write that hits it; cached chunks HDF5 cannot flush would be flushed
            # again when the interpreter exits and crash it (a segmentation fault)
            self._file = h5py.File(self.partial_path, "w", rdcc_nbytes=0)
        except OSError as e:
            if is_disk_full(e):
                raise disk_full_error(self.partial_path, self.nbytes) from None
            raise DatasetError(
                f"cannot create {self.partial_path}: is another write to it still running, "
                "or is the directory read-only?"
            ) from e
        try:
            with disk_full_as_error(self.partial_path, self.nbytes):
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
            chunks = (1, min(t, MAX_CHUNK_BYTES // frame_bytes), *frame)
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
            with disk_full_as_error(self.partial_path, self.nbytes):
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
        attrs["attributes_checksum"] = attributes_checksum(self._file)
        attrs["checksum"] = combine(entries)
        with disk_full_as_error(self.partial_path, self.nbytes):
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
