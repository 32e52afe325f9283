"""Reproduction checks as typed objects: where a number comes from, and how it is judged.

A :class:`Check` compares one metric of one variant (or the mean over the variants
matching a pattern, e.g. the seeds ``sol_s*``) with a published value, a bound or another
variant. Its parts:

- a metric reference says where the value is in a variant's :class:`VariantResult`:
  :class:`Eval` (``eval/metrics.json``), :class:`Summary` (``summary.json``) or
  :class:`History` (one record of ``metrics.jsonl``), :class:`EpochMean` (an epoch's
  sample-weighted mean of a per-step record, as notebooks print their epoch losses) or
  :class:`PerCondition` (the worst test condition of a probabilistic run's evaluation);
- a criterion says how ours is judged: :class:`Within` (a factor of the published
  value), :class:`Near` (an absolute distance to it, for deterministic numbers),
  :class:`AtMost`, :class:`AtLeast` (bounds) or :class:`Below` (another variant's
  value, optionally times a factor); none: the number is only reported.

Every part checks its arguments when it is made, so a malformed check fails when its
reproduction module is imported, not at the end of a long run. ``str()`` of a metric
reference is its stable name in ``results.json`` (``eval.mae``, ``summary.seconds``,
``history.train/obs@0``).
"""

from __future__ import annotations

import abc
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from pbdl_cli.errors import PbdlError


@dataclasses.dataclass(frozen=True)
class VariantResult:
    """What one finished variant left in its run directory.

    Attributes:
        run: the run directory (absolute).
        eval: ``eval/metrics.json`` (its ``metrics`` and the evaluation's other entries).
        summary: ``summary.json`` of the training run.
        history: the records of ``metrics.jsonl``, in order.
    """

    run: Path
    eval: dict[str, Any]
    summary: dict[str, Any]
    history: list[dict[str, Any]]

    @classmethod
    def load(cls, run_dir: Path) -> VariantResult:
        history = []
        path = run_dir / "metrics.jsonl"
        if path.exists():
            lines = path.read_text().splitlines()
            history = [json.loads(line) for line in lines if line.strip()]
        return cls(
            run=run_dir,
            eval=_read_json(run_dir / "eval" / "metrics.json"),
            summary=_read_json(run_dir / "summary.json"),
            history=history,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "run": str(self.run),
            "eval": self.eval,
            "summary": self.summary,
            "history": self.history,
        }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise PbdlError(f"cannot read {path}: {error}", exit_code=1) from error


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


# -- metric references ----------------------------------------------------------------------
class MetricRef(abc.ABC):
    """Where a number is in a :class:`VariantResult`; ``str()`` is its name."""

    key: str

    @abc.abstractmethod
    def read(self, result: VariantResult) -> float | None:
        """The value in ``result``; None when it is missing or not a number."""

    @property
    def short(self) -> str:
        """The name without its source, for target texts (``mae``, ``train/obs@0``)."""
        return str(self).split(".", 1)[-1]


def _check_key(kind: str, key: str) -> None:
    if not isinstance(key, str) or not key or key != key.strip() or "@" in key:
        raise ValueError(f"{kind}: the key must be a non-empty name without '@': {key!r}")


@dataclasses.dataclass(frozen=True)
class Eval(MetricRef):
    """An entry of ``eval/metrics.json``: its ``metrics``, else the file's top level
    (e.g. ``Eval("mae")``, ``Eval("step")``)."""

    key: str

    def __post_init__(self) -> None:
        _check_key("Eval", self.key)

    def read(self, result: VariantResult) -> float | None:
        return _number(result.eval.get("metrics", {}).get(self.key, result.eval.get(self.key)))

    def __str__(self) -> str:
        return f"eval.{self.key}"


@dataclasses.dataclass(frozen=True)
class Summary(MetricRef):
    """An entry of ``summary.json``, ``/`` for nesting (``Summary("test/rel_l2")``)."""

    key: str

    def __post_init__(self) -> None:
        _check_key("Summary", self.key)
        if "" in self.key.split("/"):
            raise ValueError(f"Summary: empty part in {self.key!r}")

    def read(self, result: VariantResult) -> float | None:
        value: Any = result.summary
        for part in self.key.split("/"):
            value = value.get(part) if isinstance(value, dict) else None
        return _number(value)

    def __str__(self) -> str:
        return f"summary.{self.key}"


@dataclasses.dataclass(frozen=True)
class History(MetricRef):
    """``key`` in the ``at``-th record of ``metrics.jsonl`` that has it (0 the first, -1
    the last), e.g. ``History("train/obs", at=0)``, ``History("val/data_mse", at=-1)``."""

    key: str
    at: int

    def __post_init__(self) -> None:
        _check_key("History", self.key)
        if not isinstance(self.at, int) or isinstance(self.at, bool):
            raise ValueError(f"History: 'at' must be an integer index, got {self.at!r}")

    def read(self, result: VariantResult) -> float | None:
        records = [r for r in result.history if self.key in r]
        if not -len(records) <= self.at < len(records):
            return None
        return _number(records[self.at].get(self.key))

    def __str__(self) -> str:
        return f"history.{self.key}@{self.at}"


