"""Running a reproduction: its prepare commands, then every variant, then the report.

:func:`run_reproduction` trains and evaluates every variant in its own run directory
under ``out`` (as subprocesses of the ``pbdl`` command, so each one is an ordinary,
resumable run), judges the checks, then writes

    out/results.json   variant -> metrics (evaluation, training summary), and the checks
    out/report.md      the table of checks, notes, and the plots of every variant

and prints the table. Finished variants found in ``out`` with the same overrides are
reused; interrupted ones are resumed; so are prepared outputs made by the same command.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pbdl_cli.console import console
from pbdl_cli.errors import PbdlError
from pbdl_cli.reproduce.base import (
    Prepare,
    Reproduction,
    Variant,
    active_variants,
    substitute,
    variant_overrides,
)
from pbdl_cli.reproduce.checks import VariantResult
from pbdl_cli.reproduce.report import markdown, results_json, table
from pbdl_cli.reproduce.results import CheckResult, judge
from pbdl_cli.utils.files import atomic_write_text

#: ``pbdl evaluate`` arguments after ``run=``: the final model, as ``pbdl train`` reports it
#: (``best.pt`` may have been chosen by comparing with the reference)
EVALUATE = ["checkpoint=last"]


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
    results: dict[str, VariantResult] = {}
    variants = active_variants(repro, quick)
    for i, variant in enumerate(variants, 1):
        overrides = variant_overrides(variant, quick, out)
        results[variant.name] = _run_variant(
            variant, overrides, out / variant.name, f"[{i}/{len(variants)}]", force, prepared
        )
    checks = [judge(c, results, quick) for c in repro.checks if not (quick and c.full_only)]
    figures = repro.figures(out, results) if repro.figures is not None else []
    summary = repro.summary(results) if repro.summary is not None else ""
    payload = results_json(repro, quick, results, checks, out)
    atomic_write_text(out / "results.json", json.dumps(payload, indent=2))
    report = markdown(repro, checks, results, figures, quick, out, summary)
    atomic_write_text(out / "report.md", report)
    console.print(table(checks, quick))
    console.print(f"wrote {out / 'results.json'} and {out / 'report.md'}", soft_wrap=True)
    return checks


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
) -> VariantResult:
    # part of the identity: the evaluation and the commands that made the data
    identity = [f"# prepare {' '.join(args)}" for args in prepared]
    overrides = [*overrides, *identity, f"# evaluate {' '.join(EVALUATE)}"]
    marker = run_dir / "reproduce.json"
    metrics = run_dir / "eval" / "metrics.json"
    same = marker.exists() and json.loads(marker.read_text()).get("overrides") == overrides
    if same and metrics.exists() and (run_dir / "summary.json").exists() and not force:
        console.print(f"{counter} {variant.name}: reusing the finished run in {run_dir}")
        return VariantResult.load(run_dir)
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
    return VariantResult.load(run_dir)


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
    if run_dir.exists():
        shutil.rmtree(run_dir)
