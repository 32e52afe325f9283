"""SMDP on the toy SDE: the windows of a step (sliding, growing, both directions), the
loss against the generative primitive, the batched epoch loss against the per-step
losses, the samplers, method.init, and the CLI from pbdl generate to pbdl sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.generative.sde import probability_flow_rollout_loss
from pbdl_cli.methods import METHODS
from pbdl_cli.methods.smdp import Smdp, window_size
from pbdl_cli.models import MODELS
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.training.checkpoint import save_checkpoint
from pbdl_cli.utils.seeding import generator
from tests.conftest import run_cli

CPU, F64 = torch.device("cpu"), torch.float64
#: a short toy: t in [0, 1], 51 frames
PROBLEM = ("problem=sde_toy", "problem.t_end=1.0", "problem.frames=51")
MODEL = {"name": "mlp", "widths": [8, 8], "activation": "elu"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("smdp")
    args = ("data.n_train=6", "data.n_val=2", "data.n_test=2", "data.name=tiny", "threads=1")
    done = run_cli("generate", *PROBLEM, *args, cwd=root)
    assert done.returncode == 0, done.stderr
    return root / "datasets" / "sde_toy" / "tiny"


def make(dataset: Path, **options: object) -> Smdp:
    problem = PROBLEMS.build({"name": "sde_toy", "t_end": 1.0, "frames": 51})
    config = METHODS.config({"name": "smdp", "data": str(dataset), **options})
    return METHODS.create(config, problem=problem, device=CPU, dtype=F64)  # type: ignore[return-value]


def model_for(method: Smdp) -> torch.nn.Module:
    return method.build_model(MODELS.config(MODEL))


def test_windows_slide_along_the_reversed_trajectories(dataset: Path):
    method = make(dataset, subsample=5, window=3, bidirectional=True)
    # 51 frames, every 5th from the end: 11 frames at t = 1.0, 0.9, ..., 0
    assert method.times.shape == (11,) and method.times[0] == 1.0 and method.times[-1] == 0
    assert method.positions == 10 and method.steps_per_epoch == 20
    x, t = method.window(0)  # position 0, backwards in time
    assert x.shape == (6, 3, 1)
    torch.testing.assert_close(t, torch.tensor([1.0, 0.9, 0.8], dtype=F64))
    torch.testing.assert_close(x, method.train_x[:, :3])
    x1, t1 = method.window(1)  # the same window in forward time order
    torch.testing.assert_close(t1, t.flip(0))
    torch.testing.assert_close(x1, x.flip(1))
    x, t = method.window(19)  # the last position: cut at t = 0
    assert x.shape == (6, 2, 1) and t.tolist() == pytest.approx([0.0, 0.1])
    x, _ = method.window(20)  # epoch 1 starts over
    torch.testing.assert_close(x, method.train_x[:, :3])
    # the raw data: trajectory 0 starts at +1, 1 at -1, in the reversed order's last frame
    assert method.train_x[0, -1, 0] == 1.0 and method.train_x[1, -1, 0] == -1.0


def test_the_window_grows_every_epochs_per_window_epochs(dataset: Path):
    method = make(dataset, window=2, window_add=3, window_increases=2, epochs_per_window=2)
    sizes = [window_size(method.config, e) for e in range(8)]
    assert sizes == [2, 2, 5, 5, 8, 8, 8, 8]
    per_epoch = method.steps_per_epoch
    assert method.window(2 * per_epoch)[0].shape[1] == 5


def test_loss_is_the_rollout_loss_of_the_step_window(dataset: Path):
    method = make(dataset, subsample=2, bidirectional=False, window=4)
    model = model_for(method)
    x, t = method.window(3)
    terms = method.loss(model, 3)
    expected, _ = probability_flow_rollout_loss(method.score_fn(model), method.drift_fn(), x, t)
    torch.testing.assert_close(terms["loss"], expected)
    assert float(terms["window"]) == 4
    terms["loss"].backward()  # gradients reach the network
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("per_step", [3, 0])
def test_windows_per_step_is_the_mean_of_the_single_windows_losses(dataset: Path, per_step: int):
    single = make(dataset, subsample=5, window=3, val_samples=0)
    method = make(dataset, subsample=5, window=3, val_samples=0, windows_per_step=per_step)
    model = model_for(single)
    k = per_step or 20  # 10 positions, both directions
    assert method.steps_per_epoch == -(-20 // k)
    pairs, size = method.chunk(1)
    assert size == 3 and len(pairs) == k  # (epoch 1 when k = 20)
    with torch.no_grad():
        first = float(method.loss(model, 0)["loss"])
        singles = [float(single.loss(model, s)["loss"]) for s in range(k)]
    assert first == pytest.approx(sum(singles) / k, rel=1e-12)
    if per_step == 3:
        assert method.chunk(6)[0] == [(9, False), (9, True)]  # the last, shorter chunk


@pytest.mark.parametrize("window", [2, 4])
def test_epoch_loss_is_the_sum_of_the_steps_losses(dataset: Path, window: int):
    method = make(dataset, subsample=5, window=window, val_samples=0)
    model = model_for(method)
    with torch.no_grad():
        total = sum(float(method.loss(model, s)["loss"]) for s in range(method.steps_per_epoch))
    values = method.validate(model)
    assert values["train_epoch_loss"] == pytest.approx(total, rel=1e-10)
    assert "epoch_loss" in values  # the val split


def test_samplers_shapes_evaluations_and_start_values(dataset: Path):
    method = make(dataset, val_samples=0)
    model = model_for(method)
    g = generator(0, "t")
    for sampler in ("reverse_sde", "probability_flow"):
        out = method.sample(model, 7, condition=None, sampler=sampler, steps=0, generator=g)
        assert out.x.shape == (7, 1) and out.evaluations == 100  # t_end / 0.01
        assert method.expected_steps(sampler, 0) == 100
    out = method.sample(model, 3, condition=None, sampler="", steps=20, generator=g)
    assert out.evaluations == 20
    starts = method.start_values(5, g)
    torch.testing.assert_close(starts[:, 0], torch.linspace(-0.065, 0.065, 5, dtype=F64))
    drawn = make(dataset, start="data", val_samples=0).start_values(50, g)
    assert set(drawn[:, 0].tolist()) <= set(method.end_states[:, 0].tolist())
    with pytest.raises(PbdlError, match="sampler"):
        method.sample(model, 2, condition=None, sampler="ddim", steps=0, generator=g)
    with pytest.raises(PbdlError, match="condition"):
        method.sample(model, 2, condition=torch.zeros(1), sampler="", steps=0, generator=g)


def test_probability_flow_moves_without_noise_and_validate_scores_both(dataset: Path):
    method = make(dataset, val_samples=4)
    model = model_for(method)
    a = method.sample(model, 4, sampler="probability_flow", generator=generator(1)).x
    b = method.sample(model, 4, sampler="probability_flow", generator=generator(2)).x
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    c = method.sample(model, 4, sampler="reverse_sde", generator=generator(1)).x
    d = method.sample(model, 4, sampler="reverse_sde", generator=generator(2)).x
    assert not torch.equal(c, d)
    values = method.validate(model)
    for key in ("sde_positive_fraction", "ode_near_mode", "ode_mode_distance"):
        assert key in values


def test_predict_returns_paths_on_the_output_grid(dataset: Path):
    method = make(dataset, samples=3, val_samples=0)
    model = model_for(method)
    paths = method.predict(model)
    assert paths.shape == (3, 51, 1) and paths.dtype == F64
    # frame T - 1 is the start value at t_end; frame 0 the sample
    torch.testing.assert_close(paths[:, -1, 0], torch.linspace(-0.065, 0.065, 3, dtype=F64))
    times, full = method.paths(model, 3)
    assert times[0] == 1.0 and times[-1] == pytest.approx(0.0) and full.shape == (3, 101, 1)
    torch.testing.assert_close(paths[:, 0], full[:, -1])


def test_init_loads_weights_and_refuses_others(dataset: Path, tmp_path: Path):
    method = make(dataset)
    model = model_for(method)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    path = tmp_path / "w.pt"
    save_checkpoint(path, {"model": model.state_dict(), "step": 0})
    loaded = model_for(make(dataset, init=str(path)))
    for a, b in zip(model.parameters(), loaded.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    other = make(dataset, init=str(path)).build_model
    with pytest.raises(PbdlError, match="no weights of this model"):
        other(MODELS.config({**MODEL, "widths": [4]}))
    with pytest.raises(PbdlError, match="no such checkpoint"):
        model_for(make(dataset, init=str(tmp_path / "missing.pt")))


def test_refusals(dataset: Path):
    with pytest.raises(PbdlError, match="subsample"):
        make(dataset, subsample=100)
    with pytest.raises(PbdlError, match="window"):
        make(dataset, window=1)
    with pytest.raises(PbdlError, match="generated with other problem settings"):
        problem = PROBLEMS.build({"name": "sde_toy"})  # t_end = 10: other frames
        config = METHODS.config({"name": "smdp", "data": str(dataset)})
        METHODS.create(config, problem=problem, device=CPU, dtype=F64)


def test_cli_generate_train_resume_sample(dataset: Path, tmp_path: Path):
    common = (
        *PROBLEM,
        "method=smdp",
        f"method.data={dataset}",
        "method.subsample=5",
        "method.samples=16",
        "method.val_samples=8",
        "model.widths=[8,8]",
        "model.activation=elu",
        "trainer.lbfgs_steps=0",
        "trainer.scheduler=none",
        "trainer.eval_every=20",
        "trainer.checkpoint_every=20",
    )
    whole = run_cli("train", *common, "trainer.max_steps=40", "hydra.run.dir=a", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    half = run_cli("train", *common, "trainer.max_steps=20", "hydra.run.dir=b", cwd=tmp_path)
    assert half.returncode == 0, half.stderr
    rest = run_cli(
        "train", *common, "trainer.max_steps=40", "hydra.run.dir=b", "resume=true", cwd=tmp_path
    )
    assert rest.returncode == 0, rest.stderr
    a = torch.load(tmp_path / "a/checkpoints/last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b/checkpoints/last.pt", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    summary = json.loads((tmp_path / "a/summary.json").read_text())
    assert summary["sampling"]["sampler"] == "reverse_sde" and summary["sampling"]["samples"] == 16
    assert "mode_weight_error" in summary["test"]
    sampled = run_cli(
        "sample", "run=a", "sampler=probability_flow", "n=8", "plots=false", cwd=tmp_path
    )
    assert sampled.returncode == 0, sampled.stderr
    metrics = json.loads((tmp_path / "a/sample/metrics.json").read_text())
    assert "positive_fraction" in json.dumps(metrics)


def test_the_books_network_is_an_mlp_of_widths_with_elu(dataset: Path):
    method = make(dataset)
    config = {"name": "mlp", "widths": [30, 30, 25, 20, 10], "activation": "elu"}
    model = method.build_model(MODELS.config(config))
    assert sum(p.numel() for p in model.parameters()) == 2536  # the book's haiku MLP
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linear] == [30, 30, 25, 20, 10, 1]
    assert sum(isinstance(m, torch.nn.ELU) for m in model.modules()) == 5
    with pytest.raises(PbdlError, match="widths"):
        MODELS.config({"name": "mlp", "widths": []})
