"""Sampling a trained probabilistic run and scoring the samples: the code that ``pbdl
sample``, ``pbdl evaluate`` (on a probabilistic run) and the train summary share.

:func:`sample_and_score` draws ``n`` samples per condition with the method's sampler
(:meth:`~pbdl_cli.methods.generative.GenerativeMethod.draw_samples`), with a progress bar
over the sampler's steps, draws as many reference samples of p(y | c) from the problem
and scores them (:func:`~pbdl_cli.evaluation.sample_scores.score_samples`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from pbdl_cli.evaluation.sample_scores import LogDensity, reference_sets, score_samples
from pbdl_cli.methods.generative import GenerativeMethod, SampleSet
from pbdl_cli.utils.progress import progress


@dataclasses.dataclass
class SampleReport:
    """Samples, their reference and their scores."""

    drawn: SampleSet
    reference: Tensor  # [M, n_ref, *sample_shape] float64
    metrics: dict[str, Any]

    def sampling(self) -> dict[str, Any]:
        """The sampler settings and costs, as stored in summaries and samples.h5."""
        d = self.drawn
        return {
            "sampler": d.sampler,
            "steps": d.steps,
            "samples": int(d.samples.shape[1]),
            "conditions": int(d.samples.shape[0]),
            "evaluations": d.evaluations,
            "seconds": [round(s, 4) for s in d.seconds],
            "samples_per_second": d.samples.shape[0]
            * d.samples.shape[1]
            / max(sum(d.seconds), 1e-9),
        }


def sample_and_score(
    method: GenerativeMethod,
    model: nn.Module,
    *,
    n: int | None = None,
    sampler: str = "",
    steps: int | None = None,
    conditions: Tensor | None = None,
    seed: int | None = None,
    reference_n: int | None = None,
    show_progress: bool = True,
    callback: Any = None,
) -> SampleReport:
    """Draw, then score against ``reference_n`` (default: as many as drawn) reference
    samples per condition (module docstring). ``callback(step, t, x)`` also sees the
    sampler's steps of the first condition's first chunk (e.g. to keep snapshots)."""
    n = method.config.samples if n is None else n
    seed = method.config.seed if seed is None else seed
    rows = method.conditions() if conditions is None else conditions
    count = 1 if rows is None else len(rows)
    name = method.check_sampler(sampler)
    expected = method.expected_steps(name, method.config.steps if steps is None else steps)
    bar = progress(count * (expected or 1), desc="sample", unit="step", enabled=show_progress)
    seen = {"first": True}

    def on_step(step: int, t: float, x: Tensor) -> None:
        if expected:
            bar.update(1)
        if callback is not None and seen["first"]:
            callback(step, t, x)

    with bar:
        drawn = method.draw_samples(
            model,
            n,
            conditions=rows,
            sampler=name,
            steps=steps,
            seed=seed,
            callback=_every_condition(on_step, seen),
        )
        if not expected:
            bar.update(count)
    reference = reference_sets(method.distribution, drawn.conditions, reference_n or n, seed)
    log_density = _model_log_density(method, model) if method.has_likelihood else None
    metrics = score_samples(
        method.distribution,
        drawn.samples,
        reference,
        drawn.conditions,
        seed=seed,
        model_log_density=log_density,
    )
    return SampleReport(drawn=drawn, reference=reference, metrics=metrics)


def _every_condition(on_step: Any, seen: dict[str, bool]) -> Any:
    """The per-step callback; it notes when the first condition's steps are over (a step
    counter that restarts at 1 starts the next condition)."""
    last = {"step": 0}

    def callback(step: int, t: float, x: Tensor) -> None:
        if step <= last["step"]:
            seen["first"] = False
        last["step"] = step
        on_step(step, t, x)

    return callback


def model_log_density(
    method: GenerativeMethod, model: nn.Module, y: Tensor, condition: Tensor | None = None
) -> Tensor:
    """log q(y | condition) [n] of samples y [n, *sample_shape] at one condition
    [*condition_shape] (or None), on the method's device; float64 on the CPU."""
    y = y.to(method.device, method.dtype)
    c = None
    if condition is not None:
        c = condition.to(method.device, method.dtype)[None].expand(len(y), *condition.shape)
    return method.log_prob(model, y, c).detach().to("cpu", torch.float64)


def _model_log_density(method: GenerativeMethod, model: nn.Module) -> Any:
    """c -> (y -> log q(y | c)): :func:`model_log_density` per condition."""

    def at(condition: Tensor | None) -> LogDensity:
        return lambda y: model_log_density(method, model, y, condition)

    return at
