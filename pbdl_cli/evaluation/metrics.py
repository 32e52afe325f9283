"""Error metrics between a prediction and a reference.

Every metric maps ``prediction, reference`` of the same shape ``[B, ...]`` to one value
per sample ``[B]`` (the reduction runs over all non-batch axes), so that callers can
average over trajectories, or over time by passing ``[B*T, ...]`` slices.
:func:`observation_mse` is the misfit of a prediction at a problem's observations.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from pbdl_cli.problems.base import Observations
from pbdl_cli.registry import Registry

Metric = Callable[[Tensor, Tensor], Tensor]
METRICS: Registry[Metric] = Registry("metric")

_EPS = 1e-30


def _flat(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1)


@METRICS.register("mse")
def mse(prediction: Tensor, reference: Tensor) -> Tensor:
    """Mean squared error: mean((p - r)^2)."""
    return _flat(prediction - reference).square().mean(dim=1)


@METRICS.register("mae")
def mae(prediction: Tensor, reference: Tensor) -> Tensor:
    """Mean absolute error: mean(|p - r|)."""
    return _flat(prediction - reference).abs().mean(dim=1)


@METRICS.register("max_error")
def max_error(prediction: Tensor, reference: Tensor) -> Tensor:
    """Largest absolute error: max |p - r|."""
    return _flat(prediction - reference).abs().amax(dim=1)


@METRICS.register("rel_l2")
def rel_l2(prediction: Tensor, reference: Tensor) -> Tensor:
    """Relative L2 error: ||p - r||_2 / ||r||_2."""
    diff = _flat(prediction - reference).norm(dim=1)
    return diff / _flat(reference).norm(dim=1).clamp_min(_EPS)


@METRICS.register("nrmse")
def nrmse(prediction: Tensor, reference: Tensor) -> Tensor:
    """Normalized RMSE: rms(p - r) / rms(r) (equal to rel_l2 on uniform grids)."""
    rms = _flat(prediction - reference).square().mean(dim=1).sqrt()
    return rms / _flat(reference).square().mean(dim=1).sqrt().clamp_min(_EPS)


def evaluate_all(prediction: Tensor, reference: Tensor) -> dict[str, Tensor]:
    """Every registered metric, keyed by name: {name: [B]}."""
    with torch.no_grad():
        return {entry.name: entry.obj(prediction, reference) for entry in METRICS}


def summarize(prediction: Tensor, reference: Tensor) -> dict[str, float]:
    """Every registered metric per trajectory, averaged over trajectories.

    Args:
        prediction, reference: [B, ...] (e.g. [B, T, C, *spatial]).

    Returns:
        {name: mean over B of the metric of each whole trajectory}.
    """
    return {name: float(v.mean()) for name, v in evaluate_all(prediction, reference).items()}


def per_frame(name: str, prediction: Tensor, reference: Tensor) -> Tensor:
    """A registered metric of every trajectory and frame.

    Args:
        name: registered metric (``mse``, ``rel_l2``, ...).
        prediction, reference: [B, T, ...].

    Returns:
        [B, T]; entry (b, k) compares ``prediction[b, k]`` with ``reference[b, k]`` over all
        remaining axes (channels and cells).
    """
    b, t = prediction.shape[:2]
    frames_p, frames_r = prediction.reshape(b * t, -1), reference.reshape(b * t, -1)
    with torch.no_grad():
        return METRICS.get(name)(frames_p, frames_r).reshape(b, t)


def per_time(
    prediction: Tensor, reference: Tensor, names: tuple[str, ...] = ("rel_l2", "mae")
) -> dict[str, list[float]]:
    """Metrics of every frame, averaged over trajectories.

    Args:
        prediction, reference: [B, T, ...].
        names: registered metrics to compute.

    Returns:
        {name: [T] values as a list}; frame k compares ``prediction[:, k]``.
    """
    return {name: per_frame(name, prediction, reference).mean(dim=0).tolist() for name in names}


def observation_mse(prediction: Tensor, observations: Observations | None) -> float | None:
    """Mean squared misfit of the first trajectory at observations that lie on the output
    grid (``frame`` and flat ``cell`` indices given), else None.

    Args:
        prediction: [B, T, C, *spatial].
        observations: :class:`~pbdl_cli.problems.base.Observations` or None.
    """
    if observations is None or observations.frame is None or observations.cell is None:
        return None
    if len(observations) == 0:
        return None
    t, c = prediction.shape[1:3]
    flat = prediction[0].reshape(t, c, -1)  # [T, C, cells]
    values = flat[observations.frame.long(), :, observations.cell.long()]  # [N, C]
    return float((values - observations.u.double().cpu()).square().mean())
