"""Shared fixtures and helpers for the test suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from pbdl_cli.plugins import load_plugins

load_plugins()

REPO = Path(__file__).resolve().parents[1]


def build(problem: dict[str, Any], solver: dict[str, Any] | None = None):
    """A (problem, solver) pair from plain dicts of overrides of the schema defaults."""
    from pbdl_cli.problems import PROBLEMS
    from pbdl_cli.solvers import SOLVERS

    p = PROBLEMS.build({"name": "burgers", **problem})
    s = SOLVERS.build({"name": "burgers_spectral", **(solver or {})}, problem=p)
    return p, s


def initial(problem, batch: int = 1, seed: int = 0, dtype=torch.float64):
    """Parameters and initial states of ``batch`` trajectories."""
    g = torch.Generator().manual_seed(seed)
    params = problem.sample_params(batch, g)
    u0 = problem.initial_state(params, g).to(dtype)
    return {k: v.to(dtype) for k, v in params.items()}, u0


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    """Run ``python -m pbdl_cli ARGS`` in a subprocess (the real CLI, as a user would)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("PBDL_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "pbdl_cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean working directory for commands that write outputs/ and datasets/."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
