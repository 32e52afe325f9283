"""Judging the checks of a reproduction on the collected results of its variants.

:func:`aggregate` reads one metric of one variant, or the mean over the variants matching
a pattern (``sol_s*``) with its :class:`Spread`; :func:`judge` turns a :class:`Check` into
a :class:`CheckResult` (our value, the compared one, the verdict).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import statistics
from collections.abc import Mapping

from pbdl_cli.reproduce.checks import Check, MetricRef, VariantResult


def fmt(value: float | None) -> str:
    """A number as the tables print it (``-`` for none)."""
    if value is None:
        return "-"
    return f"{value:.4g}" if 1e-3 <= abs(value) < 1e4 or value == 0 else f"{value:.3e}"


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
            return fmt(self.mean)
        return f"{fmt(self.mean)} [{fmt(min(self.values))}, {fmt(max(self.values))}]"


@dataclasses.dataclass
class CheckResult:
    check: Check
    value: float | None
    other: float | None
    verdict: bool | None  # None: reported only, or not judged in quick mode
    #: the values behind ``value`` / ``other`` when their variant is a pattern
    spread: Spread | None = None
    other_spread: Spread | None = None


def is_pattern(name: str) -> bool:
    return any(c in name for c in "*?[")


def aggregate(
    results: Mapping[str, VariantResult], variant: str, metric: MetricRef
) -> tuple[float | None, Spread | None]:
    """The value of ``metric`` of ``variant``, or with a pattern (``sol_s*``) the mean over
    the matching variants in ``results`` and their :class:`Spread` (None when one lacks
    the metric or none matches)."""
    if not is_pattern(variant):
        result = results.get(variant)
        return (None if result is None else metric.read(result)), None
    names = [n for n in results if fnmatch.fnmatchcase(n, variant)]
    values = [metric.read(results[n]) for n in names]
    if not values or any(v is None for v in values):
        return None, None
    spread = Spread(tuple(float(v) for v in values if v is not None))
    return spread.mean, spread


def judge(check: Check, results: Mapping[str, VariantResult], quick: bool) -> CheckResult:
    """Our value of ``check`` (scaled), the value it is compared with, and the verdict
    (None for checks not judged at ``--quick`` scale)."""
    value, spread = aggregate(results, check.variant, check.metric)
    value = None if value is None else value * check.scale
    if spread is not None and check.scale != 1:
        spread = Spread(tuple(v * check.scale for v in spread.values))
    below = check.below
    other, other_spread = aggregate(results, below.variant, below.metric) if below else (None, None)
    verdict = None if quick and not check.quick else check.judge(value, other)
    return CheckResult(check, value, other, verdict, spread, other_spread)


def failed(checks: list[CheckResult]) -> list[CheckResult]:
    return [r for r in checks if r.verdict is False]
