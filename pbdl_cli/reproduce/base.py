"""Reproductions: published results, one command away, with the book's numbers beside ours.

A :class:`Reproduction` is a list of :class:`Variant` s (``pbdl train`` override lists,
usually one experiment preset each, plus a smaller ``quick`` setting for CI) and a list
of :class:`Check` s that compare one metric of one variant (or the mean over the
variants matching a pattern, e.g. the seeds ``sol_s*``) with a published value, a
bound, or another variant. Optional :class:`Prepare` commands (e.g. ``pbdl generate`` of
the datasets the variants train on) run first, with their outputs under ``out``;
``{out}`` in their arguments and in the variants' overrides stands for ``out``.
:func:`run_reproduction` trains and evaluates every variant in its own run directory
under ``out`` (as subprocesses of the ``pbdl`` command, so each one is an ordinary,
resumable run), then writes

    out/results.json   variant -> metrics (evaluation, training summary), and the checks
    out/report.md      the table of checks, notes, and the plots of every variant

and prints the table. Finished variants found in ``out`` with the same overrides are
reused; interrupted ones are resumed; so are prepared outputs made by the same command.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from pbdl_cli.console import console
from pbdl_cli.errors import PbdlError
from pbdl_cli.utils.files import atomic_write_text


@dataclasses.dataclass(frozen=True)
class Variant:
    """One training run of a reproduction.

    Attributes:
        name: short name, also the run directory's name.
        overrides: ``pbdl train`` overrides (e.g. ``["experiment=burgers_inverse_pinn"]``).
        quick: extra overrides for ``--quick`` (CI scale).
        label: a human-readable description for the report.
        full_only: left out with ``--quick`` (e.g. the second and third seed).
    """

    name: str
    overrides: tuple[str, ...]
    quick: tuple[str, ...] = ()
    label: str = ""
    full_only: bool = False


#: stands for the reproduction's output directory in overrides and prepare arguments
OUT = "{out}"


@dataclasses.dataclass(frozen=True)
class Prepare:
    """A ``pbdl`` command run before the variants, e.g. the ``pbdl generate`` of a dataset
    they train on (``data.root={out}/datasets``).

    Attributes:
        name: short name (its log is ``out/prepare/<name>.log``).
        args: ``pbdl`` arguments, the stage first (``("generate", "experiment=...")``).
        quick: extra arguments for ``--quick``.
        creates: what the command makes, relative to ``out``; the command is skipped when
            it exists and was made by the same arguments (else it is removed and remade).
    """

    name: str
    args: tuple[str, ...]
    creates: str
    quick: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        path = Path(self.creates)
        if not self.creates or path.is_absolute() or ".." in path.parts:
            raise ValueError(f"Prepare.creates must be a path inside out: {self.creates!r}")


@dataclasses.dataclass(frozen=True)
class Check:
    """One published (or expected) number and how ours is judged.

    ``metric`` names where the value comes from:
        ``eval.<key>``: ``eval/metrics.json`` of the variant (e.g. ``eval.mae``);
        ``summary.<key>``: ``summary.json`` of the training run (e.g. ``summary.seconds``);
        ``history.<key>@<i>``: the (i+1)-th record of ``metrics.jsonl`` that has ``key``,
        ``@-1`` for the last (e.g. ``history.train/obs@0``, ``history.val/data_mse@-1``).

    ``variant`` (and the variant of ``below``) may be a pattern (``sol_s*``, fnmatch):
    the value is then the mean over the matching variants that ran, and the report gives
    their spread.

    ``scale`` multiplies our value before it is judged (e.g. to match a published
    quantity's normalization).

    Exactly one criterion may be set (none: reported only): ``factor`` (ours within
    [published / factor, published * factor]), ``at_most`` (ours <= bound), ``at_least``
    or ``below`` (ours < ``below_factor`` times the value of another ``(variant, metric)``).
    """

    label: str
    variant: str
    metric: str
    published: float | None = None
    factor: float | None = None
    at_most: float | None = None
    at_least: float | None = None
    below: tuple[str, str] | None = None
    scale: float = 1.0
    #: judged in ``--quick`` mode too (qualitative checks that hold at CI scale)
    quick: bool = False
    below_factor: float = 1.0
    #: left out of ``--quick`` (its variants are ``full_only``)
    full_only: bool = False

    def target(self) -> str:
        if self.factor is not None:
            return f"within {self.factor:g}x of published"
        if self.at_most is not None:
            return f"<= {self.at_most:.3g}"
        if self.at_least is not None:
            return f">= {self.at_least:.3g}"
        if self.below is not None:
            factor = f"{self.below_factor:g} x " if self.below_factor != 1 else ""
            return f"< {factor}{self.below[0]} {_short(self.below[1])}"
        return "(reported)"

    def judge(self, value: float, other: float | None) -> bool | None:
        """True/False for pass/fail, None when the check only reports."""
        if not math.isfinite(value):
            return False
        if self.factor is not None and self.published is not None:
            return self.published / self.factor <= value <= self.published * self.factor
        if self.at_most is not None:
            return value <= self.at_most
        if self.at_least is not None:
            return value >= self.at_least
        if self.below is not None:
            return other is not None and value < self.below_factor * other
        return None


@dataclasses.dataclass(frozen=True)
class Reproduction:
    """A published result: variants to run and checks to judge (see module docstring)."""

    name: str
    title: str
    source: str
    variants: tuple[Variant, ...]
    checks: tuple[Check, ...]
    notes: str = ""
    #: optional extra figures: ``figures(out, results) -> [paths]`` (after all variants)
    figures: Callable[[Path, dict[str, Any]], list[Path]] | None = None
    #: commands that make what the variants need (datasets), run first
    prepare: tuple[Prepare, ...] = ()
    #: optional markdown of the results (e.g. a table over all variants), put into the
    #: report: ``summary(results) -> str``
    summary: Callable[[dict[str, Any]], str] | None = None


@dataclasses.dataclass(frozen=True)
class Spread:
    """Mean, extremes and standard deviation of a metric over several variants."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def __str__(self) -> str:
        if len(self.values) < 2:
            return _fmt(self.mean)
        return f"{_fmt(self.mean)} [{_fmt(min(self.values))}, {_fmt(max(self.values))}]"


@dataclasses.dataclass
class CheckResult:
    check: Check
    value: float | None
    other: float | None
    verdict: bool | None  # None: reported only, or not judged in quick mode
    #: the values behind ``value`` / ``other`` when their variant is a pattern
    spread: Spread | None = None
    other_spread: Spread | None = None


def _short(metric: str) -> str:
    return metric.split(".", 1)[-1]


# -- running --------------------------------------------------------------------------------
def run_reproduction(
    repro: Reproduction, *, quick: bool, out: Path, force: bool = False
) -> list[CheckResult]:
    """Run (or reuse) every variant, judge the checks, write the report; see module doc."""
    out.mkdir(parents=True, exist_ok=True)
    out = out.resolve()  # {out} in the commands of subprocesses
    console.print(
        f"[bold]{repro.title}[/bold] ({repro.source})"
        + (" [yellow]--quick: reduced CI-scale settings[/yellow]" if quick else ""),
        soft_wrap=True,
    )
    console.print(f"output directory: {out}", soft_wrap=True)
    prepared = [_run_prepare(step, quick, out, force) for step in repro.prepare]
    results: dict[str, Any] = {}
    variants = active_variants(repro, quick)
    for i, variant in enumerate(variants, 1):
        overrides = variant_overrides(variant, quick, out)
        results[variant.name] = _run_variant(
            variant, overrides, out / variant.name, f"[{i}/{len(variants)}]", force, prepared
        )
    checks = [_judge(c, results, quick) for c in repro.checks if not (quick and c.full_only)]
    figures = repro.figures(out, results) if repro.figures is not None else []
    summary = repro.summary(results) if repro.summary is not None else ""
    payload = {
        "reproduction": repro.name,
        "quick": quick,
        "variants": results,
        "checks": [
            {
                "label": r.check.label,
                "variant": r.check.variant,
                "metric": r.check.metric,
                "published": r.check.published,
                "ours": r.value,
                "target": r.check.target(),
                "pass": r.verdict,
            }
            | _spread_json(r)
            for r in checks
        ],
    }
    atomic_write_text(out / "results.json", json.dumps(payload, indent=2))
    report = _markdown(repro, checks, results, figures, quick, out, summary)
    atomic_write_text(out / "report.md", report)
    console.print(_table(checks, quick))
    console.print(f"wrote {out / 'results.json'} and {out / 'report.md'}", soft_wrap=True)
    return checks


#: ``pbdl evaluate`` arguments after ``run=``: the final model, as ``pbdl train`` reports it
#: (``best.pt`` may have been chosen by comparing with the reference)
EVALUATE = ["checkpoint=last"]


def active_variants(repro: Reproduction, quick: bool) -> list[Variant]:
    """The variants run in this mode (``--quick`` leaves out the ``full_only`` ones)."""
    return [v for v in repro.variants if not (quick and v.full_only)]


def substitute(args: list[str] | tuple[str, ...], out: Path) -> list[str]:
    """``args`` with :data:`OUT` replaced by the output directory ``out``."""
    return [a.replace(OUT, str(out)) for a in args]


def variant_overrides(variant: Variant, quick: bool, out: Path) -> list[str]:
    """The ``pbdl train`` overrides of ``variant`` in this mode, for output directory ``out``."""
    return substitute([*variant.overrides, *(variant.quick if quick else ())], out)


def _run_prepare(step: Prepare, quick: bool, out: Path, force: bool) -> list[str]:
    """Run one :class:`Prepare` command unless its output exists from the same arguments;
    the arguments."""
    args = substitute([*step.args, *(step.quick if quick else ())], out)
    target = out / step.creates
    folder = out / "prepare"
    marker = folder / f"{step.name}.json"
    same = marker.exists() and json.loads(marker.read_text()).get("args") == args
    if same and target.exists() and not force:
        console.print(f"prepare {step.name}: reusing {target}", soft_wrap=True)
        return args
    marker.unlink(missing_ok=True)
    if target.is_dir():
        _clear(target)
    else:
        target.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / f"{step.name}.log"
    start = time.perf_counter()
    with log_path.open("a") as log, console.status(f"prepare {step.name} ...", spinner="dots"):
        code = _pbdl(args, log)
    if code != 0 or not target.exists():
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-15:])
        what = f"exit {code}" if code != 0 else f"it did not create {target}"
        raise PbdlError(
            f"prepare {step.name} failed ({what}); command: pbdl {' '.join(args)}\n"
            f"last lines of {log_path}:\n{tail}",
            exit_code=130 if code == 130 else 1,
        )
    atomic_write_text(marker, json.dumps({"args": args}, indent=2))
    console.print(f"prepare {step.name}: done in {time.perf_counter() - start:.0f} s")
    return args


