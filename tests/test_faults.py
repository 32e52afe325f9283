"""Faults a user meets (issue 11): each ends in one line on stderr and a documented exit
code (docs/cli.md), with no traceback, and earlier results stay intact.

This module holds the run-level cases; the others live beside the code they guard. The
issue's numbered cases and where each is tested:

1. code in a checkpoint: ``test_opening_a_checkpoint_never_runs_code_stored_in_it``
2. a finished run trained over: ``test_a_finished_run_is_not_trained_over_unless_asked``
3. resume from the run's config, history kept: tests/stages/test_resume.py
4. one seed: tests/stages/test_resume.py::test_one_seed_seeds_the_whole_run
5. tampered dataset bytes: tests/methods/test_grid.py (``..._refused_before_training``),
   every array and attribute: tests/data/test_checksum.py
6. a full disk (injected and a real tmpfs), 7. unwritable locations, 9. sizes that cannot
   fit: tests/test_faults_disk.py
8. non-finite and out-of-range values: ``test_non_finite_and_out_of_range_values_...``
10. showing a config: ``test_showing_a_config_does_not_depend_on_what_is_on_disk``
11. hollow obstacles, both pressure solves: tests/numerics/test_regions.py
12. moving walls, the lid-driven cavity against Ghia et al.: tests/solvers/test_ns_walls.py
13. parabolic inflow: tests/solvers/test_ns_walls.py
14. CG convergence at the requested tolerance: tests/numerics/test_pressure.py
15. CUDA: tests/test_cuda.py (skipped, and reported so, without a CUDA device)
16. progress without a terminal: tests/utils/test_progress.py
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import torch

from tests.conftest import run_cli


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_a_finished_run_is_not_trained_over_unless_asked(workdir: Path):
    first = run_cli("train", "debug=smoke", "hydra.run.dir=run", cwd=workdir)
    assert first.returncode == 0, first.stderr
    summary = (workdir / "run" / "summary.json").read_bytes()
    last = (workdir / "run" / "checkpoints" / "last.pt").read_bytes()
    metrics = (workdir / "run" / "metrics.jsonl").read_bytes()

    again = run_cli("train", "debug=smoke", "trainer.max_steps=2", "hydra.run.dir=run", cwd=workdir)
    assert_one_line_error(again, 2, "already holds a run", "resume=true", "overwrite=true")
    assert (workdir / "run" / "summary.json").read_bytes() == summary
    assert (workdir / "run" / "checkpoints" / "last.pt").read_bytes() == last
    assert (workdir / "run" / "metrics.jsonl").read_bytes() == metrics

    replaced = run_cli(
        "train",
        "debug=smoke",
        "trainer.max_steps=2",
        "overwrite=true",
        "hydra.run.dir=run",
        cwd=workdir,
    )
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads((workdir / "run" / "summary.json").read_text())["steps"] == 3
    logged = (workdir / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in logged if "train/loss" in r] == [1, 2, 3]


def test_showing_a_config_does_not_depend_on_what_is_on_disk(workdir: Path):
    assert run_cli("generate", "debug=smoke", cwd=workdir).returncode == 0
    again = run_cli("generate", "debug=smoke", cwd=workdir)
    assert_one_line_error(again, 2, "already exists", "overwrite=true")
    shown = run_cli("show", "generate", "debug=smoke", cwd=workdir)
    assert shown.returncode == 0 and "n_train: 2" in shown.stdout, shown.stderr
    printed = run_cli("generate", "debug=smoke", "--cfg", "job", cwd=workdir)
    assert printed.returncode == 0 and "n_train: 2" in printed.stdout, printed.stderr


def test_non_finite_and_out_of_range_values_are_refused_before_anything_runs(workdir: Path):
    for stage, override, needle in [
        ("train", "trainer.lr=nan", "trainer.lr: must be a finite number (got nan)"),
        ("train", "threads=0", "threads must be >= 1"),
        ("train", "problem.nu=nan", "problem.nu: must be a finite number"),
        ("generate", "problem.nu_range=[0.01,inf]", "problem.nu_range[1]: must be a finite"),
        ("generate", "threads=0", "threads must be >= 1"),
    ]:
        result = run_cli(stage, "debug=smoke", override, cwd=workdir)
        assert_one_line_error(result, 2, needle)
    assert not (workdir / "outputs").exists() and not (workdir / "datasets").exists()


class _Payload:
    """Unpickling this would create the file ``marker`` (as any command could run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_opening_a_checkpoint_never_runs_code_stored_in_it(workdir: Path):
    trained = run_cli("train", "debug=smoke", "hydra.run.dir=run", cwd=workdir)
    assert trained.returncode == 0, trained.stderr
    marker = workdir / "marker"
    last = workdir / "run" / "checkpoints" / "last.pt"
    payload = torch.load(last, weights_only=True)
    payload["extra"] = _Payload(marker)
    torch.save(payload, last)
    evaluated = run_cli("evaluate", "run=run", cwd=workdir)
    assert_one_line_error(evaluated, 2, "not a pbdl checkpoint", "could run code")
    resumed = run_cli("train", "debug=smoke", "resume=true", "hydra.run.dir=run", cwd=workdir)
    assert resumed.returncode != 0 and "could run code" in resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert not marker.exists()
