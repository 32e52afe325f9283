"""Scores of a probabilistic model's samples against its problem's reference samples.

What ``pbdl sample``, ``pbdl evaluate`` and the train summary report for a probabilistic
run (``docs/metrics-distribution.md``). Per condition m (once when unconditional), with
model samples S_m [n, *sample_shape] and ``reference`` draws R_m of p(y | c_m):

- ``energy`` and ``sliced_w2``: the sample-based distances of
  :mod:`pbdl_cli.evaluation.distribution` between S_m and R_m;
- ``reference_energy``: the energy distance between R_m and a second, independent
  reference set of the same size, the floor that finite samples put under ``energy``;
- ``nll``: the model's mean negative log-likelihood of R_m (flows), and ``exact_nll``
  the problem's own, where the density is known (their difference estimates KL(p || q));
- ``mode_weight_error`` and ``mode_coverage`` where the problem labels modes;
- for fields, the per-pixel mean and std errors (``mean_rel_l2``, ``std_rel_l2``, ...,
  averaged over channels);
- the problem's own :meth:`~pbdl_cli.problems.distribution.Distribution.sample_metrics`.

The summary is the mean of each score over the conditions; ``per_condition`` keeps them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from pbdl_cli.evaluation.distribution import (
    energy_distance,
    mode_coverage,
    mode_weight_error,
    negative_log_likelihood,
    pixel_moment_errors,
    sliced_wasserstein2,
)
from pbdl_cli.problems.distribution import Distribution
from pbdl_cli.utils.seeding import generator

#: a model's log-density at one condition: y [B, *sample_shape] -> [B]
LogDensity = Callable[[Tensor], Tensor]


def reference_sets(
    distribution: Distribution, conditions: Tensor | None, n: int, seed: int
) -> Tensor:
    """``n`` reference draws per condition: [M, n, *sample_shape] float64 (M = 1 when
    unconditional), seeded by (seed, "reference", m)."""
    rows = [None] if conditions is None else list(conditions)
    return torch.stack(
        [
            distribution.reference_samples(n, generator(seed, "reference", m), row)
            for m, row in enumerate(rows)
        ]
    )


def score_condition(
    distribution: Distribution,
    samples: Tensor,
    reference: Tensor,
    condition: Tensor | None,
    *,
    seed: int = 0,
    model_log_density: LogDensity | None = None,
) -> dict[str, float]:
    """The scores of samples [n, *sample_shape] at one condition (module docstring)."""
    samples, reference = samples.double(), reference.double()
    out: dict[str, float] = {
        "energy": float(energy_distance(samples, reference)),
        "sliced_w2": float(sliced_wasserstein2(samples, reference, seed=seed)),
    }
    second = distribution.reference_samples(
        len(reference), generator(seed, "reference_floor"), condition
    )
    out["reference_energy"] = float(energy_distance(second.double(), reference))
    if model_log_density is not None:
        out["nll"] = float(negative_log_likelihood(model_log_density, reference))
    exact = distribution.log_density(reference, condition)
    if exact is not None:
        out["exact_nll"] = float(-exact.double().mean())
    weights = distribution.mode_weights(condition)
    labels = distribution.mode_labels(samples, condition)
    if weights is not None and labels is not None:
        out["mode_weight_error"] = float(mode_weight_error(labels, weights))
        out["mode_coverage"] = float(mode_coverage(labels, weights))
        for k, share in enumerate(torch.bincount(labels, minlength=len(weights)).tolist()):
            out[f"mode_{k}_share"] = share / len(labels)
    if samples.ndim > 2 and len(samples) > 1 and len(reference) > 1:
        for key, values in pixel_moment_errors(samples, reference).items():
            out[key] = float(values.mean())
    out |= distribution.sample_metrics(samples, condition)
    return out


def score_samples(
    distribution: Distribution,
    samples: Tensor,
    reference: Tensor,
    conditions: Tensor | None,
    *,
    seed: int = 0,
    model_log_density: Callable[[Tensor | None], LogDensity] | None = None,
) -> dict[str, Any]:
    """Scores of samples [M, n, ...] against reference [M, n_ref, ...] at each of
    ``conditions`` [M, ...] (or None): ``{score: mean over conditions, ...,
    "per_condition": [{score: value}, ...]}``. ``model_log_density(c)`` gives the model's
    log-density at condition c (flows; None otherwise)."""
    rows = [None] if conditions is None else list(conditions)
    per = [
        score_condition(
            distribution,
            samples[m],
            reference[m],
            row,
            seed=seed,
            model_log_density=None if model_log_density is None else model_log_density(row),
        )
        for m, row in enumerate(rows)
    ]
    keys = [k for k in per[0] if all(k in p for p in per)]
    summary: dict[str, Any] = {k: sum(p[k] for p in per) / len(per) for k in keys}
    if conditions is not None:
        summary["per_condition"] = [
            {"condition": row.reshape(-1).tolist()} | p for row, p in zip(rows, per, strict=True)
        ]
    return summary
