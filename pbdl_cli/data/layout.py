"""What a split file holds, as the window dataset and the normalization statistics see it:
fields in channel order, channel and param names, the params as one float32 [N, P] array;
plus trajectory selection and the runs of consecutive trajectories read as one block.

Channels ``C`` are the fields of the file stacked along the channel axis in the order
given by ``fields``, by default the sorted field names (the file stores no channel
order); a field stored with several channels contributes all of them in stored order.
Params ``P`` are the file's params in sorted name order, each flattened in C order
(``nu`` -> one entry ``nu``; ``amp`` of shape [N, 2] -> ``amp[0]``, ``amp[1]``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pbdl_cli.data.reader import DatasetFile
from pbdl_cli.data.schema import DatasetError

#: bytes read at once while loading fields into memory or computing statistics
BLOCK_BYTES = 64 * 2**20


def check_positive(**values: int) -> None:
    """ValueError unless every value is an integer >= 1 (a bool is not one)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def entry_names(name: str, shape: tuple[int, ...]) -> list[str]:
    """``[name]`` for a scalar param, else ``name[0]``, ``name[0,1]``, ... in C order."""
    if not shape:
        return [name]
    return [f"{name}[{','.join(map(str, i))}]" for i in np.ndindex(*shape)]


@dataclass(frozen=True)
class SplitLayout:
    """What a split file holds, read once in the main process (picklable, no handles)."""

    path: Path
    num_trajectories: int
    num_times: int
    spatial: tuple[int, ...]
    fields: tuple[str, ...]  # in channel order
    field_channels: tuple[int, ...]  # C of each field
    channel_names: tuple[str, ...]
    param_names: tuple[str, ...]  # flattened entries, sorted by param name

    @property
    def num_channels(self) -> int:
        return sum(self.field_channels)

    def channel_slices(self) -> list[tuple[str, slice]]:
        out, c = [], 0
        for name, width in zip(self.fields, self.field_channels, strict=True):
            out.append((name, slice(c, c + width)))
            c += width
        return out


def read_layout(
    f: DatasetFile, path: Path, fields: Sequence[str] | None
) -> tuple[SplitLayout, np.ndarray]:
    """The layout of an open, validated file and its params as float32 [N, P]."""
    stored = f.fields
    if fields is None:
        names = sorted(stored)
    else:
        names = list(fields)
        missing = [n for n in names if n not in stored]
        if missing or not names or len(set(names)) != len(names):
            raise DatasetError(
                f"{path}: fields {names} are not distinct fields of this file "
                f"(it has {sorted(stored)})"
            )
    shape = stored[names[0]].shape
    n, t, spatial = int(shape[0]), int(shape[1]), tuple(int(d) for d in shape[3:])
    channels = tuple(int(stored[name].shape[2]) for name in names)
    channel_names = [
        nm
        for name, c in zip(names, channels, strict=True)
        for nm in ([name] if c == 1 else [f"{name}[{i}]" for i in range(c)])
    ]
    param_names: list[str] = []
    columns: list[np.ndarray] = []
    for name in sorted(f.params):
        ds = f.params[name]
        values = np.asarray(ds[()], dtype=np.float32).reshape(n, -1)
        param_names += entry_names(name, tuple(ds.shape[1:]))
        columns.append(values)
    params = np.concatenate(columns, axis=1) if columns else np.zeros((n, 0), np.float32)
    layout = SplitLayout(
        path=path,
        num_trajectories=n,
        num_times=t,
        spatial=spatial,
        fields=tuple(names),
        field_channels=channels,
        channel_names=tuple(channel_names),
        param_names=tuple(param_names),
    )
    return layout, np.ascontiguousarray(params)


def select_trajectories(
    trajectories: Sequence[int] | np.ndarray | range | None, n: int
) -> np.ndarray:
    """Selected trajectory indices as int64 [M] (negative ones counted from the end)."""
    if trajectories is None:
        return np.arange(n, dtype=np.int64)
    idx = np.asarray(list(trajectories) if isinstance(trajectories, range) else trajectories)
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    if idx.ndim != 1 or idx.dtype.kind not in "iu":
        raise ValueError(f"trajectories must be a 1-D sequence of ints, got {trajectories!r}")
    idx = idx.astype(np.int64)
    if idx.min() < -n or idx.max() >= n:
        raise IndexError(f"trajectory index out of range for {n} trajectories")
    idx = np.where(idx < 0, idx + n, idx)
    if np.unique(idx).size != idx.size:
        raise ValueError("trajectories must not repeat an index")
    return idx


def runs(idx: np.ndarray, max_len: int) -> Iterator[tuple[int, int, int]]:
    """``(position, first, count)`` for runs of consecutive increasing indices in ``idx``,
    each at most ``max_len`` long."""
    pos = 0
    while pos < idx.size:
        end = pos + 1
        while end < idx.size and end - pos < max_len and idx[end] == idx[end - 1] + 1:
            end += 1
        yield pos, int(idx[pos]), end - pos
        pos = end
