"""The training loop: convergence, determinism, exact resume, interrupts, divergence."""

from __future__ import annotations

import json
import math
import os
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pbdl_cli.training import TrainerConfig, TrainingDiverged, fit, load_checkpoint
from pbdl_cli.training.config import OptimizerName, SchedulerName
from pbdl_cli.training.objective import Objective
from pbdl_cli.training.trainer import TrainingInterrupted


class Regression(Objective):
    """Fit y = 3x - 1 from random mini-batches drawn with torch's global RNG."""

    def __init__(self, nan_at: int | None = None, interrupt_at: int | None = None) -> None:
        self.nan_at, self.interrupt_at = nan_at, interrupt_at

    def loss(self, model: nn.Module, step: int) -> dict[str, torch.Tensor]:
        if step == self.interrupt_at:
            self.interrupt_at = None
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C now
        x = torch.rand(16, 1)
        mse = (model(x) - (3 * x - 1)).square().mean()
        if step == self.nan_at:
            mse = mse * float("nan")
        return {"loss": mse, "mse": mse}

    def validate(self, model: nn.Module) -> dict[str, float]:
        x = torch.linspace(0, 1, 11)[:, None]
        with torch.no_grad():
            return {"mse": float((model(x) - (3 * x - 1)).square().mean())}


def model() -> nn.Module:
    torch.manual_seed(123)
    return nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


CONFIG = {"max_steps": 30, "lbfgs_steps": 6, "lr": 1e-2, "log_every": 1, "eval_every": 10}


def test_fit_converges_and_writes_a_run(tmp_path):
    config = TrainerConfig(**CONFIG, checkpoint_every=10)
    net = model()
    result = fit(Regression(), net, config, tmp_path, validate_key="mse", extra={"tag": 1})
    assert result.steps == 36 and result.terms["loss"] < 0.05
    logged = [r for r in records(tmp_path) if "train/loss" in r]
    assert [r["step"] for r in logged] == list(range(1, 37))
    assert logged[-1]["phase"] == "lbfgs" and logged[0]["phase"] == "adam"
    assert logged[-1]["train/loss"] < logged[0]["train/loss"] / 10
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["step"] == 36 and last["tag"] == 1 and last["phase"] == "lbfgs"
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["best"] == pytest.approx(
        min(r["val/mse"] for r in records(tmp_path) if "val/mse" in r)
    )


def test_same_seed_same_metrics(tmp_path):
    for name in ("a", "b"):
        fit(Regression(), model(), TrainerConfig(**CONFIG), tmp_path / name)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "time"} for r in rs]  # noqa: E731
    assert strip(records(tmp_path / "a")) == strip(records(tmp_path / "b"))


@pytest.mark.parametrize("interrupt_at", [12, 33])  # in the Adam and in the L-BFGS phase
def test_interrupt_then_resume_continues_exactly(tmp_path, interrupt_at):
    config = TrainerConfig(**CONFIG, checkpoint_every=5)
    straight = model()
    fit(Regression(), straight, config, tmp_path / "straight")

    resumed = model()
    with pytest.raises(
        TrainingInterrupted, match=f"step {interrupt_at + 1}/36.*Resume with: again"
    ):
        fit(
            Regression(interrupt_at=interrupt_at),
            resumed,
            config,
            tmp_path / "cut",
            resume_hint="again",
        )
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["step"] == interrupt_at + 1
    fresh = model()  # a new process would start from a new model object
    fit(Regression(), fresh, config, tmp_path / "cut", resume=True)

    for a, b in zip(straight.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "time"} for r in rs]  # noqa: E731
    assert strip(records(tmp_path / "straight")) == strip(records(tmp_path / "cut"))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    config = TrainerConfig(**CONFIG | {"log_every": 1}, checkpoint_every=4)
    net = model()
    with pytest.raises(TrainingDiverged, match=r"non-finite loss at step 9: loss=nan, mse=nan"):
        fit(Regression(nan_at=9), net, config, tmp_path)
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["step"] == 8
    assert all(torch.isfinite(v).all() for v in last["model"].values())
    assert all(torch.isfinite(p).all() for p in net.parameters())  # no NaN update applied