def _run_variant(
    variant: Variant,
    overrides: list[str],
    run_dir: Path,
    counter: str,
    force: bool,
    prepared: Sequence[list[str]] = (),
) -> dict[str, Any]:
    # part of the identity: the evaluation and the commands that made the data
    identity = [f"# prepare {' '.join(args)}" for args in prepared]
    overrides = [*overrides, *identity, f"# evaluate {' '.join(EVALUATE)}"]
    marker = run_dir / "reproduce.json"
    metrics = run_dir / "eval" / "metrics.json"
    same = marker.exists() and json.loads(marker.read_text()).get("overrides") == overrides
    if same and metrics.exists() and (run_dir / "summary.json").exists() and not force:
        console.print(f"{counter} {variant.name}: reusing the finished run in {run_dir}")
        return _collect(run_dir)
    resume = same and (run_dir / "checkpoints" / "last.pt").exists() and not force
    if not same or force:
        _clear(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps({"overrides": overrides}, indent=2))
    log_path = run_dir / "reproduce.log"
    train = ["train", *overrides[: -1 - len(identity)], f"hydra.run.dir={run_dir}"]
    if resume:
        train.append("resume=true")
    steps = [("train", train), ("evaluate", ["evaluate", f"run={run_dir}", *EVALUATE])]
    start = time.perf_counter()
    with log_path.open("a") as log:
        for what, args in steps:
            label = f"{counter} {variant.name}: {what}"
            with console.status(f"{label} ...", spinner="dots"):
                code = _pbdl(args, log)
            if code != 0:
                tail = "".join(log_path.read_text().splitlines(keepends=True)[-15:])
                raise PbdlError(
                    f"{label} failed (exit {code}); command: pbdl {' '.join(args)}\n"
                    f"last lines of {log_path}:\n{tail}",
                    exit_code=130 if code == 130 else 1,
                )
    console.print(f"{counter} {variant.name}: done in {time.perf_counter() - start:.0f} s")
    return _collect(run_dir)


