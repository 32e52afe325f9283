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
- PNG figures chosen from the prediction's shape (:mod:`pbdl_cli.evaluation.plots`) and
  the loss curves of the run's ``metrics.jsonl``.

Shapes: prediction and reference are [B, T, C, *spatial] on ``problem.times()`` [T] and
``problem.coords()`` (one [S_k] array per spatial axis, none for time-only problems).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import MISSING, DictConfig, OmegaConf
from rich.table import Table
from torch import Tensor

from pbdl_cli.config import to_schema, to_yaml
from pbdl_cli.console import console
from pbdl_cli.data import TrajectoryWriter
from pbdl_cli.errors import PbdlError
from pbdl_cli.evaluation.drift import CORR_THRESHOLD, RolloutSummary, rollout_summary
from pbdl_cli.evaluation.gallery import GalleryConfig
from pbdl_cli.evaluation.metrics import per_time, summarize
from pbdl_cli.methods import METHODS, Method, build_method
from pbdl_cli.models.base import MODELS
from pbdl_cli.plugins import load_plugins
from pbdl_cli.problems import PROBLEMS, Problem
from pbdl_cli.problems.base import Observations
from pbdl_cli.solvers import NO_SOLVER
from pbdl_cli.stages.base import STAGES, Stage
from pbdl_cli.stages.train import TrainConfig, train_config
from pbdl_cli.training.checkpoint import load_checkpoint
from pbdl_cli.utils.device import resolve_device, resolve_dtype
from pbdl_cli.utils.files import atomic_write_text

log = logging.getLogger("pbdl.evaluate")


class CheckpointChoice(str, enum.Enum):
    best = "best"
    last = "last"


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


def find_checkpoint(run: Path, choice: CheckpointChoice) -> Path:
    """``<run>/checkpoints/<choice>.pt``; ``best`` falls back to ``last``."""
    folder = run / "checkpoints"
    wanted = folder / f"{choice.value}.pt"
    if wanted.is_file():
        return wanted
    if choice is CheckpointChoice.best and (folder / "last.pt").is_file():
        log.info("%s has no best.pt; evaluating last.pt", run)
        return folder / "last.pt"
    present = sorted(p.name for p in folder.glob("*.pt")) if folder.is_dir() else []
    if present:
        raise PbdlError(
            f"{wanted} does not exist (the run has {', '.join(present)}); "
            f"choose one with checkpoint=best|last"
        )
    raise PbdlError(
        f"{run} has no checkpoints/best.pt or checkpoints/last.pt; is it a pbdl train run "
        "directory (outputs/train/<date>/<time>) whose training saved a checkpoint?"
    )


def stored_train_config(state: dict[str, Any], checkpoint: Path) -> DictConfig:
    """The resolved train config stored in a checkpoint, as a DictConfig."""
    text = state.get("config")
    if not isinstance(text, str):
        raise PbdlError(f"{checkpoint} holds no train config; it was not written by pbdl train")
    try:
        cfg = OmegaConf.create(text)
    except Exception as error:
        raise PbdlError(f"{checkpoint}: its stored config is not valid YAML ({error})") from None
    if not isinstance(cfg, DictConfig):
        raise PbdlError(f"{checkpoint}: its stored config is not a mapping")
    return cfg


def _check_gallery_fields(shown: list[str], problem: Problem) -> None:
    """``gallery.fields`` names only fields of ``problem`` or derived ones."""
    from pbdl_cli.evaluation.gallery import DERIVED

    known = [*problem.fields, *DERIVED]
    unknown = [f for f in shown if f not in known]
    if unknown:
        raise PbdlError(
            f"gallery.fields: {', '.join(unknown)} is not a field of {problem.name} "
            f"(choose from {', '.join(known)}; vorticity needs u and v)"
        )


