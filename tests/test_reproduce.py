"""pbdl reproduce: checks, metric lookup, and every reproduction at --quick scale."""

from __future__ import annotations

import dataclasses
import fnmatch
import json
from pathlib import Path

import pytest

from pbdl_cli.reproduce import REPRODUCTIONS, Check, Reproduction, Variant
from pbdl_cli.reproduce import base as reproduce_base
from pbdl_cli.reproduce.base import (
    Prepare,
    active_variants,
    aggregate,
    lookup,
    run_reproduction,
    variant_overrides,
)
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
    half = Check("a", "v", "eval.mae", below=("w", "eval.mae"), below_factor=0.5)
    assert half.judge(0.09, 0.2) and not half.judge(0.11, 0.2)
    assert half.target() == "< 0.5 x w mae"


def test_every_check_names_a_variant_of_its_reproduction():
    for repro in REPRODUCTIONS.values():
        names = {v.name for v in repro.variants}
        quick = {v.name for v in active_variants(repro, quick=True)}
        for check in repro.checks:  # a name, or a pattern matching one (--quick: too)
            for variant in (check.variant, *(check.below or ())[:1]):
                assert fnmatch.filter(names, variant), (repro.name, check.label)
                if not check.full_only:
                    assert fnmatch.filter(quick, variant), (repro.name, check.label)


