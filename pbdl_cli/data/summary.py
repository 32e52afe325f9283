"""A summary of one dataset file (shapes, dtypes, attributes, small statistics, checksum
status) read without loading its fields; ``pbdl info`` renders it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pbdl_cli.data.checksum import attributes_ok, compute_checksum
from pbdl_cli.data.reader import DatasetFile, corrupt, open_dataset

#: params and coords up to this many elements get min/max/mean in the summary
_STATS_MAX_ELEMENTS = 1_000_000


@dataclass
class DatasetInfo:
    """Summary of one dataset file.

    Attributes:
        path: the file.
        schema_version: layout version (always ``SCHEMA_VERSION`` once validated).
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


def read_info(path: str | Path, *, verify: bool = True) -> DatasetInfo:
    """Summarises a dataset file without loading its fields.

    Args:
        path: the file.
        verify: recompute the checksum (reads every byte, in bounded blocks) and set
            ``checksum_ok``; a mismatch is reported there, not raised.

    Raises:
        DatasetError: if the file fails validation (see
            :func:`~pbdl_cli.data.reader.open_dataset`).
    """
    path = Path(path)
    with open_dataset(path) as f:
        try:
            return _read_info(f, path, verify)
        except (OSError, RuntimeError, KeyError) as e:
            raise corrupt(path) from e


def _read_info(f: DatasetFile, path: Path, verify: bool) -> DatasetInfo:
    attrs = dict(f.attrs)
    fields = {n: tuple(ds.shape) for n, ds in f.fields.items()}
    params = {n: tuple(ds.shape) for n, ds in f.params.items()}
    coords = {n: tuple(f.coords[n].shape) for n in ["t", *f.axes]}
    dtypes: dict[str, str] = {}
    stats: dict[str, tuple[float, float, float]] = {}
    for group, members in (("fields", f.fields), ("params", f.params), ("coords", f.coords)):
        for name, ds in members.items():
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
        checksum_ok = checksum_ok and attributes_ok(f.root) is not False

    def text(key: str) -> str | None:
        value = attrs.get(key)
        return value if isinstance(value, str) else None

    return DatasetInfo(
        path=path,
        schema_version=int(attrs["schema_version"]),
        split=text("split"),
        problem=text("problem"),
        solver=text("solver"),
        num_trajectories=f.num_trajectories,
        num_times=f.num_times,
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
