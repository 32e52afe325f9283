"""pbdl report: run discovery and override differences on synthetic run directories, the
files it writes, and a real two-run sweep evaluated and compared through the CLI."""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest
import yaml

from pbdl_cli.errors import PbdlError
from pbdl_cli.evaluation import comparison, tables
from pbdl_cli.stages import report as rep
from tests.conftest import run_cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SWEEP = [
    "-m",
    "trainer.max_steps=20,40",
    "trainer.lbfgs_steps=0",
    "problem.nx=32",
    "problem.dt=0.1",
    "method.n_collocation=256",
    "trainer.log_every=5",
    "trainer.eval_every=10",
    "trainer.checkpoint_every=10",
]
#: a wide terminal, so that rich does not fold the table's headers
WIDE = {"COLUMNS": "200"}


def make_run(
    path: Path,
    overrides: list[str] | None = None,
    *,
    config: dict[str, Any] | None = None,
    summary: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
    records: list[dict[str, Any]] | None = None,
    checkpoints_only: bool = False,
) -> Path:
    """A fake ``pbdl train`` run directory with the given files."""
    path.mkdir(parents=True, exist_ok=True)
    if overrides is not None:
        (path / ".hydra").mkdir(exist_ok=True)
        (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if config is not None:
        (path / ".hydra").mkdir(exist_ok=True)
        (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if checkpoints_only:
        (path / "checkpoints").mkdir(exist_ok=True)
    else:
        summary = summary or {"steps": 10, "seconds": 1.5, "train": {"loss": 0.1}}
        (path / "summary.json").write_text(json.dumps(summary))
    if evaluation is not None:
        (path / "eval").mkdir(exist_ok=True)
        (path / "eval" / "metrics.json").write_text(json.dumps(evaluation))
    if records is not None:
        lines = [json.dumps(r) for r in records]
        (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return path


CONFIG = {
    "problem": {"name": "burgers", "nx": 64, "dt": 0.01, "t_end": 1.0},
    "method": {"name": "pinn", "n_collocation": 1024},
    "model": {"name": "mlp", "width": 32},
    "trainer": {"max_steps": 1000, "lr": 0.001},
    "seed": 0,
}


# -- overrides -------------------------------------------------------------------------------
def test_parse_overrides_canonical_values_and_ignored_keys() -> None:
    parsed = comparison.parse_overrides(
        [
            "trainer.lr=1e-3",
            "problem.dt=0.10",
            "+model.layers=[64, 64]",
            "~problem.ic",
            "method=pinn",
            "flag=True",
            "resume=true",
            "hydra.run.dir=/somewhere",
            "hydra/launcher=joblib",
        ]
    )
    assert parsed == {
        "trainer.lr": "0.001",
        "problem.dt": "0.1",
        "model.layers": "[64,64]",
        "problem.ic": "<deleted>",
        "method": "pinn",
        "flag": "true",
    }
    assert comparison.canonical(0.1) == comparison.parse_overrides(["x=0.100"])["x"]
    assert comparison.canonical(None) == "null"
    assert comparison.canonical({"a": [1, False]}) == "{a:[1,false]}"


def test_distinguishing_keeps_only_keys_whose_values_differ() -> None:
    runs = [
        {"trainer.max_steps": "20", "problem.nx": "32", "seed": "0"},
        {"trainer.max_steps": "40", "problem.nx": "32", "seed": "0"},
        {"trainer.max_steps": "80", "problem.nx": "32", "seed": "0"},
    ]
    keys, values = comparison.distinguishing(runs)
    assert keys == ["trainer.max_steps"]
    assert [v["trainer.max_steps"] for v in values] == ["20", "40", "80"]
    # a key that only some runs override: the others' value from their config, or "-"
    runs = [{"model.width": "64", "seed": "0"}, {"seed": "0"}, {"seed": "1"}]
    defaults = {"model.width": "32", "seed": "0"}
    keys, values = comparison.distinguishing(runs, [defaults.get] * 3)
    assert keys == ["model.width", "seed"]
    assert values == [
        {"model.width": "64", "seed": "0"},
        {"model.width": "32", "seed": "0"},
        {"model.width": "32", "seed": "1"},
    ]
    keys, values = comparison.distinguishing([{"model.width": "64"}, {}])
    assert keys == ["model.width"] and values[1] == {"model.width": "-"}
    # overriding a value with its default distinguishes nothing
    keys, _ = comparison.distinguishing([{"model.width": "32"}, {}], [defaults.get] * 2)
    assert keys == []
    assert comparison.distinguishing([{"a": "1"}]) == ([], [{}])  # a single run varies nothing


def test_overrides_compared_with_the_config_of_other_runs(tmp_path: Path) -> None:
    make_run(tmp_path / "a", ["model.width=64", "problem.dt=0.010"], config=CONFIG)
    make_run(tmp_path / "b", ["method=pinn"], config=CONFIG)
    make_run(tmp_path / "c", ["experiment=fancy"], config=CONFIG)
    report = rep.collect([tmp_path])
    # problem.dt=0.010 and method=pinn are the config's values: not distinguishing
    assert report.varied == ["model.width", "experiment"]
    assert [r.varied for r in report.runs] == [
        {"model.width": "64", "experiment": "-"},
        {"model.width": "32", "experiment": "-"},
        {"model.width": "32", "experiment": "fancy"},
    ]
    assert report.common == {"problem": "burgers", "method": "pinn", "model": "mlp"}


# -- finding runs ----------------------------------------------------------------------------
def test_find_runs_in_sweeps_output_dirs_and_run_dirs(tmp_path: Path) -> None:
    sweep = tmp_path / "multirun" / "train" / "2026-11-22" / "14-00-00"
    for job in range(12):
        make_run(sweep / str(job), [f"seed={job}"])
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    (sweep / ".hidden" / "x").mkdir(parents=True)
    make_run(sweep / ".hidden" / "x" / "run")  # hidden folders are not searched
    assert rep.is_sweep_dir(sweep) and not rep.is_sweep_dir(sweep / "0")
    runs = rep.find_runs([sweep])
    assert [r.name for r in runs] == [str(i) for i in range(12)]  # 2 before 10
    assert rep.run_names(runs)[:3] == ["0", "1", "2"]

    # a reproduce output directory: variants with eval/ and checkpoints/ inside
    repro = tmp_path / "reproduce" / "burgers" / "stamp"
    for name in ("pinn", "dp"):
        make_run(repro / name, evaluation={"metrics": {"rel_l2": 0.1}})
        (repro / name / "checkpoints").mkdir()
        make_run(repro / name / "eval" / "nested")  # never searched inside a run
    (repro / "report.md").write_text("# old report\n")
    runs = rep.find_runs([repro])
    assert [r.name for r in runs] == ["dp", "pinn"]
    assert rep.run_names(runs) == ["dp", "pinn"]

    # a run directory itself, an interrupted run (checkpoints only), duplicates
    interrupted = make_run(tmp_path / "runs" / "b", checkpoints_only=True)
    single = rep.find_runs([sweep / "3"])
    assert single == [sweep / "3"] and rep.run_names(single) == ["3"]
    both = rep.find_runs([sweep / "3", interrupted, sweep / "3", tmp_path / "runs"])
    assert both == [sweep / "3", interrupted]
    assert rep.run_names(both) == ["multirun/train/2026-11-22/14-00-00/3", "runs/b"]
    two_sweeps = rep.find_runs([sweep, repro])
    assert len(two_sweeps) == 14
    assert rep.run_names(two_sweeps)[0] == "multirun/train/2026-11-22/14-00-00/0"

    assert rep.default_out([sweep]) == sweep
    assert rep.default_out([sweep, repro]) == rep.default_out([repro]) == Path("report")


@pytest.mark.parametrize(
    ("case", "needle"),
    [("missing", "no such directory"), ("empty", "no train runs found"), ("file", "not a dir")],
)
def test_find_runs_errors(tmp_path: Path, case: str, needle: str) -> None:
    (tmp_path / "empty" / "eval").mkdir(parents=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(PbdlError, match=needle) as info:
        rep.find_runs([tmp_path / case])
    assert info.value.exit_code == 2
    with pytest.raises(PbdlError, match="one or more"):
        rep.find_runs([])


# -- reading runs, sorting, writing ----------------------------------------------------------
def synthetic_report(root: Path) -> comparison.Report:
    """Three fake runs: evaluated, stale evaluation, summary only (no per_time)."""
    per_time = {"t": [0.0, 0.5, 1.0], "rel_l2": [0.0, 0.2, None], "mae": [0.0, 0.1, 0.2]}
    records = [
        {"step": 5, "phase": "adam", "train/loss": 1.0},
        {"step": 5, "val/rel_l2": 0.5},
        {"step": 10, "phase": "adam", "train/loss": 0.5},
    ]
    make_run(
        root / "0",
        ["model.width=16"],
        config=CONFIG,
        summary={
            "steps": 10,
            "seconds": 2.0,
            "parameters": 99,
            "train": {"loss": 0.5},
            "test": {"rel_l2": 0.3, "mae": 0.2, "branch": 0.01},
        },
        evaluation={
            "step": 10,
            "problem": "burgers",
            "method": "pinn",
            "model": "mlp",
            "metrics": {"rel_l2": 0.25, "mae": 0.15, "residual": None},
            "per_time": per_time,
        },
        records=records,
    )
    make_run(
        root / "1",
        ["model.width=64"],
        config=CONFIG,
        summary={
            "steps": 20,
            "seconds": 4.0,
            "train": {"loss": 0.2, "pde": 0.2},
            "test": {"rel_l2": 0.1},
        },
        evaluation={"step": 10, "metrics": {"rel_l2": 0.12}, "per_time": per_time},
    )
    summary = {"steps": 5, "test": {"mae": 0.5}}
    make_run(root / "2", ["model.width=8"], config=CONFIG, summary=summary)
    (root / "2" / "metrics.jsonl").write_text('{"step": 5, "train/loss": 2.0}\n{"step": 6, "tr')
    return rep.collect([root])


def test_load_run_prefers_eval_and_says_where_metrics_came_from(tmp_path: Path) -> None:
    report = synthetic_report(tmp_path)
    first, second, third = report.runs
    assert first.metrics == {"rel_l2": 0.25, "mae": 0.15, "branch": 0.01, "residual": None}
    assert first.sources == {
        "rel_l2": "eval",
        "mae": "eval",
        "branch": "summary",
        "residual": "eval",
    }
    assert first.source == "eval+summary" and first.loss == ([5.0, 10.0], [1.0, 0.5])
    assert (first.problem, first.method, first.model) == ("burgers", "pinn", "mlp")
    assert second.source == "eval (step 10)" and second.stale_eval
    assert third.source == "summary" and third.metrics == {"mae": 0.5} and not third.has_eval
    assert third.loss == ([5.0], [2.0])  # the cut last line is skipped
    assert report.metric_keys == ["rel_l2", "mae", "residual", "branch"]
    assert report.varied == ["model.width"]


def test_sort_runs_missing_values_last_and_unknown_columns(tmp_path: Path) -> None:
    report = synthetic_report(tmp_path)
    comparison.sort_runs(report, "rel_l2")
    assert [r.name for r in report.runs] == ["1", "0", "2"] and report.sort == "rel_l2"
    comparison.sort_runs(report, "model.width")  # override values sort as numbers
    assert [r.varied["model.width"] for r in report.runs] == ["8", "16", "64"]
    comparison.sort_runs(report, "train/loss")
    assert [r.name for r in report.runs] == ["1", "0", "2"]
    with pytest.raises(PbdlError, match="did you mean 'mae'") as info:
        comparison.sort_runs(report, "maee")
    assert info.value.exit_code == 2


def test_write_report_files(tmp_path: Path) -> None:
    report = synthetic_report(tmp_path / "runs")
    comparison.sort_runs(report, "rel_l2")
    out = tmp_path / "out"
    (out).mkdir()
    files = rep.write_report(report, out, command="pbdl report runs")
    assert sorted(f.name for f in files) == sorted(rep.FILES)
    assert not list(out.glob(".*.tmp"))

    with (out / "report.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [row["name"] for row in table] == ["1", "0", "2"]
    assert float(table[1]["rel_l2"]) == 0.25 and float(table[1]["branch"]) == 0.01
    assert table[1]["residual"] == "" and table[2]["rel_l2"] == ""
    assert table[0]["model.width"] == "64" and table[0]["train/pde"] == "0.2"
    assert table[0]["source"] == "eval (step 10)" and table[1]["source"] == "eval+summary"

    data = json.loads((out / "report.json").read_text())
    assert data["sort"] == "rel_l2" and data["varied"] == ["model.width"]
    assert data["runs"][1]["sources"]["branch"] == "summary"
    assert data["runs"][1]["per_time"]["rel_l2"] == [0.0, 0.2, None]

    text = (out / "report.md").read_text()
    assert "| run | model.width |" in text and "![relative L2 error per frame]" in text
    assert "`pbdl train model.width=64`" in text and "(`../runs/1`)" in text
    for name in ("error_vs_time.png", "loss_curves.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE

    # nothing to plot: no figure, and an old one of that name is removed
    for run in report.runs:
        run.per_time = None
    files = rep.write_report(report, out)
    assert not (out / "error_vs_time.png").exists() and (out / "loss_curves.png").exists()
    assert "error_vs_time" not in (out / "report.md").read_text()


# -- the real thing --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """Two tiny PINN runs of a sweep over trainer.max_steps, reported with --evaluate."""
    root = tmp_path_factory.mktemp("report")
    sweep = root / "sweep"
    trained = run_cli("train", *SWEEP, f"hydra.sweep.dir={sweep}", cwd=root)
    assert trained.returncode == 0, trained.stderr
    assert not (sweep / "0" / "eval").exists()
    result = run_cli("report", str(sweep), "--evaluate", cwd=root, env=WIDE)
    assert result.returncode == 0, result.stdout + result.stderr
    return sweep, result


def test_report_of_a_sweep_through_the_cli(sweep) -> None:
    sweep, result = sweep
    out = result.stdout
    assert "trainer.max_steps" in out and "sorted by rel_l2" in out
    lines = [line for line in out.splitlines() if "│" in line]
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in lines]
    assert sorted((row[0], row[1]) for row in cells) == [("0", "20"), ("1", "40")]
    assert all(row[-1] == "eval" for row in cells)

    for name in rep.FILES:  # a single sweep directory is its own default --out
        assert (sweep / name).is_file(), name
    for name in ("error_vs_time.png", "loss_curves.png"):
        image = matplotlib.image.imread(sweep / name)
        assert image.shape[0] > 100 and float(image[..., :3].std()) > 0.01

    with (sweep / "report.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 2
    rel = [float(row["rel_l2"]) for row in table]
    assert rel == sorted(rel)
    for row in table:
        run = sweep / row["name"]
        summary = json.loads((run / "summary.json").read_text())
        evaluation = json.loads((run / "eval" / "metrics.json").read_text())
        assert row["trainer.max_steps"] == str(summary["steps"])
        assert int(row["steps"]) == summary["steps"] == evaluation["step"]
        assert float(row["seconds"]) == summary["seconds"]
        assert float(row["train/loss"]) == summary["train"]["loss"]
        assert row["source"] == "eval" and (row["problem"], row["method"]) == ("burgers", "pinn")
        for key in ("rel_l2", "mae", "mse", "max_error", "nrmse", "residual"):
            assert float(row[key]) == evaluation["metrics"][key], key
            if key in summary["test"]:
                assert math.isclose(float(row[key]), summary["test"][key], rel_tol=1e-5)

    data = json.loads((sweep / "report.json").read_text())
    assert data["varied"] == ["trainer.max_steps"] and data["sort"] == "rel_l2"
    assert {r["name"]: len(r["per_time"]["t"]) for r in data["runs"]} == {"0": 11, "1": 11}
    text = (sweep / "report.md").read_text()
    assert "| run | trainer.max_steps |" in text and "![training loss](loss_curves.png)" in text


def test_report_of_a_dir_without_runs_is_a_clean_error(tmp_path: Path) -> None:
    (tmp_path / "nothing" / "here").mkdir(parents=True)
    result = run_cli("report", "nothing", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.startswith("error: no train runs found in nothing")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "report").exists()


def test_terminal_table_fits_the_width_and_shows_brackets(tmp_path: Path) -> None:
    from rich.console import Console

    make_run(tmp_path / "a", ["model.act=[tanh]"], summary={"steps": 1, "test": {"rel_l2": 1.0}})
    make_run(tmp_path / "b", ["model.act=[relu]"], summary={"steps": 1, "test": {"mae": 2.0}})
    report = rep.collect([tmp_path])
    comparison.sort_runs(report, "mae")
    columns, dropped = tables.fit_columns(report, 1000)
    assert dropped == [] and [k for k, _ in columns][-3:] == ["rel_l2", "mae", "source"]
    columns, dropped = tables.fit_columns(report, 40)
    assert [k for k, _ in columns] == ["name", "model.act", "mae", "source"]
    assert dropped == ["rel_l2", "seconds", "train/loss", "steps"]  # never the sort column
    console = Console(record=True, width=200)
    console.print(tables.rich_table(report)[0])
    text = console.export_text()
    assert "[tanh]" in text and "[relu]" in text and "time [s]" in text


def test_failed_evaluation_is_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_run(tmp_path / "run", summary={"steps": 1, "test": {"rel_l2": 0.5}})  # no checkpoint
    report = rep.collect([tmp_path / "run"], evaluate=True)
    out = capsys.readouterr().out
    assert "failed (exit 2)" in out and "warning: pbdl evaluate run=" in out
    assert "no checkpoints" in out  # the last lines of its output
    assert report.runs[0].metrics == {"rel_l2": 0.5} and report.runs[0].source == "summary"
