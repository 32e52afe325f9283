"""The comparison of train runs: what :mod:`pbdl_cli.stages.report` collects per run
(:class:`Run`), the runs together (:class:`Report`), the overrides that tell them apart
and the order they are shown in.

Override values are compared as canonical strings (:func:`canonical`), so ``0.10`` and
``0.1``, ``True`` and ``true`` are the same value; :func:`distinguishing` keeps the keys
whose values differ between the runs: what a sweep varies.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pbdl_cli.errors import PbdlError, did_you_mean

#: override keys that never distinguish runs (``hydra.*`` is skipped as well)
IGNORED_KEYS = frozenset({"resume"})
#: metric columns first in this order (when present), the others alphabetically after
PREFERRED = ("rel_l2", "mae", "mse", "max_error", "nrmse", "residual")
#: column keys of a run's own quantities (the others: ``train/<term>``, metrics, overrides)
PLAIN_KEYS = ("name", "steps", "seconds", "parameters", "best_validation")


@dataclasses.dataclass
class Run:
    """What :func:`~pbdl_cli.stages.report.load_run` collects from one run directory."""

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
    #: the distinguishing override values (filled by :func:`~pbdl_cli.stages.report.collect`)
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


def natural_key(text: str) -> list[Any]:
    """A sort key that orders ``2`` before ``10`` (Hydra's job numbers)."""
    return [
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)
    ]


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
        return (1, 0.0, natural_key(str(value)))
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


def label(run: Run, report: Report) -> str:
    """A run's legend label: its distinguishing overrides (with its name where these do not
    tell the runs apart)."""
    text = ", ".join(f"{k}={v}" for k, v in run.varied.items())
    labels = [", ".join(f"{k}={v}" for k, v in r.varied.items()) for r in report.runs]
    if text and labels.count(text) == 1:
        return text
    return f"{run.name}: {text}" if text else run.name
