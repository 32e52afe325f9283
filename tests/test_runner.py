"""pbdl_cli.runner: a single run composes, validates and builds its config once, and the
log records of building reach the run's log."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbdl_cli import runner
from pbdl_cli.stages.generate import Generate


def test_a_single_run_is_built_once_and_its_build_warnings_reach_the_run_log(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, one_thread
):
    calls = []
    build = Generate.build

    def counting(self, cfg):
        calls.append(cfg)
        return build(self, cfg)

    monkeypatch.setattr(Generate, "build", counting)
    run_dir = workdir / "run"
    # nx=32 under-resolves nu=0.01/pi for the spectral solver: building warns about it
    runner.run_stage(
        "generate",
        ["debug=smoke", "problem.nx=32", f"hydra.run.dir={run_dir}", "data.name=once"],
    )
    assert len(calls) == 1
    assert (workdir / "datasets" / "burgers" / "once" / "train.h5").exists()
    log = (run_dir / "generate.log").read_text()
    assert log.count("under-resolves nu=0.0031831") == 1, log


def test_a_sweep_checks_every_value_before_any_job_and_each_job_builds_its_own(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, one_thread
):
    calls = []
    build = Generate.build

    def counting(self, cfg):
        calls.append(cfg.problem.nx)
        return build(self, cfg)

    monkeypatch.setattr(Generate, "build", counting)
    runner.run_stage(
        "generate",
        [
            "-m",
            "debug=smoke",
            "problem.nx=32,48",
            f"hydra.sweep.dir={workdir / 'sweep'}",
            "data.name=nx${problem.nx}",
        ],
    )
    # checked up front (32, 48), then built by each job (32, 48)
    assert calls == [32, 48, 32, 48]
    assert sorted(p.name for p in (workdir / "datasets" / "burgers").iterdir()) == [
        "nx32",
        "nx48",
    ]
