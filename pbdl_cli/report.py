"""``pbdl report``: gather train runs into one comparison table, CSV/JSON/markdown and plots.

A *run* is a ``pbdl train`` run directory (it has ``summary.json`` or ``checkpoints/``).
:func:`find_runs` accepts run directories, Hydra sweep directories
(``outputs/multirun/train/<date>/<time>/`` with numbered runs and ``multirun.yaml``) and
any other directory, searched recursively (e.g. a ``pbdl reproduce`` output directory).

For every run :func:`load_run` collects the Hydra overrides (``.hydra/overrides.yaml``),
the problem/method/model names (``.hydra/config.yaml``), steps, training time and final
loss terms (``summary.json``), the test metrics of ``summary.json`` and the evaluation
metrics of ``eval/metrics.json`` (the latter win for the same key), the per-frame errors
and the ``train/loss`` history. :func:`distinguishing` keeps the override keys whose values
differ between the runs: what a sweep varies. :func:`write_report` writes

    report.md            the table, the plots, every run's full override list
    report.csv           one row per run, every collected quantity as a column
    report.json          the same, plus per-frame errors and where each metric came from
    error_vs_time.png    per-frame rel_l2 of every evaluated run (log scale)
    loss_curves.png      train/loss against the step of every run (log scale)
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from pbdl_cli.console import console
from pbdl_cli.errors import PbdlError, did_you_mean
from pbdl_cli.utils.files import atomic_write_text

#: files or folders that make a directory a train run
RUN_MARKERS = ("summary.json", "checkpoints")
#: folders never searched for runs
SKIP_DIRS = frozenset({"eval", "checkpoints", "tensorboard", "__pycache__", "wandb"})
#: override keys that never distinguish runs (``hydra.*`` is skipped as well)
IGNORED_KEYS = frozenset({"resume"})
#: metric columns first in this order (when present), the others alphabetically after
PREFERRED = ("rel_l2", "mae", "mse", "max_error", "nrmse", "residual")
#: column keys of a run's own quantities (the others: ``train/<term>``, metrics, overrides)
PLAIN_KEYS = ("name", "steps", "seconds", "parameters", "best_validation")
#: the width a name column is counted with when fitting the table (names fold)
TEXT_WIDTH = 12
FILES = ("report.md", "report.csv", "report.json", "error_vs_time.png", "loss_curves.png")


@dataclasses.dataclass
class Run:
    """What :func:`load_run` collects from one run directory."""

    path: Path
    name: str
    #: every override of the run (``key -> canonical value``), in the order given
    overrides: dict[str, str]
    problem: str | None = None
    method: str | None = None
    model: str | None = None
    steps: int | None = None
    seconds: float | None = None
    parameters: int | None = None
    best_validation: float | None = None
    #: final training loss terms (``summary.json`` ``train``)
    train: dict[str, float | None] = dataclasses.field(default_factory=dict)
    #: test/evaluation metrics, evaluation first; ``sources`` says where each came from
    metrics: dict[str, float | None] = dataclasses.field(default_factory=dict)
    sources: dict[str, str] = dataclasses.field(default_factory=dict)
    #: the checkpoint step that ``eval/metrics.json`` evaluated
    eval_step: int | None = None
    #: ``eval/metrics.json`` ``per_time``: ``{"t": [...], "rel_l2": [...], "mae": [...]}``
    per_time: dict[str, list[float | None]] | None = None
    #: ``train/loss`` against the step, from ``metrics.jsonl``
    loss: tuple[list[float], list[float]] = dataclasses.field(default_factory=lambda: ([], []))
    #: the distinguishing override values (filled by :func:`collect`)
    varied: dict[str, str] = dataclasses.field(default_factory=dict)
    #: a lookup of a dotted key in the run's ``.hydra/config.yaml`` (canonical string)
    setting: Callable[[str], str | None] = dataclasses.field(
        default=lambda key: None, repr=False, compare=False
    )

    @property
    def has_eval(self) -> bool:
        """The run has an ``eval/metrics.json``."""
        return "eval" in self.sources.values() or self.eval_step is not None

    @property
    def source(self) -> str:
        """Where the metrics came from: ``eval``, ``summary``, ``eval+summary`` or ``-``;
        an evaluation of an older checkpoint than the run's last step says so."""
        kinds = set(self.sources.values())
        text = "+".join(k for k in ("eval", "summary") if k in kinds) or "-"
        if "eval" in kinds and self.stale_eval:
            text += f" (step {self.eval_step})"
        return text

    @property
    def stale_eval(self) -> bool:
        """The evaluation is of an earlier step than the run's last one."""
        return self.eval_step is not None and self.steps is not None and self.eval_step < self.steps

    def value(self, key: str) -> Any:
        """A column's value: a summary quantity, ``train/<term>``, a metric, an override."""
        if key in PLAIN_KEYS:
            return getattr(self, key)
        if key.startswith("train/"):
            return self.train.get(key[len("train/") :])
        if key in self.metrics:
            return self.metrics[key]
        return self.varied.get(key)