def _pbdl(args: list[str], log: Any) -> int:
    """Run ``pbdl <args>`` in a subprocess with output to ``log``; its exit code."""
    log.write(f"$ pbdl {' '.join(args)}\n")
    log.flush()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pbdl_cli", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        return proc.wait()
    except KeyboardInterrupt:  # the child got the SIGINT too: let it save its checkpoint
        return proc.wait()


def _clear(run_dir: Path) -> None:
    import shutil

    if run_dir.exists():
        shutil.rmtree(run_dir)


def _collect(run_dir: Path) -> dict[str, Any]:
    history = []
    path = run_dir / "metrics.jsonl"
    if path.exists():
        history = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {
        "run": str(run_dir),
        "eval": _read_json(run_dir / "eval" / "metrics.json"),
        "summary": _read_json(run_dir / "summary.json"),
        "history": history,
    }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise PbdlError(f"cannot read {path}: {error}", exit_code=1) from error


def lookup(result: dict[str, Any], metric: str) -> float | None:
    """The value of ``metric`` (see :class:`Check`) in one variant's collected result."""
    source, _, key = metric.partition(".")
    if source == "history":
        key, _, index = key.rpartition("@")
        records = [r for r in result["history"] if key in r]
        try:
            value = records[int(index)].get(key)
        except (IndexError, ValueError):
            return None
    elif source == "eval":  # the metrics, then the rest of eval/metrics.json
        value = result["eval"].get("metrics", {}).get(key, result["eval"].get(key))
    elif source == "summary":
        value = result["summary"]
        for part in key.split("/"):
            value = value.get(part) if isinstance(value, dict) else None
    else:
        raise ValueError(f"unknown metric source in {metric!r}")
    return float(value) if isinstance(value, int | float) else None


