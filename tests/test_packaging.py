"""The config tree ships inside the package: a regular wheel install finds it too."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO, run_cli


def test_wheel_contains_configs_and_runs_from_an_unpacked_install(tmp_path: Path):
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(wheels),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheels.glob("pbdl-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    for required in (
        "pbdl_cli/conf/generate.yaml",
        "pbdl_cli/conf/evaluate.yaml",
        "pbdl_cli/conf/hydra/job_logging/pbdl.yaml",
        "pbdl_cli/conf/experiment/burgers_book.yaml",
    ):
        assert required in names, f"{required} missing from {wheel.name}"
    assert not any(n.startswith(("tests/", "scripts/")) for n in names)

    # run from an unrelated directory with the unpacked wheel first on the path
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {"PYTHONPATH": str(tmp_path / "site")}
    where = subprocess.run(
        [sys.executable, "-c", "import pbdl_cli; print(pbdl_cli.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.strip().startswith(str(tmp_path / "site")), where
    shown = run_cli(
        "show", "generate", "experiment=burgers_book", cwd=work, package=tmp_path / "site"
    )
    assert shown.returncode == 0, shown.stderr
    assert "name: burgers_sl" in shown.stdout
    made = run_cli(
        "generate",
        "problem.nx=16",
        "problem.t_end=0.1",
        "problem.dt=0.05",
        "data.n_train=1",
        "data.n_val=0",
        "data.n_test=0",
        cwd=work,
        package=tmp_path / "site",
    )
    assert made.returncode == 0, made.stderr
    assert list(work.glob("datasets/burgers/*/train.h5"))