@dataclasses.dataclass
class Report:
    """The runs of a comparison and what they share."""

    runs: list[Run]
    #: the override keys whose values differ between the runs
    varied: list[str]
    #: problem/method/model where every run has the same one
    common: dict[str, str]
    #: the metric keys of all runs, in column order
    metric_keys: list[str]
    sort: str | None = None


# -- finding runs ----------------------------------------------------------------------------
def is_run_dir(path: Path) -> bool:
    """A ``pbdl train`` run directory: it has ``summary.json`` or ``checkpoints/``."""
    return path.is_dir() and any((path / marker).exists() for marker in RUN_MARKERS)


def is_sweep_dir(path: Path) -> bool:
    """A Hydra multirun directory (``multirun.yaml`` beside the numbered runs)."""
    return (path / "multirun.yaml").is_file()


def _natural(text: str) -> list[Any]:
    """A sort key that orders ``2`` before ``10`` (Hydra's job numbers)."""
    return [
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)
    ]


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
    return sorted(found, key=lambda p: _natural(p.relative_to(root).as_posix()))


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


# -- overrides -------------------------------------------------------------------------------
def canonical(value: Any) -> str:
    """One string per value, so that ``0.10`` and ``0.1``, ``True`` and ``true`` compare
    equal whether they come from an override or from a config file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{canonical(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    return str(value)


def parse_overrides(lines: Iterable[str]) -> dict[str, str]:
    """``key -> canonical value`` of Hydra overrides (``+``/``++`` prefixes dropped, ``~key``
    becomes ``<deleted>``); ``hydra.*`` and :data:`IGNORED_KEYS` are left out."""
    lines = [str(line) for line in lines]
    parsed: dict[str, str] = {}
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        items = [
            (o.key_or_group, "<deleted>" if o.is_delete() else canonical(o.value()))
            for o in OverridesParser.create().parse_overrides(lines)
        ]
    except Exception:  # an override Hydra cannot parse: split at the first '='
        items = []
        for line in lines:
            key, _, value = line.partition("=")
            deleted = key.startswith("~")
            items.append((key.lstrip("+~"), "<deleted>" if deleted else value))
    for key, value in items:
        if key.split(".")[0].split("/")[0] == "hydra" or key in IGNORED_KEYS:
            continue
        parsed[key] = value
    return parsed


def distinguishing(
    overrides: Sequence[Mapping[str, str]],
    settings: Sequence[Callable[[str], str | None]] | None = None,
) -> tuple[list[str], list[dict[str, str]]]:
    """The override keys whose values differ between the runs, and each run's values.

    A key that a run does not override takes the value ``settings[i](key)`` of the run's
    config (e.g. the default), or ``-`` if unknown; keys whose values are then all the
    same are dropped (overriding a value with its default distinguishes nothing).
    """
    keys: list[str] = []
    for run in overrides:
        keys += [k for k in run if k not in keys]
    values: list[dict[str, str]] = []
    for i, run in enumerate(overrides):
        lookup = settings[i] if settings is not None else (lambda key: None)
        values.append({k: run[k] if k in run else (lookup(k) or "-") for k in keys})
    varied = [k for k in keys if len({v[k] for v in values}) > 1]
    return varied, [{k: v[k] for k in varied} for v in values]


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


# -- reading one run -------------------------------------------------------------------------
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


# -- evaluating runs -------------------------------------------------------------------------
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


# -- gathering -------------------------------------------------------------------------------
def metric_order(keys: Iterable[str], first: str | None = None) -> list[str]:
    """Metric columns: ``first``, then :data:`PREFERRED`, then the rest alphabetically."""
    keys = set(keys)
    head = [k for k in (first, *PREFERRED) if k is not None and k in keys]
    head = list(dict.fromkeys(head))
    return head + sorted(keys - set(head))


def sort_keys(report: Report) -> list[str]:
    """Every column a report can be sorted by."""
    terms = sorted({f"train/{t}" for run in report.runs for t in run.train})
    return [*report.metric_keys, *PLAIN_KEYS, *terms, *report.varied]


def _sort_value(value: Any) -> tuple[int, float, list[Any]]:
    """Numbers (also numeric strings) in order, then other strings, missing values last."""
    if value is None or value == "-":
        return (2, 0.0, [])
    try:
        number = float(value)
    except (TypeError, ValueError):
        return (1, 0.0, _natural(str(value)))
    return (0, number, []) if math.isfinite(number) else (2, 0.0, [])


def sort_runs(report: Report, key: str | None) -> None:
    """Sort ``report.runs`` by column ``key`` (ascending, missing values last), in place;
    PbdlError (exit 2) for a column that no run has."""
    if key is None:
        return
    choices = sort_keys(report)
    if key not in choices:
        raise PbdlError(
            f"cannot sort by '{key}'{did_you_mean(key, choices)}: use one of {', '.join(choices)}"
        )
    report.runs.sort(key=lambda run: _sort_value(run.value(key)))
    report.sort = key


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


# -- output ----------------------------------------------------------------------------------
def fmt(value: Any, key: str = "") -> str:
    """A table cell: seconds with one decimal, other numbers with 4 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if key == "seconds":
        return f"{value:.1f}"
    return f"{value:.4g}" if 1e-2 <= abs(value) < 1e4 or value == 0 else f"{value:.3e}"


