"""pbdl sample: a real probabilistic run sampled through the CLI (files, metrics, figures,
sampler options), pbdl evaluate on it, and the one-line refusals (deterministic run,
missing checkpoint, bad condition, unknown sampler)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pbdl_cli.data.samples import read_samples
from tests.conftest import run_cli

#: a tiny ddpm on the Gaussian mixture: 2 x 16 MLP, 40 steps, T = 50
DDPM = [
    "problem=gaussian_mixture",
    "method=ddpm",
    "method.T=50",
    "method.ddim_steps=5",
    "method.n_train=256",
    "method.n_val=64",
    "method.samples=200",
    "model=mlp",
    "model.depth=2",
    "model.width=16",
    "model.activation=relu",
    "trainer.max_steps=40",
    "trainer.lbfgs_steps=0",
    "trainer.log_every=10",
    "trainer.eval_every=20",
    "trainer.checkpoint_every=20",
    "device=cpu",
]
#: the parabola's generative half: a conditional ddpm, y = ±sqrt(x)
PARABOLA = [
    "problem=parabola",
    "problem.test_x=[0.25,1.0]",
    *[a for a in DDPM if not a.startswith("problem=")],
]


@pytest.fixture(scope="module")
def gm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gm")
    run = root / "run"
    trained = run_cli("train", *DDPM, f"hydra.run.dir={run}", cwd=root)
    assert trained.returncode == 0, trained.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["sampling"]["evaluations"] == [50]  # ancestral: T evaluations
    assert {"energy", "sliced_w2", "mode_weight_error", "exact_nll"} <= set(summary["test"])
    return run


def test_sample_writes_samples_metrics_and_figures(gm_run: Path) -> None:
    result = run_cli("sample", f"run={gm_run}", "n=300", cwd=gm_run.parent)
    assert result.returncode == 0, result.stderr
    out = gm_run / "sample"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["sampling"]["sampler"] == "ancestral"
    assert metrics["sampling"]["evaluations"] == [50]
    assert metrics["provenance"]["method"] == "ddpm"
    # the exact NLL of fresh GM draws: the mixture's entropy, 2.8174 nats, within 4
    # standard errors at n = 300
    assert metrics["metrics"]["exact_nll"] == pytest.approx(2.8174, abs=0.27)
    stored = read_samples(out / "samples.h5")
    assert tuple(stored.samples.shape) == (1, 300, 2)
    assert stored.reference is not None and tuple(stored.reference.shape) == (1, 300, 2)
    assert stored.sampler == "ancestral" and list(stored.evaluations) == [50]
    assert torch.isfinite(torch.as_tensor(stored.samples)).all()
    figures = metrics["files"]["figures"]
    assert figures and all((out / name).stat().st_size > 1000 for name in figures)


def test_sampler_and_steps_change_the_evaluations(gm_run: Path) -> None:
    result = run_cli(
        "sample", f"run={gm_run}", "sampler=ddim", "steps=7", "n=50", "plots=false",
        cwd=gm_run.parent,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((gm_run / "sample" / "metrics.json").read_text())
    assert metrics["sampling"]["evaluations"] == [7]
    assert metrics["sampling"]["sampler"] == "ddim"


def test_seed_makes_samples_reproducible(gm_run: Path) -> None:
    draws = []
    for _ in range(2):
        result = run_cli(
            "sample", f"run={gm_run}", "n=20", "plots=false", "seed=3", cwd=gm_run.parent
        )
        assert result.returncode == 0, result.stderr
        draws.append(torch.as_tensor(read_samples(gm_run / "sample" / "samples.h5").samples))
    assert torch.equal(draws[0], draws[1])


def test_evaluate_on_a_probabilistic_run_samples(gm_run: Path) -> None:
    result = run_cli("evaluate", f"run={gm_run}", "plots=false", cwd=gm_run.parent)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((gm_run / "eval" / "metrics.json").read_text())
    assert metrics["sampling"]["evaluations"] == [50]
    assert (gm_run / "eval" / "samples.h5").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sampler=euler"], "has no sampler 'euler'"),
        (["condition=[0.5]"], "is unconditional"),
        (["checkpoint=best", "n=1"], "n must be >= 2"),
    ],
)
def test_bad_options_are_refused_in_one_line(gm_run: Path, args: list[str], message: str) -> None:
    result = run_cli("sample", f"run={gm_run}", *args, cwd=gm_run.parent)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_checkpoint_and_directory_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for run, message in ((empty, "has no checkpoints"), (tmp_path / "nope", "does not exist")):
        result = run_cli("sample", f"run={run}", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr


def test_a_deterministic_run_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "pinn"
    trained = run_cli(
        "train", "experiment=parabola_supervised", "model.depth=1", "model.width=4",
        "trainer.max_steps=2", "trainer.checkpoint_every=2", "trainer.eval_every=2",
        f"hydra.run.dir={run}", cwd=tmp_path,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    result = run_cli("sample", f"run={run}", cwd=tmp_path)
    assert result.returncode == 2
    assert "draws no samples" in result.stderr and "Traceback" not in result.stderr


def test_conditional_run_samples_per_condition_and_refuses_bad_conditions(
    tmp_path: Path,
) -> None:
    run = tmp_path / "parabola"
    trained = run_cli("train", *PARABOLA, f"hydra.run.dir={run}", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    result = run_cli("sample", f"run={run}", "n=40", "plots=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    stored = read_samples(run / "sample" / "samples.h5")
    assert tuple(stored.samples.shape) == (2, 40, 1)
    assert stored.condition is not None
    assert torch.as_tensor(stored.condition).reshape(-1).tolist() == [0.25, 1.0]
    metrics = json.loads((run / "sample" / "metrics.json").read_text())
    assert len(metrics["metrics"]["per_condition"]) == 2
    assert "branch_distance" in metrics["metrics"]
    one = run_cli("sample", f"run={run}", "n=10", "plots=false", "condition=[0.5]", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert tuple(read_samples(run / "sample" / "samples.h5").samples.shape) == (1, 10, 1)
    for bad, message in (("condition=[0.5,0.2]", "needs 1 value"), ("condition=[nan]", "finite")):
        result = run_cli("sample", f"run={run}", bad, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
