"""``pbdl train``: fit a model with a method on a problem, then score it.

The run directory (Hydra's) receives ``metrics.jsonl``, ``checkpoints/{last,best}.pt``
(with the resolved config and plugin names) and ``summary.json``: the final training
loss terms and the prediction's errors against the problem's exact solution or, where it
has none, the method's reference (e.g. the test split of a dataset), on the problem's
output grid (``problem.nx`` cells x ``problem.dt`` frames).

With ``trainer.strategy=ddp`` (launched by ``torchrun``) every process runs this stage:
they agree on rank 0's run directory, train data-parallel, and rank 0 alone writes files
and prints (see :mod:`pbdl_cli.training.distributed`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shlex
import shutil
from pathlib import Path
from typing import Any

import torch
from omegaconf import MISSING, DictConfig, OmegaConf
from rich.table import Table

from pbdl_cli.config import Precision, to_container, to_schema
from pbdl_cli.console import console
from pbdl_cli.errors import PbdlError
from pbdl_cli.evaluation.metrics import evaluate_all
from pbdl_cli.methods import METHODS, Method, build_method
from pbdl_cli.methods.generative import GenerativeMethod
from pbdl_cli.models.base import MODELS
from pbdl_cli.problems import PROBLEMS, Problem
from pbdl_cli.registry import PluginConfig
from pbdl_cli.solvers import NO_SOLVER, SOLVERS
from pbdl_cli.stages.base import STAGES, Stage, plugin_configs
from pbdl_cli.stages.resume import check_resume
from pbdl_cli.stages.sampling import sample_and_score
from pbdl_cli.training import distributed
from pbdl_cli.training.checkpoint import load_checkpoint
from pbdl_cli.training.config import TrainerConfig
from pbdl_cli.training.distributed import Launch
from pbdl_cli.training.trainer import TrainingDiverged, TrainingInterrupted, fit
from pbdl_cli.utils.device import resolve_device, resolve_dtype
from pbdl_cli.utils.files import atomic_write_text
from pbdl_cli.utils.space import check_writable

log = logging.getLogger("pbdl.train")


@dataclasses.dataclass
class TrainConfig:
    """Top level of ``pbdl train`` (see conf/train.yaml for the defaults).

    ``problem``, ``solver``, ``model`` and ``method`` hold the schemas of the selected
    plugins once validated (:func:`train_config`). ``seed`` seeds the whole run: the
    trainer seeds torch, numpy and python's random with it, and the method derives its
    own sub-seeds from it (``method.seed`` and ``trainer.seed`` follow it)."""

    problem: Any = MISSING
    solver: Any = MISSING
    model: Any = MISSING
    method: Any = MISSING
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    seed: int = 0
    device: str = "auto"
    dtype: Precision = Precision.float32
    threads: int | None = None
    resume: bool = False
    overwrite: bool = False
    plugins: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be >= 1 (or null for torch's default)")


def solver_config(node: DictConfig) -> PluginConfig:
    """The ``solver`` node validated against its solver's schema (``name: none``: the
    problem has no solver)."""
    if node.get("name") == NO_SOLVER:
        return PluginConfig(name=NO_SOLVER)
    return SOLVERS.config(node)


def train_config(cfg: DictConfig) -> TrainConfig:
    """A composed (or stored) train config validated: every plugin node against its
    plugin's schema, then the rest (plugin nodes first, so that their errors name their
    own keys)."""
    nodes = plugin_configs(cfg, {"problem": PROBLEMS, "model": MODELS, "method": METHODS})
    nodes["solver"] = solver_config(cfg.solver)
    config: TrainConfig = to_schema(cfg, TrainConfig, path="")
    for key, node in nodes.items():
        setattr(config, key, node)
    return config


@dataclasses.dataclass
class TrainSettings:
    config: TrainConfig
    problem: Problem
    method: Method
    device: torch.device
    dtype: torch.dtype
    #: this process's place in a data-parallel run (trainer.strategy=ddp)
    launch: Launch = dataclasses.field(default_factory=Launch)


@STAGES.register("train")
class Train(Stage):
    """Train a model with a method on a problem; report its error against the reference."""

    Config = TrainConfig
    config_name = "train"
    resumable = True

    def build(self, cfg: DictConfig) -> TrainSettings:
        config = train_config(cfg)
        check_one_seed(config)
        problem = PROBLEMS.create(config.problem)
        # torchrun's environment must match trainer.strategy; ddp: cuda -> cuda:LOCAL_RANK
        launch = distributed.launch_environment(config.trainer.strategy.value)
        device = distributed.process_device(launch, resolve_device(config.device))
        dtype = resolve_dtype(config.dtype.value)
        # building the method checks that it fits the problem, before any run starts
        method = build_method(
            config.method, config.solver, problem=problem, device=device, dtype=dtype
        )
        method.check_model_config(config.model)
        noisy = isinstance(method, GenerativeMethod) and method.noisy_loss
        if noisy and config.trainer.lbfgs_steps:
            raise PbdlError(
                f"method '{config.method.name}' trains on a fresh batch (and fresh noise) "
                "every step, which L-BFGS's line search cannot use: set "
                "trainer.lbfgs_steps=0 (the experiment=gm_* presets do)"
            )
        if launch.distributed:  # refuses methods whose loss does not shard, before any run
            distributed.check_shardable(method)
        return TrainSettings(
            config=config, problem=problem, method=method, device=device, dtype=dtype, launch=launch
        )

    def preflight(self, settings: TrainSettings, run_dir: Path | None) -> None:
        """Refuse to train over an earlier run unless told to resume or replace it, a
        resume that would change the run (:func:`~pbdl_cli.stages.resume.check_resume`),
        and a run whose checkpoints cannot be written."""
        if run_dir is None:
            return
        check_writable(run_dir / "checkpoints", "checkpoint folder")
        if settings.config.resume:
            _check_resume(settings.config, run_dir)
            return
        found = [name for name in RUN_FILES if (run_dir / name).exists()]
        if found and not settings.config.overwrite:
            raise PbdlError(
                f"{run_dir} already holds a run ({', '.join(found)}); pass resume=true to "
                "continue it, overwrite=true to replace it, or choose another hydra.run.dir"
            )

    def run(self, settings: TrainSettings, run_dir: Path) -> dict[str, Any]:
        launch = settings.launch
        if settings.config.threads is not None:
            torch.set_num_threads(settings.config.threads)
        with (
            distributed.process_group(launch, settings.device),
            distributed.quiet_unless_main(launch),
        ):
            run_dir = distributed.shared_run_dir(run_dir, launch)
            try:
                return self._train(settings, run_dir)
            except (TrainingDiverged, TrainingInterrupted) as error:
                if launch.is_main:
                    raise
                raise SystemExit(error.exit_code) from None  # every rank stops; rank 0 says why

    def _train(self, s: TrainSettings, run_dir: Path) -> dict[str, Any]:
        method, main, config = s.method, s.launch.is_main, s.config
        if main:  # first, so that its logs can be found while it runs
            log.info("run directory: %s", run_dir)
        model = method.build_model(config.model)  # may refuse the model: before removing
        if config.overwrite and not config.resume and main:
            _remove_run(run_dir)
        normalization = getattr(method, "normalization", None)  # grid methods
        if normalization is not None and main:
            normalization.save(run_dir / "normalization.json")
        count = sum(p.numel() for p in model.parameters())
        log.info(
            "training %s (%d parameters) with %s on %s, %s (%s)",
            config.model.name,
            count,
            config.method.name,
            s.problem.name,
            s.device,
            s.config.dtype.value,
        )
        if s.launch.distributed:
            log.info(
                "data-parallel over %d processes: global batch %d x method.batch_size",
                s.launch.world_size,
                s.launch.world_size,
            )
        extra = {
            "config": OmegaConf.to_yaml(OmegaConf.create(stored_config(config))),
            "plugins": {k: getattr(config, k).name for k in ("problem", "model", "method")},
        }
        result = fit(
            method,
            model,
            config.trainer,
            run_dir,
            resume=s.config.resume,
            validate_key="rel_l2",
            extra=extra,
            resume_hint=_resume_command(run_dir, s.launch),
        )
        if not main:  # rank 0 scores the model and writes the summary
            return {"steps": result.steps, "train": result.terms, "rank": s.launch.rank}
        summary: dict[str, Any] = {
            "steps": result.steps,
            "seconds": result.seconds,
            "parameters": count,
            "train": result.terms,
            "best_validation": result.best,
        }
        if isinstance(method, GenerativeMethod):  # samples scored against p(y | c)
            report = sample_and_score(method, model)
            summary["test"] = {k: v for k, v in report.metrics.items() if k != "per_condition"}
            summary["sampling"] = report.sampling()
            atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
            _print_summary(summary, run_dir, s)
            return summary
        prediction = method.predict(model)
        reference = s.problem.reference(s.problem.times(), method.params)
        if reference is not None:
            summary["reference"] = "exact solution"
        else:  # e.g. grid methods: the test trajectories of their dataset
            reference = method.reference()
            if reference is not None:
                summary["reference"] = "test data"
        test: dict[str, float] = {}
        if reference is not None:
            values = evaluate_all(prediction.flatten(0, 1)[None], reference.flatten(0, 1)[None])
            test |= {k: float(v) for k, v in values.items()}
        # problem-specific scores (e.g. the parabola's distance to the nearest branch)
        test |= {k: float(v) for k, v in s.problem.metrics(prediction, method.params).items()}
        if test:
            summary["test"] = test
        atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
        _print_summary(summary, run_dir, s)
        return summary


def stored_config(config: TrainConfig) -> dict[str, Any]:
    """The config a checkpoint stores: plain values, ``method.data`` as an absolute path
    (so that ``pbdl evaluate`` works from any directory)."""
    stored = to_container(config)
    if stored["method"].get("data"):
        stored["method"]["data"] = str(Path(stored["method"]["data"]).resolve())
    return stored


def _check_resume(config: TrainConfig, run_dir: Path) -> None:
    """``resume=true``: the run's checkpoint exists and the resumed config only extends
    the one it was written with."""
    path = run_dir / "checkpoints" / "last.pt"
    if not path.is_file():
        raise PbdlError(
            f"resume=true: no checkpoint at {path}; pass the run's directory as "
            "hydra.run.dir=<run dir>"
        )
    state = load_checkpoint(path)
    if not isinstance(state.get("config"), str):
        return  # written outside pbdl train (fit called directly): nothing to compare
    stored = OmegaConf.to_container(OmegaConf.create(state["config"]))
    assert isinstance(stored, dict)
    check_resume(
        stored,
        stored_config(config),
        step=int(state["step"]),
        phase=str(state["phase"]),
        checkpoint=path,
    )


def check_one_seed(config: TrainConfig) -> None:
    """Refuse ``trainer.seed`` or ``method.seed`` set apart from ``seed``: one seed seeds
    the run, so that sweeping it varies everything random (a PINN's points as much as
    the trainer's generators)."""
    method_seed = getattr(config.method, "seed", None)
    seeds = (("trainer.seed", config.trainer.seed), ("method.seed", method_seed))
    for key, value in seeds:
        if value is not None and value != config.seed:
            raise PbdlError(
                f"{key}={value} differs from seed={config.seed}: one seed seeds the whole run "
                f"(initialization, sampling, batch order); set seed={value} instead"
            )


#: what a train run writes into its directory (besides Hydra's .hydra/ and log)
RUN_FILES = ("summary.json", "metrics.jsonl", "checkpoints", "normalization.json", "tensorboard")


def _remove_run(run_dir: Path) -> None:
    """overwrite=true: delete an earlier run's results before training again."""
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        log.info("overwrite=true: removed %s", path)


def _resume_command(run_dir: Path, launch: Launch | None = None) -> str:
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
    except ValueError:  # not inside a Hydra run
        overrides = []
    args = [*overrides, "resume=true", f"hydra.run.dir={run_dir}"]
    command = "pbdl train"
    if launch is not None and launch.distributed:
        if launch.local_world_size == launch.world_size:  # one node
            command = f"torchrun --nproc_per_node={launch.world_size} -m pbdl_cli train"
        else:
            command = "torchrun <the same launch options> -m pbdl_cli train"
    return f"{command} " + " ".join(shlex.quote(a) for a in args)


def _print_summary(summary: dict[str, Any], run_dir: Path, s: TrainSettings) -> None:
    console.print(f"run directory: {run_dir}", soft_wrap=True)
    table = Table(header_style="bold")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("steps", str(summary["steps"]))
    table.add_row("time", f"{summary['seconds']:.1f} s")
    for key, value in summary["train"].items():
        table.add_row(f"train/{key}", f"{value:.3e}")
    for key, value in summary.get("test", {}).items():
        table.add_row(f"test/{key}", f"{value:.3e}")
    console.print(table)
    if "rel_l2" in summary.get("test", {}):
        sizes = [len(s.problem.times()), *s.problem.grid.shape]
        if s.problem.is_static:
            sizes = sizes[1:]
        grid = " x ".join(map(str, sizes)) + " grid"
        console.print(
            f"relative L2 error against the {summary.get('reference', 'reference')}: "
            f"[bold]{summary['test']['rel_l2']:.3e}[/bold] ({grid})"
        )