def label(run: Run, report: Report) -> str:
    """A run's legend label: its distinguishing overrides (with its name where these do not
    tell the runs apart)."""
    text = ", ".join(f"{k}={v}" for k, v in run.varied.items())
    labels = [", ".join(f"{k}={v}" for k, v in r.varied.items()) for r in report.runs]
    if text and labels.count(text) == 1:
        return text
    return f"{run.name}: {text}" if text else run.name


def table_columns(report: Report) -> list[tuple[str, str]]:
    """``(key, header)`` of the table's columns (problem/method/model where they vary)."""
    columns = [("name", "run")] + [(k, k) for k in report.varied]
    for part in ("problem", "method", "model"):  # only where they differ between the runs
        # (and not when a swept override of the same name shows it already)
        if part not in report.varied and len({getattr(run, part) for run in report.runs}) > 1:
            columns.append((part, part))
    columns += [("steps", "steps"), ("seconds", "time [s]"), ("train/loss", "train loss")]
    columns += [(k, k) for k in report.metric_keys]
    return [*columns, ("source", "source")]


def _cell(run: Run, key: str) -> str:
    if key in ("problem", "method", "model"):
        return getattr(run, key) or "-"
    if key == "source":
        return run.source
    return fmt(run.value(key), key)


def _headline(report: Report) -> str:
    count = len(report.runs)
    parts = [f"{count} run{'s' if count != 1 else ''}"]
    if report.common:
        parts.append("all " * (count > 1) + " / ".join(report.common.values()))
    if report.sort:
        parts.append(f"sorted by {report.sort} (lowest first)")
    return ", ".join(parts)


def _numeric(report: Report, key: str) -> bool:
    """Whether a table column holds numbers (right-aligned, never wrapped)."""
    return key not in ("name", "problem", "method", "model", "source", *report.varied)


