"""Data-parallel training (trainer.strategy=ddp) on the CPU with gloo and 2 processes.

Two processes with batch b reproduce one process with batch 2b (the loss trajectory of
metrics.jsonl, Adam with input noise and L-BFGS, with an uneven last batch of each epoch);
rank 0 alone writes; an interrupt or a non-finite loss on one rank stops every rank; a
resumed run continues the straight run; misuse is refused before anything runs.

The processes are started by the real ``torchrun`` once; the other runs fork the test
process (torch and pbdl already imported: fast) and set torchrun's variables themselves.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods import METHODS
from pbdl_cli.methods.grid import GridMethod
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.runner import compose
from pbdl_cli.stages.train import Train
from pbdl_cli.training.distributed import launch_environment
from tests.conftest import REPO, cli_env, cli_script, run_cli

#: the problem of the dataset: 32 periodic cells, random sines, 7 frames of dt = 0.05
SETTINGS = {
    "nx": 32,
    "t_end": 0.3,
    "dt": 0.05,
    "nu": 0.01,
    "nu_range": [0.01, 0.05],
    "ic": "sines",
    "bc": "periodic",
}
PROBLEM = [f"problem.{k}={v}".replace(" ", "") for k, v in SETTINGS.items()]
#: 3 train trajectories x 5 windows (history 1, unroll 2): 15 windows, so a global batch
#: of 4 leaves a last batch of 3 per epoch, split 2 + 1 between the ranks
RUN = [
    *PROBLEM,
    "method=unrolled",
    "method.unroll=2",
    "method.noise=0.01",
    "solver=burgers_sl",
    "model=resnet",
    "model.width=4",
    "model.blocks=1",
    "trainer.max_steps=12",
    "trainer.lbfgs_steps=2",
    "trainer.lbfgs_max_iter=3",
    "trainer.log_every=1",
    "trainer.eval_every=5",
    "trainer.checkpoint_every=2",
    "dtype=float64",
    "threads=1",
]
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
TORCHRUN_VARIABLES += ("MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True)
def no_torchrun_environment(monkeypatch: pytest.MonkeyPatch):
    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    result = run_cli(
        "generate",
        *PROBLEM,
        "solver=burgers_sl",
        "data.n_train=3",
        "data.n_val=2",
        "data.n_test=2",
        "data.refine=2",
        "data.name=tiny",
        "threads=1",
        cwd=root,
    )
    assert result.returncode == 0, result.stderr
    return root / "datasets" / "burgers" / "tiny"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, args: list[str], cwd: str, fault: str) -> None:
    """A forked process: torchrun's variables, then ``pbdl train ARGS``."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    os.chdir(cwd)
    from hydra.core.global_hydra import GlobalHydra

    from pbdl_cli.runner import run_stage

    GlobalHydra.instance().clear()
    if fault and rank == 1:  # something happens on rank 1 alone, at step 4
        batch, unrolled_loss = GridMethod.batch, GridMethod.unrolled_loss

        def interrupting_batch(self, step):  # as if Ctrl-C reached rank 1 only
            if step == 4:
                os.kill(os.getpid(), signal.SIGINT)
            return batch(self, step)

        def diverging_loss(self, model, step, steps):
            terms = unrolled_loss(self, model, step, steps)
            return {**terms, "loss": terms["loss"] * (math.nan if step == 4 else 1.0)}

        if fault == "interrupt":
            GridMethod.batch = interrupting_batch  # type: ignore[method-assign]
        else:
            GridMethod.unrolled_loss = diverging_loss  # type: ignore[method-assign]
    try:
        run_stage("train", args)
    except SystemExit as exit:
        os._exit(int(exit.code or 0))
    os._exit(0)


def run_ranks(args: list[list[str]], cwd: Path, fault: str = "", timeout: float = 120) -> list:
    """Run ``pbdl train args[r]`` in forked processes r = 0..N-1 (one process group);
    their exit codes."""
    context = multiprocessing.get_context("fork")
    port = free_port()
    procs = [
        context.Process(target=_rank_main, args=(r, len(args), port, a, str(cwd), fault))
        for r, a in enumerate(args)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():  # a hang: fail, but leave no process behind
            p.kill()
            p.join()
    return codes


def train_losses(run: Path) -> dict[int, dict[str, float]]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "train/loss" in r]
    assert len(steps) == len(set(steps)), "a step was logged twice (by two ranks?)"
    return {
        r["step"]: {k: v for k, v in r.items() if k.startswith("train/")}
        for r in records
        if "train/loss" in r
    }


def max_relative_difference(a: dict, b: dict) -> float:
    assert sorted(a) == sorted(b)
    return max(abs(a[s][k] - b[s][k]) / abs(b[s][k]) for s in a for k in b[s])


