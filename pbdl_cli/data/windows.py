"""Training windows over a dataset split, normalization statistics and a seeded loader.

A *window* is ``(history, future, params)`` cut from one trajectory of a split file
(schema v1, see :mod:`pbdl_cli.data.schema`)::

    history  float32 [k, C, *spatial]   frames i-k+1 .. i      (k = ``history``)
    future   float32 [n, C, *spatial]   frames i+1 .. i+n      (n = ``horizon``)
    params   float32 [P]                the trajectory's parameters

Window ``w`` of a trajectory starts at frame ``s = w * stride`` (so ``i = s + k - 1``);
a trajectory of T frames has ``floor((T - k - n) / stride) + 1`` windows when
``T >= k + n``, else none. Global window indices run trajectory by trajectory, in the
order of the ``trajectories`` selection: index ``g`` is window ``g % W`` of selected
trajectory ``g // W`` (W windows per trajectory; all trajectories of a file share T).

Channels ``C`` are the fields of the file stacked along the channel axis in the order
given by ``fields``, by default the sorted field names (the file stores no channel
order); a field stored with several channels contributes all of them in stored order.
Params ``P`` are the file's params in sorted name order, each flattened in C order
(``nu`` -> one entry ``nu``; ``amp`` of shape [N, 2] -> ``amp[0]``, ``amp[1]``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pbdl_cli.data.reader import DatasetFile, corrupt, open_dataset
from pbdl_cli.data.schema import DatasetError
from pbdl_cli.utils.files import atomic_write_text
from pbdl_cli.utils.seeding import generator

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "Normalization",
    "WindowBatchSampler",
    "WindowDataset",
    "compute_normalization",
    "make_loader",
    "windows_per_trajectory",
]

#: ``in_memory="auto"`` loads the fields when they take at most this many bytes
DEFAULT_MEMORY_BUDGET = 2 * 2**30
#: bytes read at once while loading fields into memory or computing statistics
_BLOCK_BYTES = 64 * 2**20
NORMALIZATION_VERSION = 1

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def windows_per_trajectory(num_times: int, history: int, horizon: int, stride: int = 1) -> int:
    """``floor((T - k - n) / stride) + 1`` if ``T >= k + n``, else 0."""
    span = history + horizon
    return (num_times - span) // stride + 1 if num_times >= span else 0


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _entry_names(name: str, shape: tuple[int, ...]) -> list[str]:
    """``[name]`` for a scalar param, else ``name[0]``, ``name[0,1]``, ... in C order."""
    if not shape:
        return [name]
    return [f"{name}[{','.join(map(str, i))}]" for i in np.ndindex(*shape)]


@dataclass(frozen=True)
class _Layout:
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


def _read_layout(
    f: DatasetFile, path: Path, fields: Sequence[str] | None
) -> tuple[_Layout, np.ndarray]:
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
        param_names += _entry_names(name, tuple(ds.shape[1:]))
        columns.append(values)
    params = np.concatenate(columns, axis=1) if columns else np.zeros((n, 0), np.float32)
    layout = _Layout(
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


def _select(trajectories: Sequence[int] | np.ndarray | range | None, n: int) -> np.ndarray:
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


def _runs(idx: np.ndarray, max_len: int) -> Iterator[tuple[int, int, int]]:
    """``(position, first, count)`` for runs of consecutive increasing indices in ``idx``,
    each at most ``max_len`` long."""
    pos = 0
    while pos < idx.size:
        end = pos + 1
        while end < idx.size and end - pos < max_len and idx[end] == idx[end - 1] + 1:
            end += 1
        yield pos, int(idx[pos]), end - pos
        pos = end


# ---------------------------------------------------------------------------- dataset


class WindowDataset(Dataset):
    """Windows ``(history [k, C, *spatial], future [n, C, *spatial], params [P])`` of a split.

    Two storage modes:

    * in memory: all selected fields are read once into one contiguous float32 tensor
      ``[M, T, C, *spatial]`` (M selected trajectories); items and batches are slices and
      gathers of it. Forked DataLoader workers share it copy-on-write.
    * on disk: every item reads its ``k + n`` frames from the HDF5 file (one trajectory
      per chunk). The file is opened lazily, once per process: a handle is never pickled
      (``__getstate__`` drops it) nor used after a fork (it is keyed by the process id), so
      the dataset works with any number of DataLoader workers and start methods.

    ``dataset[g]`` gives one window; :meth:`get_batch` gives many at once (vectorized in
    memory) and is what :func:`make_loader` uses.

    Attributes:
        trajectories: int64 [M], the selected trajectory indices in window order.
        windows_per_trajectory: W, windows of each trajectory.
        in_memory: whether the fields were loaded (``"auto"`` resolved).
        field_bytes: size of the selected fields as float32.
        normalization: the one applied to items, or ``None``.
    """

    trajectories: np.ndarray
    windows_per_trajectory: int
    in_memory: bool
    field_bytes: int

    def __init__(
        self,
        path: str | Path,
        *,
        history: int = 1,
        horizon: int = 1,
        stride: int = 1,
        trajectories: Sequence[int] | np.ndarray | range | None = None,
        fields: Sequence[str] | None = None,
        in_memory: bool | Literal["auto"] = "auto",
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        normalization: Normalization | None = None,
    ) -> None:
        """Reads the layout and params (and the fields if in memory).

        Args:
            path: a split file such as ``datasets/burgers/<name>/train.h5``.
            history: k >= 1 input frames, ending at frame i.
            horizon: n >= 1 target frames i+1 .. i+n.
            stride: frames between the starts of consecutive windows (>= 1).
            trajectories: indices of the trajectories to use, in this order (no repeats;
                negative ones count from the end); ``None`` for all.
            fields: field names in channel order; ``None`` for the sorted field names.
            in_memory: ``True``, ``False``, or ``"auto"``: in memory when the selected
                fields take at most ``memory_budget`` bytes.
            memory_budget: bytes, for ``"auto"``.
            normalization: if given, items come normalized (its channel and param names
                must match this dataset's).

        Raises:
            DatasetError: if the file is invalid, or the selection yields no windows.
            ValueError / IndexError: on bad arguments.
        """
        _check_positive(history=history, horizon=horizon, stride=stride)
        if in_memory not in (True, False, "auto"):
            raise ValueError(f"in_memory must be True, False or 'auto', got {in_memory!r}")
        self.path = Path(path)
        self.history, self.horizon, self.stride = int(history), int(horizon), int(stride)
        with open_dataset(self.path) as f:
            try:
                self._setup(f, trajectories, fields, in_memory, memory_budget)
            except (OSError, RuntimeError, KeyError) as e:
                raise corrupt(self.path) from e
        if normalization is not None:
            normalization.check_compatible(self.channel_names, self.param_names)
        self.normalization = normalization
        self._file: DatasetFile | None = None
        self._file_pid: int | None = None
        self._datasets: list[tuple[h5py.Dataset, slice]] = []

    def _setup(
        self,
        f: DatasetFile,
        trajectories: Sequence[int] | np.ndarray | range | None,
        fields: Sequence[str] | None,
        in_memory: bool | Literal["auto"],
        memory_budget: int,
    ) -> None:
        """Reads layout, params and (in memory) fields from the open file."""
        self._layout, params = _read_layout(f, self.path, fields)
        lay = self._layout
        self.trajectories = _select(trajectories, lay.num_trajectories)
        self.windows_per_trajectory = windows_per_trajectory(
            lay.num_times, self.history, self.horizon, self.stride
        )
        if self.windows_per_trajectory == 0 or self.trajectories.size == 0:
            why = (
                f"each trajectory has T={lay.num_times} frames but a window needs "
                f"history k={self.history} + horizon n={self.horizon} = "
                f"{self.history + self.horizon} frames"
                if self.windows_per_trajectory == 0
                else "no trajectories are selected"
            )
            raise DatasetError(f"{self.path}: no training windows: {why}")
        self.field_bytes = (
            self.trajectories.size * lay.num_times * lay.num_channels
            * math.prod(lay.spatial) * 4
        )  # fmt: skip
        self.in_memory = (
            self.field_bytes <= memory_budget if in_memory == "auto" else bool(in_memory)
        )
        self._params = torch.from_numpy(params[self.trajectories])  # [M, P]
        self._data = self._load(f) if self.in_memory else None

    # ------------------------------------------------------------------ description

    @property
    def channel_names(self) -> tuple[str, ...]:
        """Names of the C channels, in order (``u``, or ``u[0]``, ``u[1]`` for C > 1)."""
        return self._layout.channel_names

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of the P param entries, in order (sorted names, flattened)."""
        return self._layout.param_names

    @property
    def fields(self) -> tuple[str, ...]:
        """Field names in channel order."""
        return self._layout.fields

    @property
    def num_times(self) -> int:
        """T, frames per trajectory."""
        return self._layout.num_times

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """``(C, *spatial)``."""
        return (self._layout.num_channels, *self._layout.spatial)

    def __len__(self) -> int:
        return int(self.trajectories.size) * self.windows_per_trajectory

    def __repr__(self) -> str:
        return (
            f"WindowDataset({self.path}, windows={len(self)}, history={self.history}, "
            f"horizon={self.horizon}, stride={self.stride}, frame={self.frame_shape}, "
            f"params={len(self.param_names)}, in_memory={self.in_memory})"
        )

    # ------------------------------------------------------------------ indexing

    def _positions(self, index: Any) -> tuple[np.ndarray, np.ndarray]:
        """Global indices [B] -> (position in the selection [B], start frame s [B])."""
        g = np.asarray(index, dtype=np.int64).reshape(-1)
        n = len(self)
        if g.size and (g.min() < -n or g.max() >= n):
            raise IndexError(f"window index out of range for {n} windows")
        g = np.where(g < 0, g + n, g)
        pos, w = np.divmod(g, self.windows_per_trajectory)
        return pos, w * self.stride

    def locate(self, index: int | Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which trajectory and frame windows come from (vectorized, no per-window state).

        Args:
            index: global window indices [B] (or one int).

        Returns:
            ``(trajectory [B], frame [B])``: the trajectory index in the file and the last
            history frame i (history is frames i-k+1..i, future i+1..i+n).
        """
        pos, start = self._positions(index)
        return self.trajectories[pos], start + self.history - 1

    def __getitem__(self, index: int) -> Batch:
        """Window ``index``: ``(history [k, C, *spatial], future [n, C, *spatial], params [P])``."""
        if isinstance(index, (np.ndarray, torch.Tensor)) and index.ndim == 0:
            index = int(index)
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"window index must be an int, got {type(index).__name__}")
        if self._data is None or self.normalization is not None:
            history, future, params = self.get_batch([index])
            return history[0], future[0], params[0]
        # in memory: plain slicing, cheaper than a gather for one window
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"window index out of range for {n} windows")
        pos, w = divmod(int(index) % n, self.windows_per_trajectory)
        s, k = w * self.stride, self.history
        traj = self._data[pos]
        return (
            traj[s : s + k].clone(),
            traj[s + k : s + k + self.horizon].clone(),
            self._params[pos],
        )

    def get_batch(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> Batch:
        """Windows ``indices`` stacked: ``(history [B, k, C, *spatial],
        future [B, n, C, *spatial], params [B, P])``, contiguous float32 tensors.

        The three are views of one buffer: a DataLoader worker then passes one shared
        memory segment per batch instead of three (about 2.5x less transfer overhead).
        """
        if isinstance(indices, torch.Tensor):
            indices = indices.numpy()
        pos, start = self._positions(indices)
        b, k, n, frame = pos.size, self.history, self.horizon, self.frame_shape
        cells, p = math.prod(frame), len(self.param_names)
        buf = torch.empty(b * ((k + n) * cells + p), dtype=torch.float32)
        history = buf[: b * k * cells].view(b, k, *frame)
        future = buf[b * k * cells : b * (k + n) * cells].view(b, n, *frame)
        params = buf[b * (k + n) * cells :].view(b, p)
        if self._data is not None:
            # rows of the [M * T, C, *spatial] view: one index_select per output
            first = torch.from_numpy(pos * self.num_times + start)[:, None]  # [B, 1]
            flat = self._data.view(-1, *frame)
            rows_h, rows_f = first + torch.arange(k), first + torch.arange(k, k + n)
            torch.index_select(flat, 0, rows_h.view(-1), out=history.view(b * k, *frame))
            torch.index_select(flat, 0, rows_f.view(-1), out=future.view(b * n, *frame))
        else:
            window = torch.from_numpy(self._read_windows(pos, start))  # [B, k + n, C, *spatial]
            history.copy_(window[:, :k])
            future.copy_(window[:, k:])
        torch.index_select(self._params, 0, torch.from_numpy(pos), out=params)
        if self.normalization is not None:
            history.copy_(self.normalization.normalize(history))
            future.copy_(self.normalization.normalize(future))
            params.copy_(self.normalization.normalize_params(params))
        return history, future, params

    # ------------------------------------------------------------------ storage

    def _load(self, f: DatasetFile) -> torch.Tensor:
        """The selected fields as one contiguous float32 tensor [M, T, C, *spatial]."""
        lay = self._layout
        idx = self.trajectories
        data = np.empty((idx.size, lay.num_times, *self.frame_shape), dtype=np.float32)
        for name, channels in lay.channel_slices():
            ds = f.fields[name]
            per_traj = max(1, math.prod(ds.shape[1:]) * ds.dtype.itemsize)
            for pos, first, count in _runs(idx, max(1, _BLOCK_BYTES // per_traj)):
                data[pos : pos + count, :, channels] = ds[first : first + count]
        return torch.from_numpy(data)

    def _open(self) -> list[tuple[h5py.Dataset, slice]]:
        """This process's field datasets and their channel slices; the file is opened on
        first use in each process."""
        if self._file is None or self._file_pid != os.getpid():
            # a handle inherited through fork is dropped, never used or closed here
            self._file = open_dataset(self.path)
            self._file_pid = os.getpid()
            group = self._file.fields  # h5py lookups are slow: resolve them once
            self._datasets = [(group[name], c) for name, c in self._layout.channel_slices()]
        return self._datasets

    def _read_windows(self, pos: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Frames ``s .. s+k+n-1`` of each window from disk: float32 [B, k+n, C, *spatial]."""
        span = self.history + self.horizon
        out = np.empty((pos.size, span, *self.frame_shape), dtype=np.float32)
        datasets = self._open()
        try:
            for b, (p, s) in enumerate(zip(pos.tolist(), start.tolist(), strict=True)):
                traj = int(self.trajectories[p])
                for ds, channels in datasets:
                    out[b, :, channels] = ds[traj, s : s + span]
        except (OSError, RuntimeError, KeyError) as e:
            raise corrupt(self.path) from e
        return out

    def close(self) -> None:
        """Closes this process's file handle (reopened on the next on-disk read)."""
        if self._file is not None and self._file_pid == os.getpid():
            self._file.close()
        self._file = self._file_pid = None
        self._datasets = []

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = state["_file_pid"] = None  # never pickle an open handle
        state["_datasets"] = []
        return state


# ---------------------------------------------------------------------- normalization


def _as_floats(values: Any, what: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"normalization {what} must be finite, got {out}")
    return out


@dataclass(frozen=True)
class Normalization:
    """Per-channel statistics of the fields and per-entry statistics of the params.

    ``mean``/``std`` are over all trajectories, frames and cells of each channel (population
    std, ddof = 0, computed in float64); ``param_mean``/``param_std`` over trajectories.
    A constant channel or param (min == max, e.g. a fixed viscosity) gets ``std = 1``, so
    it normalizes to exactly 0 instead of dividing by zero; its name is listed in
    ``constant``.

    ``normalize(x) = (x - mean) / std`` per channel, for states ``[..., C, *spatial]``;
    ``normalize_params(p) = (p - param_mean) / param_std`` for ``[..., P]``. Both compute
    in the input's dtype and device.

    ``source`` records where the statistics come from (file, split, problem, checksum,
    trajectories); it is stored by :meth:`to_dict` but ignored by ``==``.
    """

    channels: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    params: tuple[str, ...] = ()
    param_mean: tuple[float, ...] = ()
    param_std: tuple[float, ...] = ()
    spatial_ndim: int = 1
    constant: tuple[str, ...] = ()
    source: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for names, mean, std, what in (
            (self.channels, self.mean, self.std, "channel"),
            (self.params, self.param_mean, self.param_std, "param"),
        ):
            if not len(names) == len(mean) == len(std):
                raise ValueError(
                    f"normalization has {len(names)} {what} names but {len(mean)} means and "
                    f"{len(std)} stds"
                )
            if any(not s > 0 for s in std):
                raise ValueError(f"normalization {what} stds must be > 0, got {std}")
        if not self.channels:
            raise ValueError("normalization needs at least one channel")
        if self.spatial_ndim < 0:
            raise ValueError(f"spatial_ndim must be >= 0, got {self.spatial_ndim}")

    # ------------------------------------------------------------------ transforms

    @cached_property
    def _field_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (len(self.channels),) + (1,) * self.spatial_ndim  # broadcasts over *spatial
        mean = torch.tensor(self.mean, dtype=torch.float64).reshape(shape)
        return mean, torch.tensor(self.std, dtype=torch.float64).reshape(shape)

    @cached_property
    def _param_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.tensor(self.param_mean, dtype=torch.float64),
            torch.tensor(self.param_std, dtype=torch.float64),
        )

    def _check_state(self, x: torch.Tensor) -> None:
        c_axis = x.ndim - 1 - self.spatial_ndim
        if c_axis < 0 or x.shape[c_axis] != len(self.channels):
            raise ValueError(
                f"expected states [..., C={len(self.channels)}, <{self.spatial_ndim} spatial "
                f"dims>], got shape {tuple(x.shape)}"
            )

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` per channel; ``x`` is ``[..., C, *spatial]``."""
        self._check_state(x)
        mean, std = (s.to(x.device, x.dtype) for s in self._field_stats)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """``x * std + mean`` per channel; inverse of :meth:`normalize`."""
        self._check_state(x)
        mean, std = (s.to(x.device, x.dtype) for s in self._field_stats)
        return x * std + mean

    def normalize_params(self, p: torch.Tensor) -> torch.Tensor:
        """``(p - param_mean) / param_std``; ``p`` is ``[..., P]``."""
        mean, std = (s.to(p.device, p.dtype) for s in self._param_stats)
        return (p - mean) / std

    def denormalize_params(self, p: torch.Tensor) -> torch.Tensor:
        """``p * param_std + param_mean``; inverse of :meth:`normalize_params`."""
        mean, std = (s.to(p.device, p.dtype) for s in self._param_stats)
        return p * std + mean

    def check_compatible(self, channels: Sequence[str], params: Sequence[str]) -> None:
        """Raises ValueError unless channel and param names equal this normalization's."""
        if tuple(channels) != self.channels or tuple(params) != self.params:
            raise ValueError(
                f"normalization is for channels {list(self.channels)} and params "
                f"{list(self.params)}, the data have {list(channels)} and {list(params)}"
            )

    # ------------------------------------------------------------------ storage

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (floats round-trip exactly through ``json``)."""
        return {
            "version": NORMALIZATION_VERSION,
            "channels": list(self.channels),
            "mean": list(self.mean),
            "std": list(self.std),
            "params": list(self.params),
            "param_mean": list(self.param_mean),
            "param_std": list(self.param_std),
            "spatial_ndim": self.spatial_ndim,
            "constant": list(self.constant),
            "source": dict(self.source),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalization:
        """Inverse of :meth:`to_dict`; ValueError on a malformed dict."""
        try:
            version = data.get("version")
            if version != NORMALIZATION_VERSION:
                raise ValueError(f"normalization version {version!r} is not supported")
            return cls(
                channels=tuple(str(c) for c in data["channels"]),
                mean=_as_floats(data["mean"], "mean"),
                std=_as_floats(data["std"], "std"),
                params=tuple(str(p) for p in data.get("params", ())),
                param_mean=_as_floats(data.get("param_mean", ()), "param_mean"),
                param_std=_as_floats(data.get("param_std", ()), "param_std"),
                spatial_ndim=int(data.get("spatial_ndim", 1)),
                constant=tuple(str(c) for c in data.get("constant", ())),
                source=dict(data.get("source", {})),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"malformed normalization dict: {e!r}") from None

    def save(self, path: str | Path) -> Path:
        """Writes :meth:`to_dict` as JSON (atomically), e.g. to ``<run>/normalization.json``."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Normalization:
        """Reads a file written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))


class _Moments:
    """Streaming count, mean, M2 (sum of squared deviations), min and max per column, in
    float64; blocks are merged with Chan et al.'s parallel update, which stays accurate
    when the mean is large compared with the spread (unlike sum and sum of squares)."""

    def __init__(self, columns: int) -> None:
        self.count = 0
        self.mean = np.zeros(columns)
        self.m2 = np.zeros(columns)
        self.min = np.full(columns, np.inf)
        self.max = np.full(columns, -np.inf)

    def update(self, block: np.ndarray) -> None:
        """Adds ``block`` [rows, columns] (any float dtype)."""
        x = block.astype(np.float64, copy=False)
        rows = x.shape[0]
        if rows == 0:
            return
        mean = x.mean(axis=0)
        m2 = ((x - mean) ** 2).sum(axis=0)
        total = self.count + rows
        delta = mean - self.mean
        self.mean = self.mean + delta * (rows / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * rows / total)
        self.count = total
        self.min = np.minimum(self.min, x.min(axis=0))
        self.max = np.maximum(self.max, x.max(axis=0))

    def result(self) -> tuple[list[float], list[float], list[bool]]:
        """``(mean, std, constant)`` per column; a constant column gets std 1 and its exact
        value as mean."""
        std = np.sqrt(np.maximum(self.m2, 0.0) / max(self.count, 1))
        constant = (self.max == self.min) | ~(std > 0)
        mean = np.where(self.max == self.min, self.min, self.mean)
        return mean.tolist(), np.where(constant, 1.0, std).tolist(), constant.tolist()


def compute_normalization(
    path: str | Path,
    *,
    fields: Sequence[str] | None = None,
    trajectories: Sequence[int] | np.ndarray | range | None = None,
    block_bytes: int = _BLOCK_BYTES,
) -> Normalization:
    """Statistics of a split file (normally ``train.h5``), in bounded memory.

    Reads the fields in blocks of whole trajectories of about ``block_bytes`` (at least
    one trajectory) and merges per-channel moments in float64, so memory stays at a few
    times ``block_bytes`` (float64 copies of a block) whatever the file size.

    Args:
        path: the split file.
        fields: field names in channel order (``None``: sorted), as for :class:`WindowDataset`.
        trajectories: restrict to these trajectories (``None``: all).
        block_bytes: read budget per block.

    Raises:
        DatasetError: if the file is invalid.
    """
    path = Path(path)
    with open_dataset(path) as f:
        try:
            return _normalization(f, path, fields, trajectories, block_bytes)
        except (OSError, RuntimeError, KeyError) as e:
            raise corrupt(path) from e


def _normalization(
    f: DatasetFile,
    path: Path,
    fields: Sequence[str] | None,
    trajectories: Sequence[int] | np.ndarray | range | None,
    block_bytes: int,
) -> Normalization:
    """:func:`compute_normalization` on an open file."""
    layout, params = _read_layout(f, path, fields)
    idx = _select(trajectories, layout.num_trajectories)
    if idx.size == 0:
        raise DatasetError(f"{path}: no trajectories selected for normalization statistics")
    channel_stats: list[tuple[list[float], list[float], list[bool]]] = []
    for name in layout.fields:
        ds = f.fields[name]
        moments = _Moments(int(ds.shape[2]))
        per_traj = max(1, math.prod(ds.shape[1:]) * 4)
        for _, first, count in _runs(np.sort(idx), max(1, block_bytes // per_traj)):
            block = ds[first : first + count]  # [b, T, C_f, *spatial]
            moments.update(np.moveaxis(block, 2, -1).reshape(-1, block.shape[2]))
        channel_stats.append(moments.result())
    param_moments = _Moments(params.shape[1])
    param_moments.update(params[idx])
    p_mean, p_std, p_const = param_moments.result()
    attrs = {k: f.attrs[k] for k in ("checksum", "split", "problem") if k in f.attrs}
    mean = [m for stats in channel_stats for m in stats[0]]
    std = [s for stats in channel_stats for s in stats[1]]
    const = [c for stats in channel_stats for c in stats[2]]
    constant = [n for n, c in zip(layout.channel_names, const, strict=True) if c]
    constant += [n for n, c in zip(layout.param_names, p_const, strict=True) if c]
    source = {
        "file": str(path),
        "trajectories": int(idx.size) if trajectories is None else idx.tolist(),
        **{k: str(v) for k, v in attrs.items()},
    }
    return Normalization(
        channels=layout.channel_names,
        mean=tuple(mean),
        std=tuple(std),
        params=layout.param_names,
        param_mean=tuple(p_mean),
        param_std=tuple(p_std),
        spatial_ndim=len(layout.spatial),
        constant=tuple(constant),
        source=source,
    )


# ----------------------------------------------------------------------------- loader


class WindowBatchSampler(Sampler[list[int]]):
    """Batches of window indices; shuffled per epoch from ``(seed, epoch)`` alone.

    Epoch e's order is ``randperm`` with a generator seeded by ``derive_seed(seed,
    "shuffle", e)``, so it does not depend on earlier epochs or the number of workers.
    Each pass uses the current epoch, then advances it by one; :meth:`set_epoch` sets it (e.g.
    when resuming from a checkpoint).
    """

    def __init__(
        self,
        num_windows: int,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        _check_positive(batch_size=batch_size)
        self.num_windows, self.batch_size = int(num_windows), int(batch_size)
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The next pass uses ``epoch``'s order."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_windows // self.batch_size
        return -(-self.num_windows // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            g = generator(self.seed, "shuffle", self.epoch)
            order = torch.randperm(self.num_windows, generator=g)
        else:
            order = torch.arange(self.num_windows)
        self.epoch += 1
        for batch in order.split(self.batch_size):
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield batch.tolist()


class _Batches(Dataset):
    """Maps a list of window indices to a whole batch (one vectorized gather in memory)."""

    def __init__(self, windows: WindowDataset) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, indices: list[int]) -> Batch:
        return self.windows.get_batch(indices)


def make_loader(
    dataset: WindowDataset,
    *,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
    pin_memory: bool | None = None,
    prefetch_factor: int | None = None,
) -> DataLoader:
    """A DataLoader of batches ``(history [B, k, C, *spatial], future [B, n, C, *spatial],
    params [B, P])``.

    Each batch is built by one :meth:`WindowDataset.get_batch` call (in a worker when
    ``num_workers > 0``) instead of B item calls and a collate. The order depends only on
    ``seed`` and the epoch (see :class:`WindowBatchSampler`, which is ``loader.sampler``:
    call ``loader.sampler.set_epoch(e)`` when resuming), not on ``num_workers``.

    Args:
        dataset: the windows.
        batch_size: windows per batch.
        shuffle: shuffle every epoch (seeded) or keep index order.
        seed: shuffle seed.
        num_workers: loader processes (0: load in the main process); workers are kept
            between epochs (``persistent_workers``).
        drop_last: drop the last incomplete batch.
        pin_memory: ``None``: pin when CUDA is available.
        prefetch_factor: batches loaded ahead per worker (torch's default 2 when None).
    """
    sampler = WindowBatchSampler(
        len(dataset), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last
    )
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs["persistent_workers"] = True
        if prefetch_factor is not None:
            kwargs["prefetch_factor"] = prefetch_factor
    return DataLoader(
        _Batches(dataset),
        batch_size=None,  # the sampler yields whole batches of indices
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        # workers draw no random numbers, but their base seed is reproducible too
        generator=generator(seed, "loader"),
        **kwargs,
    )
