"""``pbdl evaluate run=DIR``: score a trained run and write its prediction and figures.

The stage rebuilds problem, method and model from the train config stored in the run's
checkpoint (``checkpoints/last.pt`` by default, or ``best.pt``), loads the weights, predicts on the
problem's output grid and writes to ``<run>/eval/`` (Hydra's run directory):

- ``metrics.json``: the generic metrics against the problem's reference (where one
  exists), the mean |PDE residual| (where the method computes one), the problem's own
  metrics, the misfit at the problem's observations, per-frame errors, rollout metrics
  (correlation time, spectral errors: :mod:`pbdl_cli.evaluation.drift`) and provenance;
- ``prediction.h5`` (and ``reference.h5``): dataset files of schema v1, one trajectory
  per trajectory of the prediction, readable with ``pbdl info``;
- PNG figures chosen from the prediction's shape (:mod:`pbdl_cli.evaluation.run_figures`)
  and the loss curves of the run's ``metrics.jsonl``.

Shapes: prediction and reference are [B, T, C, *spatial] on ``problem.times()`` [T] and
``problem.coords()`` (one [S_k] array per spatial axis, none for time-only problems).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import MISSING, DictConfig
from torch import Tensor

from pbdl_cli.config import to_schema, to_yaml
from pbdl_cli.data.normalization import check_trained_with
from pbdl_cli.errors import PbdlError
from pbdl_cli.evaluation.drift import CORR_THRESHOLD, RolloutSummary, rollout_summary
from pbdl_cli.evaluation.gallery import GalleryConfig, check_gallery_fields
from pbdl_cli.evaluation.metrics import observation_mse, per_time, summarize
from pbdl_cli.evaluation.predictions import as_prediction, write_trajectories
from pbdl_cli.evaluation.run_figures import evaluation_figures, read_records, rollout_figure
from pbdl_cli.evaluation.tables import print_evaluation
from pbdl_cli.methods import Method
from pbdl_cli.methods.generative import GenerativeMethod
from pbdl_cli.methods.grid import GridMethod
from pbdl_cli.problems import Problem
from pbdl_cli.problems.base import Observations
from pbdl_cli.solvers import NO_SOLVER
from pbdl_cli.stages.base import STAGES, Stage
from pbdl_cli.stages.loading import CheckpointChoice, LoadedRun, load_run
from pbdl_cli.stages.solver_timing import reference_solver_runtime
from pbdl_cli.stages.train import TrainConfig
from pbdl_cli.utils.files import atomic_write_text
from pbdl_cli.utils.space import check_writable

log = logging.getLogger("pbdl.evaluate")


@dataclasses.dataclass
class EvaluateConfig:
    """Top level of ``pbdl evaluate`` (see conf/evaluate.yaml and docs/evaluate.md).

    Attributes:
        run: the ``pbdl train`` run directory; results go to ``<run>/eval``.
        checkpoint: ``last`` (the final model, what ``pbdl train`` reported) or ``best``
            (the best validation value; falls back to ``last`` without a ``best.pt``).
        device: where the model runs (``auto``, ``cpu``, ``cuda``, ...).
        threads: torch CPU threads; null takes the train run's setting.
        plots: write the PNG figures.
        time_reference_solver: for data simulated on a finer grid (``data.refine``), time
            that solver on the test states and report the prediction's speed-up over it.
        gallery: the figures and animations of 2D predictions.
    """

    run: str = MISSING
    checkpoint: CheckpointChoice = CheckpointChoice.last
    device: str = "auto"
    threads: int | None = None
    plots: bool = True
    time_reference_solver: bool = True
    gallery: GalleryConfig = dataclasses.field(default_factory=GalleryConfig)
    plugins: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be >= 1 (or null for the train run's setting)")


#: per-frame metrics stored in metrics.json (``per_time``)
PER_TIME = ("rel_l2", "mae")


@dataclasses.dataclass
class EvaluateSettings:
    """Validated inputs of an evaluation: the run, its checkpoint and rebuilt objects."""

    config: EvaluateConfig
    run: Path
    checkpoint: Path
    state: dict[str, Any]
    #: the run's train config (plugin nodes as their schemas)
    train: TrainConfig
    problem: Problem
    method: Method
    device: torch.device
    dtype: torch.dtype


@STAGES.register("evaluate")
class Evaluate(Stage):
    """Score a trained run: metrics, prediction file and plots in <run>/eval."""

    Config = EvaluateConfig
    config_name = "evaluate"

    def build(self, cfg: DictConfig) -> EvaluateSettings:
        config: EvaluateConfig = to_schema(cfg, EvaluateConfig, path="")
        loaded = load_run(config.run, config.checkpoint, config.device)
        problem, method = loaded.problem, loaded.method
        normalization = getattr(method, "normalization", None)  # grid methods
        if normalization is not None and (loaded.run / "normalization.json").is_file():
            check_trained_with(loaded.run / "normalization.json", normalization)
        if config.gallery.fields is not None:
            check_gallery_fields(config.gallery.fields, problem.fields, problem.name)
        return EvaluateSettings(
            config=config,
            run=loaded.run,
            checkpoint=loaded.checkpoint,
            state=loaded.state,
            train=loaded.train,
            problem=problem,
            method=method,
            device=loaded.device,
            dtype=loaded.dtype,
        )

    def preflight(self, settings: EvaluateSettings, run_dir: Path | None) -> None:
        check_writable(settings.run / "eval", "evaluation folder")

    def run(self, settings: EvaluateSettings, run_dir: Path) -> dict[str, Any]:
        # Hydra's run_dir is <run>/eval too, except in a sweep (-m run=A,B)
        return evaluate(settings, settings.run / "eval")


# -- the evaluation ------------------------------------------------------------------------
def evaluate(s: EvaluateSettings, out_dir: Path) -> dict[str, Any]:
    """Predict with the checkpoint's model and write every artefact to ``out_dir``.

    Returns:
        The contents of ``metrics.json``.
    """
    threads = s.config.threads if s.config.threads is not None else s.train.threads
    if threads is not None:
        torch.set_num_threads(threads)
    loaded = LoadedRun(
        s.run, s.checkpoint, s.state, s.train, s.problem, s.method, s.device, s.dtype
    )
    if isinstance(s.method, GenerativeMethod):  # samples, scored against p(y | c)
        from pbdl_cli.stages.sample import sample_run

        return sample_run(loaded, out_dir, plots=s.config.plots)
    problem, method = s.problem, s.method
    model = loaded.model()
    step = int(s.state.get("step", 0))
    log.info(
        "evaluating %s (step %d) of %s with %s on %s",
        s.checkpoint,
        step,
        s.train.model.name,
        s.train.method.name,
        problem.name,
    )

    times = problem.times().double()
    coords = {k: v.double() for k, v in problem.coords().items()}
    start = time.perf_counter()
    with torch.no_grad():
        predicted = method.predict(model)
    if s.device.type == "cuda":
        torch.cuda.synchronize(s.device)
    seconds = time.perf_counter() - start
    prediction = as_prediction(predicted, problem.num_channels, times, coords, "prediction")
    reference = problem.reference(times, method.params)
    if reference is None:  # e.g. grid methods: the test trajectories of their dataset
        reference = method.reference()
    if reference is not None:
        reference = as_prediction(reference, problem.num_channels, times, coords, "reference")
        if reference.shape != prediction.shape:
            raise PbdlError(
                f"reference {list(reference.shape)} and prediction {list(prediction.shape)} "
                "differ in shape",
                exit_code=1,
            )
    observations = problem.observations(method.params)
    if s.config.plots and len(coords) == 2 and s.config.gallery.trajectory >= len(prediction):
        raise PbdlError(
            f"gallery.trajectory={s.config.gallery.trajectory}, but the prediction has "
            f"{len(prediction)} trajectories (0 to {len(prediction) - 1})"
        )

    result = _metrics(s, model, prediction, reference, observations, times, step)
    result["runtime"] = _runtime(s, seconds, prediction.shape[0], len(times) - 1)
    files = {"metrics": "metrics.json"}
    for kind, values in (("prediction", prediction), ("reference", reference)):
        if values is not None:
            attrs = _provenance(s, times, kind=kind, step=step)
            write_trajectories(out_dir / f"{kind}.h5", values, times, coords, attrs=attrs,
                               fields=s.problem.fields, params=s.method.params)  # fmt: skip
            files[kind] = f"{kind}.h5"
    if s.config.plots:
        figures = evaluation_figures(
            out_dir,
            prediction,
            reference,
            times,
            coords,
            observations,
            fields=s.problem.fields,
            gallery=s.config.gallery,
            records=read_records(s.run / "metrics.jsonl"),
        )
        figures += rollout_figure(out_dir, result)
        files["figures"] = [p.name for p in figures]  # type: ignore[assignment]
    result["files"] = files
    atomic_write_text(out_dir / "metrics.json", json.dumps(result, indent=2) + "\n")
    print_evaluation(result, out_dir)
    return result


def _runtime(s: EvaluateSettings, seconds: float, trajectories: int, steps: int) -> dict[str, Any]:
    """Wall-clock seconds of the prediction (all trajectories at once) and per output
    step, and, for data simulated on a finer grid, the seconds per step of that solver
    and the speed-up of the prediction over it."""
    runtime: dict[str, Any] = {
        "device": str(s.device),
        "predict_seconds": seconds,
        "trajectories": trajectories,
        "steps": steps,
        "seconds_per_step": seconds / max(steps, 1),
    }
    grid = getattr(s.method, "impl", s.method)  # `supervised` delegates to its grid variant
    timed = isinstance(grid, GridMethod) and s.config.time_reference_solver
    fine = reference_solver_runtime(grid) if timed else None
    if fine is not None:
        runtime["reference_solver"] = fine
        runtime["speedup"] = fine["seconds_per_step"] / max(runtime["seconds_per_step"], 1e-12)
    return runtime


def _finite(value: float) -> float | None:
    """JSON has no NaN or infinity: those are stored as null."""
    return value if math.isfinite(value) else None


def _metrics(
    s: EvaluateSettings,
    model: torch.nn.Module,
    prediction: Tensor,
    reference: Tensor | None,
    observations: Observations | None,
    times: Tensor,
    step: int,
) -> dict[str, Any]:
    """The contents of metrics.json (without ``files``)."""
    problem, method = s.problem, s.method
    metrics: dict[str, float] = {}
    curves: dict[str, list[float]] | None = None
    rollout: RolloutSummary | None = None
    if reference is not None:
        metrics |= summarize(prediction, reference)
        curves = {"t": times.tolist(), **per_time(prediction, reference, PER_TIME)}
        rollout = _rollout(s, prediction, reference, times)
        if rollout is not None:  # >= 2 frames: mse, nrmse, corr, spectra (drift.py)
            metrics |= rollout.metrics
            curves |= rollout.per_time
    residual = method.residual(model)
    if residual is not None:
        metrics["residual"] = float(residual)
    for key, value in problem.metrics(prediction, method.params).items():
        metrics[key if key not in metrics else f"{problem.name}/{key}"] = float(value)
    with torch.no_grad():
        extra = method.extra_metrics(model)
    for key, value in extra.items():
        metrics[key if key not in metrics else f"{s.train.method.name}/{key}"] = float(value)
    misfit = observation_mse(prediction, observations)
    if misfit is not None:
        metrics["observation_mse"] = misfit
    return {
        "run": str(s.run),
        "checkpoint": str(s.checkpoint),
        "step": step,
        "problem": problem.name,
        "method": str(s.train.method.name),
        "model": str(s.train.model.name),
        "fields": list(problem.fields),
        "shape": list(prediction.shape),
        "params": {k: v.double().tolist() for k, v in method.params.items()},
        "has_reference": reference is not None,
        "metrics": {k: _finite(v) for k, v in metrics.items()},
        "per_time": (
            None
            if curves is None
            else {k: [_finite(float(v)) for v in values] for k, values in curves.items()}
        ),
        "rollout": None if rollout is None else rollout.info,
    }


def _rollout(
    s: EvaluateSettings, prediction: Tensor, reference: Tensor, times: Tensor
) -> RolloutSummary | None:
    """Rollout metrics (:mod:`pbdl_cli.evaluation.drift`) of a prediction with >= 2 frames;
    spectra treat the fields as periodic where the problem's grid is."""
    threshold = getattr(s.config, "corr_threshold", None)  # no config key yet: the default
    return rollout_summary(
        prediction,
        reference,
        times,
        periodic=bool(getattr(s.problem.grid, "is_periodic", False)),
        threshold=CORR_THRESHOLD if threshold is None else float(threshold),
    )


def _provenance(s: EvaluateSettings, times: Tensor, *, kind: str, step: int) -> dict[str, Any]:
    """Root attributes of ``prediction.h5``/``reference.h5``: what made the values (``split``
    is ``kind``)."""
    # the solver is provenance only where the method trains through one
    solver = s.train.solver.name if s.method.needs_solver else NO_SOLVER
    return {
        "problem": s.problem.name,
        "solver": str(solver),
        "dt": float(times[1] - times[0]) if len(times) > 1 else 0.0,
        "split": kind,
        "config": to_yaml(s.train),
        "method": str(s.train.method.name),
        "model": str(s.train.model.name),
        "run": str(s.run),
        "checkpoint": s.checkpoint.name,
        "step": step,
    }
