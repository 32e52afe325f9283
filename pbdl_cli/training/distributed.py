"""Data-parallel training (``trainer.strategy=ddp``): the torchrun environment, the process
group and the few collectives the training loop needs.

``torchrun --nproc_per_node=N -m pbdl_cli train ... trainer.strategy=ddp`` starts N
processes with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and ``MASTER_ADDR``,
``MASTER_PORT``) in their environment. Each process trains the same model on its shard of
every global batch (the ``set_distributed`` hook of
:mod:`pbdl_cli.training.objective`); torch's DistributedDataParallel averages the gradients.
The process group uses NCCL on GPUs (process r on ``cuda:LOCAL_RANK``) and gloo on the
CPU. Rank 0 alone writes the run directory and prints.
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from pbdl_cli.errors import PbdlError
from pbdl_cli.training.objective import Objective

log = logging.getLogger("pbdl.distributed")

#: the variables torchrun sets for every process it starts
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
LAUNCH = "torchrun --nproc_per_node=<processes> -m pbdl_cli train ... trainer.strategy=ddp"
#: how long a collective may wait for the other processes (rank 0 validates and writes
#: checkpoints while the others wait in the next step's all-reduce)
TIMEOUT = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class Launch:
    """Where this process sits among the processes of a data-parallel run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    #: processes on this node (torchrun's ``LOCAL_WORLD_SIZE``)
    local_world_size: int = 1
    #: trainer.strategy=ddp (also with a single process)
    distributed: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launch_environment(strategy: str) -> Launch:
    """The process's place in the run from torchrun's variables, checked against
    ``trainer.strategy`` (``single`` or ``ddp``); :class:`PbdlError` if they disagree."""
    if strategy != "ddp":
        world = os.environ.get("WORLD_SIZE", "1").strip() or "1"
        if world.isdigit() and int(world) > 1:
            raise PbdlError(
                f"{world} processes were started (WORLD_SIZE={world}, e.g. by torchrun), but "
                "trainer.strategy=single: each would train the whole model alone and write the "
                "same run directory; add trainer.strategy=ddp (or start one process)"
            )
        return Launch()
    values = {k: os.environ.get(k, "").strip() for k in TORCHRUN_VARIABLES}
    missing = [k for k, v in values.items() if not v]
    if missing:
        raise PbdlError(
            "trainer.strategy=ddp trains with one process per device, started by torchrun "
            f"(which sets {', '.join(TORCHRUN_VARIABLES)}; missing here: {', '.join(missing)}); "
            f"launch with: {LAUNCH} (on the CPU: N processes with the gloo backend)"
        )
    if not all(v.isdigit() for v in values.values()):
        raise PbdlError(f"torchrun variables must be integers >= 0, got {values}")
    rank, world, local = (int(values[k]) for k in TORCHRUN_VARIABLES)
    if world < 1 or rank >= world:
        raise PbdlError(f"inconsistent torchrun variables: RANK={rank}, WORLD_SIZE={world}")
    local_world = os.environ.get("LOCAL_WORLD_SIZE", "").strip()
    return Launch(
        rank=rank,
        world_size=world,
        local_rank=local,
        local_world_size=int(local_world) if local_world.isdigit() else world,
        distributed=True,
    )


def process_device(launch: Launch, device: torch.device) -> torch.device:
    """The device of this process: ``cuda:LOCAL_RANK`` for a data-parallel run on GPUs
    (made the current CUDA device), ``device`` otherwise."""
    if not launch.distributed or device.type == "cpu":
        return device
    if device.type != "cuda":
        raise PbdlError(
            f"trainer.strategy=ddp runs on GPUs (NCCL) or on the CPU (gloo), not on "
            f"device={device}; use device=cuda or device=cpu"
        )
    if device.index is not None:
        if launch.world_size > 1:
            raise PbdlError(
                f"with trainer.strategy=ddp, process r uses cuda:LOCAL_RANK; set device=cuda "
                f"(or auto) instead of device={device} and pick GPUs with CUDA_VISIBLE_DEVICES"
            )
        torch.cuda.set_device(device)
        return device
    count = torch.cuda.device_count()
    if launch.local_rank >= count:
        raise PbdlError(
            f"LOCAL_RANK={launch.local_rank}, but this node has {count} visible GPU(s): start "
            f"at most {count} processes per node (torchrun --nproc_per_node={count})"
        )
    device = torch.device("cuda", launch.local_rank)
    torch.cuda.set_device(device)  # early, so that no process opens a context on GPU 0
    return device