def test_config_validation():
    with pytest.raises(ValueError, match="not both 0"):
        TrainerConfig(max_steps=0, lbfgs_steps=0)
    with pytest.raises(ValueError, match="grad_clip"):
        TrainerConfig(grad_clip=0.0)


def _scalars(directory: Path, tag: str) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory))
    events.Reload()
    return {e.step: e.value for e in events.Scalars(tag)}


def test_tensorboard_scalars_match_metrics_and_survive_resume(tmp_path):
    config = TrainerConfig(**CONFIG, tensorboard=True)
    fit(Regression(), model(), config, tmp_path / "a", validate_key="mse")
    with pytest.raises(TrainingInterrupted):
        fit(Regression(interrupt_at=12), model(), config, tmp_path / "b", validate_key="mse")
    fit(Regression(), model(), config, tmp_path / "b", resume=True, validate_key="mse")
    for run in ("a", "b"):
        logged = {r["step"]: r["train/loss"] for r in records(tmp_path / run) if "train/loss" in r}
        scalars = _scalars(tmp_path / run / "tensorboard", "train/loss")
        # one value per step (a resumed run purges what it logs again), equal to the JSON log
        assert sorted(scalars) == sorted(logged) == list(range(1, 37))
        assert all(scalars[s] == pytest.approx(logged[s], rel=1e-6) for s in logged)
        assert sorted(_scalars(tmp_path / run / "tensorboard", "val/mse")) == [10, 20, 30, 36]


def test_tensorboard_off_writes_no_events(tmp_path):
    fit(Regression(), model(), TrainerConfig(**CONFIG, tensorboard=False), tmp_path)
    assert not (tmp_path / "tensorboard").exists()


def test_option_strings_become_the_options_they_name():
    config = TrainerConfig(optimizer="sgd", scheduler="step", strategy="single")
    assert config.scheduler is SchedulerName.step and config.optimizer is OptimizerName.sgd
    with pytest.raises(ValueError, match="scheduler must be one of none, cosine"):
        TrainerConfig(scheduler="linear")


SCHEDULES = {
    "none": {},
    "cosine": {},
    "exponential": {"gamma": 0.9},
    "step": {"step_size": 6, "gamma": 0.5},
}


def lrs(run: Path) -> dict[int, float]:
    return {r["step"]: r["lr"] for r in records(run) if "lr" in r}


