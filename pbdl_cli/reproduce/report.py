"""What a reproduction writes: ``results.json``, ``report.md`` and the printed table.

Paths in ``results.json`` and ``report.md`` are relative to the output directory that
holds them (``pinn``, ``pinn/checkpoints/last.pt``), so a report copied elsewhere (as
``scripts/reproduce_all.py`` copies them to ``scripts/results/``) names no machine path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.table import Table

from pbdl_cli.reproduce.base import Reproduction, active_variants
from pbdl_cli.reproduce.checks import VariantResult
from pbdl_cli.reproduce.results import CheckResult, fmt


def relative_paths(value: Any, folder: Path) -> Any:
    """``value`` (JSON data) with every string that is an absolute path inside ``folder``
    written relative to it (``folder`` itself as ``.``)."""
    if isinstance(value, dict):
        return {k: relative_paths(v, folder) for k, v in value.items()}
    if isinstance(value, list):
        return [relative_paths(v, folder) for v in value]
    if isinstance(value, str) and value.startswith(os.sep):
        path = Path(value)
        if path.is_relative_to(folder):
            return path.relative_to(folder).as_posix() or "."
    return value


def results_json(
    repro: Reproduction,
    quick: bool,
    results: Mapping[str, VariantResult],
    checks: list[CheckResult],
    out: Path,
) -> dict[str, Any]:
    """The content of ``out/results.json``: every variant's collected result and the
    judged checks."""
    variants = {name: result.to_json() for name, result in results.items()}
    return {
        "reproduction": repro.name,
        "quick": quick,
        "variants": relative_paths(variants, out),
        "checks": [
            {
                "label": r.check.label,
                "variant": r.check.variant,
                "metric": str(r.check.metric),
                "published": r.check.published,
                "ours": r.value,
                "target": r.check.target(),
                "pass": r.verdict,
            }
            | _spread_json(r)
            for r in checks
        ],
    }


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


def verdict(result: CheckResult, quick: bool) -> str:
    if result.verdict is None:
        return "not judged (--quick)" if quick and result.check.criterion is not None else ""
    return "pass" if result.verdict else "FAIL"


def ours(r: CheckResult) -> str:
    """Our value, with the [min, max] of the variants behind a pattern."""
    return fmt(r.value) if r.spread is None or r.value is None else str(r.spread)


def target(r: CheckResult) -> str:
    """The target, with the other variant's value where it is one."""
    text = r.check.target()
    if r.check.below is None or r.other is None:
        return text
    other = str(r.other_spread) if r.other_spread is not None else fmt(r.other)
    return f"{text} ({other})"


def table(checks: list[CheckResult], quick: bool) -> Table:
    """The printed table of the checks."""
    rich_table = Table(header_style="bold", title="published vs pbdl")
    for column in ("quantity", "variant", "published", "pbdl", "target", "verdict"):
        justify = "right" if column in ("published", "pbdl") else "left"
        rich_table.add_column(column, justify=justify)
    for r in checks:
        text = verdict(r, quick)
        style = {"pass": "green", "FAIL": "bold red"}.get(text, "dim")
        rich_table.add_row(
            r.check.label,
            r.check.variant,
            fmt(r.check.published),
            ours(r),
            target(r),
            f"[{style}]{text}[/{style}]" if text else "",
        )
    return rich_table


def markdown(
    repro: Reproduction,
    checks: list[CheckResult],
    results: Mapping[str, VariantResult],
    figures: list[Path],
    quick: bool,
    out: Path,
    summary: str = "",
) -> str:
    """The content of ``out/report.md``."""
    lines = [f"# {repro.title}", "", f"Source: {repro.source}.", ""]
    command = f"pbdl reproduce {repro.name}" + (" --quick" if quick else "")
    lines += [f"Command: `{command}`" + (" (reduced CI-scale settings)" if quick else ""), ""]
    lines += ["| quantity | variant | published | pbdl | target | verdict |", "|---" * 6 + "|"]
    for r in checks:
        cells = [r.check.label, r.check.variant, fmt(r.check.published), ours(r)]
        cells += [target(r), verdict(r, quick)]
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
        seconds = result.summary.get("seconds")
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
            rel = Path(os.path.relpath(path, out)).as_posix()
            lines.append(f"![{rel}]({rel})")
    return "\n".join(lines) + "\n"