@contextmanager
def process_group(launch: Launch, device: torch.device) -> Iterator[None]:
    """Initialize the default process group (NCCL on GPUs, gloo on the CPU) from torchrun's
    environment for the duration of the block and destroy it afterwards, also after an
    error or an interrupt. Nothing to do for a single-process run."""
    if not launch.distributed or dist.is_initialized():
        yield
        return
    if not dist.is_available():
        raise PbdlError("trainer.strategy=ddp: this torch build has no torch.distributed")
    options: dict[str, Any] = {"timeout": TIMEOUT}
    if device.type == "cuda":
        backend = "nccl"
        torch.cuda.set_device(device)
        options["device_id"] = device
    else:
        backend = "gloo"
    dist.init_process_group(
        backend, rank=launch.rank, world_size=launch.world_size, init_method="env://", **options
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def rank_and_world_size() -> tuple[int, int]:
    """(rank, world size) of the initialized process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def broadcast_object(value: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``value`` on every rank (picklable objects)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def shared_run_dir(run_dir: Path, launch: Launch) -> Path:
    """Rank 0's run directory, on every rank.

    Each process composes its own Hydra config, and a timestamped run directory
    (``outputs/train/<date>/<time>``) differs between processes that started in different
    seconds. Every rank adopts rank 0's; a rank whose own directory differs removes it if
    it holds nothing but Hydra's files (``.hydra/``, the log)."""
    if not launch.distributed or launch.world_size == 1:
        return run_dir
    shared = Path(broadcast_object(str(run_dir.resolve())))
    if not launch.is_main and run_dir.resolve() != shared:
        _remove_hydra_only_dir(run_dir)
    return shared


def _remove_hydra_only_dir(path: Path) -> None:
    try:
        names = {p.name for p in path.iterdir()}
        if names <= {".hydra"} | {n for n in names if n.endswith(".log")}:
            shutil.rmtree(path)
            parent = path.parent
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()  # e.g. outputs/train/<date> of a run a second before midnight
    except OSError as error:  # e.g. an open log file on Windows: leave it
        log.debug("could not remove %s: %s", path, error)


@contextmanager
def quiet_unless_main(launch: Launch) -> Iterator[None]:
    """Only warnings and errors from pbdl's loggers on ranks other than 0 (rank 0 reports
    the run)."""
    if launch.is_main:
        yield
        return
    logger = logging.getLogger("pbdl")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def method_name(method: Any) -> str:
    config = getattr(method, "config", None)
    return str(getattr(config, "name", None) or type(method).__name__)


def check_shardable(method: Objective) -> None:
    """:class:`PbdlError` unless ``method``'s loss splits into shards of a batch
    (``supports_ddp``): only such methods train data-parallel."""
    if not method.supports_ddp:
        raise PbdlError(
            f"method '{method_name(method)}' does not support trainer.strategy=ddp: its loss "
            "does not split into shards of a batch (collocation points, a whole trajectory "
            "or all observations at once); train it with trainer.strategy=single. The grid "
            "methods (method.data=<dataset>: supervised, unrolled, pre, sol, non) train "
            "data-parallel"
        )


def shard_method(method: Objective, rank: int, world_size: int) -> None:
    """Tell ``method`` that it computes its loss on shard ``rank`` of ``world_size`` of every
    global batch (:meth:`~pbdl_cli.training.objective.Objective.set_distributed`), after
    :func:`check_shardable`."""
    check_shardable(method)
    method.set_distributed(rank, world_size)


class StepSync:
    """The per-step agreement of the processes: one all-reduce of the loss terms (averaged:
    the loss of the global batch) and of a stop flag (any process interrupted)."""

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size

    def __call__(self, terms: dict[str, torch.Tensor], stop: bool) -> tuple[dict, bool]:
        values = list(terms.values())
        device = values[0].device
        flat = torch.stack([v.detach().to(device, torch.float64).reshape(()) for v in values])
        flat = torch.cat([flat, torch.tensor([float(stop)], dtype=torch.float64, device=device)])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        mean = (flat[:-1] / self.world_size).tolist()
        averaged = {
            k: torch.tensor(m, dtype=v.dtype, device=v.device)
            for (k, v), m in zip(terms.items(), mean, strict=True)
        }
        return averaged, bool(flat[-1].item() > 0)
