"""The training loop shared by every method (nanoGPT-style: one function, top to bottom).

A *method* (any :class:`~pbdl_cli.training.objective.Objective`) supplies the loss:
``method.loss(model, step) -> {"loss": Tensor, <term>: ...}`` (it owns its data or
collocation points), its ``validate(model) -> {name: float}`` (lower ``validate_key`` is
better) and may take over the optimizer step (``method.step``, e.g. SIP, HIG). The loop
runs an optimizer phase (Adam, AdamW or SGD) for ``max_steps`` and then, optionally, a
full-batch L-BFGS phase with a strong-Wolfe line search for ``lbfgs_steps``.

Around that it keeps a run directory: ``metrics.jsonl`` (one JSON object per logged step),
``checkpoints/last.pt`` (every ``checkpoint_every`` steps and at the end) and
``checkpoints/best.pt`` (best validation value). ``resume=True`` continues from
``last.pt`` exactly: model, optimizer, scheduler, step and random states are restored.
Ctrl-C or SIGTERM finish the current step, save ``last.pt`` and stop; a non-finite loss
stops before the update, leaving the last good checkpoint in place.

``strategy=ddp`` trains data-parallel inside a process group started by torchrun (see
:mod:`pbdl_cli.training.distributed`): each process computes the loss on its shard of
the step's global batch (``method.set_distributed``), DistributedDataParallel averages
the gradients, and one all-reduce per loss evaluation averages the loss terms (what is
logged and what L-BFGS sees) together with a stop flag, so that every process takes the
same decisions (non-finite loss, Ctrl-C/SIGTERM of any process). Rank 0 alone writes
``metrics.jsonl``, TensorBoard events and checkpoints (with its random states), shows
the progress bar and validates; on resume every process loads ``last.pt``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.training import distributed
from pbdl_cli.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from pbdl_cli.training.config import OptimizerName, StrategyName, TrainerConfig
from pbdl_cli.training.objective import Objective
from pbdl_cli.training.optimizers import Phase, make_phase
from pbdl_cli.utils.progress import progress


class TrainingDiverged(PbdlError):
    """The loss became NaN or infinite."""

    exit_code = 1


class TrainingInterrupted(PbdlError):
    """Ctrl-C or SIGTERM; ``last.pt`` holds the state after the last completed step."""

    exit_code = 130


@dataclasses.dataclass
class TrainResult:
    steps: int
    terms: dict[str, float]
    best: float | None
    seconds: float


def fit(
    method: Objective,
    model: nn.Module,
    config: TrainerConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    validate_key: str | None = None,
    extra: dict[str, Any] | None = None,
    resume_hint: str = "",
) -> TrainResult:
    """Train ``model`` with ``method``'s loss; see the module docstring.

    Args:
        run_dir: where ``metrics.jsonl`` and ``checkpoints/`` go.
        resume: continue from ``run_dir/checkpoints/last.pt``.
        validate_key: the entry of ``method.validate`` that decides ``best.pt`` (lower is
            better); default: the training loss at the last logged step.
        extra: stored in every checkpoint (resolved config, plugin names, ...).
        resume_hint: the command that resumes this run, quoted in messages.
    """
    checkpoints = run_dir / "checkpoints"
    metrics_path = run_dir / "metrics.jsonl"
    total = config.max_steps + config.lbfgs_steps

    # 0. data-parallel: this process's shard of every batch, gradients averaged by DDP
    sync: distributed.StepSync | None = None
    net, main = model, True
    if config.strategy is StrategyName.ddp:
        if not dist.is_initialized():
            raise PbdlError(
                "trainer.strategy=ddp needs a process group: launch with "
                f"{distributed.LAUNCH} (fit runs inside distributed.process_group)"
            )
        rank, world = distributed.rank_and_world_size()
        distributed.shard_method(method, rank, world)
        sync, main = distributed.StepSync(world), rank == 0
        if any(p.requires_grad and p.numel() for p in model.parameters()):
            device = _device_of(model)
            ids = [device] if device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)

    # 1. seeds and the first phase
    if not resume:
        _seed_everything(config.seed)
    phase = make_phase(config, model, lbfgs=config.optimizer is OptimizerName.lbfgs)
    step, best = 0, math.inf

    # 2. resume: restore everything that shapes the next step (every process loads
    # last.pt; data-parallel processes all continue with rank 0's random states)
    if resume:
        state = load_checkpoint(checkpoints / "last.pt")
        model.load_state_dict(state["model"])
        step, best = int(state["step"]), float(state.get("best", math.inf))
        phase = make_phase(config, model, lbfgs=state["phase"] == "lbfgs")
        phase.optimizer.load_state_dict(state["optimizer"])
        if phase.scheduler is not None and state.get("scheduler") is not None:
            phase.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        if step > total:
            raise PbdlError(
                f"{checkpoints / 'last.pt'} is at step {step}, past trainer.max_steps + "
                f"trainer.lbfgs_steps = {total}; raise them to train further"
            )
        if step == total and main:
            logging.getLogger("pbdl.train").info(
                "the run finished at step %d: nothing to train (raise trainer.max_steps or "
                "trainer.lbfgs_steps to train further)",
                step,
            )
        if main:
            _truncate_metrics(metrics_path, step)

    def checkpoint(path: Path) -> None:
        if not main:
            return
        save_checkpoint(
            path,
            {
                "model": model.state_dict(),
                "optimizer": phase.optimizer.state_dict(),
                "scheduler": phase.scheduler.state_dict() if phase.scheduler else None,
                "phase": phase.name,
                "step": step,
                "best": best,
                "rng": rng_state(),
                **(extra or {}),
            },
        )

    # 3. the loop
    start, terms = time.perf_counter(), {}
    bar = progress(total, initial=step, desc="train", unit="step", enabled=main, leave=False)
    tensorboard = _tensorboard_dir(config, run_dir)  # (every process checks the package)
    with (
        _deferred_interrupts() as interrupted,
        _MetricsLog(metrics_path if main else None, tensorboard if main else None, step) as log,
    ):
        while step < total:
            if step == phase.last_step:  # switch to the L-BFGS phase
                phase = make_phase(config, model, lbfgs=True)
            terms, stop = _train_step(method, net, phase, config, step, sync, interrupted)
            if not all(math.isfinite(v) for v in terms.values()):
                bar.close()
                raise TrainingDiverged(
                    f"non-finite loss at step {step}: "
                    + ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
                    + f"; the last good checkpoint is {checkpoints / 'last.pt'} "
                    "(lower trainer.lr or enable trainer.grad_clip)"
                )
            step += 1
            bar.update(1)
            # trainer.max_seconds: this step ends the run like the last one would
            spent = time.perf_counter() - start
            last = step == total or (config.max_seconds is not None and spent >= config.max_seconds)
            if step % config.log_every == 0 or last:
                lr = phase.optimizer.param_groups[0]["lr"]
                record = {"step": step, "phase": phase.name, "lr": lr}
                record |= {f"train/{k}": v for k, v in terms.items()}
                record["time"] = time.perf_counter() - start
                log.write(record)
                bar.set_postfix({k: f"{v:.3g}" for k, v in terms.items()}, refresh=False)
            if main and ((config.eval_every and step % config.eval_every == 0) or last):
                value = _validate(
                    method, model, step, log, validate_key, time.perf_counter() - start
                )
                value = terms["loss"] if value is None else value
                if value < best:
                    best = value
                    checkpoint(checkpoints / "best.pt")
            if (config.checkpoint_every and step % config.checkpoint_every == 0) or last:
                checkpoint(checkpoints / "last.pt")
            if stop if sync is not None else interrupted():
                checkpoint(checkpoints / "last.pt")
                bar.close()
                raise TrainingInterrupted(
                    f"interrupted at step {step}/{total}; saved {checkpoints / 'last.pt'}"
                    + (f". Resume with: {resume_hint}" if resume_hint else "")
                )
            if last:
                break
    bar.close()
    return TrainResult(
        steps=step,
        terms=terms,
        best=None if best == math.inf else best,
        seconds=time.perf_counter() - start,
    )


def _train_step(
    method: Objective,
    model: nn.Module,
    phase: Phase,
    config: TrainerConfig,
    step: int,
    sync: distributed.StepSync | None = None,
    interrupted: Callable[[], bool] = lambda: False,
) -> tuple[dict[str, float], bool]:
    """One optimizer step: the loss terms (floats) of the evaluated state. Data-parallel
    (``sync``): the terms of the global batch, and whether to stop after this step (an
    interrupt of any process), agreed on by all processes at the step's last loss
    evaluation; single process: False (the loop asks ``interrupted`` itself)."""
    optimizer = phase.optimizer
    seen: dict[str, Tensor] = {}
    stop = [False]

    def closure() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        terms = method.loss(model, step)
        if sync is not None and (w := method.shard_weight(step)) != 1.0:  # an uneven shard
            terms = {k: v * w for k, v in terms.items()}
        loss = terms["loss"]
        values = {k: v.detach() for k, v in terms.items()}
        if sync is not None:  # the global batch's terms; every process decides the same
            values, stop[0] = sync(values, interrupted())
        if torch.isfinite(values["loss"]):  # never backpropagate NaNs into the optimizer state
            loss.backward()
        seen.clear()
        seen.update(values)
        return loss if sync is None else values["loss"]

    if method.step(optimizer, closure):  # the method took the step
        pass
    elif phase.name == "lbfgs":
        optimizer.step(closure)
    else:
        loss = closure()
        if not torch.isfinite(loss):
            return {k: float(v) for k, v in seen.items()}, stop[0]
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
    if phase.scheduler is not None:
        phase.scheduler.step()
    return {k: float(v) for k, v in seen.items()}, stop[0]


def _validate(
    method: Objective,
    model: nn.Module,
    step: int,
    log: _MetricsLog,
    key: str | None,
    elapsed: float,
) -> float | None:
    was_training = model.training
    model.eval()
    values = method.validate(model)
    model.train(was_training)
    record = {"step": step} | {f"val/{k}": v for k, v in values.items()} | {"time": elapsed}
    log.write(record)
    return values.get(key) if key else None


class _MetricsLog:
    """``metrics.jsonl`` (one JSON object per record) and, optionally, TensorBoard scalars
    (every numeric entry of a record, against its ``step``); ``path=None``: nothing (the
    processes other than rank 0 of a data-parallel run)."""

    def __init__(self, path: Path | None, tensorboard: Path | None, step: int) -> None:
        self.file = path.open("a") if path is not None else None
        self.writer = None
        if tensorboard is not None:
            from torch.utils.tensorboard import SummaryWriter

            # a resumed run drops events logged after its checkpoint (as metrics.jsonl)
            self.writer = SummaryWriter(str(tensorboard), purge_step=step + 1 if step else None)

    def write(self, record: dict[str, Any]) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.writer is not None:
            for key, value in record.items():
                if key not in ("step", "time") and isinstance(value, int | float):
                    self.writer.add_scalar(key, value, record["step"])
            self.writer.flush()

    def __enter__(self) -> _MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()
        if self.writer is not None:
            self.writer.close()


def _tensorboard_dir(config: TrainerConfig, run_dir: Path) -> Path | None:
    if config.tensorboard is False:
        return None
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        if config.tensorboard:
            raise PbdlError(
                "trainer.tensorboard=true needs the tensorboard package: "
                "pip install 'pbdl[tensorboard]' (or set trainer.tensorboard=false)"
            ) from None
        return None
    return run_dir / "tensorboard"


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _device_of(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records logged after ``step`` (a crash after the last checkpoint)."""
    if not path.exists():
        return
    kept = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line).get("step", 0) <= step
    ]
    path.write_text("".join(line + "\n" for line in kept))


@contextmanager
def _deferred_interrupts() -> Iterator[Callable[[], bool]]:
    """Turn the first SIGINT/SIGTERM into a flag checked between steps; a second one
    interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    hits: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        hits.append(signum)
        if len(hits) > 1:
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(hits)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