@pytest.fixture(scope="module")
def straight(data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One torchrun launch with 2 processes x batch 2 and one process with batch 4."""
    root = tmp_path_factory.mktemp("straight")
    args = [*RUN, f"method.data={data}"]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        str(cli_script(root)),
        str(REPO),
        "train",
        *args,
        "method.batch_size=2",
        "trainer.strategy=ddp",
        "trainer.tensorboard=true",
    ]
    env = cli_env({"OMP_NUM_THREADS": "1"})
    ddp = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    runs = sorted(root.glob("outputs/train/*/*"))
    assert len(runs) == 1, runs  # every rank used rank 0's (timestamped) run directory
    single = ["trainer.strategy=single", "method.batch_size=4", "hydra.run.dir=single"]
    assert run_ranks([[*args, *single]], root) == [0]
    return {"ddp": runs[0], "single": root / "single", "stdout": ddp.stdout, "stderr": ddp.stderr}


# -- tests ---------------------------------------------------------------------------------
def test_two_processes_reproduce_one_process_with_the_global_batch(straight: dict):
    ddp, single = train_losses(straight["ddp"]), train_losses(straight["single"])
    assert sorted(ddp) == list(range(1, 15))  # 12 Adam + 2 L-BFGS steps, each logged once
    # float64: equal up to the order of the floating-point sums
    assert max_relative_difference(ddp, single) < 1e-10
    a = json.loads((straight["ddp"] / "summary.json").read_text())
    b = json.loads((straight["single"] / "summary.json").read_text())
    assert a["test"]["rel_l2"] == pytest.approx(b["test"]["rel_l2"], rel=1e-8)


def test_only_rank_0_writes_and_prints(straight: dict):
    run = straight["ddp"]
    names = {p.name for p in run.iterdir()}
    assert names == {
        ".hydra",
        "train.log",
        "normalization.json",
        "metrics.jsonl",
        "checkpoints",
        "tensorboard",
        "summary.json",
    }
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert len(list((run / "tensorboard").iterdir())) == 1  # one SummaryWriter
    assert straight["stdout"].count("run directory:") == 1  # one summary table
    assert straight["stderr"].count("training resnet") == 1  # one log line on the console
    assert (run / "train.log").read_text().count("training resnet") == 1
    checkpoint = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert checkpoint["step"] == 14 and "strategy: ddp" in checkpoint["config"]


def test_interrupt_on_one_rank_stops_all_and_resume_continues(
    data: Path, straight: dict, tmp_path: Path
):
    args = [*RUN, f"method.data={data}", "method.batch_size=2", "trainer.strategy=ddp"]
    # rank 1 is started with another run directory, as a timestamp one second later would
    # give it: it adopts rank 0's and removes its own
    codes = run_ranks(
        [[*args, "hydra.run.dir=run"], [*args, "hydra.run.dir=other"]],
        tmp_path,
        fault="interrupt",
    )
    assert codes == [130, 130]  # both stopped after the same step, none hangs
    run = tmp_path / "run"
    assert not (tmp_path / "other").exists()
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=False)["step"] == 5
    assert sorted(train_losses(run)) == [1, 2, 3, 4, 5]

    resume = [*args, "resume=true", "hydra.run.dir=run"]
    assert run_ranks([resume, resume], tmp_path) == [0, 0]
    losses = train_losses(run)
    assert sorted(losses) == list(range(1, 15))
    assert max_relative_difference(losses, train_losses(straight["ddp"])) < 1e-10


def test_non_finite_loss_on_one_rank_stops_all(data: Path, tmp_path: Path):
    args = [*RUN, f"method.data={data}", "method.batch_size=2", "trainer.strategy=ddp"]
    args += ["hydra.run.dir=run"]
    assert run_ranks([args, args], tmp_path, fault="nan") == [1, 1]
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)
    assert last["step"] == 4  # the last good checkpoint (every 2 steps), no NaN update
    assert all(torch.isfinite(v).all() for v in last["model"].values())


def test_ddp_without_torchrun_exits_2_with_how_to_launch(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    from pbdl_cli.cli import main

    monkeypatch.chdir(tmp_path)
    args = [*RUN, f"method.data={data}", "trainer.strategy=ddp"]
    monkeypatch.setattr(sys, "argv", ["pbdl", "train", *args])
    with pytest.raises(SystemExit) as exit:
        main()
    assert exit.value.code == 2
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "trainer.strategy=ddp" in err and "torchrun --nproc_per_node=" in err
    assert "missing here: RANK, WORLD_SIZE, LOCAL_RANK" in err
    assert not (tmp_path / "outputs").exists()  # refused before any run directory


def test_misuse_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(PbdlError, match=r"2 processes were started .* add trainer\.strategy=ddp"):
        launch_environment("single")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    launch = launch_environment("ddp")
    assert (launch.rank, launch.world_size, launch.is_main) == (1, 2, False)
    # a method whose loss does not shard (PINN collocation points)

    cfg = compose("train", ["method=pinn", "trainer.strategy=ddp"])
    with pytest.raises(PbdlError, match=r"method 'pinn' does not support trainer\.strategy=ddp"):
        Train().build(cfg)


def test_shards_partition_the_global_batch(data: Path):
    """In one process: the shards of ranks 0 and 1 (batch 2 each) are the halves of the
    batch 4 of one process, noise included, and their weights average the loss exactly."""
    problem = PROBLEMS.build({"name": "burgers", **SETTINGS, "ic": "sines", "bc": "periodic"})
    config = {"name": "unrolled", "data": str(data), "unroll": 2, "noise": 0.01}

    def build(batch_size: int) -> GridMethod:
        return METHODS.build(
            {**config, "batch_size": batch_size},
            problem=problem,
            device=torch.device("cpu"),
            dtype=torch.float64,
        )

    whole, shards = build(4), [build(2), build(2)]
    for rank, m in enumerate(shards):
        m.set_distributed(rank, 2)
    for step in range(8):  # two epochs of 4 batches: 4, 4, 4, 3 windows
        parts = [m.batch(step) for m in shards]
        for x, *pieces in zip(whole.batch(step), *parts, strict=True):
            assert torch.equal(x, torch.cat(pieces))
        weights = [m.shard_weight(step) for m in shards]
        assert weights == ([1.0, 1.0] if step % 4 != 3 else [4 / 3, 2 / 3])
