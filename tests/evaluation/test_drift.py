"""Drift (rollout) metrics (pbdl_cli/evaluation/drift.py) against hand computations, and their
place in ``pbdl evaluate``'s metrics.json and figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.image
import pytest
import torch
from omegaconf import OmegaConf

from pbdl_cli.evaluation import plots
from pbdl_cli.evaluation.drift import (
    correlation,
    correlation_time,
    energy_spectrum,
    rollout_summary,
    spectral_errors,
)
from pbdl_cli.evaluation.metrics import per_frame
from pbdl_cli.methods import build_method
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.runner import compose
from pbdl_cli.stages.evaluate import Evaluate, evaluate
from pbdl_cli.stages.train import train_config
from pbdl_cli.training.checkpoint import save_checkpoint

N = 32
X = torch.arange(N, dtype=torch.float64) * 2 * math.pi / N  # periodic grid on [0, 2 pi)


def frames(*fields: torch.Tensor) -> torch.Tensor:
    """1D fields [X] as the frames of one trajectory: [B=1, T, C=1, X]."""
    return torch.stack(fields)[None, :, None]


def approx(value: float) -> object:
    return pytest.approx(value, rel=1e-10, abs=1e-12)


# -- point-wise errors and correlation --------------------------------------------------------
def test_identity_negation_and_scaling() -> None:
    r = frames(torch.sin(X), torch.sin(2 * X) + 0.3 * torch.cos(5 * X))  # [1, 2, 1, X]
    for p, corr, rel, spectral in (
        (r, 1.0, 0.0, 0.0),
        (-r, -1.0, 2.0, 0.0),  # the same spectrum: phases are not seen
        (2 * r, 1.0, 1.0, 3.0),  # E^p = 4 E^r
    ):
        assert correlation(p, r).flatten().tolist() == [approx(corr)] * 2
        for name in ("rel_l2", "nrmse"):
            assert per_frame(name, p, r).flatten().tolist() == [approx(rel)] * 2
        errors = spectral_errors(p, r, periodic=True)
        assert errors["spectral_error"].flatten().tolist() == [approx(spectral)] * 2
    # mse and mae per frame: p - r = r at frame 0 (sin: mean square 1/2, mean |.| 2/pi)
    assert float(per_frame("mse", 2 * r, r)[0, 0]) == approx(0.5)
    assert float(per_frame("mae", 2 * r, r)[0, 0]) == pytest.approx(2 / math.pi, rel=1e-2)


def test_phase_shift_gives_cosine_correlation() -> None:
    r = frames(*[torch.sin(3 * X)] * 4)
    phases = [0.0, 0.3, 1.0, 2.5]
    p = frames(*[torch.sin(3 * X + phi) for phi in phases])
    assert correlation(p, r).flatten().tolist() == [approx(math.cos(phi)) for phi in phases]
    rel = per_frame("rel_l2", p, r).flatten()
    assert rel.tolist() == [approx(2 * abs(math.sin(phi / 2))) for phi in phases]
    errors = spectral_errors(p, r, periodic=True)
    assert errors["spectral_error"].abs().max() < 1e-12  # same spectrum
    assert torch.allclose(errors["rel_l2_low"][0], rel, atol=1e-12)  # mode 3: low band
    assert errors["rel_l2_high"].abs().max() < 1e-12


def test_degenerate_constant_fields_are_nan() -> None:
    r = frames(torch.sin(X), torch.ones(N), torch.sin(X), torch.cos(X))
    p = frames(torch.full((N,), 2.0), torch.ones(N), torch.sin(X) + 1e-17, torch.cos(X))
    rho = correlation(p, r)[0]
    assert math.isnan(rho[0]) and math.isnan(rho[1])  # constant prediction; both constant
    assert rho[2:].tolist() == [approx(1.0)] * 2
    # one value per frame (a time-only problem with one channel) is constant too
    assert torch.isnan(correlation(torch.randn(2, 3, 1), torch.randn(2, 3, 1))).all()
    # trajectory means skip undefined trajectories; frames undefined everywhere stay NaN
    two = torch.cat([frames(torch.sin(X), torch.sin(X)), frames(torch.sin(X), torch.zeros(N))])
    summary = rollout_summary(two, two.clone(), torch.tensor([0.0, 1.0]))
    assert summary.per_time["corr"] == [approx(1.0)] * 2  # nanmean over one trajectory
    summary = rollout_summary(two * 0 + 1, two, torch.tensor([0.0, 1.0]))
    assert all(math.isnan(v) for v in summary.per_time["corr"])
    assert summary.metrics["corr_time_frame"] == 1.0 and not summary.info["corr_time_reached"]


# -- correlation time -----------------------------------------------------------------------
def test_correlation_time_of_a_decorrelating_sequence() -> None:
    # p_k = cos(a_k) r + sin(a_k) s with r, s orthogonal, zero-mean, equal norms: corr cos(a_k)
    r, s = torch.sin(2 * X), torch.cos(2 * X)
    first = [1.0, 0.95, 0.85, 0.79, 0.5, 0.9]  # recovers after frame 3: the first drop counts
    second = [1.0, 0.95, 0.75, 0.81, 0.5, 0.9]
    trajectories = [
        frames(*[c * r + math.sqrt(1 - c * c) * s for c in curve]) for curve in (first, second)
    ]
    p = torch.cat(trajectories)
    ref = torch.cat([frames(*[r] * 6)] * 2)
    rho = correlation(p, ref)
    assert torch.allclose(rho, torch.tensor([first, second], dtype=torch.float64), atol=1e-12)
    mean = rho.mean(dim=0)  # [1, 0.95, 0.8, 0.8, 0.5, 0.9]
    times = torch.arange(6, dtype=torch.float64) * 0.1
    crossing = correlation_time(mean, times)
    assert (crossing.frame, crossing.reached) == (4, True)  # 0.8 is not below 0.8
    assert crossing.time == approx(0.4)
    assert correlation_time(mean, times, threshold=0.9).frame == 2
    never = correlation_time(mean, times, threshold=0.1)
    assert (never.frame, never.time, never.reached) == (5, approx(0.5), False)
    with_nan = torch.tensor([1.0, math.nan, 0.7])
    assert correlation_time(with_nan, times[:3]).frame == 2  # NaN frames never count
    summary = rollout_summary(p, ref, times, threshold=0.9)
    assert summary.metrics["corr_time"] == approx(0.2) and summary.metrics["corr_time_frame"] == 2
    assert summary.info == {
        "spatial_dims": 1,
        "corr_threshold": 0.9,
        "corr_time_reached": True,
        "periodic": False,
    }


# -- spectra --------------------------------------------------------------------------------
def test_high_frequency_noise_lands_in_the_high_band() -> None:
    r = frames(torch.sin(X), torch.sin(X))
    p = r + 0.1 * frames(torch.cos(14 * X), torch.cos(3 * X))  # frame 0: high, frame 1: low
    errors = spectral_errors(p, r, periodic=True)
    assert errors["rel_l2_high"].flatten().tolist() == [approx(0.1), approx(0.0)]
    assert errors["rel_l2_low"].flatten().tolist() == [approx(0.0), approx(0.1)]
    # disjoint modes: the noise adds 0.1^2 of the energy
    assert errors["spectral_error"].flatten().tolist() == [approx(0.01)] * 2
    # for any fields the halves split rel_l2 (Parseval), periodic or evenly extended
    g = torch.Generator().manual_seed(0)
    p, r = (torch.randn(2, 3, 2, 12, 10, generator=g, dtype=torch.float64) for _ in range(2))
    rel = per_frame("rel_l2", p, r)
    for periodic in (True, False):
        errors = spectral_errors(p, r, periodic=periodic)
        split = errors["rel_l2_low"].square() + errors["rel_l2_high"].square()
        assert torch.allclose(split, rel.square(), rtol=1e-12)


def test_spectrum_shells_in_1d_and_2d() -> None:
    e, centres = energy_spectrum(torch.cos(5 * X)[None], dims=1, periodic=True)  # C = 1
    assert e.shape == (N // 2 + 1,) and centres[-1] == 1.0 and centres[5] == approx(5 / 16)
    assert float(e[5]) == approx(N / 2) and float(e.sum() - e[5]) == approx(0.0)

    i, j = torch.meshgrid(*[torch.arange(8, dtype=torch.float64)] * 2, indexing="ij")
    wave = torch.cos(2 * math.pi * (3 * i + 4 * j) / 8)[None]  # modes (+-3, +-4)
    e, centres = energy_spectrum(wave, dims=2, periodic=True)
    assert e.shape == (7,)  # shells 0 .. round(4 sqrt(2)) = 6
    assert float(e[5]) == approx(float(wave.square().sum()))  # |(3, 4)| = 5: all in shell 5
    assert float(e.sum() - e[5]) == approx(0.0)
    # non-square 8 x 4: q = sqrt((2 m_1 / 8)^2 + (2 m_2 / 4)^2), shell width 2 / 4
    i, j = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in (8, 4)], indexing="ij")
    wave = torch.sin(2 * math.pi * (2 * i / 8 + j / 4))[None]  # q = sqrt(1/2)
    e, _ = energy_spectrum(wave, dims=2, periodic=True)
    assert e.shape == (4,) and float(e[1]) == approx(float(wave.square().sum()))
    # the even extension of a non-periodic field holds 2^D times its energy
    field = torch.randn(2, 1, 6, 5, dtype=torch.float64)
    e, _ = energy_spectrum(field, dims=2, periodic=False)
    assert torch.allclose(e.sum(dim=-1), 4 * field.square().sum(dim=(1, 2, 3)))


def test_even_extension_keeps_a_ramp_out_of_the_high_band() -> None:
    ramp = torch.linspace(0.0, 1.0, N, dtype=torch.float64)[None]  # [C, X], not periodic
    share = {}
    for periodic in (True, False):
        e, centres = energy_spectrum(ramp, dims=1, periodic=periodic)
        share[periodic] = float(e[centres > 0.5].sum() / e.sum())
    assert share[False] < 1e-3 < 1e-2 < share[True]  # the jump leaks when taken periodic


def test_summary_of_time_only_and_static_problems() -> None:
    p, r = torch.randn(2, 5, 3, dtype=torch.float64), torch.randn(2, 5, 3, dtype=torch.float64)
    summary = rollout_summary(p, r, torch.linspace(0, 1, 5))
    assert set(summary.per_time) == {"mse", "nrmse"} and set(summary.metrics) == {"rel_l2_last"}
    rel = (p - r)[:, -1].norm(dim=-1) / r[:, -1].norm(dim=-1)
    assert summary.metrics["rel_l2_last"] == approx(float(rel.mean()))
    assert spectral_errors(p, r) is None
    assert rollout_summary(p[:, :1], r[:, :1], torch.zeros(1)) is None  # static: no rollout


def test_error_vs_step_figure(tmp_path: Path) -> None:
    t = [0.0, 0.5, 1.0, 1.5]
    path = plots.plot_error_vs_step(
        tmp_path / "e.png",
        t,
        [0.0, 0.1, None, 0.4],
        [1.0, 0.9, 0.7, None],
        threshold=0.8,
        corr_frame=2,
    )
    assert matplotlib.image.imread(path).shape[0] > 100
    flat = plots.plot_error_vs_step(tmp_path / "zero.png", t, [0.0] * 4)  # nothing positive
    assert flat.is_file() and not list(tmp_path.glob("*.tmp"))


# -- pbdl evaluate --------------------------------------------------------------------------
TRAIN = [
    "problem=burgers",
    "method=pinn",
    "method.constraints=hard",
    "problem.nx=16",
    "problem.t_end=1.0",
    "problem.dt=0.25",
    "method.eval_nx=16",
    "method.eval_nt=5",
    "model.depth=2",
    "model.width=8",
]


def test_evaluate_writes_rollout_metrics_for_a_burgers_pinn(tmp_path: Path) -> None:
    """An (untrained) Burgers PINN checkpoint, evaluated in this process."""
    cfg = compose("train", TRAIN)
    train = train_config(cfg)
    problem = PROBLEMS.create(train.problem)
    method = build_method(
        train.method, train.solver, problem=problem, device=torch.device("cpu"), dtype=torch.float64
    )
    torch.manual_seed(0)
    model = method.build_model(train.model)
    run = tmp_path / "run"
    payload = {
        "model": model.state_dict(),
        "step": 0,
        "config": OmegaConf.to_yaml(cfg, resolve=True),
        "plugins": {k: cfg[k].name for k in ("problem", "model", "method")},
    }
    save_checkpoint(run / "checkpoints" / "last.pt", payload)
    s = Evaluate().build(OmegaConf.create({"run": str(run), "device": "cpu"}))
    report = evaluate(s, run / "eval")
    assert json.loads((run / "eval" / "metrics.json").read_text()) == report

    curves, metrics = report["per_time"], report["metrics"]
    assert set(curves) == {"t", "rel_l2", "mae", "mse", "nrmse", "corr", "spectral_error"}
    assert all(len(v) == 5 for v in curves.values())
    new = {"corr_time", "corr_time_frame", "spectral_error", "rel_l2_last"}
    assert new | {"rel_l2", "mse", "residual", "rel_l2_low", "rel_l2_high"} <= set(metrics)
    assert report["rollout"]["periodic"] is False and report["rollout"]["corr_threshold"] == 0.8
    # the same numbers as the functions on the prediction
    model = s.method.build_model(s.train.model)  # in the run's dtype
    model.load_state_dict(s.state["model"])
    p = s.method.predict(model.eval()).detach().double()
    times = s.problem.times().double()
    r = s.problem.reference(times, s.method.params)
    summary = rollout_summary(p, r, times)
    for key in new:
        assert metrics[key] == pytest.approx(summary.metrics[key], rel=1e-9, abs=1e-12), key
    assert curves["corr"] == pytest.approx(summary.per_time["corr"], rel=1e-9)
    assert curves["corr"][0] == pytest.approx(1.0)  # hard constraints: exact initial state
    frame = int(metrics["corr_time_frame"])
    assert metrics["corr_time"] == curves["t"][frame]
    assert metrics["rel_l2_last"] == pytest.approx(curves["rel_l2"][-1], rel=1e-12)
    assert "error_vs_step.png" in report["files"]["figures"]
    assert matplotlib.image.imread(run / "eval" / "error_vs_step.png").shape[0] > 100

    # a constant prediction: correlation undefined (null) in every frame, never below theta
    s.method.predict = lambda model: torch.zeros_like(p)
    report = evaluate(s, tmp_path / "constant")
    assert report["per_time"]["corr"] == [None] * 5
    assert report["metrics"]["corr_time_frame"] == 4.0
    assert report["rollout"]["corr_time_reached"] is False
    assert report["metrics"]["spectral_error"] == pytest.approx(1.0)  # all energy missing
    assert report["metrics"]["rel_l2_last"] == pytest.approx(1.0)
    low, high = report["metrics"]["rel_l2_low"], report["metrics"]["rel_l2_high"]
    assert 0 <= low <= 1 and 0 <= high <= 1 and low + high >= 1  # low^2 + high^2 = 1 per frame
