"""pbdl evaluate: the artefacts of a real run, metrics by hand, clean errors, and the
figures and files for time-only and static shapes."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import matplotlib.image
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from pbdl_cli.data.reader import read_trajectories
from pbdl_cli.data.summary import read_info
from pbdl_cli.errors import PbdlError
from pbdl_cli.evaluation import plots, run_figures
from pbdl_cli.evaluation.metrics import per_time, summarize
from pbdl_cli.evaluation.predictions import write_trajectories
from pbdl_cli.evaluation.run_figures import read_records
from pbdl_cli.problems.base import Observations
from pbdl_cli.stages.evaluate import Evaluate, EvaluateSettings, _provenance, evaluate
from tests.conftest import run_cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GENERIC = {"mse", "mae", "max_error", "rel_l2", "nrmse"}
NX, T = 16, 5
TRAIN = [
    "problem=burgers",
    "method=pinn",
    "method.constraints=hard",
    f"problem.nx={NX}",
    "problem.t_end=1.0",
    "problem.dt=0.25",
    "method.n_collocation=64",
    "method.eval_nx=16",
    "method.eval_nt=5",
    "model.depth=2",
    "model.width=8",
    "trainer.max_steps=20",
    "trainer.lbfgs_steps=0",
    "trainer.log_every=5",
    "trainer.eval_every=10",
    "trainer.checkpoint_every=10",
]


def assert_png(path: Path) -> np.ndarray:
    """``path`` is a non-empty PNG that decodes to an image; returns its pixels."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert float(image[..., :3].std()) > 0.01  # not a blank canvas
    return image


def settings_for(run: Path, **overrides: object) -> EvaluateSettings:
    """The evaluate stage's validated settings for ``run`` (in this process)."""
    cfg = OmegaConf.create({"run": str(run), "device": "cpu", **overrides})
    return Evaluate().build(cfg)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """A tiny PINN run on Burgers, evaluated through the CLI."""
    root = tmp_path_factory.mktemp("evaluate")
    run = root / "run"
    trained = run_cli("train", *TRAIN, f"hydra.run.dir={run}", cwd=root)
    assert trained.returncode == 0, trained.stderr
    result = run_cli("evaluate", f"run={run}", cwd=root)
    assert result.returncode == 0, result.stderr
    return run, result


