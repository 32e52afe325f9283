"""``pbdl report``: gather train runs into one comparison table, CSV/JSON/markdown and plots.

A *run* is a ``pbdl train`` run directory (it has ``summary.json`` or ``checkpoints/``).
:func:`find_runs` accepts run directories, Hydra sweep directories
(``outputs/multirun/train/<date>/<time>/`` with numbered runs and ``multirun.yaml``) and
any other directory, searched recursively (e.g. a ``pbdl reproduce`` output directory).

For every run :func:`load_run` collects the Hydra overrides (``.hydra/overrides.yaml``),
the problem/method/model names (``.hydra/config.yaml``), steps, training time and final
loss terms (``summary.json``), the test metrics of ``summary.json`` and the evaluation
metrics of ``eval/metrics.json`` (the latter win for the same key), the per-frame errors
and the ``train/loss`` history.
:func:`~pbdl_cli.evaluation.comparison.distinguishing` keeps the override keys whose
values differ between the runs: what a sweep varies. :func:`write_report` writes

    report.md            the table, the plots, every run's full override list
    report.csv           one row per run, every collected quantity as a column
    report.json          the same, plus per-frame errors and where each metric came from
    error_vs_time.png    per-frame rel_l2 of every evaluated run (log scale)
    loss_curves.png      train/loss against the step of every run (log scale)

The run and report types and the sorting are in :mod:`pbdl_cli.evaluation.comparison`,
the tables in :mod:`pbdl_cli.evaluation.tables`, the figures in
:mod:`pbdl_cli.evaluation.plots`.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.text import Text

from pbdl_cli.console import console
from pbdl_cli.errors import PbdlError
from pbdl_cli.evaluation.comparison import (
    Report,
    Run,
    canonical,
    distinguishing,
    metric_order,
    natural_key,
    parse_overrides,
    sort_runs,
)
from pbdl_cli.evaluation.plots import plot_error_vs_time, plot_loss_curves
from pbdl_cli.evaluation.tables import csv_text, json_data, markdown, rich_table
from pbdl_cli.utils.files import atomic_write_text

#: files or folders that make a directory a train run
RUN_MARKERS = ("summary.json", "checkpoints")
#: folders never searched for runs
SKIP_DIRS = frozenset({"eval", "checkpoints", "tensorboard", "__pycache__", "wandb"})
FILES = ("report.md", "report.csv", "report.json", "error_vs_time.png", "loss_curves.png")


def is_run_dir(path: Path) -> bool:
    """A ``pbdl train`` run directory: it has ``summary.json`` or ``checkpoints/``."""
    return path.is_dir() and any((path / marker).exists() for marker in RUN_MARKERS)


def is_sweep_dir(path: Path) -> bool:
    """A Hydra multirun directory (``multirun.yaml`` beside the numbered runs)."""
    return (path / "multirun.yaml").is_file()


def _search(root: Path) -> list[Path]:
    """Run directories under ``root`` (not inside other runs, hidden or skipped folders)."""
    found = []
    for folder, subdirs, _ in os.walk(root):
        here = Path(folder)
        if is_run_dir(here):
            found.append(here)
            subdirs.clear()
            continue
        subdirs[:] = [d for d in subdirs if not d.startswith(".") and d not in SKIP_DIRS]
    return sorted(found, key=lambda p: natural_key(p.relative_to(root).as_posix()))


def find_runs(paths: Sequence[Path]) -> list[Path]:
    """The run directories named by ``paths`` (runs, sweeps, or folders searched
    recursively), in argument order, each once; PbdlError (exit 2) when there are none."""
    if not paths:
        raise PbdlError("give one or more run, sweep or output directories (see --help)")
    runs: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        if not path.exists():
            raise PbdlError(f"{path}: no such directory")
        if not path.is_dir():
            raise PbdlError(f"{path} is not a directory (give a run, sweep or output directory)")
        for run in [path] if is_run_dir(path) else _search(path):
            if run.resolve() not in seen:
                seen.add(run.resolve())
                runs.append(run)
    if not runs:
        where = ", ".join(str(p) for p in paths)
        raise PbdlError(
            f"no train runs found in {where} "
            "(a run directory has summary.json or checkpoints/, written by pbdl train)"
        )
    return runs


def run_names(runs: Sequence[Path]) -> list[str]:
    """Short unique names: each run's path relative to the runs' common folder."""
    resolved = [r.resolve() for r in runs]
    if len(resolved) == 1:
        return [resolved[0].name or str(runs[0])]
    common = Path(os.path.commonpath([str(r) for r in resolved]))
    names = [r.relative_to(common).as_posix() for r in resolved]
    return [r.name if n == "." else n for n, r in zip(names, resolved, strict=True)]


def _config_lookup(path: Path) -> Callable[[str], str | None]:
    """``key -> canonical value`` in the config file at ``path`` (interpolations resolved;
    a config group maps to its ``name``); None for a missing key or file."""
    if not path.is_file():
        return lambda key: None
    from omegaconf import DictConfig, ListConfig, OmegaConf

    try:
        cfg = OmegaConf.load(path)
    except Exception:
        return lambda key: None

    def lookup(key: str) -> str | None:
        try:
            value = OmegaConf.select(
                cfg, key.replace("/", "."), default=None, throw_on_resolution_failure=False
            )
            if isinstance(value, DictConfig) and "name" in value:
                value = value.name
            elif isinstance(value, (DictConfig, ListConfig)):
                value = OmegaConf.to_container(value, resolve=True)
        except Exception:
            return None
        return None if value is None else canonical(value)

    return lookup


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ``{}`` when missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _number(value: Any) -> float | None:
    """A finite float, or None (JSON nulls, strings, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _read_losses(path: Path) -> tuple[tuple[list[float], list[float]], int | None]:
    """``train/loss`` against the step in a run's ``metrics.jsonl``, and the last step."""
    steps: list[float] = []
    values: list[float] = []
    last = None
    if not path.is_file():
        return (steps, values), last
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # e.g. a line cut by a crash
        if not isinstance(record, dict) or not isinstance(record.get("step"), (int, float)):
            continue
        last = int(record["step"])
        loss = _number(record.get("train/loss"))
        if loss is not None:
            steps.append(float(record["step"]))
            values.append(loss)
    return (steps, values), last


def load_run(path: Path, name: str) -> Run:
    """Collect one run directory (see the module docstring); missing files leave gaps."""
    overrides_file = path / ".hydra" / "overrides.yaml"
    overrides: dict[str, str] = {}
    if overrides_file.is_file():
        import yaml

        try:
            lines = yaml.safe_load(overrides_file.read_text()) or []
        except yaml.YAMLError:
            lines = []
        overrides = parse_overrides(lines if isinstance(lines, list) else [])
    setting = _config_lookup(path / ".hydra" / "config.yaml")
    summary = _read_json(path / "summary.json")
    evaluation = _read_json(path / "eval" / "metrics.json")
    loss, last_step = _read_losses(path / "metrics.jsonl")
    run = Run(path=path, name=name, overrides=overrides, loss=loss, setting=setting)
    for part in ("problem", "method", "model"):
        value = setting(f"{part}.name") or evaluation.get(part)
        setattr(run, part, None if value is None else str(value))
    steps = summary.get("steps", last_step)
    run.steps = int(steps) if isinstance(steps, (int, float)) else None
    run.seconds = _number(summary.get("seconds"))
    params = summary.get("parameters")
    run.parameters = int(params) if isinstance(params, (int, float)) else None
    run.best_validation = _number(summary.get("best_validation"))
    run.train = {str(k): _number(v) for k, v in (summary.get("train") or {}).items()}
    for key, value in (summary.get("test") or {}).items():
        run.metrics[str(key)], run.sources[str(key)] = _number(value), "summary"
    if evaluation:
        for key, value in (evaluation.get("metrics") or {}).items():
            run.metrics[str(key)], run.sources[str(key)] = _number(value), "eval"
        step = evaluation.get("step")
        run.eval_step = int(step) if isinstance(step, (int, float)) else None
        curves = evaluation.get("per_time")
        if isinstance(curves, dict) and isinstance(curves.get("t"), list):
            run.per_time = {
                k: [_number(v) for v in values]
                for k, values in curves.items()
                if isinstance(values, list)
            }
    return run


def _hydra_value(path: Path) -> str:
    """``path`` as a Hydra override value, quoted where Hydra's grammar needs it."""
    text = str(path)
    if re.fullmatch(r"[\w./:+-]+", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def evaluate_runs(runs: Sequence[Path]) -> list[tuple[Path, str]]:
    """Run ``pbdl evaluate run=<dir>`` for each of ``runs`` (one subprocess each); returns
    the failures as ``(run, last lines of its output)``."""
    failures = []
    for i, run in enumerate(runs, 1):
        label = escape(f"[{i}/{len(runs)}] evaluating {run}")
        command = [sys.executable, "-m", "pbdl_cli", "evaluate", f"run={_hydra_value(run)}"]
        with console.status(f"{label} ...", spinner="dots"):
            result = subprocess.run(
                command, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
            )
        if result.returncode == 130:
            raise KeyboardInterrupt
        if result.returncode != 0:
            lines = (result.stdout + result.stderr).strip().splitlines()
            failures.append((run, "\n".join(lines[-5:])))
            console.print(f"{label}: [red]failed (exit {result.returncode})[/red]", soft_wrap=True)
        else:
            console.print(f"{label}: done", soft_wrap=True)
    return failures


def collect(paths: Sequence[Path], *, evaluate: bool = False) -> Report:
    """Find the runs under ``paths`` (see :func:`find_runs`), evaluate those without an
    evaluation if ``evaluate``, and read them all into a :class:`Report`."""
    found = find_runs(paths)
    if evaluate:
        missing = [run for run in found if not (run / "eval" / "metrics.json").is_file()]
        if missing:
            failures = evaluate_runs(missing)
            for run, tail in failures:
                console.print(
                    Text.assemble(
                        ("warning: ", "yellow"),
                        f"pbdl evaluate run={run} failed; its metrics come from summary.json\n",
                        (tail, "dim"),
                    ),
                    soft_wrap=True,
                )
        else:
            console.print("every run is evaluated already")
    runs = [load_run(p, n) for p, n in zip(found, run_names(found), strict=True)]
    varied, values = distinguishing([r.overrides for r in runs], [r.setting for r in runs])
    for run, value in zip(runs, values, strict=True):
        run.varied = value
    common = {}
    for part in ("problem", "method", "model"):
        names = {getattr(r, part) for r in runs}
        if len(names) == 1 and None not in names:
            common[part] = names.pop()
    metric_keys = metric_order({k for r in runs for k in r.metrics})
    return Report(runs=runs, varied=varied, common=common, metric_keys=metric_keys)


def write_report(report: Report, out: Path, *, command: str | None = None) -> list[Path]:
    """Write the report files and figures to ``out`` (atomically); returns them. A figure
    with nothing to show is not drawn (and an older one of that name removed)."""
    out.mkdir(parents=True, exist_ok=True)
    figures = []
    for name, plot in (
        ("error_vs_time.png", plot_error_vs_time),
        ("loss_curves.png", plot_loss_curves),
    ):
        written = plot(out / name, report)
        if written is not None:
            figures.append(written)
        else:
            (out / name).unlink(missing_ok=True)
    texts = {
        "report.md": markdown(report, out, figures, command),
        "report.csv": csv_text(report),
    }
    files = [out / name for name in ("report.md", "report.csv", "report.json")] + figures
    texts["report.json"] = json.dumps(json_data(report, files, command), indent=2)
    for name, text in texts.items():
        atomic_write_text(out / name, text)
    return files


def default_out(paths: Sequence[Path]) -> Path:
    """The sweep directory when it is the only argument, else ``./report``."""
    if len(paths) == 1 and is_sweep_dir(paths[0]):
        return paths[0]
    return Path("report")


def run_report(
    paths: Sequence[Path],
    *,
    sort: str | None = None,
    out: Path | None = None,
    evaluate: bool = False,
    command: str | None = None,
) -> Report:
    """``pbdl report``: collect, sort (default ``rel_l2`` where present), print, write."""
    report = collect(paths, evaluate=evaluate)
    if sort is None and "rel_l2" in report.metric_keys:
        sort = "rel_l2"
    sort_runs(report, sort)
    if report.sort in report.metric_keys:  # the sort metric as the first metric column
        report.metric_keys = metric_order(report.metric_keys, first=report.sort)
    out = default_out(paths) if out is None else out
    files = write_report(report, out, command=command)
    table, dropped = rich_table(report, console.width)
    console.print(table)
    if dropped:
        console.print(f"not shown here (see report.md/.csv): {', '.join(dropped)}", soft_wrap=True)
    without = [r.name for r in report.runs if not r.has_eval]
    if without and not evaluate:
        console.print(
            f"{len(without)} run(s) without eval/metrics.json (metrics from summary.json): "
            "add --evaluate to evaluate them first",
            soft_wrap=True,
        )
    for run in report.runs:
        if run.stale_eval:
            console.print(
                Text.assemble(
                    ("note: ", "yellow"),
                    f"the evaluation of {run.name} is of step {run.eval_step}, the run has "
                    f"{run.steps} steps (pbdl evaluate run={run.path})",
                ),
                soft_wrap=True,
            )
    names = ", ".join(f.name for f in files)
    console.print(Text(f"wrote {names} to {out}"), soft_wrap=True)
    return report