@dataclasses.dataclass(frozen=True)
class EpochMean(MetricRef):
    """The mean of ``key`` over the steps of one epoch of ``n`` samples in batches of
    ``batch`` (``ceil(n / batch)`` steps; the last batch holds the rest and weighs by its
    size): sum_b |b| loss_b / n, what a notebook's ``running_loss += loss * len(batch)``
    prints. ``weights="batches"``: the plain mean over the epoch's batches, what
    ``running_loss / len(data_loader)`` prints (the last, smaller batch counts as much as
    the others). ``epoch`` counts from 1; -1 is the last complete epoch. Needs a record
    of ``key`` at every step (``trainer.log_every=1``); None when the epoch has a gap."""

    key: str
    epoch: int
    n: int
    batch: int
    weights: str = "samples"

    def __post_init__(self) -> None:
        _check_key("EpochMean", self.key)
        for name in ("epoch", "n", "batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"EpochMean: {name} must be an integer, got {value!r}")
        if self.epoch == 0 or self.epoch < -1 or self.n < 1 or self.batch < 1:
            raise ValueError("EpochMean: epoch must be >= 1 (or -1 for the last), n, batch >= 1")
        if self.weights not in ("samples", "batches"):
            raise ValueError(f"EpochMean: weights must be samples or batches, got {self.weights!r}")

    def read(self, result: VariantResult) -> float | None:
        per_epoch = -(-self.n // self.batch)
        values = {r["step"]: r[self.key] for r in result.history if self.key in r and "step" in r}
        epoch = self.epoch if self.epoch > 0 else max(values, default=0) // per_epoch
        if epoch < 1:
            return None
        first = (epoch - 1) * per_epoch + 1  # records carry the step count after the step
        steps = range(first, first + per_epoch)
        if not all(isinstance(values.get(s), int | float) for s in steps):
            return None
        if self.weights == "batches":
            return math.fsum(float(values[s]) for s in steps) / per_epoch
        sizes = [self.batch] * (per_epoch - 1) + [self.n - (per_epoch - 1) * self.batch]
        return sum(size * values[s] for size, s in zip(sizes, steps, strict=True)) / self.n

    def __str__(self) -> str:
        return f"history.{self.key}@epoch{self.epoch}"


@dataclasses.dataclass(frozen=True)
class PerCondition(MetricRef):
    """The ``reduce`` (min or max) over the test conditions of score ``key`` in the
    evaluation's ``per_condition`` list (``eval/metrics.json`` of a conditional
    probabilistic run: one entry of scores per test condition), e.g.
    ``PerCondition("near_branch", "min")``."""

    key: str
    reduce: str

    def __post_init__(self) -> None:
        _check_key("PerCondition", self.key)
        if self.reduce not in ("min", "max"):
            raise ValueError(f"PerCondition: reduce must be 'min' or 'max', got {self.reduce!r}")

    def read(self, result: VariantResult) -> float | None:
        rows = result.eval.get("metrics", {}).get("per_condition")
        if not isinstance(rows, list) or not rows:
            return None
        values = [_number(r.get(self.key)) if isinstance(r, dict) else None for r in rows]
        if any(v is None for v in values):
            return None
        return (min if self.reduce == "min" else max)(values)  # type: ignore[type-var]

    def __str__(self) -> str:
        return f"eval.per_condition.{self.key}@{self.reduce}"


# -- criteria -------------------------------------------------------------------------------
class Criterion(abc.ABC):
    """How our (finite) value is judged."""

    @abc.abstractmethod
    def target(self) -> str:
        """The target as the report prints it."""

    @abc.abstractmethod
    def holds(self, value: float, published: float | None, other: float | None) -> bool:
        """Whether ``value`` passes; ``other`` is the value a :class:`Below` names."""


def _positive(kind: str, name: str, value: float, minimum: float = 0.0) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= minimum:
        raise ValueError(f"{kind}: {name} must be a finite number > {minimum:g}, got {value!r}")


def _finite(kind: str, value: float) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{kind}: the bound must be a finite number, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Within(Criterion):
    """Ours in [published / factor, published x factor] (the check needs ``published``)."""

    factor: float

    def __post_init__(self) -> None:
        _positive("Within", "the factor", self.factor, minimum=1.0)

    def target(self) -> str:
        return f"within {self.factor:g}x of published"

    def holds(self, value: float, published: float | None, other: float | None) -> bool:
        assert published is not None  # Check requires it
        return published / self.factor <= value <= published * self.factor


@dataclasses.dataclass(frozen=True)
class Near(Criterion):
    """|ours - published| <= ``tolerance`` (the check needs ``published``): deterministic
    numbers such as the iterates of a fixed optimization."""

    tolerance: float

    def __post_init__(self) -> None:
        _positive("Near", "the tolerance", self.tolerance)

    def target(self) -> str:
        return f"within {self.tolerance:g} of published"

    def holds(self, value: float, published: float | None, other: float | None) -> bool:
        assert published is not None  # Check requires it
        return abs(value - published) <= self.tolerance


@dataclasses.dataclass(frozen=True)
class AtMost(Criterion):
    """Ours <= ``bound``."""

    bound: float

    def __post_init__(self) -> None:
        _finite("AtMost", self.bound)

    def target(self) -> str:
        return f"<= {self.bound:.3g}"

    def holds(self, value: float, published: float | None, other: float | None) -> bool:
        return value <= self.bound


@dataclasses.dataclass(frozen=True)
class AtLeast(Criterion):
    """Ours >= ``bound``."""

    bound: float

    def __post_init__(self) -> None:
        _finite("AtLeast", self.bound)

    def target(self) -> str:
        return f">= {self.bound:.3g}"

    def holds(self, value: float, published: float | None, other: float | None) -> bool:
        return value >= self.bound


@dataclasses.dataclass(frozen=True)
class Below(Criterion):
    """Ours < ``factor`` x the ``metric`` of ``variant`` (a name or a pattern such as
    ``pre_s*``: then the mean over the matching variants)."""

    variant: str
    metric: MetricRef
    factor: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.variant, str) or not self.variant:
            raise ValueError(f"Below: the variant must be a non-empty name: {self.variant!r}")
        if not isinstance(self.metric, MetricRef):
            raise TypeError(f"Below: metric must be Eval, Summary or History: {self.metric!r}")
        _positive("Below", "the factor", self.factor)

    def target(self) -> str:
        factor = f"{self.factor:g} x " if self.factor != 1 else ""
        return f"< {factor}{self.variant} {self.metric.short}"

    def holds(self, value: float, published: float | None, other: float | None) -> bool:
        return other is not None and value < self.factor * other


# -- checks ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Check:
    """One published (or expected) number and how ours is judged.

    Attributes:
        label: the quantity, as the report names it.
        variant: a variant's name, or a pattern (``sol_s*``, fnmatch): then the value is
            the mean over the matching variants that ran, and the report gives their spread.
        metric: where the value comes from (:class:`Eval`, :class:`Summary`, :class:`History`).
        published: the published value (printed; :class:`Within` judges against it).
        criterion: how ours is judged; None: reported only.
        scale: multiplies our value before it is judged (e.g. to match a published
            quantity's normalization).
        quick: judged in ``--quick`` mode too (qualitative checks that hold at CI scale).
        full_only: left out of ``--quick`` (its variants are ``full_only``).
    """

    label: str
    variant: str
    metric: MetricRef
    published: float | None = None
    criterion: Criterion | None = None
    scale: float = 1.0
    quick: bool = False
    full_only: bool = False

    def __post_init__(self) -> None:
        where = f"check {self.label!r}"
        if not isinstance(self.label, str) or not self.label:
            raise ValueError(f"a check needs a label: {self.label!r}")
        if not isinstance(self.variant, str) or not self.variant:
            raise ValueError(f"{where}: the variant must be a non-empty name: {self.variant!r}")
        if not isinstance(self.metric, MetricRef):
            raise TypeError(f"{where}: metric must be Eval, Summary or History: {self.metric!r}")
        if self.criterion is not None and not isinstance(self.criterion, Criterion):
            raise TypeError(f"{where}: criterion must be a Criterion: {self.criterion!r}")
        if self.published is not None and not isinstance(self.published, int | float):
            raise ValueError(f"{where}: published must be a number: {self.published!r}")
        if isinstance(self.criterion, Within | Near) and self.published is None:
            name = type(self.criterion).__name__
            raise ValueError(f"{where}: {name} needs a published value")
        _positive(where, "scale", self.scale)
        if self.quick and self.criterion is None:
            raise ValueError(f"{where}: quick=True judges at CI scale, but it has no criterion")
        if self.quick and self.full_only:
            raise ValueError(f"{where}: quick and full_only exclude each other")

    @property
    def below(self) -> Below | None:
        """The criterion when it compares with another variant."""
        return self.criterion if isinstance(self.criterion, Below) else None

    def target(self) -> str:
        return "(reported)" if self.criterion is None else self.criterion.target()

    def judge(self, value: float | None, other: float | None) -> bool | None:
        """True/False for pass/fail, None when the check only reports. A non-finite
        value fails even a reported-only check (the run diverged); a missing one fails
        a judged check."""
        if value is None:
            return None if self.criterion is None else False
        if not math.isfinite(value):
            return False
        if self.criterion is None:
            return None
        return self.criterion.holds(value, self.published, other)
