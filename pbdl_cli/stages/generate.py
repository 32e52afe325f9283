"""``pbdl generate``: simulate trajectories and write one HDF5 file per split.

For each split (train, val, test) the stage draws the parameters of all trajectories
from the split's own seed, draws each initial state from a seed derived from
``(seed, split, index)`` — so the data do not depend on ``data.batch_size`` or the
device — runs the problem's burn-in from them where it has one (:meth:`Problem.burn_in`,
one trajectory at a time), rolls them out in batches on the chosen device, and streams
each batch to ``<root>/<problem>/<name>.partial-<pid>/<split>.h5.partial``. Only when every split is
complete is the directory renamed to ``<root>/<problem>/<name>``: an interrupted run
never leaves anything that looks complete, and an existing dataset is replaced only
with ``overwrite=true``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import MISSING, DictConfig
from rich.table import Table

from pbdl_cli import __version__
from pbdl_cli.config import Precision, to_container, to_schema, to_yaml
from pbdl_cli.console import console
from pbdl_cli.errors import PbdlError
from pbdl_cli.problems import PROBLEMS, Problem
from pbdl_cli.problems.base import BurnIn, Params
from pbdl_cli.solvers import NO_SOLVER, SOLVERS, Solver, rollout
from pbdl_cli.stages.base import STAGES, Stage
from pbdl_cli.stages.generate_space import check_generate_space, dataset_bytes
from pbdl_cli.utils.device import resolve_device, resolve_dtype
from pbdl_cli.utils.files import atomic_write_text, publish_directory, remove_stale_partials
from pbdl_cli.utils.progress import progress
from pbdl_cli.utils.seeding import derive_seed, generator
from pbdl_cli.utils.space import disk_full_as_error

log = logging.getLogger("pbdl.generate")


@dataclasses.dataclass
class DataConfig:
    """Where datasets live and how large the splits are (``data.<key>``).

    Attributes:
        root: datasets are written to ``<root>/<problem>/<name>/{train,val,test}.h5``.
        name: dataset name; ``auto`` derives it from the problem settings and a hash of
            everything that determines the data (problem, solver, sizes, seed, dtype).
        n_train, n_val, n_test: trajectories per split (0 skips a split).
        batch_size: trajectories simulated together; changes speed and memory only.
        compression: optional HDF5 filter for the fields (``gzip`` or ``lzf``).
        refine: simulate on a grid ``refine`` times finer per axis (and, where the solver
            has fixed substeps, with ``refine`` times more of them) and store the cell
            averages on the problem's grid: the reference data of solver-in-the-loop
            training (1: simulate on the problem's grid).
    """

    root: str = "datasets"
    name: str = "auto"
    n_train: int = 64
    n_val: int = 16
    n_test: int = 16
    batch_size: int = 64
    compression: str | None = None
    refine: int = 1

    def __post_init__(self) -> None:
        if self.refine < 1:
            raise ValueError("refine must be >= 1")
        if min(self.n_train, self.n_val, self.n_test) < 0:
            raise ValueError("split sizes must be >= 0")
        if self.n_train + self.n_val + self.n_test == 0:
            raise ValueError("all split sizes are 0: nothing to generate")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.compression not in (None, "gzip", "lzf"):
            raise ValueError("compression must be null, gzip or lzf")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"invalid dataset name {self.name!r}")


@dataclasses.dataclass
class GenerateConfig:
    """Top level of ``pbdl generate`` (see conf/generate.yaml for the defaults).

    ``problem`` and ``solver`` hold the schemas of the selected plugins once built
    (:meth:`Generate.build`)."""

    problem: Any = MISSING
    solver: Any = MISSING
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    seed: int = 0
    device: str = "auto"
    dtype: Precision = Precision.float32
    threads: int | None = None
    overwrite: bool = False
    plugins: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be >= 1 (or null for torch's default)")


SPLITS = ("train", "val", "test")
#: config keys that change speed or location but not the data (left out of the name hash)
_NOT_IN_HASH = ("batch_size", "root", "name", "compression")


@dataclasses.dataclass
class GenerateSettings:
    """Validated inputs of a generate run."""

    config: GenerateConfig
    problem: Problem
    solver: Solver
    #: the problem and solver that simulate (``data.refine`` times finer, or the same)
    simulated: Problem
    simulator: Solver
    device: torch.device
    dtype: torch.dtype
    target: Path


def dataset_name(config: GenerateConfig, problem: Problem) -> str:
    """``<problem slug>-<8 hex digits>``: the hash covers everything that shapes the data."""
    stored = to_container(config)
    identity = {k: stored[k] for k in ("problem", "solver", "data", "seed", "dtype")}
    for key in _NOT_IN_HASH:
        identity["data"].pop(key, None)
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
    return f"{problem.slug()}-{digest}"


def refined_simulation(problem: Problem, solver_cfg: Any, refine: int) -> tuple[Problem, Solver]:
    """The problem ``refine`` times finer and its solver (``refine`` times more substeps
    where ``solver.substeps`` is fixed; the CFL rule refines time by itself otherwise):
    the simulation behind a ``data.refine`` dataset. ``solver_cfg``: the solver's
    config (a node or its schema)."""
    simulated = problem.refined(refine)
    fine_solver = SOLVERS.config(solver_cfg)
    if getattr(fine_solver, "substeps", None) is not None:
        fine_solver = dataclasses.replace(fine_solver, substeps=fine_solver.substeps * refine)
    return simulated, SOLVERS.build(fine_solver, problem=simulated)


@STAGES.register("generate")
class Generate(Stage):
    """Simulate a dataset with a differentiable solver and store it as HDF5 (schema v1)."""

    Config = GenerateConfig
    config_name = "generate"

    def build(self, cfg: DictConfig) -> GenerateSettings:
        problem_config = PROBLEMS.config(cfg.problem)
        problem = PROBLEMS.create(problem_config)
        if cfg.solver.get("name") == NO_SOLVER:
            raise PbdlError(
                f"problem '{problem.name}' has no default solver; choose one with solver=..."
            )
        solver_config = SOLVERS.config(cfg.solver)
        solver = SOLVERS.create(solver_config, problem=problem)
        config: GenerateConfig = to_schema(cfg, GenerateConfig, path="")
        config.problem, config.solver = problem_config, solver_config
        simulated, simulator = problem, solver
        if config.data.refine > 1:
            simulated, simulator = refined_simulation(problem, solver_config, config.data.refine)
        name = config.data.name if config.data.name != "auto" else dataset_name(config, problem)
        target = Path(config.data.root) / problem.name / name
        return GenerateSettings(
            config=config,
            problem=problem,
            solver=solver,
            simulated=simulated,
            simulator=simulator,
            device=resolve_device(config.device),
            dtype=resolve_dtype(config.dtype.value),
            target=target,
        )

    def preflight(self, settings: GenerateSettings, run_dir: Path | None) -> None:
        if settings.target.exists() and not settings.config.overwrite:
            raise PbdlError(
                f"dataset {settings.target} already exists; pass overwrite=true to replace "
                "it or data.name=<new name> to keep both"
            )
        check_generate_space(settings)

    def run(self, settings: GenerateSettings, run_dir: Path) -> dict[str, Any]:
        s = settings
        sizes = {
            "train": s.config.data.n_train,
            "val": s.config.data.n_val,
            "test": s.config.data.n_test,
        }
        if s.config.threads is not None:
            torch.set_num_threads(s.config.threads)
        s.target.parent.mkdir(parents=True, exist_ok=True)
        for stale in remove_stale_partials(s.target):
            log.info("removed %s left by an interrupted run", stale)
        partial = s.target.with_name(f"{s.target.name}.partial-{os.getpid()}")
        partial.mkdir()
        yaml = to_yaml(s.config)
        log.info(
            "generating %s with %s on %s (%s): %s",
            s.problem.name,
            s.solver.config.name,
            s.device,
            s.config.dtype.value,
            ", ".join(f"{k}={v}" for k, v in sizes.items()),
        )
        start = time.perf_counter()
        try:
            files = {}
            with disk_full_as_error(partial, dataset_bytes(s)):
                for split, count in sizes.items():
                    if count:
                        files[split] = write_split(s, split, count, partial / f"{split}.h5", yaml)
                atomic_write_text(partial / "config.yaml", yaml)
                publish_directory(partial, s.target, overwrite=s.config.overwrite)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        elapsed = time.perf_counter() - start
        paths = {split: s.target / path.name for split, path in files.items()}
        _summary(s, sizes, paths, elapsed)
        return {"dataset": str(s.target), "files": {k: str(v) for k, v in paths.items()}}


def write_split(s: GenerateSettings, split: str, count: int, path: Path, yaml: str) -> Path:
    """Simulate ``count`` trajectories of ``split`` and stream them to ``path``."""
    from pbdl_cli.data.writer import TrajectoryWriter

    problem = s.problem
    split_seed = derive_seed(s.config.seed, split)
    times = problem.times()
    params = problem.sample_params(count, generator(split_seed, "params"))
    attrs = {
        "problem": problem.name,
        "solver": s.solver.config.name,
        "dt": float(problem.dt),
        "seed": int(split_seed),
        "split": split,
        "config": yaml,
        "pbdl_version": __version__,
        "dataset_seed": int(s.config.seed),
    }
    refine = s.config.data.refine
    if refine > 1:  # cell averages of a finer simulation
        attrs |= {"refine": refine, "simulated_shape": list(s.simulated.grid.shape)}
    frame = (1, *problem.grid.shape)  # one dataset per channel: /fields/<channel name>
    batch = s.config.data.batch_size
    burn_in_solvers: dict[str, Solver] = {}
    with (
        TrajectoryWriter(
            path,
            num_trajectories=count,
            num_times=len(times),
            fields={name: frame for name in problem.fields},
            params={k: () for k in params},
            coords={"t": times, **problem.coords()},
            attrs=attrs,
            compression=s.config.data.compression,
        ) as writer,
        progress(
            count,
            desc=f"{split:>5}",
            unit="traj",
            leave=False,
            bar_format="{l_bar}{bar}| {n:.0f}/{total} traj [{elapsed}<{remaining}]",
        ) as bar,
    ):
        for begin in range(0, count, batch):
            index = range(begin, min(begin + batch, count))
            chunk = {k: v[index.start : index.stop] for k, v in params.items()}
            u0, plan = _initial_states(s.simulated, split_seed, index, chunk)
            # the bar moves with the trajectory steps taken: one per burn-in step (they
            # run one trajectory at a time), len(index) per step of the batched rollout
            burn_steps = 0 if plan is None else int(plan.steps.sum())
            share = len(index) / (burn_steps + len(index) * problem.num_steps)

            def advance(fraction: float = share) -> None:
                bar.update(fraction)

            u0 = u0.to(s.device)
            if plan is not None:
                key = repr(sorted(plan.solver.items()))
                if key not in burn_in_solvers:
                    burn_in_solvers[key] = SOLVERS.build(plan.solver, problem=s.simulated)
                u0 = burn_in(burn_in_solvers[key], plan, u0, chunk, problem.dt, advance, s.dtype)
            u0 = u0.to(s.dtype)
            if begin == 0:
                _warn_if_all_alike(split, count, params, u0, problem)
            on_device = {k: v.to(s.device, s.dtype) for k, v in chunk.items()}

            def stepper(state: torch.Tensor, dt: float, p: dict, step: float = share * len(index)):
                state = s.simulator(state, dt, p)
                advance(step)
                return state

            with torch.no_grad():
                trajectories = rollout(stepper, u0, problem.num_steps, problem.dt, on_device)
            if refine > 1:
                fine = trajectories.flatten(0, 1)  # [b T, C, *fine]
                coarse = problem.coarsen(fine, refine)
                trajectories = coarse.reshape(*trajectories.shape[:2], *coarse.shape[1:])
            if not bool(torch.isfinite(trajectories).all()):
                raise PbdlError(
                    f"{split}: the simulation produced non-finite values; the solver is unstable "
                    "for these settings (lower problem.dt or solver.cfl)"
                )
            channels = trajectories.split(1, dim=2)  # [b, T, 1, *spatial] each
            writer.write(dict(zip(problem.fields, channels, strict=True)), chunk)
    return path


def _initial_states(
    problem: Problem, split_seed: int, index: range, params: Params
) -> tuple[torch.Tensor, BurnIn | None]:
    """The initial states [b, C, *spatial] of trajectories ``index`` (``params`` [b]),
    each from its own seed, and their burn-in (None: frame 0 is the initial state)."""
    states, plans = [], []
    for j, i in enumerate(index):
        one = {k: v[j : j + 1] for k, v in params.items()}
        g = generator(split_seed, "initial", i)
        states.append(problem.initial_state(one, g))
        plans.append(problem.burn_in(one, g))  # continues the same stream
    if all(p is None for p in plans):
        return torch.cat(states), None
    first = plans[0]
    if first is None or any(
        p is None or p.solver != first.solver or p.dtype != first.dtype for p in plans
    ):
        raise PbdlError(f"problem '{problem.name}': every trajectory needs the same burn-in solver")
    steps = torch.cat([p.steps for p in plans])  # type: ignore[union-attr]
    return torch.cat(states), dataclasses.replace(first, steps=steps)


def burn_in(
    solver: Solver,
    plan: BurnIn,
    state: torch.Tensor,
    params: Params,
    dt: float,
    on_step: Callable[[], None],
    dtype: torch.dtype,
) -> torch.Tensor:
    """Frame 0 of a batch: ``state`` [B, C, *spatial] after ``plan.steps`` [B] steps of
    ``dt`` with ``solver``, in ``plan.dtype`` (else ``dtype``), on the state's device.

    Trajectory by trajectory (a rollout each, ``on_step`` after every step): a batched
    solve would round differently from a single one (the block-Cholesky pressure
    sweeps' matrix products), so a trajectory's data would depend on its batch.
    """
    work = plan.dtype or dtype
    state = state.to(work)
    params = {k: v.to(state.device, work) for k, v in params.items()}

    def stepper(x: torch.Tensor, dt: float, p: Params) -> torch.Tensor:
        x = solver(x, dt, p)
        on_step()
        return x

    out = []
    with torch.no_grad():
        for b, n in enumerate(plan.steps.tolist()):
            x = state[b : b + 1]
            if n > 0:
                p = {k: v[b : b + 1] for k, v in params.items()}
                x = rollout(stepper, x, n, dt, p, every=n, include_init=False)[:, 0]
            out.append(x)
    return torch.cat(out)


def _warn_if_all_alike(
    split: str, count: int, params: dict[str, torch.Tensor], u0: torch.Tensor, problem: Problem
) -> None:
    """Warn when a split's trajectories are all the same: every parameter constant over
    the split and the first batch's initial states equal (a closed-form initial state
    and fixed parameters, e.g. the Burgers defaults)."""
    if count < 2 or len(u0) < 2:
        return
    constant = all(bool((v == v[:1]).all()) for v in params.values())
    if constant and bool((u0 == u0[:1]).all()):
        log.warning(
            "%s: all %d trajectories are the same: with these settings problem '%s' draws "
            "neither its initial state nor its parameters at random%s",
            split,
            count,
            problem.name,
            f" (for varied data: {problem.variation_hint})" if problem.variation_hint else "",
        )


def _summary(
    s: GenerateSettings, sizes: dict[str, int], paths: dict[str, Path], elapsed: float
) -> None:
    problem = s.problem
    total = sum(sizes.values())
    cells = total * problem.num_steps * math.prod(problem.grid.shape)
    table = Table(title=f"dataset {s.target}", header_style="bold", title_justify="left")
    table.add_column("split")
    table.add_column("trajectories", justify="right")
    for name in problem.fields:
        table.add_column(f"/fields/{name} [N, T, C, *spatial]")
    table.add_column("size", justify="right")
    for split, path in paths.items():
        shape = str([sizes[split], problem.num_steps + 1, 1, *problem.grid.shape])
        size = f"{path.stat().st_size / 2**20:.1f} MiB"
        table.add_row(
            f"{split} ({path.name})", str(sizes[split]), *[shape] * len(problem.fields), size
        )
    console.print(table)
    console.print(
        f"{total} trajectories of {problem.num_steps} steps (dt={problem.dt}) in {elapsed:.1f} s, "
        f"{cells / max(elapsed, 1e-9):.3g} cell updates/s; inspect with "
        f"[cyan]pbdl info {paths[next(iter(paths))]}[/cyan]"
    )