# -- the artefacts of a real run ------------------------------------------------------------
def test_evaluate_writes_metrics_files_and_figures(evaluated) -> None:
    run, result = evaluated
    out = run / "eval"
    assert str(out) in result.stdout and "rel_l2" in result.stdout and "residual" in result.stdout

    report = json.loads((out / "metrics.json").read_text())
    assert report["checkpoint"].endswith("checkpoints/last.pt") and report["step"] == 20
    assert (report["problem"], report["method"], report["model"]) == ("burgers", "pinn", "mlp")
    assert report["shape"] == [1, T, 1, NX] and report["fields"] == ["u"]
    assert report["has_reference"] is True and set(report["params"]) == {"nu"}
    metrics = report["metrics"]
    assert GENERIC | {"residual"} <= set(metrics)
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    # measured on CPU (torch 2.13, one thread): rel_l2 0.50166, residual 0.82161 after 20
    # steps; the same prediction as the run's own test score
    assert 0.45 < metrics["rel_l2"] < 0.55 and 0.74 < metrics["residual"] < 0.90
    summary = json.loads((run / "summary.json").read_text())
    assert metrics["rel_l2"] == pytest.approx(summary["test"]["rel_l2"], rel=1e-6)
    curves = report["per_time"]
    assert curves["t"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert len(curves["rel_l2"]) == len(curves["mae"]) == T
    assert curves["rel_l2"][0] < 1e-5  # hard constraints: exact initial state

    for name, split in (("prediction.h5", "prediction"), ("reference.h5", "reference")):
        info = read_info(out / name)
        assert info.checksum_ok is True
        assert info.fields == {"u": (1, T, 1, NX)} and info.params == {"nu": (1,)}
        assert info.coords == {"t": (T,), "x": (NX,)}
        assert info.split == split and info.problem == "burgers"
        assert info.attrs["method"] == "pinn" and info.attrs["step"] == 20
        assert "nx: 16" in info.attrs["config"]
    shown = run_cli("info", str(out / "prediction.h5"), cwd=run)
    assert shown.returncode == 0 and "verified" in shown.stdout, shown.stderr

    figures = ["space_time_u.png", "slices_u.png", "loss.png", "error_vs_step.png"]
    assert report["files"]["figures"] == figures
    for name in figures:
        assert_png(out / name)
    assert not list(out.glob("*.tmp")) and not list(out.glob("*.partial"))


def test_metrics_equal_a_hand_computation(evaluated) -> None:
    run, _ = evaluated
    report = json.loads((run / "eval" / "metrics.json").read_text())
    s = settings_for(run)
    model = s.method.build_model(s.train.model)
    model.load_state_dict(s.state["model"])
    model.eval()
    p = s.method.predict(model).numpy()
    r = s.problem.reference(s.problem.times(), s.method.params).numpy()
    d = p - r
    expected = {
        "mse": np.mean(d**2),
        "mae": np.mean(np.abs(d)),
        "max_error": np.max(np.abs(d)),
        "rel_l2": np.linalg.norm(d) / np.linalg.norm(r),
        "nrmse": np.sqrt(np.mean(d**2)) / np.sqrt(np.mean(r**2)),
    }
    for name, value in expected.items():
        assert report["metrics"][name] == pytest.approx(value, rel=1e-9), name
    frames = np.linalg.norm(d[0].reshape(T, -1), axis=1) / np.linalg.norm(
        r[0].reshape(T, -1), axis=1
    )
    assert np.allclose(report["per_time"]["rel_l2"][1:], frames[1:], rtol=1e-9)
    assert np.allclose(report["per_time"]["mae"], np.abs(d[0]).reshape(T, -1).mean(1), rtol=1e-9)
    # the files hold the same numbers in float32
    stored = read_trajectories(run / "eval" / "prediction.h5")
    assert np.allclose(stored["fields"]["u"], p, atol=1e-6)
    assert np.allclose(
        read_trajectories(run / "eval" / "reference.h5")["fields"]["u"], r, atol=1e-6
    )
    assert np.allclose(stored["coords"]["x"], s.problem.coords()["x"].numpy())


def test_residual_problem_metrics_and_observations(evaluated, tmp_path: Path) -> None:
    run, _ = evaluated
    s = settings_for(run, plots=False, checkpoint="last")
    assert s.checkpoint.name == "last.pt"
    times = s.problem.times()
    reference = s.problem.reference(times, s.method.params)
    # three observations on the output grid, with the reference's values there
    frame, cell = torch.tensor([0, 2, 4]), torch.tensor([1, 7, 15])
    x = s.problem.coords()["x"][cell][:, None]
    obs = Observations(
        x=x, t=times[frame][:, None], u=reference[0, frame, :, cell], frame=frame, cell=cell
    )
    s.problem.observations = lambda params: obs
    s.problem.metrics = lambda prediction, params: {"branch": 0.5, "mse": 7.0}
    s.method.residual = lambda model: 0.125
    report = evaluate(s, tmp_path)
    metrics = report["metrics"]
    assert metrics["residual"] == 0.125 and metrics["branch"] == 0.5
    assert metrics["burgers/mse"] == 7.0 and metrics["mse"] != 7.0  # no clash with generic
    prediction = read_trajectories(tmp_path / "prediction.h5")["fields"]["u"][0, :, 0]
    misfit = np.mean((prediction[frame, cell] - obs.u[:, 0].numpy()) ** 2)
    assert metrics["observation_mse"] == pytest.approx(misfit, rel=1e-4, abs=1e-9)
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"] == metrics
    assert "figures" not in report["files"] and not list(tmp_path.glob("*.png"))


# -- errors ---------------------------------------------------------------------------------
def test_missing_run_or_checkpoint_is_one_clean_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for run, needle in (("nope", "run directory nope does not exist"), ("empty", "no checkpoints")):
        result = run_cli("evaluate", f"run={run}", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # nothing written
    assert not list((tmp_path / "empty").iterdir())


def test_checkpoint_choice_and_damaged_checkpoints(evaluated, tmp_path: Path) -> None:
    run, _ = evaluated
    copy = tmp_path / "run"
    (copy / "checkpoints").mkdir(parents=True)
    shutil.copy(run / "checkpoints" / "last.pt", copy / "checkpoints" / "last.pt")
    assert settings_for(copy).checkpoint.name == "last.pt"  # the default
    assert settings_for(copy, checkpoint="best").checkpoint.name == "last.pt"  # fallback
    assert settings_for(run, checkpoint="best").checkpoint.name == "best.pt"

    state = torch.load(run / "checkpoints" / "best.pt", weights_only=False)
    cases = {
        "not a readable checkpoint": b"garbage",
        "holds no train config": {k: v for k, v in state.items() if k != "config"},
        "which is not registered here": {**state, "plugins": {"problem": "nope"}},
        "do not fit the model": {**state, "model": {"layers.0.weight": torch.zeros(3)}},
    }
    for needle, content in cases.items():
        path = copy / "checkpoints" / "last.pt"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            torch.save(content, path)
        with pytest.raises(PbdlError, match=needle) as error:
            evaluate(settings_for(copy, plots=False), tmp_path / "out")
        assert error.value.exit_code == 2
    with pytest.raises(PbdlError, match="does not exist"):
        settings_for(tmp_path / "missing")


# -- shapes without a space-time image ----------------------------------------------------------
def test_plots_for_time_only_static_and_2d_shapes(tmp_path: Path) -> None:
    t = np.linspace(0, 1, 21)
    u = np.stack([np.exp(-2 * t) * np.cos(20 * t), np.sin(5 * t)], axis=1)  # [T, C]
    obs = {"t": t[:8:2], "x": np.zeros((4, 0)), "u": u[:8:2]}
    written = run_figures.plot_prediction(
        tmp_path / "ode",
        u,
        u + 0.01,
        t,
        {},
        fields=["u", "v"],
        observations=obs,
    )
    assert [p.name for p in written] == ["time_series.png"]
    assert (
        assert_png(written[0]).shape[0]
        > assert_png(
            plots.plot_time_series(tmp_path / "one.png", u[:, :1], None, t, fields=["u"])
        ).shape[0]
    )  # one panel per channel

    x = np.linspace(-1, 1, 32)
    y = (x**2)[None, None]  # [T=1, C=1, X]
    scatter = {"t": np.zeros(50), "x": np.linspace(-1, 1, 50)[:, None], "u": np.ones((50, 1))}
    written = run_figures.plot_prediction(
        tmp_path / "static", y, y * 1.1, np.zeros(1), {"x": x}, fields=["y"], observations=scatter
    )
    assert [p.name for p in written] == ["profile.png"]
    assert_png(written[0])

    field = np.random.default_rng(0).normal(size=(3, 1, 8, 6))  # [T, C, X, Y]
    axes = {"x": np.arange(8.0), "y": np.arange(6.0)}
    written = run_figures.plot_prediction(
        tmp_path / "2d", field, None, np.arange(3.0), axes, fields=["w"]
    )
    assert [p.name for p in written] == [
        "frames_w.png",
        "anim_w.gif",
    ]  # tests/evaluation/test_gallery.py
    assert_png(written[0])
    # a single value (no space, one frame) has no figure; the metrics say everything
    assert (
        run_figures.plot_prediction(
            tmp_path / "0d", np.ones((1, 1)), None, np.zeros(1), {}, fields=["u"]
        )
        == []
    )


def test_space_time_without_reference_and_loss_curves(tmp_path: Path) -> None:
    t, x = np.linspace(0, 1, 6), np.linspace(-1, 1, 10)
    u = np.sin(np.pi * x)[None] * np.exp(-t)[:, None]  # [T, X]
    path = plots.plot_space_time(tmp_path / "st.png", u, None, t, x, points=(x[:3], t[:3]))
    with_ref = plots.plot_space_time(tmp_path / "st_ref.png", u, u * 0.9, t, x)
    assert assert_png(with_ref).shape[1] > assert_png(path).shape[1]  # three panels vs one
    assert_png(plots.plot_slices(tmp_path / "sl.png", u, None, t, x, count=3))

    records = [
        {
            "step": s,
            "phase": "adam" if s <= 4 else "lbfgs",
            "train/loss": 1 / s,
            "train/pde": 0.5 / s,
        }
        for s in range(1, 7)
    ] + [{"step": 4, "val/rel_l2": 0.3}, {"no": "step"}]
    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records) + '[1, 2]\n{"step": 7, "tra')
    assert read_records(log) == records  # a list and a line cut by a crash are skipped
    assert_png(plots.plot_losses(tmp_path / "loss.png", records))
    assert plots.plot_losses(tmp_path / "none.png", [{"step": 1, "time": 0.1}]) is None
    assert not (tmp_path / "none.png").exists()