def fit_columns(report: Report, width: int) -> tuple[list[tuple[str, str]], list[str]]:
    """The table's columns for a terminal ``width`` wide: metric columns are left out from
    the last (least preferred) on, then time, train loss and steps, but never the sort
    column, until the table fits. Returns the columns and the keys left out."""
    columns = table_columns(report)

    def needed(cols: list[tuple[str, str]]) -> int:  # cell widths, padding and borders
        cells = [max([len(h)] + [len(_cell(r, k)) for r in report.runs]) for k, h in cols]
        # run names etc. fold onto several lines: count them as at most TEXT_WIDTH wide
        folding = [k in ("name", "problem", "method", "model") for k, _ in cols]
        cells = [min(c, TEXT_WIDTH) if f else c for c, f in zip(cells, folding, strict=True)]
        return sum(cells) + 3 * len(cells) + 1

    dropped: list[str] = []
    removable = [*reversed(report.metric_keys), "seconds", "train/loss", "steps"]
    removable = [k for k in removable if k != report.sort]
    while needed(columns) > width and removable:
        key = removable.pop(0)
        columns = [c for c in columns if c[0] != key]
        dropped.append(key)
    metrics = [k for k in report.metric_keys if k in dropped]  # in column order
    return columns, metrics + [k for k in dropped if k not in metrics]


def rich_table(report: Report, width: int | None = None) -> tuple[Table, list[str]]:
    """The comparison as a rich table (the sort column in bold), with the metric columns
    that fit in ``width`` (all if None); also returns the columns left out."""
    columns, dropped = (table_columns(report), []) if width is None else fit_columns(report, width)
    table = Table(header_style="bold", title=_headline(report))
    for key, header in columns:
        numeric = _numeric(report, key)
        style = "bold" if key == report.sort else None
        if numeric:  # numbers keep their width; names fold onto more lines where needed
            table.add_column(escape(header), justify="right", style=style, no_wrap=True)
        else:
            table.add_column(escape(header), style=style, overflow="fold")
    for run in report.runs:
        table.add_row(*(Text(_cell(run, key)) for key, _ in columns))
    return table, dropped


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(report: Report, out: Path, figures: Sequence[Path], command: str | None) -> str:
    """``report.md``: the table, the figures and each run's directory and overrides."""
    lines = ["# Run comparison", ""]
    if command:
        lines += [f"`{command}` ({datetime.now():%Y-%m-%d %H:%M})", ""]
    lines += [_headline(report) + ".", ""]
    if report.varied:
        lines += ["Varied: " + ", ".join(f"`{k}`" for k in report.varied) + ".", ""]
    lines += [
        "Metrics come from `eval/metrics.json` (`pbdl evaluate`) where a run has one, else "
        "from the test errors in `summary.json` (column *source*).",
        "",
    ]
    columns = table_columns(report)
    lines.append("| " + " | ".join(_md_cell(h) for _, h in columns) + " |")
    lines.append("|" + "".join("--:|" if _numeric(report, k) else "---|" for k, _ in columns))
    for run in report.runs:
        lines.append("| " + " | ".join(_md_cell(_cell(run, k)) for k, _ in columns) + " |")
    if figures:
        lines += ["", "## Plots", ""]
        titles = {
            "error_vs_time.png": "relative L2 error per frame",
            "loss_curves.png": "training loss",
        }
        for figure in figures:
            lines += [f"![{titles.get(figure.name, figure.stem)}]({figure.name})", ""]
        lines.pop()
    lines += ["", "## Runs", ""]
    for run in report.runs:
        where = os.path.relpath(run.path.resolve(), out.resolve())
        if where.startswith(os.pardir + os.sep + os.pardir):  # far away: the absolute path
            where = str(run.path.resolve())
        args = " ".join(f"{k}={v}" for k, v in run.overrides.items())
        lines.append(f"- **{run.name}** (`{where}`): `pbdl train {args}`".rstrip())
    return "\n".join(lines).rstrip() + "\n"