@STAGES.register("evaluate")
class Evaluate(Stage):
    """Score a trained run: metrics, prediction file and plots in <run>/eval."""

    Config = EvaluateConfig
    config_name = "evaluate"

    def build(self, cfg: DictConfig) -> EvaluateSettings:
        config: EvaluateConfig = to_schema(cfg, EvaluateConfig, path="")
        run = Path(config.run)
        if not run.exists():
            raise PbdlError(f"run directory {run} does not exist")
        if not run.is_dir():
            raise PbdlError(f"run={run} is not a directory; pass a pbdl train run directory")
        checkpoint = find_checkpoint(run, config.checkpoint)
        state = load_checkpoint(checkpoint)
        train_cfg = stored_train_config(state, checkpoint)
        load_plugins(list(train_cfg.get("plugins", None) or []))
        names = state.get("plugins") or {}
        registries = {"problem": PROBLEMS, "model": MODELS, "method": METHODS}
        for kind, registry in registries.items():
            name = names.get(kind)
            if name is not None and name not in registry:
                raise PbdlError(
                    f"this run used {kind} '{name}', which is not registered here; import "
                    f"the module that defines it with plugins=[module]"
                )
        device = resolve_device(config.device)
        try:
            train = train_config(train_cfg)
            dtype = resolve_dtype(train.dtype.value)
            problem = PROBLEMS.create(train.problem)
            method = build_method(
                train.method, train.solver, problem=problem, device=device, dtype=dtype
            )
        except PbdlError as error:
            raise PbdlError(f"cannot rebuild the run from {checkpoint}: {error}") from None
        if config.gallery.fields is not None:
            _check_gallery_fields(config.gallery.fields, problem)
        return EvaluateSettings(
            config=config,
            run=run,
            checkpoint=checkpoint,
            state=state,
            train=train,
            problem=problem,
            method=method,
            device=device,
            dtype=dtype,
        )

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
    problem, method = s.problem, s.method
    model = method.build_model(s.train.model)
    try:
        model.load_state_dict(s.state["model"])
    except (RuntimeError, KeyError, TypeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PbdlError(
            f"the weights in {s.checkpoint} do not fit the model built from its config: {first}"
        ) from None
    model.eval()
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
    prediction = _as_prediction(predicted, problem, times, coords, "prediction")
    reference = problem.reference(times, method.params)
    if reference is None:  # e.g. grid methods: the test trajectories of their dataset
        reference = method.reference()
    if reference is not None:
        reference = _as_prediction(reference, problem, times, coords, "reference")
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
    files = {"metrics": "metrics.json", "prediction": "prediction.h5"}
    write_trajectories(
        out_dir / "prediction.h5", prediction, s, times, coords, kind="prediction", step=step
    )
    if reference is not None:
        write_trajectories(
            out_dir / "reference.h5", reference, s, times, coords, kind="reference", step=step
        )
        files["reference"] = "reference.h5"
    if s.config.plots:
        figures = _plots(s, out_dir, prediction, reference, times, coords, observations)
        figures += _rollout_plot(out_dir, result)
        files["figures"] = [p.name for p in figures]  # type: ignore[assignment]
    result["files"] = files
    atomic_write_text(out_dir / "metrics.json", json.dumps(result, indent=2) + "\n")
    _print_summary(result, out_dir)
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
    timing = getattr(s.method, "reference_solver_runtime", None)
    fine = timing() if callable(timing) and s.config.time_reference_solver else None
    if fine is not None:
        runtime["reference_solver"] = fine
        runtime["speedup"] = fine["seconds_per_step"] / max(runtime["seconds_per_step"], 1e-12)
    return runtime


def _as_prediction(
    values: Tensor, problem: Problem, times: Tensor, coords: dict[str, Tensor], what: str
) -> Tensor:
    """``values`` as float64 on the CPU, after checking it is [B, T, C, *spatial]."""
    values = values.detach().to("cpu", torch.float64)
    expected = [len(times), problem.num_channels, *(len(v) for v in coords.values())]
    if values.ndim != len(expected) + 1 or list(values.shape[1:]) != expected:
        raise PbdlError(
            f"the {what} has shape {list(values.shape)}, expected [B, "
            + ", ".join(map(str, expected))
            + "] (B, T, C, *spatial on the problem's output grid)",
            exit_code=1,
        )
    return values


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


def write_trajectories(
    path: Path,
    values: Tensor,
    s: EvaluateSettings,
    times: Tensor,
    coords: dict[str, Tensor],
    *,
    kind: str,
    step: int,
) -> Path:
    """Write ``values`` [B, T, C, *spatial] as a schema-v1 dataset file (one field per
    channel, ``/fields/<channel>`` [B, T, 1, *spatial]); ``split`` is ``kind``."""
    b = values.shape[0]
    params = {
        k: v.detach().cpu().double()
        for k, v in s.method.params.items()
        if v.ndim >= 1 and v.shape[0] == b
    }
    # the solver is provenance only where the method trains through one
    solver = s.train.solver.name if s.method.needs_solver else NO_SOLVER
    attrs = {
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
    channels = values.split(1, dim=2)  # [B, T, 1, *spatial] each
    with TrajectoryWriter(
        path,
        num_trajectories=b,
        num_times=len(times),
        fields={name: (1, *values.shape[3:]) for name in s.problem.fields},
        params={k: tuple(v.shape[1:]) for k, v in params.items()},
        coords={"t": times, **coords},
        attrs=attrs,
    ) as writer:
        writer.write(dict(zip(s.problem.fields, channels, strict=True)), params)
    return path


def _plots(
    s: EvaluateSettings,
    out_dir: Path,
    prediction: Tensor,
    reference: Tensor | None,
    times: Tensor,
    coords: dict[str, Tensor],
    observations: Observations | None,
) -> list[Path]:
    """Figures of the first trajectory (of ``gallery.trajectory`` for 2D predictions) and
    the loss curves; returns the files written."""
    from pbdl_cli.evaluation.plots import plot_losses, plot_prediction

    obs = None
    if observations is not None and len(observations):
        obs = {
            "t": observations.t.detach().double().cpu().reshape(-1).numpy(),
            "x": observations.x.detach().double().cpu().reshape(len(observations), -1).numpy(),
            "u": observations.u.detach().double().cpu().reshape(len(observations), -1).numpy(),
        }
    gallery = s.config.gallery
    b = gallery.trajectory if len(coords) == 2 else 0  # the 2D gallery may show another one
    figures = plot_prediction(
        out_dir,
        prediction[b].numpy(),
        None if reference is None else reference[b].numpy(),
        times.numpy(),
        {k: v.numpy() for k, v in coords.items()},
        fields=list(s.problem.fields),
        observations=obs,
        gallery=gallery,
    )
    records = read_records(s.run / "metrics.jsonl")
    losses = plot_losses(out_dir / "loss.png", records)
    if losses is not None:
        figures.append(losses)
    return figures


def _rollout_plot(out_dir: Path, result: dict[str, Any]) -> list[Path]:
    """``error_vs_step.png`` of the rollout curves in ``result`` (where there are some)."""
    from pbdl_cli.evaluation.plots import plot_error_vs_step

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


def _print_summary(result: dict[str, Any], out_dir: Path) -> None:
    table = Table(header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result["metrics"].items():
        table.add_row(key, "n/a" if value is None else f"{value:.4e}")
    if not result["metrics"]:
        table.add_row("(none)", "no reference, residual or problem metrics")
    console.print(
        f"{result['method']} / {result['model']} on {result['problem']}, "
        f"{Path(result['checkpoint']).name} (step {result['step']}), "
        f"prediction {result['shape']}",
        soft_wrap=True,
    )
    console.print(table)
    runtime = result.get("runtime") or {}
    if "seconds_per_step" in runtime:
        line = (
            f"prediction: {runtime['predict_seconds']:.3g} s for {runtime['trajectories']} "
            f"trajectories x {runtime['steps']} steps ({runtime['seconds_per_step']:.3g} s/step)"
        )
        fine = runtime.get("reference_solver")
        if fine:
            line += (
                f"; the reference solver on {'x'.join(map(str, fine['grid']))} cells: "
                f"{fine['seconds_per_step']:.3g} s/step (speed-up {runtime['speedup']:.3g}x)"
            )
        console.print(line, soft_wrap=True)
    console.print(f"evaluation written to {out_dir}", soft_wrap=True)
