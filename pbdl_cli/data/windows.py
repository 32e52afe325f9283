"""Training windows over a dataset split (layout: :mod:`pbdl_cli.data.layout`).

A *window* is ``(history, future, params)`` cut from one trajectory of a split file
(schema v1, see :mod:`pbdl_cli.data.schema`)::

    history  float32 [k, C, *spatial]   frames i-k+1 .. i      (k = ``history``)
    future   float32 [n, C, *spatial]   frames i+1 .. i+n      (n = ``horizon``)
    params   float32 [P]                the trajectory's parameters

Window ``w`` of a trajectory starts at frame ``s = w`` (so ``i = s + k - 1``); a trajectory
of T frames has ``T - k - n + 1`` windows when ``T >= k + n``, else none. Global window
indices run trajectory by trajectory, in the order of the ``trajectories`` selection:
index ``g`` is window ``g % W`` of selected trajectory ``g // W`` (W windows per
trajectory; all trajectories of a file share T). Channels and params are ordered as
described in :mod:`pbdl_cli.data.layout`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from pbdl_cli.data.layout import (
    BLOCK_BYTES,
    check_positive,
    read_layout,
    runs,
    select_trajectories,
)
from pbdl_cli.data.reader import DatasetFile, corrupt, open_dataset
from pbdl_cli.data.schema import DatasetError

#: ``in_memory="auto"`` loads the fields when they take at most this many bytes
DEFAULT_MEMORY_BUDGET = 2 * 2**30

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def windows_per_trajectory(num_times: int, history: int, horizon: int) -> int:
    """``T - k - n + 1`` if ``T >= k + n``, else 0."""
    span = history + horizon
    return num_times - span + 1 if num_times >= span else 0


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
        trajectories: Sequence[int] | np.ndarray | range | None = None,
        fields: Sequence[str] | None = None,
        in_memory: bool | Literal["auto"] = "auto",
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ) -> None:
        """Reads the layout and params (and the fields if in memory).

        Args:
            path: a split file such as ``datasets/burgers/<name>/train.h5``.
            history: k >= 1 input frames, ending at frame i.
            horizon: n >= 1 target frames i+1 .. i+n.
            trajectories: indices of the trajectories to use, in this order (no repeats;
                negative ones count from the end); ``None`` for all.
            fields: field names in channel order; ``None`` for the sorted field names.
            in_memory: ``True``, ``False``, or ``"auto"``: in memory when the selected
                fields take at most ``memory_budget`` bytes.
            memory_budget: bytes, for ``"auto"``.

        Raises:
            DatasetError: if the file is invalid, or the selection yields no windows.
            ValueError / IndexError: on bad arguments.
        """
        check_positive(history=history, horizon=horizon)
        if in_memory not in (True, False, "auto"):
            raise ValueError(f"in_memory must be True, False or 'auto', got {in_memory!r}")
        self.path = Path(path)
        self.history, self.horizon = int(history), int(horizon)
        with open_dataset(self.path) as f:
            try:
                self._setup(f, trajectories, fields, in_memory, memory_budget)
            except (OSError, RuntimeError, KeyError) as e:
                raise corrupt(self.path) from e
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
        self._layout, params = read_layout(f, self.path, fields)
        lay = self._layout
        self.trajectories = select_trajectories(trajectories, lay.num_trajectories)
        self.windows_per_trajectory = windows_per_trajectory(
            lay.num_times, self.history, self.horizon
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
            f"horizon={self.horizon}, frame={self.frame_shape}, "
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
        return np.divmod(g, self.windows_per_trajectory)

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
        if self._data is None:
            history, future, params = self.get_batch([index])
            return history[0], future[0], params[0]
        # in memory: plain slicing, cheaper than a gather for one window
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"window index out of range for {n} windows")
        pos, s = divmod(int(index) % n, self.windows_per_trajectory)
        k = self.history
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
            for pos, first, count in runs(idx, max(1, BLOCK_BYTES // per_traj)):
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
