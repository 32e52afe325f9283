"""``pbdl sample run=DIR``: draw samples from a trained probabilistic run and score them.

The stage rebuilds problem, method and model from the run's checkpoint
(:mod:`pbdl_cli.stages.loading`), draws ``n`` samples at each test condition (or at the
one given as ``condition=[...]``) with the run's sampler or ``sampler=``/``steps=``, and
writes to ``<run>/sample/``:

- ``samples.h5`` (samples schema v1, :mod:`pbdl_cli.data.samples`): the samples with a
  sample axis [M, n, *sample_shape], the conditions, the reference draws, the sampler
  settings, the network evaluations and seconds per condition;
- ``metrics.json``: the distribution scores (:mod:`pbdl_cli.evaluation.sample_scores`)
  with the sampler's costs and provenance;
- PNG figures (:mod:`pbdl_cli.evaluation.sample_figures`): samples over the true density
  with marginals (2D points), histograms (1D), mean and std fields (grids), and the
  sampler's state at a few steps.

``pbdl evaluate`` on a probabilistic run runs the same code into ``<run>/eval/``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import MISSING, DictConfig
from torch import Tensor

from pbdl_cli.config import to_schema
from pbdl_cli.errors import PbdlError
from pbdl_cli.methods.generative import GenerativeMethod
from pbdl_cli.stages.base import STAGES, Stage
from pbdl_cli.stages.loading import CheckpointChoice, LoadedRun, load_run
from pbdl_cli.stages.sampling import SampleReport, model_log_density, sample_and_score
from pbdl_cli.utils.files import atomic_write_text
from pbdl_cli.utils.space import check_writable

log = logging.getLogger("pbdl.sample")


@dataclasses.dataclass
class SampleConfig:
    """Top level of ``pbdl sample`` (conf/sample.yaml, docs/sample.md).

    Attributes:
        run: the ``pbdl train`` run directory of a probabilistic method.
        checkpoint: last or best.
        n: samples per condition (null: the run's ``method.samples``).
        sampler: the sampler ('' : the run's ``method.sampler``).
        steps: the sampler's steps (null: the run's ``method.steps``; 0: the default).
        condition: one condition as a list of numbers (null: the problem's test
            conditions).
        reference: reference samples per condition (null: as many as ``n``).
        seed: the seed of the samples and of the reference draws.
        device: where the model runs.
        threads: torch CPU threads (null: the train run's setting).
        plots: write the PNG figures.
        snapshots: sampler states shown in the trajectory figure (0: none).
    """

    run: str = MISSING
    checkpoint: CheckpointChoice = CheckpointChoice.last
    n: int | None = None
    sampler: str = ""
    steps: int | None = None
    condition: list[float] | None = None
    reference: int | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    plots: bool = True
    snapshots: int = 6
    plugins: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.n is not None and self.n < 2:
            raise ValueError("n must be >= 2 (distances need two samples)")
        if self.steps is not None and self.steps < 0:
            raise ValueError("steps must be >= 0 (0: the sampler's default)")
        if self.reference is not None and self.reference < 2:
            raise ValueError("reference must be >= 2")
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be >= 1 (or null for the train run's setting)")
        if self.snapshots < 0:
            raise ValueError("snapshots must be >= 0")


@dataclasses.dataclass
class SampleSettings:
    """A validated ``pbdl sample``: the rebuilt run and the sampling options."""

    config: SampleConfig
    loaded: LoadedRun
    method: GenerativeMethod
    conditions: Tensor | None
    sampler: str


def probabilistic_method(loaded: LoadedRun) -> GenerativeMethod:
    """The run's method if it draws samples; a one-line refusal otherwise."""
    method = loaded.method
    if not isinstance(method, GenerativeMethod):
        raise PbdlError(
            f"{loaded.run} was trained with method '{loaded.train.method.name}', which "
            "draws no samples: pbdl sample needs a probabilistic method (nf, cnf, score, "
            "ddpm, flow_matching, smdp); use pbdl evaluate for this run"
        )
    return method


@STAGES.register("sample")
class Sample(Stage):
    """Draw samples from a probabilistic run: samples.h5, metrics and plots in <run>/sample."""

    Config = SampleConfig
    config_name = "sample"

    def build(self, cfg: DictConfig) -> SampleSettings:
        config: SampleConfig = to_schema(cfg, SampleConfig, path="")
        loaded = load_run(config.run, config.checkpoint, config.device)
        method = probabilistic_method(loaded)
        sampler = method.check_sampler(config.sampler)
        conditions = None
        if config.condition is not None:
            conditions = method.distribution.parse_condition(list(config.condition))[None]
        elif method.condition_shape is not None and method.conditions() is None:
            raise PbdlError(
                f"problem '{loaded.problem.name}' has no test conditions: give one with "
                "condition=[...]"
            )
        return SampleSettings(config, loaded, method, conditions, sampler)

    def preflight(self, settings: SampleSettings, run_dir: Path | None) -> None:
        check_writable(settings.loaded.run / "sample", "sample folder")

    def run(self, settings: SampleSettings, run_dir: Path) -> dict[str, Any]:
        c = settings.config
        threads = c.threads if c.threads is not None else settings.loaded.train.threads
        if threads is not None:
            torch.set_num_threads(threads)
        return sample_run(
            settings.loaded,
            settings.loaded.run / "sample",
            n=c.n,
            sampler=settings.sampler,
            steps=c.steps,
            conditions=settings.conditions,
            seed=c.seed,
            reference_n=c.reference,
            plots=c.plots,
            snapshots=c.snapshots,
        )


def sample_run(
    loaded: LoadedRun,
    out_dir: Path,
    *,
    n: int | None = None,
    sampler: str = "",
    steps: int | None = None,
    conditions: Tensor | None = None,
    seed: int = 0,
    reference_n: int | None = None,
    plots: bool = True,
    snapshots: int = 6,
) -> dict[str, Any]:
    """Sample, score and write every artefact to ``out_dir`` (module docstring);
    returns the contents of ``metrics.json``."""
    from pbdl_cli.data.samples import write_samples

    method = probabilistic_method(loaded)
    model = loaded.model()
    step = int(loaded.state.get("step", 0))
    kept: list[tuple[str, Tensor]] = []
    expected = method.expected_steps(
        method.check_sampler(sampler), method.config.steps if steps is None else steps
    )
    keep = _snapshot_steps(expected, snapshots)

    def snapshot(k: int, t: float, x: Tensor) -> None:
        if keep is None or k in keep:
            kept.append((f"step {k} (t = {t:.3g})", x.detach().to("cpu", torch.float64).clone()))

    log.info(
        "sampling %s (step %d): %s on %s", loaded.checkpoint, step, method.config.name,
        loaded.problem.name,
    )  # fmt: skip
    report = sample_and_score(
        method,
        model,
        n=n,
        sampler=sampler,
        steps=steps,
        conditions=conditions,
        seed=seed,
        reference_n=reference_n,
        callback=snapshot if snapshots else None,
    )
    provenance = {
        "run": str(loaded.run),
        "checkpoint": str(loaded.checkpoint),
        "step": step,
        "method": method.config.name,
        "problem": loaded.problem.name,
        "model": loaded.train.model.name,
        "seed": seed,
    }
    result: dict[str, Any] = {
        "metrics": report.metrics,
        "sampling": report.sampling(),
        "provenance": provenance,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_samples(
        out_dir / "samples.h5",
        report.drawn.samples,
        conditions=report.drawn.conditions,
        reference=report.reference,
        sampler=report.drawn.sampler,
        steps=report.drawn.steps,
        evaluations=report.drawn.evaluations,
        seconds=report.drawn.seconds,
        attrs=provenance,
    )
    files: dict[str, Any] = {"samples": "samples.h5", "metrics": "metrics.json"}
    if plots:
        files["figures"] = [p.name for p in _figures(out_dir, method, model, report, kept)]
    result["files"] = files
    atomic_write_text(out_dir / "metrics.json", json.dumps(result, indent=2) + "\n")
    _print(result, out_dir)
    return result


def _snapshot_steps(expected: int | None, count: int) -> set[int] | None:
    """The sampler steps whose states the trajectory figure shows: ``count`` evenly
    spaced ones (the last included); None: every callback (adaptive samplers call
    back only at a few times)."""
    if expected is None or count == 0:
        return None
    return {max(1, round(expected * (k + 1) / count)) for k in range(count)}


def _figures(
    out_dir: Path,
    method: GenerativeMethod,
    model: torch.nn.Module,
    report: SampleReport,
    kept: list[tuple[str, Tensor]],
) -> list[Path]:
    from pbdl_cli.evaluation.sample_figures import sample_figures

    distribution = method.distribution
    conditions = report.drawn.conditions

    def model_density(y: Tensor, condition: Tensor | None = None) -> Tensor:
        return model_log_density(method, model, y, condition)

    return sample_figures(
        out_dir,
        report.drawn.samples,
        report.reference,
        condition=conditions,
        log_density=distribution.log_density if _has_density(method, report) else None,
        model_log_density=model_density if method.has_likelihood else None,
        snapshots=kept or None,
        condition_names=distribution.condition_names or None,
    )


def _has_density(method: GenerativeMethod, report: SampleReport) -> bool:
    """The problem knows its log-density (tried on one reference sample)."""
    first = None if report.drawn.conditions is None else report.drawn.conditions[0]
    return method.distribution.log_density(report.reference[0][:1], first) is not None


def _print(result: dict[str, Any], out_dir: Path) -> None:
    from rich.table import Table

    from pbdl_cli.console import console

    table = Table(header_style="bold")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    sampling = result["sampling"]
    table.add_row("sampler", f"{sampling['sampler']} (steps {sampling['steps'] or 'default'})")
    table.add_row("network evaluations", ", ".join(map(str, sampling["evaluations"])))
    table.add_row("samples / s", f"{sampling['samples_per_second']:.4g}")
    for key, value in result["metrics"].items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4g}")
    console.print(table)
    console.print(f"samples, metrics and figures in {out_dir}", soft_wrap=True)
