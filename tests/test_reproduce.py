"""pbdl reproduce: checks, metric lookup, and every reproduction at --quick scale."""

from __future__ import annotations

import json

import pytest

from pbdl_cli.reproduce import REPRODUCTIONS, Check
from pbdl_cli.reproduce.base import lookup
from tests.conftest import run_cli

RESULT = {
    "eval": {"metrics": {"mae": 0.1, "rel_l2": 0.02}, "step": 50},
    "summary": {"seconds": 3.0, "test": {"rel_l2": 0.03}},
    "history": [
        {"step": 1, "train/obs": 0.4},
        {"step": 1, "val/mse": 0.5},
        {"step": 2, "train/obs": 0.2},
    ],
}


def test_lookup_reads_eval_summary_and_history():
    assert lookup(RESULT, "eval.mae") == 0.1
    assert lookup(RESULT, "eval.step") == 50
    assert lookup(RESULT, "summary.test/rel_l2") == 0.03
    assert lookup(RESULT, "history.train/obs@0") == 0.4
    assert lookup(RESULT, "history.train/obs@-1") == 0.2  # records that have the key
    assert lookup(RESULT, "history.val/mse@-1") == 0.5
    assert lookup(RESULT, "history.train/obs@7") is None
    assert lookup(RESULT, "eval.missing") is None


def test_checks_judge_each_criterion():
    assert Check("a", "v", "eval.mae", published=0.19, factor=2).judge(0.1, None)
    assert not Check("a", "v", "eval.mae", published=0.19, factor=2).judge(0.09, None)
    assert not Check("a", "v", "eval.mae", published=0.19, factor=2).judge(0.39, None)
    assert Check("a", "v", "eval.mae", at_most=2e-3).judge(2e-3, None)
    assert not Check("a", "v", "eval.mae", at_most=2e-3).judge(float("nan"), None)
    assert Check("a", "v", "eval.mae", at_least=0.3).judge(0.5, None)
    assert Check("a", "v", "eval.mae", below=("w", "eval.mae")).judge(0.1, 0.2)
    assert not Check("a", "v", "eval.mae", below=("w", "eval.mae")).judge(0.2, 0.1)
    assert Check("a", "v", "eval.mae").judge(0.2, None) is None  # reported only


def test_every_check_names_a_variant_of_its_reproduction():
    for repro in REPRODUCTIONS.values():
        names = {v.name for v in repro.variants}
        for check in repro.checks:
            assert check.variant in names, (repro.name, check.label)
            assert check.below is None or check.below[0] in names


@pytest.mark.parametrize("name", sorted(REPRODUCTIONS))
def test_reproduce_quick_runs_and_writes_its_report(workdir, name):
    out = workdir / "repro"
    result = run_cli("reproduce", name, "--quick", "--out", str(out), cwd=workdir, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "published" in result.stdout
    payload = json.loads((out / "results.json").read_text())
    repro = REPRODUCTIONS[name]
    assert payload["reproduction"] == name and payload["quick"] is True
    assert set(payload["variants"]) == {v.name for v in repro.variants}
    for variant in repro.variants:
        run = out / variant.name
        assert (run / "eval" / "metrics.json").exists() and (
            run / "eval" / "prediction.h5"
        ).exists()
    judged = [c for c in payload["checks"] if c["pass"] is not None]
    assert len(judged) == sum(c.quick for c in repro.checks)
    assert all(c["pass"] for c in judged)  # the checks meant to hold at --quick scale
    assert all(c["ours"] is not None for c in payload["checks"])
    report = (out / "report.md").read_text()
    assert "| quantity |" in report and f"pbdl reproduce {name} --quick" in report
    again = run_cli("reproduce", name, "--quick", "--out", str(out), cwd=workdir)
    assert again.returncode == 0
    assert again.stdout.count("reusing the finished run") == len(repro.variants)


def test_reproduce_rejects_unknown_names_and_lists(workdir):
    bad = run_cli("reproduce", "burgers_pinn_vs_pd", cwd=workdir)
    assert bad.returncode == 2 and "did you mean 'burgers_pinn_vs_dp'" in bad.stderr
    assert "Traceback" not in bad.stderr
    listing = run_cli("reproduce", "--list", cwd=workdir)
    assert listing.returncode == 0 and all(n in listing.stdout for n in REPRODUCTIONS)
