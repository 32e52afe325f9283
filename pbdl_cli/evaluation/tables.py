"""Tables of ``pbdl report`` and ``pbdl evaluate``: the comparison of runs
(:class:`~pbdl_cli.evaluation.comparison.Report`) as a rich table for the terminal, and
as the text of ``report.md``, ``report.csv`` and ``report.json``; the metrics of one
evaluation (``metrics.json``) as a rich table (:func:`print_evaluation`).

Report cells show seconds with one decimal and other numbers with 4 significant digits
(:func:`fmt`); the CSV and JSON keep full precision.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from pbdl_cli.console import console
from pbdl_cli.evaluation.comparison import Report, Run

#: the width a name column is counted with when fitting the table (names fold)
TEXT_WIDTH = 12


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


# -- pbdl evaluate ----------------------------------------------------------------------------
def print_evaluation(result: Mapping[str, Any], out_dir: Path) -> None:
    """Print what ``pbdl evaluate`` wrote: the metrics of ``metrics.json`` as a table, the
    prediction's runtime (and speed-up over the reference solver) and the output folder."""
    table = Table(header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result["metrics"].items():
        table.add_row(key, "n/a" if value is None else f"{value:.4e}")
    if not result["metrics"]:
        table.add_row("(none)", "no reference, residual or problem metrics")
    console.print(
        f"{result['method']} / {result['model']} on {result['problem']}, "
        f"{Path(result['checkpoint']).name} (step {result['step']}), "
        f"prediction {result['shape']}",
        soft_wrap=True,
    )
    console.print(table)
    runtime = result.get("runtime") or {}
    if "seconds_per_step" in runtime:
        line = (
            f"prediction: {runtime['predict_seconds']:.3g} s for {runtime['trajectories']} "
            f"trajectories x {runtime['steps']} steps ({runtime['seconds_per_step']:.3g} s/step)"
        )
        fine = runtime.get("reference_solver")
        if fine:
            line += (
                f"; the reference solver on {'x'.join(map(str, fine['grid']))} cells: "
                f"{fine['seconds_per_step']:.3g} s/step (speed-up {runtime['speedup']:.3g}x)"
            )
        console.print(line, soft_wrap=True)
    console.print(f"evaluation written to {out_dir}", soft_wrap=True)