@pytest.mark.parametrize("scheduler", sorted(SCHEDULES))
def test_each_schedule_sets_the_learning_rate_it_names(tmp_path, scheduler):
    config = TrainerConfig(
        max_steps=20, lr=0.1, scheduler=scheduler, log_every=1, **SCHEDULES[scheduler]
    )
    fit(Regression(), model(), config, tmp_path)
    logged = lrs(tmp_path)  # the rate of step s is logged after the schedule's s-th step
    expected = {
        "none": lambda s: 0.1,
        "cosine": lambda s: 0.05 * (1 + math.cos(math.pi * s / 20)),
        "exponential": lambda s: 0.1 * 0.9**s,
        "step": lambda s: 0.1 * 0.5 ** (s // 6),
    }[scheduler]
    assert logged == pytest.approx({s: expected(s) for s in range(1, 21)}, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(
    ("optimizer", "scheduler"),
    [
        ("adam", "cosine"),
        ("adam", "exponential"),
        ("adamw", "step"),
        ("sgd", "cosine"),
        ("sgd", "step"),
        ("lbfgs", "none"),
    ],
)
def test_resume_continues_exactly_for_every_optimizer_and_schedule(tmp_path, optimizer, scheduler):
    """An interrupted run resumed from last.pt ends where the uninterrupted run ends:
    model, optimizer state (momentum, Adam moments) and the schedule's position."""
    config = TrainerConfig(
        max_steps=24,
        lbfgs_steps=0,
        optimizer=optimizer,
        lr=0.05 if optimizer != "lbfgs" else 0.5,
        weight_decay=1e-3 if optimizer in ("adamw", "sgd") else 0.0,
        scheduler=scheduler,
        log_every=1,
        eval_every=0,
        checkpoint_every=5,
        **SCHEDULES[scheduler],
    )
    straight = model()
    fit(Regression(), straight, config, tmp_path / "straight")
    with pytest.raises(TrainingInterrupted):
        fit(Regression(interrupt_at=13), model(), config, tmp_path / "cut")
    fresh = model()
    fit(Regression(), fresh, config, tmp_path / "cut", resume=True)
    for a, b in zip(straight.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b)
    assert lrs(tmp_path / "cut") == lrs(tmp_path / "straight")


def test_grad_clip_bounds_every_update(tmp_path):
    """Plain SGD (lr 1, no momentum) moves the parameters by exactly the clipped gradient:
    its norm is grad_clip whenever the raw gradient is larger (here it is ~10x larger)."""
    clip = 0.01
    config = TrainerConfig(
        max_steps=1, optimizer="sgd", lr=1.0, momentum=0.0, grad_clip=clip, eval_every=0
    )
    net, probe = model(), model()
    before = [p.detach().clone() for p in net.parameters()]
    torch.manual_seed(0)
    x = torch.rand(16, 1)
    raw = torch.autograd.grad((probe(x) - (3 * x - 1)).square().mean(), list(probe.parameters()))
    assert torch.cat([g.flatten() for g in raw]).norm() > 10 * clip
    fit(Regression(), net, config, tmp_path)
    moved = torch.cat(
        [(p.detach() - b).flatten() for p, b in zip(net.parameters(), before, strict=True)]
    )
    assert moved.norm().item() == pytest.approx(clip, rel=1e-5)


class NumpyRegression(Regression):
    """As Regression, with its mini-batches drawn from numpy's global RNG (and python's)."""

    def loss(self, model: nn.Module, step: int) -> dict[str, torch.Tensor]:
        if step == self.interrupt_at:
            self.interrupt_at = None
            os.kill(os.getpid(), signal.SIGINT)
        shift = random.random() * 1e-3
        x = torch.from_numpy(np.random.rand(16, 1).astype(np.float32)) + shift
        mse = (model(x) - (3 * x - 1)).square().mean()
        return {"loss": mse, "mse": mse}


def test_resume_restores_numpy_and_python_random_states(tmp_path):
    config = TrainerConfig(max_steps=20, lr=1e-2, log_every=1, eval_every=0, checkpoint_every=5)
    straight = model()
    fit(NumpyRegression(), straight, config, tmp_path / "straight")
    with pytest.raises(TrainingInterrupted):
        fit(NumpyRegression(interrupt_at=12), model(), config, tmp_path / "cut")
    np.random.seed(999)  # a new process would start with other states
    random.seed(999)
    fresh = model()
    fit(NumpyRegression(), fresh, config, tmp_path / "cut", resume=True)
    for a, b in zip(straight.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b)


class Slow(Regression):
    """Each step takes 20 ms of wall clock (time.sleep)."""

    def loss(self, model: nn.Module, step: int) -> dict[str, torch.Tensor]:
        import time

        time.sleep(0.02)
        return super().loss(model, step)


def test_max_seconds_ends_the_run_like_its_last_step(tmp_path):
    config = TrainerConfig(
        max_steps=10_000, log_every=1000, eval_every=1000, checkpoint_every=1000, max_seconds=0.3
    )
    result = fit(Slow(), model(), config, tmp_path, validate_key="mse")
    assert 1 <= result.steps < 1000 and result.seconds >= 0.3  # far from max_steps
    logged = records(tmp_path)
    last = [r for r in logged if "train/loss" in r][-1]
    assert last["step"] == result.steps and last["time"] >= 0.3
    assert [r["step"] for r in logged if "val/mse" in r] == [result.steps]  # validated once
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == result.steps
    assert (tmp_path / "checkpoints" / "best.pt").exists()
    with pytest.raises(ValueError, match="max_seconds"):
        TrainerConfig(max_seconds=0.0)
    with pytest.raises(ValueError, match="max_seconds"):
        TrainerConfig(max_seconds=1.0, strategy="ddp")
