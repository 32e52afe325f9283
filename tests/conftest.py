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


#: exit status of a CLI subprocess that imported another copy of pbdl_cli
WRONG_PACKAGE = 97
#: ``python -m pbdl_cli`` that first checks which copy of the package Python imported
_CHECKED_MAIN = f"""
import pathlib, runpy, sys
expected = pathlib.Path(sys.argv.pop(1)).resolve()
import pbdl_cli
found = pathlib.Path(pbdl_cli.__file__).resolve().parent.parent
if found != expected:
    print(f"pbdl_cli from {{found}}, not the tree under test {{expected}}", file=sys.stderr)
    sys.exit({WRONG_PACKAGE})
sys.argv[0] = "pbdl"
runpy.run_module("pbdl_cli", run_name="__main__", alter_sys=True)
"""


def cli_command(*args: str, package: Path = REPO) -> list[str]:
    """The command line of ``pbdl ARGS`` run from the tree ``package`` (checked: the
    subprocess exits with WRONG_PACKAGE if Python imports pbdl_cli from anywhere else)."""
    return [sys.executable, "-c", _CHECKED_MAIN, str(package), *args]


def cli_script(directory: Path) -> Path:
    """:data:`_CHECKED_MAIN` as a script file, for launchers that run a file (torchrun);
    its first argument is the tree the package must come from."""
    path = directory / "checked_pbdl.py"
    path.write_text(_CHECKED_MAIN)
    return path


def cli_env(env: dict[str, str] | None = None, package: Path = REPO) -> dict[str, str]:
    """The environment of a CLI subprocess: ``package`` first on the path."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("PBDL_DEBUG", None)
    paths = [str(package), *filter(None, full_env.get("PYTHONPATH", "").split(os.pathsep))]
    full_env["PYTHONPATH"] = os.pathsep.join(paths)
    return full_env


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    package: Path = REPO,
):
    """Run ``pbdl ARGS`` in a subprocess (the real CLI, as a user would), from the tree
    ``package`` (this checkout unless told otherwise; see :func:`cli_command`)."""
    return subprocess.run(
        cli_command(*args, package=package),
        cwd=cwd,
        env=cli_env(env, package),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (bit-for-bit comparisons, no oversubscription
    when pytest-xdist runs a worker per core)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean working directory for commands that write outputs/ and datasets/."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