def test_prediction_files_for_time_only_and_static_shapes(tmp_path: Path) -> None:
    cfg = OmegaConf.create(
        {"solver": {"name": "none"}, "method": {"name": "pinn"}, "model": {"name": "mlp"}}
    )
    for name, values, coords in (
        ("ode.h5", torch.randn(1, 11, 1, dtype=torch.float64), {}),
        ("static.h5", torch.randn(1, 1, 1, 9, dtype=torch.float64), {"x": torch.linspace(0, 1, 9)}),
    ):
        times = torch.linspace(0, 1, values.shape[1], dtype=torch.float64)
        s = SimpleNamespace(
            problem=SimpleNamespace(name="toy", fields=("u",)),
            method=SimpleNamespace(params={"k": torch.tensor([400.0])}, needs_solver=False),
            train=cfg,
            run=tmp_path,
            checkpoint=tmp_path / "best.pt",
        )
        attrs = _provenance(s, times, kind="prediction", step=3)
        path = write_trajectories(
            tmp_path / name, values, times, coords, fields=("u",), params=s.method.params,
            attrs=attrs,
        )  # fmt: skip
        info = read_info(path)
        assert info.checksum_ok is True and info.split == "prediction"
        assert info.fields == {"u": tuple(values.shape)} and set(info.coords) == {"t", *coords}
        stored = read_trajectories(path)
        assert np.allclose(stored["fields"]["u"], values.numpy(), atol=1e-6)
        assert stored["params"]["k"].tolist() == [400.0]
        assert info.attrs["dt"] == (0.1 if values.shape[1] > 1 else 0.0)


def test_metric_helpers_average_trajectories() -> None:
    p = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [1.0, 1.0]]])  # [B=2, T=2, 2]
    r = torch.ones(2, 2, 2)
    values = summarize(p, r)
    assert values["mse"] == pytest.approx(((0 + 1 + 4 + 9) / 4 + (1 + 1 + 0 + 0) / 4) / 2)
    assert values["max_error"] == pytest.approx((3 + 1) / 2)
    curves = per_time(p, r)
    assert curves["mae"] == pytest.approx([(0.5 + 1) / 2, (2.5 + 0) / 2])
    assert curves["rel_l2"][1] == pytest.approx((math.sqrt(13) / math.sqrt(2) + 0) / 2)
