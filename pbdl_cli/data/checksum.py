"""The dataset checksum: one sha256 over every dataset of a file, in bounded memory.

``checksum = "sha256:" + hexdigest`` of, for every dataset in sorted path order,
``f"{path}\\n{dtype.str}\\n{shape!r}\\n"`` (UTF-8) followed by the 32-byte sha256 digest of
the dataset's raw C-order bytes. Root and dataset attributes are not part of it (so the
``created`` time is not). :class:`~pbdl_cli.data.writer.TrajectoryWriter` builds the
per-dataset digests while appending trajectories (:func:`combine`), and
:func:`compute_checksum` rebuilds them by reading bounded blocks, so neither ever holds a
whole field in memory.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np

from pbdl_cli.data.reader import DatasetFile, corrupt, datasets_of, open_dataset, open_h5

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