def rows(report: Report) -> tuple[list[str], list[dict[str, Any]]]:
    """The CSV's header and one row per run: every collected quantity."""
    terms = sorted({t for r in report.runs for t in r.train}, key=lambda t: (t != "loss", t))
    header = ["name", "path", *report.varied, "problem", "method", "model"]
    header += ["steps", "seconds", "parameters", *(f"train/{t}" for t in terms)]
    header += ["best_validation", *report.metric_keys, "source", "eval_step"]
    table = []
    for run in report.runs:
        row: dict[str, Any] = {k: run.value(k) for k in header}
        row |= {"path": str(run.path), "problem": run.problem, "method": run.method}
        row |= {"model": run.model, "source": run.source, "eval_step": run.eval_step}
        table.append(row)
    return header, table


def csv_text(report: Report) -> str:
    """``report.csv`` (missing values empty, floats with full precision)."""
    header, table = rows(report)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow(
            {
                k: "" if v is None else (repr(v) if isinstance(v, float) else v)
                for k, v in row.items()
            }
        )
    return buffer.getvalue()


def json_data(report: Report, files: Sequence[Path], command: str | None) -> dict[str, Any]:
    """``report.json``: the table's data, plus each run's overrides, sources, per-frame errors."""
    runs = []
    for run in report.runs:
        runs.append(
            {
                "name": run.name,
                "path": str(run.path),
                "varied": run.varied,
                "overrides": run.overrides,
                "problem": run.problem,
                "method": run.method,
                "model": run.model,
                "steps": run.steps,
                "seconds": run.seconds,
                "parameters": run.parameters,
                "train": run.train,
                "best_validation": run.best_validation,
                "metrics": run.metrics,
                "sources": run.sources,
                "eval_step": run.eval_step,
                "per_time": run.per_time,
            }
        )
    return {
        "command": command,
        "created": datetime.now().isoformat(timespec="seconds"),
        "sort": report.sort,
        "varied": report.varied,
        "common": report.common,
        "metrics": report.metric_keys,
        "runs": runs,
        "files": [f.name for f in files],
    }


# -- figures ---------------------------------------------------------------------------------
def _colours(count: int) -> list[Any]:
    from matplotlib import colormaps

    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    return [colormaps["viridis"](v) for v in np.linspace(0.0, 0.95, count)]


def _line_figure(
    path: Path,
    report: Report,
    curves: Mapping[int, tuple[Sequence[float], Sequence[float | None]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
) -> Path | None:
    """One line per run (``run index -> (x, y)``) on a log y-axis, in the same colour in
    every figure (values <= 0 or missing are gaps); None when nothing is positive."""
    from matplotlib.figure import Figure

    from pbdl_cli.evaluation.figures import save_figure

    colours = _colours(len(report.runs))
    data = []
    for index, (x, y) in curves.items():
        values = np.array([np.nan if v is None or v <= 0 else v for v in y], dtype=float)
        if np.isfinite(values).any():
            data.append((index, np.asarray(x, dtype=float), values))
    if not data:
        return None
    fig = Figure(figsize=(7.0, 4.4), layout="constrained")
    ax = fig.subplots()
    for index, x, y in data:
        run = report.runs[index]
        marker = "o" if len(x) <= 30 else None
        ax.plot(x, y, color=colours[index], marker=marker, ms=3, lw=1.4, label=label(run, report))
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small", ncol=1 if len(data) <= 8 else 2)
    return save_figure(fig, path)


def plot_error_vs_time(path: Path, report: Report) -> Path | None:
    """Per-frame rel_l2 (``eval/metrics.json`` ``per_time``) of every evaluated run."""
    curves = {}
    for index, run in enumerate(report.runs):
        if run.per_time and run.per_time.get("rel_l2"):
            t = [np.nan if v is None else v for v in run.per_time["t"]]
            curves[index] = (t, run.per_time["rel_l2"])
    title = "relative L2 error per frame (eval/metrics.json)"
    return _line_figure(path, report, curves, xlabel="t", ylabel="rel_l2", title=title)


def plot_loss_curves(path: Path, report: Report) -> Path | None:
    """``train/loss`` against the step (``metrics.jsonl``) of every run."""
    curves = {i: run.loss for i, run in enumerate(report.runs) if run.loss[0]}
    title = "training loss (metrics.jsonl)"
    return _line_figure(path, report, curves, xlabel="step", ylabel="train/loss", title=title)


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
