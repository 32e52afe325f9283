"""The figures of one ``pbdl evaluate`` run, chosen from the prediction's shape
(:func:`plot_prediction`), plus its loss curves and its error against the rollout step.

Shapes: prediction and reference are [B, T, C, *spatial] tensors (numpy [T, C, *spatial]
for one trajectory), on times [T] and coords (one [S_k] array per spatial axis).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from pbdl_cli.evaluation.gallery import GalleryConfig, write_gallery
from pbdl_cli.evaluation.plots import (
    plot_error_vs_step,
    plot_losses,
    plot_profile,
    plot_slices,
    plot_space_time,
    plot_time_series,
)
from pbdl_cli.problems.base import Observations


def plot_prediction(
    out_dir: Path,
    prediction: np.ndarray,
    reference: np.ndarray | None,
    times: np.ndarray,
    coords: Mapping[str, np.ndarray],
    *,
    fields: Sequence[str],
    observations: Mapping[str, np.ndarray] | None = None,
    gallery: GalleryConfig | None = None,
) -> list[Path]:
    """The figures that fit the shape of one trajectory; returns the files written.

    ===========================  ===============================================
    prediction                   figures
    ===========================  ===============================================
    [T, C], T > 1 (time only)    ``time_series.png``: u_c(t) with observations
    [1, C, X] (static, 1D)       ``profile.png``: y_c(x) with observations
    [T, C, X], T > 1             ``space_time_<field>.png``, ``slices_<field>.png``
    [T, C, X, Y]                 ``frames_<field>.png``, ``anim_<field>.gif``
                                 (:mod:`~pbdl_cli.evaluation.gallery`)
    ===========================  ===============================================

    Args:
        prediction, reference: [T, C, *spatial] (reference may be None).
        times: [T]; coords: spatial axis name -> [S_k] cell centres, in axis order.
        fields: channel names ([C]).
        observations: optional ``{"t": [N], "x": [N, D], "u": [N, C]}``.
        gallery: ``gallery.*`` options of 2D predictions (None: the defaults).
    """
    spatial = prediction.ndim - 2
    axes = list(coords.values())
    written: list[Path] = []
    obs = observations
    if spatial == 0 and len(times) > 1:
        points = (obs["t"], obs["u"]) if obs is not None else None
        written.append(
            plot_time_series(
                out_dir / "time_series.png",
                prediction,
                reference,
                times,
                fields=fields,
                points=points,
            )
        )
    elif spatial == 1 and len(times) == 1:
        points = (obs["x"][:, 0], obs["u"]) if obs is not None else None
        written.append(
            plot_profile(
                out_dir / "profile.png",
                prediction[0].T,
                None if reference is None else reference[0].T,
                axes[0],
                fields=fields,
                points=points,
            )
        )
    elif spatial == 1:
        points = (obs["x"][:, 0], obs["t"]) if obs is not None else None
        for c, field in enumerate(fields):
            ref = None if reference is None else reference[:, c]
            written.append(
                plot_space_time(
                    out_dir / f"space_time_{field}.png",
                    prediction[:, c],
                    ref,
                    times,
                    axes[0],
                    field=field,
                    points=points,
                )
            )
            written.append(
                plot_slices(
                    out_dir / f"slices_{field}.png",
                    prediction[:, c],
                    ref,
                    times,
                    axes[0],
                    field=field,
                )
            )
    elif spatial == 2:
        written += write_gallery(
            out_dir, prediction, reference, times, coords, fields=fields, options=gallery
        )
    return written


def evaluation_figures(
    out_dir: Path,
    prediction: Tensor,
    reference: Tensor | None,
    times: Tensor,
    coords: dict[str, Tensor],
    observations: Observations | None,
    *,
    fields: Sequence[str],
    gallery: GalleryConfig,
    records: Sequence[Mapping[str, Any]],
) -> list[Path]:
    """Figures of the first trajectory (of ``gallery.trajectory`` for 2D predictions) and
    the loss curves of the run's ``records`` (``metrics.jsonl``); returns the files written."""
    obs = None
    if observations is not None and len(observations):
        obs = {
            "t": observations.t.detach().double().cpu().reshape(-1).numpy(),
            "x": observations.x.detach().double().cpu().reshape(len(observations), -1).numpy(),
            "u": observations.u.detach().double().cpu().reshape(len(observations), -1).numpy(),
        }
    b = gallery.trajectory if len(coords) == 2 else 0  # the 2D gallery may show another one
    figures = plot_prediction(
        out_dir,
        prediction[b].numpy(),
        None if reference is None else reference[b].numpy(),
        times.numpy(),
        {k: v.numpy() for k, v in coords.items()},
        fields=list(fields),
        observations=obs,
        gallery=gallery,
    )
    losses = plot_losses(out_dir / "loss.png", records)
    if losses is not None:
        figures.append(losses)
    return figures


def rollout_figure(out_dir: Path, result: dict[str, Any]) -> list[Path]:
    """``error_vs_step.png`` of the rollout curves in ``result`` (where there are some)."""
    curves, info = result["per_time"], result.get("rollout")
    if curves is None or info is None:
        return []
    frame = result["metrics"].get("corr_time_frame")
    path = plot_error_vs_step(
        out_dir / "error_vs_step.png",
        curves["t"],
        curves["rel_l2"],
        curves.get("corr"),
        threshold=info.get("corr_threshold"),
        corr_frame=None if frame is None or not info.get("corr_time_reached") else int(frame),
    )
    return [path]


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON records of a run's ``metrics.jsonl`` (unreadable lines are skipped)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # e.g. a line cut by a crash
        if isinstance(record, dict):
            records.append(record)
    return records
