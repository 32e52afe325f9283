"""Normalization statistics of a split: per-channel mean and std of the fields and
per-entry mean and std of the params, computed in bounded memory and stored with a run
(``normalization.json``)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pbdl_cli.data.layout import BLOCK_BYTES, read_layout, runs, select_trajectories
from pbdl_cli.data.reader import DatasetFile, corrupt, open_dataset
from pbdl_cli.data.schema import DatasetError
from pbdl_cli.errors import PbdlError
from pbdl_cli.utils.files import atomic_write_text

NORMALIZATION_VERSION = 1


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


def check_trained_with(stored: Path, current: Normalization) -> None:
    """Raise :class:`PbdlError` unless ``current`` (computed from the dataset as it is now)
    is the normalization a run was trained with (``stored``: its ``normalization.json``).

    A dataset regenerated (or replaced) after training gives other statistics or another
    checksum; a model evaluated on it would see inputs scaled unlike its training data.
    """
    try:
        trained = Normalization.load(stored)
    except (OSError, ValueError) as error:  # JSONDecodeError is a ValueError
        raise PbdlError(f"cannot read {stored}: {error}") from None
    before, now = trained.source.get("checksum"), current.source.get("checksum")
    changed = before is not None and now is not None and before != now
    if changed or trained != current:
        file = current.source.get("file") or trained.source.get("file") or "the dataset"
        what = f"its checksum was {before}, is {now}" if changed else "other statistics"
        raise PbdlError(
            f"{file} changed since this run was trained ({what}): the model would see data "
            f"scaled unlike its training data; evaluate on the dataset it was trained on "
            f"(recorded in {stored})"
        )


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
    block_bytes: int = BLOCK_BYTES,
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
    layout, params = read_layout(f, path, fields)
    idx = select_trajectories(trajectories, layout.num_trajectories)
    if idx.size == 0:
        raise DatasetError(f"{path}: no trajectories selected for normalization statistics")
    channel_stats: list[tuple[list[float], list[float], list[bool]]] = []
    for name in layout.fields:
        ds = f.fields[name]
        moments = _Moments(int(ds.shape[2]))
        per_traj = max(1, math.prod(ds.shape[1:]) * 4)
        for _, first, count in runs(np.sort(idx), max(1, block_bytes // per_traj)):
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
