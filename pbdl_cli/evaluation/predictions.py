"""The prediction of ``pbdl evaluate`` as data: the shape check of a prediction (or
reference) and its dataset file.

Shapes: values are [B, T, C, *spatial] on the problem's times [T] and coords (one [S_k]
array per spatial axis, none for time-only problems). The file is a schema-v1 dataset
(:class:`~pbdl_cli.data.TrajectoryWriter`), readable with ``pbdl info``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pbdl_cli.data.writer import TrajectoryWriter
from pbdl_cli.errors import PbdlError


def as_prediction(
    values: Tensor, num_channels: int, times: Tensor, coords: Mapping[str, Tensor], what: str
) -> Tensor:
    """``values`` as float64 on the CPU, after checking it is [B, T, C, *spatial]."""
    values = values.detach().to("cpu", torch.float64)
    expected = [len(times), num_channels, *(len(v) for v in coords.values())]
    if values.ndim != len(expected) + 1 or list(values.shape[1:]) != expected:
        raise PbdlError(
            f"the {what} has shape {list(values.shape)}, expected [B, "
            + ", ".join(map(str, expected))
            + "] (B, T, C, *spatial on the problem's output grid)",
            exit_code=1,
        )
    return values


def write_trajectories(
    path: Path,
    values: Tensor,
    times: Tensor,
    coords: Mapping[str, Tensor],
    *,
    fields: Sequence[str],
    params: Mapping[str, Tensor],
    attrs: Mapping[str, Any],
) -> Path:
    """Write ``values`` [B, T, C, *spatial] as a schema-v1 dataset file (one field per
    channel, ``/fields/<channel>`` [B, T, 1, *spatial]), with the parameters that have one
    value per trajectory (leading dimension B) and the root attributes ``attrs``."""
    b = values.shape[0]
    per_trajectory = {
        k: v.detach().cpu().double() for k, v in params.items() if v.ndim >= 1 and v.shape[0] == b
    }
    channels = values.split(1, dim=2)  # [B, T, 1, *spatial] each
    with TrajectoryWriter(
        path,
        num_trajectories=b,
        num_times=len(times),
        fields={name: (1, *values.shape[3:]) for name in fields},
        params={k: tuple(v.shape[1:]) for k, v in per_trajectory.items()},
        coords={"t": times, **coords},
        attrs=attrs,
    ) as writer:
        writer.write(dict(zip(fields, channels, strict=True)), per_trajectory)
    return path