def aggregate(
    results: dict[str, Any], variant: str, metric: str
) -> tuple[float | None, Spread | None]:
    """The value of ``metric`` of ``variant``, or with a pattern (``sol_s*``) the mean over
    the matching variants in ``results`` and their :class:`Spread` (None when one lacks
    the metric or none matches)."""
    if not _is_pattern(variant):
        result = results.get(variant)
        return (None if result is None else lookup(result, metric)), None
    names = [n for n in results if fnmatch.fnmatchcase(n, variant)]
    values = [lookup(results[n], metric) for n in names]
    if not values or any(v is None for v in values):
        return None, None
    spread = Spread(tuple(float(v) for v in values if v is not None))
    return spread.mean, spread


def _is_pattern(name: str) -> bool:
    return any(c in name for c in "*?[")


def _judge(check: Check, results: dict[str, Any], quick: bool) -> CheckResult:
    value, spread = aggregate(results, check.variant, check.metric)
    value = None if value is None else value * check.scale
    if spread is not None and check.scale != 1:
        spread = Spread(tuple(v * check.scale for v in spread.values))
    other, other_spread = aggregate(results, *check.below) if check.below else (None, None)
    verdict = None if value is None else check.judge(value, other)
    if value is None and (check.factor or check.at_most or check.at_least or check.below):
        verdict = False
    if quick and not check.quick:
        verdict = None
    return CheckResult(check, value, other, verdict, spread, other_spread)


