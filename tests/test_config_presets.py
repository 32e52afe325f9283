"""The config tree: every experiment preset composes in the stage it is meant for (alone
and with debug=smoke), a problem name means one problem in every stage, debug=smoke runs
in seconds, and a project's own conf/ folder is found, with the documented precedence
packaged < project conf/ < -cd < command line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pbdl_cli.runner import compose
from pbdl_cli.search_path import ENV_VAR
from tests.conftest import REPO, run_cli

PRESETS = REPO / "pbdl_cli" / "conf" / "experiment"
NAMES = sorted(p.stem for p in PRESETS.glob("*.yaml"))


def stages_of(name: str) -> list[str]:
    """The stages a preset's header names for it: ``pbdl <stage> experiment=<name>``, or
    generate and train for a shared part that says it is "not meant to be used alone"."""
    text = " ".join(
        line.lstrip("# ")
        for line in (PRESETS / f"{name}.yaml").read_text().splitlines()
        if line.startswith("#")
    )
    stages = sorted(set(re.findall(rf"pbdl (generate|train) experiment={name}\b", text)))
    if not stages and "Not meant to be used alone" in text:
        stages = ["generate", "train"]
    return stages


def test_there_are_presets_and_each_names_its_stage():
    assert len(NAMES) >= 25
    unnamed = [name for name in NAMES if not stages_of(name)]
    assert not unnamed, f"presets whose header names no `pbdl <stage> experiment=...`: {unnamed}"


@pytest.mark.parametrize("name", NAMES)
def test_every_preset_composes_in_its_stage_alone_and_with_debug_smoke(name: str):
    for stage in stages_of(name):
        plain = compose(stage, [f"experiment={name}"])
        smoke = compose(stage, [f"experiment={name}", "debug=smoke"])
        assert smoke.device == "cpu"
        if stage == "train":
            assert smoke.trainer.max_steps <= 4 and smoke.trainer.tensorboard is False
            assert smoke.method == plain.method and smoke.model == plain.model
        else:
            assert smoke.data.n_train <= 2
            assert smoke.solver == plain.solver


def test_a_problem_name_is_one_problem_in_every_stage():
    generate, train = (compose(stage, ["problem=burgers"]) for stage in ("generate", "train"))
    assert OmegaConf.to_container(generate.problem) == OmegaConf.to_container(train.problem)
    assert generate.problem.nu == pytest.approx(0.01 / 3.141592653589793, rel=1e-15)
    # a named preset is the way to other settings, and it says so in both stages
    sines = compose("generate", ["experiment=burgers_sines"]).problem
    assert (sines.bc, sines.ic, sines.nx) == ("periodic", "sines", 128)


def test_debug_smoke_generate_and_train_run_in_seconds(workdir: Path):
    made = run_cli("generate", "debug=smoke", cwd=workdir)
    assert made.returncode == 0, made.stderr
    (train_h5,) = workdir.glob("datasets/burgers/*/train.h5")
    assert train_h5.stat().st_size > 0
    trained = run_cli("train", "debug=smoke", "hydra.run.dir=run", cwd=workdir)
    assert trained.returncode == 0, trained.stderr
    assert "relative L2 error against the exact solution" in trained.stdout
    assert (workdir / "run" / "checkpoints" / "last.pt").exists()
    assert not (workdir / "run" / "tensorboard").exists()


def _preset(folder: Path, name: str, nx: int) -> None:
    (folder / "experiment").mkdir(parents=True, exist_ok=True)
    (folder / "experiment" / f"{name}.yaml").write_text(
        f"# @package _global_\nproblem:\n  nx: {nx}\n"
    )


def test_a_project_conf_folder_is_found_without_cd(workdir: Path):
    _preset(workdir / "conf", "mine", 48)
    trained = run_cli("train", "experiment=mine", "debug=smoke", "hydra.run.dir=run", cwd=workdir)
    assert trained.returncode == 0, trained.stderr
    saved = OmegaConf.load(workdir / "run" / ".hydra" / "config.yaml")
    assert saved.problem.nx == 48
    assert "(101 x 48 grid)" in trained.stdout


def test_precedence_packaged_project_cd_command_line(
    workdir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
):
    def nx(*overrides: str, config_dir: str | None = None) -> int:
        return compose("generate", list(overrides), config_dir=config_dir).problem.nx

    # burgers_sines is also a packaged preset (nx 128); the project's copy replaces it
    assert nx("experiment=burgers_sines") == 128
    _preset(workdir / "conf", "burgers_sines", 40)
    assert nx("experiment=burgers_sines") == 40
    cd = tmp_path_factory.mktemp("cd")
    _preset(cd, "burgers_sines", 24)
    assert nx("experiment=burgers_sines", config_dir=str(cd)) == 24
    assert nx("experiment=burgers_sines", "problem.nx=16", config_dir=str(cd)) == 16
    # PBDL_CONFIG_DIR names the project folder instead of ./conf
    other = tmp_path_factory.mktemp("other")
    _preset(other, "burgers_sines", 56)
    monkeypatch.setenv(ENV_VAR, str(other))
    assert nx("experiment=burgers_sines") == 56


def test_a_project_folder_that_would_replace_a_stage_config_is_ignored(workdir: Path):
    _preset(workdir / "conf", "mine", 48)
    (workdir / "conf" / "train.yaml").write_text("defaults: []\nsomething: else\n")
    shown = run_cli("show", "train", cwd=workdir)
    assert shown.returncode == 0, shown.stderr
    assert "ignoring" in shown.stderr and "train.yaml" in shown.stderr
    assert "nx: 256" in shown.stdout
