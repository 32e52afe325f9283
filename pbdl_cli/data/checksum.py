"""The dataset checksum: one sha256 over every dataset of a file, in bounded memory.

``checksum = "sha256:" + hexdigest`` of, for every dataset in sorted path order,
``f"{path}\\n{dtype.str}\\n{shape!r}\\n"`` (UTF-8) followed by the 32-byte sha256 digest of
the dataset's raw C-order bytes. :class:`~pbdl_cli.data.writer.TrajectoryWriter` builds
the per-dataset digests while appending trajectories (:func:`combine`), and
:func:`compute_checksum` rebuilds them by reading bounded blocks, so neither ever holds a
whole field in memory.

The attributes have their own checksum, ``attributes_checksum = "sha256:" + hexdigest``
of, for every attribute of the root, every group and every dataset (objects in sorted
path order, the root as ``/``, names sorted), ``f"{object}\n{name}\n"`` followed by the
32-byte sha256 digest of the value's canonical bytes (:func:`_value_bytes`). The root's
``created`` time and the two checksums themselves are left out, so the same command
gives the same file checksums. Files written before it existed carry only ``checksum``;
their attributes go unverified.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np

from pbdl_cli.data.reader import DatasetFile, corrupt, datasets_of, open_dataset, open_h5
from pbdl_cli.errors import PbdlError

#: root attributes outside the attribute checksum
UNCOVERED_ROOT_ATTRS = frozenset({"created", "checksum", "attributes_checksum"})
#: verification reads at most this many bytes at once (more only for one compressed chunk)
READ_BUDGET = 8 * 2**20


def dataset_header(path: str, dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """What each dataset contributes before its digest: path, dtype and shape."""
    return f"{path}\n{dtype.str}\n{shape!r}\n".encode()


def combine(entries: Sequence[tuple[str, np.dtype, tuple[int, ...], bytes]]) -> str:
    """The file checksum from ``(path, dtype, shape, digest)`` per dataset."""
    outer = hashlib.sha256()
    for path, dtype, shape, digest in sorted(entries, key=lambda e: e[0]):
        outer.update(dataset_header(path, dtype, shape))
        outer.update(digest)
    return "sha256:" + outer.hexdigest()


def iter_blocks(ds: h5py.Dataset, budget: int = READ_BUDGET) -> Iterator[np.ndarray]:
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
    for block in iter_blocks(ds):
        h.update(block)
    return h.digest()


def compute_checksum(source: DatasetFile | h5py.Group | str | Path) -> str:
    """Recomputes the checksum of every dataset in a file, reading bounded blocks.

    Args:
        source: an open :class:`~pbdl_cli.data.reader.DatasetFile`, an open ``h5py``
            file or group, or a path (any HDF5 file, validated or not).

    Returns:
        ``"sha256:<hex>"``.
    """
    if isinstance(source, DatasetFile):
        found = source.datasets()
    elif isinstance(source, (h5py.File, h5py.Group)):
        found = datasets_of(source)
    else:
        path = Path(source)
        with open_h5(path) as f:
            try:
                return compute_checksum(f)
            except (OSError, RuntimeError, KeyError) as e:
                raise corrupt(path) from e
    entries = [
        (name, ds.dtype, tuple(int(d) for d in ds.shape), _dataset_digest(ds))
        for name, ds in found.items()
    ]
    return combine(entries)


def verify_checksum(path: str | Path) -> tuple[str | None, str]:
    """The stored and the recomputed checksum of a dataset file.

    Returns:
        ``(stored, recomputed)``; ``stored`` is ``None`` if the file has no checksum.
    """
    path = Path(path)
    with open_dataset(path) as f:
        stored = f.attrs.get("checksum")
        try:
            return stored, compute_checksum(f)
        except (OSError, RuntimeError, KeyError) as e:
            raise corrupt(path) from e


def _value_bytes(value: object) -> bytes:
    """Canonical bytes of an attribute value: kind, dtype and shape, then the data."""
    if isinstance(value, str):
        return b"str\n" + value.encode()
    if isinstance(value, bytes):
        return b"bytes\n" + value
    array = np.asarray(value)
    if array.dtype.kind in "OUS":  # arrays of strings: their text, element by element
        return f"text{array.shape!r}\n{array.tolist()!r}".encode()
    header = f"{array.dtype.str}{array.shape!r}\n".encode()
    return header + np.ascontiguousarray(array).tobytes()


def attributes_checksum(root: h5py.Group) -> str:
    """The checksum of every attribute of the file open at ``root`` (module docstring)."""
    objects: dict[str, h5py.HLObject] = {"/": root}

    def visit(name: str, obj: h5py.HLObject) -> None:  # a returned value stops the visit
        objects[name] = obj

    root.visititems(visit)
    h = hashlib.sha256()
    for path in sorted(objects):
        attrs = objects[path].attrs
        for name in sorted(attrs):
            if path == "/" and name in UNCOVERED_ROOT_ATTRS:
                continue
            h.update(f"{path}\n{name}\n".encode())
            h.update(hashlib.sha256(_value_bytes(attrs[name])).digest())
    return "sha256:" + h.hexdigest()


def attributes_ok(root: h5py.Group) -> bool | None:
    """Whether the attributes match their stored checksum (None: the file has none)."""
    stored = root.attrs.get("attributes_checksum")
    if stored is None:
        return None
    return stored == attributes_checksum(root)


def verify_file(path: str | Path) -> None:
    """Raise :class:`PbdlError` (exit code 1) unless the dataset file at ``path`` matches
    its stored checksums (data, and attributes where stored); reads the file once, in
    bounded blocks. A file with no checksum at all passes (nothing to compare)."""
    path = Path(path)
    with open_dataset(path) as f:
        stored = f.attrs.get("checksum")
        try:
            data_changed = stored is not None and compute_checksum(f) != stored
        except (OSError, RuntimeError, KeyError) as e:
            raise corrupt(path) from e
        what = "its data" if data_changed else ""
        if not what and attributes_ok(f.root) is False:
            what = "its attributes"
    if what:
        raise PbdlError(
            f"dataset file {path} fails its checksum ({what} changed after pbdl generate "
            "wrote it, or the file is corrupt); regenerate it (pbdl generate ... "
            "overwrite=true) or restore the original",
            exit_code=1,
        )