def _spread_json(r: CheckResult) -> dict[str, Any]:
    """The spread entries of a check in results.json (only where a pattern was used)."""
    entries: dict[str, Any] = {}
    for key, spread in (("ours", r.spread), ("other", r.other_spread)):
        if spread is not None:
            values = spread.values
            entries[f"{key}_values"] = list(values)
            entries |= {f"{key}_min": min(values), f"{key}_max": max(values)}
            entries[f"{key}_std"] = spread.std
    if r.check.below is not None:
        entries["other"] = r.other
    return entries


def failed(checks: list[CheckResult]) -> list[CheckResult]:
    return [r for r in checks if r.verdict is False]


# -- output ---------------------------------------------------------------------------------
def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.3e}"


def _verdict(result: CheckResult, quick: bool) -> str:
    if result.verdict is None:
        return "not judged (--quick)" if quick and result.check.target() != "(reported)" else ""
    return "pass" if result.verdict else "FAIL"


def _ours(r: CheckResult) -> str:
    """Our value, with the [min, max] of the variants behind a pattern."""
    return _fmt(r.value) if r.spread is None or r.value is None else str(r.spread)


def _target(r: CheckResult) -> str:
    """The target, with the other variant's value where it is one."""
    target = r.check.target()
    if r.check.below is None or r.other is None:
        return target
    other = str(r.other_spread) if r.other_spread is not None else _fmt(r.other)
    return f"{target} ({other})"


def _table(checks: list[CheckResult], quick: bool) -> Table:
    table = Table(header_style="bold", title="published vs pbdl")
    for column in ("quantity", "variant", "published", "pbdl", "target", "verdict"):
        table.add_column(column, justify="right" if column in ("published", "pbdl") else "left")
    for r in checks:
        verdict = _verdict(r, quick)
        style = {"pass": "green", "FAIL": "bold red"}.get(verdict, "dim")
        table.add_row(
            r.check.label,
            r.check.variant,
            _fmt(r.check.published),
            _ours(r),
            _target(r),
            f"[{style}]{verdict}[/{style}]" if verdict else "",
        )
    return table


def _markdown(
    repro: Reproduction,
    checks: list[CheckResult],
    results: dict[str, Any],
    figures: list[Path],
    quick: bool,
    out: Path,
    summary: str = "",
) -> str:
    lines = [f"# {repro.title}", "", f"Source: {repro.source}.", ""]
    command = f"pbdl reproduce {repro.name}" + (" --quick" if quick else "")
    lines += [f"Command: `{command}`" + (" (reduced CI-scale settings)" if quick else ""), ""]
    lines += ["| quantity | variant | published | pbdl | target | verdict |", "|---" * 6 + "|"]
    for r in checks:
        cells = [r.check.label, r.check.variant, _fmt(r.check.published), _ours(r)]
        cells += [_target(r), _verdict(r, quick)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if any(r.spread is not None for r in checks):
        lines += ["", "Values of a pattern (`sol_s*`) are means over its variants, [min, max]."]
    if summary:
        lines += ["", "## Results", "", summary.strip()]
    if repro.prepare:
        lines += ["", "## Data", ""]
        for step in repro.prepare:
            args = [*step.args, *(step.quick if quick else ())]
            lines.append(f"- **{step.name}**: `pbdl {' '.join(args)}` (`{step.creates}`)")
    lines += ["", "## Variants", ""]
    for variant in active_variants(repro, quick):
        result = results[variant.name]
        overrides = [*variant.overrides, *(variant.quick if quick else ())]
        seconds = result["summary"].get("seconds")
        lines.append(f"- **{variant.name}**: {variant.label}")
        lines.append(f"  `pbdl train {' '.join(overrides)}`")
        if seconds is not None:
            lines.append(f"  (training {seconds:.1f} s, run directory `{variant.name}/`)")
    if repro.notes:
        lines += ["", "## Notes", "", repro.notes.strip()]
    images = list(figures)
    for variant in active_variants(repro, quick):
        images += sorted((out / variant.name / "eval").glob("*.png"))
    if images:
        lines += ["", "## Plots", ""]
        for path in images:
            rel = path.relative_to(out) if path.is_relative_to(out) else path
            lines.append(f"![{rel}]({rel})")
    return "\n".join(lines) + "\n"