@pytest.mark.parametrize("name", sorted(REPRODUCTIONS))
def test_reproduce_quick_runs_and_writes_its_report(workdir, name):
    out = workdir / "repro"
    result = run_cli("reproduce", name, "--quick", "--out", str(out), cwd=workdir, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "published" in result.stdout
    payload = json.loads((out / "results.json").read_text())
    repro = REPRODUCTIONS[name]
    assert payload["reproduction"] == name and payload["quick"] is True
    variants = active_variants(repro, quick=True)
    assert set(payload["variants"]) == {v.name for v in variants}
    for variant in variants:
        run = out / variant.name
        assert (run / "eval" / "metrics.json").exists() and (
            run / "eval" / "prediction.h5"
        ).exists()
    assert len(payload["checks"]) == sum(not c.full_only for c in repro.checks)
    judged = [c for c in payload["checks"] if c["pass"] is not None]
    assert len(judged) == sum(c.quick for c in repro.checks)
    assert all(c["pass"] for c in judged)  # the checks meant to hold at --quick scale
    assert all(c["ours"] is not None for c in payload["checks"])
    report = (out / "report.md").read_text()
    assert "| quantity |" in report and f"pbdl reproduce {name} --quick" in report
    again = run_cli("reproduce", name, "--quick", "--out", str(out), cwd=workdir)
    assert again.returncode == 0
    assert again.stdout.count("reusing the finished run") == len(variants)


def test_reproduce_rejects_unknown_names_and_lists(workdir):
    bad = run_cli("reproduce", "burgers_pinn_vs_pd", cwd=workdir)
    assert bad.returncode == 2 and "did you mean 'burgers_pinn_vs_dp'" in bad.stderr
    assert "Traceback" not in bad.stderr
    listing = run_cli("reproduce", "--list", cwd=workdir)
    assert listing.returncode == 0 and all(n in listing.stdout for n in REPRODUCTIONS)


# -- patterns over variants (seeds) and prepare commands ----------------------------------
def _result(value: float | None) -> dict:
    metrics = {} if value is None else {"rel_l2": value}
    return {"eval": {"metrics": metrics}, "summary": {}, "history": []}


def test_aggregate_means_a_pattern_and_reports_its_spread():
    results = {"sol_s0": _result(0.1), "sol_s1": _result(0.3), "pre_s0": _result(0.5)}
    assert aggregate(results, "pre_s0", "eval.rel_l2") == (0.5, None)
    value, spread = aggregate(results, "sol_s*", "eval.rel_l2")
    assert value == pytest.approx(0.2) and spread is not None
    assert spread.values == (0.1, 0.3) and spread.std == pytest.approx(0.1414, abs=1e-4)
    assert str(spread) == "0.2 [0.1, 0.3]"
    assert aggregate(results, "non*", "eval.rel_l2") == (None, None)  # nothing matches
    results["sol_s2"] = _result(None)
    assert aggregate(results, "sol_s*", "eval.rel_l2") == (None, None)  # one lacks it


def test_judge_with_patterns_reports_both_spreads():
    results = {"a_s0": _result(0.1), "a_s1": _result(0.2), "b_s0": _result(0.4)}
    results["b_s1"] = _result(0.2)
    check = Check("a < b/2", "a_s*", "eval.rel_l2", below=("b_s*", "eval.rel_l2"))
    half = dataclasses.replace(check, below_factor=0.5)
    result = reproduce_base._judge(half, results, False)
    assert result.value == pytest.approx(0.15) and result.other == pytest.approx(0.3)
    assert result.verdict is False  # 0.15 is not below 0.5 x 0.3
    assert reproduce_base._ours(result) == "0.15 [0.1, 0.2]"
    assert reproduce_base._target(result) == "< 0.5 x b_s* rel_l2 (0.3 [0.2, 0.4])"
    entries = reproduce_base._spread_json(result)
    assert entries["ours_min"] == 0.1 and entries["other_max"] == 0.4
    assert entries["other"] == pytest.approx(0.3)
    assert reproduce_base._judge(check, results, False).verdict is True


def test_prepare_creates_must_stay_inside_out():
    for bad in ("", "/tmp/x", "../x", "a/../../x"):
        with pytest.raises(ValueError, match="inside out"):
            Prepare("data", ("generate",), creates=bad)


def test_variant_overrides_substitute_out_and_quick_skips_full_only(tmp_path: Path):
    v = Variant("s1", ("method.data={out}/datasets/d",), quick=("x=1",), full_only=True)
    assert variant_overrides(v, False, tmp_path) == [f"method.data={tmp_path}/datasets/d"]
    assert variant_overrides(v, True, tmp_path)[1:] == ["x=1"]
    repro = Reproduction("r", "R", "src", (Variant("s0", ()), v), ())
    assert [x.name for x in active_variants(repro, quick=True)] == ["s0"]
    assert [x.name for x in active_variants(repro, quick=False)] == ["s0", "s1"]


def _fake_pbdl(calls: list[list[str]]):
    """A stand-in for the ``pbdl`` subprocess: generate makes its data.root, train a run
    directory, evaluate its metrics (rel_l2 from the override ``x=<value>``)."""

    def fake(args: list[str], log) -> int:
        calls.append(list(args))
        options = dict(a.split("=", 1) for a in args[1:] if "=" in a)
        if args[0] == "generate":
            Path(options["data.root"], "burgers", "d").mkdir(parents=True)
        elif args[0] == "train":
            run = Path(options["hydra.run.dir"])
            (run / "checkpoints").mkdir(parents=True, exist_ok=True)
            (run / "checkpoints" / "last.pt").write_text("")
            (run / "summary.json").write_text(json.dumps({"seconds": 1.0}))
            (run / "x").write_text(options["x"])
        else:
            run = Path(options["run"])
            (run / "eval").mkdir(exist_ok=True)
            value = float((run / "x").read_text())
            metrics = {"metrics": {"rel_l2": value}}
            (run / "eval" / "metrics.json").write_text(json.dumps(metrics))
        return 0

    return fake


def test_run_reproduction_prepares_once_and_aggregates_seeds(tmp_path, monkeypatch):
    calls: list[list[str]] = []
    monkeypatch.setattr(reproduce_base, "_pbdl", _fake_pbdl(calls))
    data = ("method.data={out}/datasets/burgers/d",)
    repro = Reproduction(
        "r",
        "R",
        "src",
        (
            Variant("a_s0", (*data, "x=0.1")),
            Variant("a_s1", (*data, "x=0.3"), full_only=True),
            Variant("b", (*data, "x=0.5")),
        ),
        (
            Check("a < b", "a_s*", "eval.rel_l2", below=("b", "eval.rel_l2"), quick=True),
            Check("a < b/4", "a_s*", "eval.rel_l2", below=("b", "eval.rel_l2"), below_factor=0.25),
        ),
        prepare=(
            Prepare(
                "data",
                ("generate", "data.root={out}/datasets", "data.n_train=4"),
                creates="datasets/burgers/d",
                quick=("data.n_train=2",),
            ),
        ),
        summary=lambda results: f"{len(results)} variants",
    )
    out = tmp_path / "out"
    checks = run_reproduction(repro, quick=False, out=out)
    assert calls[0] == ["generate", f"data.root={out}/datasets", "data.n_train=4"]
    assert [c[0] for c in calls[1:]] == ["train", "evaluate"] * 3
    assert f"method.data={out}/datasets/burgers/d" in calls[1]
    assert [r.verdict for r in checks] == [True, False]  # 0.2 < 0.5, not < 0.125
    payload = json.loads((out / "results.json").read_text())
    assert payload["checks"][0]["ours_values"] == [0.1, 0.3]
    report = (out / "report.md").read_text()
    assert "0.2 [0.1, 0.3]" in report and "3 variants" in report and "## Data" in report
    calls.clear()  # everything is reused
    run_reproduction(repro, quick=False, out=out)
    assert calls == []
    # --quick: other arguments, so the data and the variants are made again; a_s1 is left out
    checks = run_reproduction(repro, quick=True, out=out)
    assert calls[0][-1] == "data.n_train=2" and len(calls) == 1 + 2 * 2
    assert checks[0].value == pytest.approx(0.1) and checks[1].verdict is None
    assert set(json.loads((out / "results.json").read_text())["variants"]) == {"a_s0", "b"}


def test_failed_prepare_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce_base, "_pbdl", lambda args, log: 0)  # creates nothing
    step = Prepare("data", ("generate",), creates="datasets/d")
    with pytest.raises(reproduce_base.PbdlError, match="did not create"):
        reproduce_base._run_prepare(step, False, tmp_path, False)
