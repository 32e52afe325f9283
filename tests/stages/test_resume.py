"""Resume continues a run from its stored config (issue 11, item 3) and one seed seeds a
run (item 4): the rules of :mod:`pbdl_cli.stages.resume` and the CLI behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from pbdl_cli.errors import PbdlError
from pbdl_cli.stages.resume import changed_keys, check_resume, merge_overrides, record_subdir
from tests.conftest import run_cli
from tests.test_faults import assert_one_line_error

CONFIG = {
    "model": {"name": "mlp", "width": 16},
    "trainer": {"max_steps": 4, "lbfgs_steps": 0, "lr": 0.003, "scheduler": "exponential"},
    "seed": 0,
}


def _with(**changes: object) -> dict:
    """CONFIG with dotted keys changed."""
    tree = json.loads(json.dumps(CONFIG))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = tree
        for key in parents:
            node = node[key]
        node[leaf] = value
    return tree


def test_new_overrides_replace_stored_ones_and_resume_is_never_repeated():
    stored = ["debug=smoke", "model.width=16", "trainer.max_steps=4", "overwrite=true"]
    merged = merge_overrides(stored, ["trainer.max_steps=9", "resume=true"])
    assert merged == ["debug=smoke", "model.width=16", "trainer.max_steps=9", "resume=true"]
    assert merge_overrides(["+model.width=3"], ["model.width=5"]) == ["model.width=5"]


def test_each_resume_gets_its_own_record(tmp_path: Path):
    assert record_subdir(tmp_path) == ".hydra/resume-1"
    (tmp_path / ".hydra" / "resume-1").mkdir(parents=True)
    assert record_subdir(tmp_path) == ".hydra/resume-2"


def test_changed_keys_are_dotted_and_cover_keys_present_on_one_side_only():
    assert changed_keys(CONFIG, _with(model__width=8)) == ["model.width"]
    assert changed_keys(CONFIG, {**CONFIG, "extra": {"k": 1}}) == ["extra.k"]
    assert changed_keys(CONFIG, CONFIG) == []


def test_a_resume_may_extend_the_run_but_not_change_it(tmp_path: Path):
    where = {"step": 4, "phase": "adam", "checkpoint": tmp_path / "run/checkpoints/last.pt"}
    check_resume(CONFIG, _with(trainer__max_steps=8), **where)  # more steps: allowed
    check_resume(CONFIG, _with(trainer__lbfgs_steps=3), **where)
    with pytest.raises(PbdlError, match=r"model\.width=8 \(the run has 16\).*trainer\.lr"):
        check_resume(CONFIG, _with(model__width=8, trainer__lr=0.1), **where)
    with pytest.raises(PbdlError, match=r"at step 4, past .* = 3"):
        check_resume(CONFIG, _with(trainer__max_steps=3), **where)
    with pytest.raises(PbdlError, match="L-BFGS phase"):
        check_resume(CONFIG, _with(trainer__max_steps=8), **{**where, "phase": "lbfgs"})
    cosine = _with(trainer__scheduler="cosine")
    with pytest.raises(PbdlError, match="scheduler=cosine"):
        check_resume(cosine, {**cosine, "trainer": {**cosine["trainer"], "max_steps": 8}}, **where)


def test_resume_takes_the_runs_overrides_refuses_changes_and_keeps_its_history(workdir: Path):
    first = run_cli(
        "train",
        "debug=smoke",
        "model.width=16",
        "trainer.lbfgs_steps=0",
        "hydra.run.dir=run",
        cwd=workdir,
    )
    assert first.returncode == 0, first.stderr
    run = workdir / "run"
    original = (run / ".hydra" / "overrides.yaml").read_text()

    # only the new key on the command line: model.width=16 comes from the run itself
    more = run_cli("train", "resume=true", "hydra.run.dir=run", "trainer.max_steps=6", cwd=workdir)
    assert more.returncode == 0, more.stderr
    assert json.loads((run / "summary.json").read_text())["steps"] == 6
    assert (run / ".hydra" / "overrides.yaml").read_text() == original
    record = yaml.safe_load((run / ".hydra" / "resume-1" / "overrides.yaml").read_text())
    assert "model.width=16" in record and "trainer.max_steps=6" in record
    assert (
        yaml.safe_load((run / ".hydra" / "resume-1" / "config.yaml").read_text())["model"]["width"]
        == 16
    )

    last = (run / "checkpoints" / "last.pt").read_bytes()
    changed = run_cli(
        "train",
        "resume=true",
        "hydra.run.dir=run",
        "trainer.lr=0.01",
        "model.width=8",
        cwd=workdir,
    )
    assert_one_line_error(changed, 2, "model.width=8 (the run has 16)", "trainer.lr=0.01")
    assert (run / "checkpoints" / "last.pt").read_bytes() == last
    assert not (run / ".hydra" / "resume-2").exists()
    assert (run / ".hydra" / "overrides.yaml").read_text() == original

    missing = run_cli("train", "debug=smoke", "resume=true", "hydra.run.dir=nowhere", cwd=workdir)
    assert_one_line_error(missing, 2, "no checkpoint", "nowhere")


def test_one_seed_seeds_the_whole_run(workdir: Path):
    results = {}
    for seed in (0, 1):
        ran = run_cli("train", "debug=smoke", f"seed={seed}", f"hydra.run.dir=s{seed}", cwd=workdir)
        assert ran.returncode == 0, ran.stderr
        results[seed] = json.loads((workdir / f"s{seed}" / "summary.json").read_text())
        config = OmegaConf.load(workdir / f"s{seed}" / ".hydra" / "config.yaml")
        config = OmegaConf.to_container(config, resolve=True)
        assert config["trainer"]["seed"] == config["method"]["seed"] == seed
    # a PINN's collocation points follow the seed as much as its initialization does
    assert results[0]["test"]["rel_l2"] != results[1]["test"]["rel_l2"]

    apart = run_cli("train", "debug=smoke", "trainer.seed=1", cwd=workdir)
    assert_one_line_error(apart, 2, "trainer.seed=1 differs from seed=0", "set seed=1")
