"""The reproduction type and its registry: what a published result runs and checks.

A :class:`Reproduction` is a list of :class:`Variant` s (``pbdl train`` override lists,
usually one experiment preset each, plus a smaller ``quick`` setting for CI), a list of
:class:`~pbdl_cli.reproduce.checks.Check` s that compare one metric of one variant (or
the mean over the variants matching a pattern, e.g. the seeds ``sol_s*``) with a
published value, a bound or another variant, and optional :class:`Prepare` commands
(e.g. ``pbdl generate`` of the datasets the variants train on) that run first.
``{out}`` (:data:`OUT`) in their arguments and in the variants' overrides stands for the
output directory. A reproduction is checked when it is made: every check must name a
variant it has (one that ``--quick`` runs, unless the check is ``full_only``).

:data:`REPRODUCTIONS` holds the registered ones (see :func:`register`); running them is
:func:`pbdl_cli.reproduce.runner.run_reproduction`.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pbdl_cli.errors import PbdlError
from pbdl_cli.reproduce.checks import Check, VariantResult

#: stands for the reproduction's output directory in overrides and prepare arguments
OUT = "{out}"


def _strings(where: str, name: str, values: Any) -> None:
    if not isinstance(values, tuple) or not all(isinstance(v, str) for v in values):
        raise TypeError(f"{where}: {name} must be a tuple of strings, got {values!r}")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One training run of a reproduction.

    Attributes:
        name: short name, also the run directory's name.
        overrides: ``pbdl train`` overrides (e.g. ``("experiment=burgers_inverse_pinn",)``).
        quick: extra overrides for ``--quick`` (CI scale).
        label: a human-readable description for the report.
        full_only: left out with ``--quick`` (e.g. the second and third seed).
    """

    name: str
    overrides: tuple[str, ...]
    quick: tuple[str, ...] = ()
    label: str = ""
    full_only: bool = False

    def __post_init__(self) -> None:
        bad = not isinstance(self.name, str) or not self.name
        if bad or any(c in self.name for c in "/\\*?[") or self.name in (".", ".."):
            raise ValueError(f"a variant name must be a plain directory name: {self.name!r}")
        _strings(f"variant {self.name!r}", "overrides", self.overrides)
        _strings(f"variant {self.name!r}", "quick", self.quick)


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
        _strings(f"prepare {self.name!r}", "args", self.args)
        _strings(f"prepare {self.name!r}", "quick", self.quick)


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
    figures: Callable[[Path, Mapping[str, VariantResult]], list[Path]] | None = None
    #: commands that make what the variants need (datasets), run first
    prepare: tuple[Prepare, ...] = ()
    #: optional markdown of the results (e.g. a table over all variants), put into the
    #: report: ``summary(results) -> str``
    summary: Callable[[Mapping[str, VariantResult]], str] | None = None

    def __post_init__(self) -> None:
        where = f"reproduction {self.name!r}"
        if not self.variants:
            raise ValueError(f"{where} has no variants")
        names = [v.name for v in self.variants]
        for kind, items in (("variant", names), ("prepare", [p.name for p in self.prepare])):
            twice = sorted({n for n in items if items.count(n) > 1})
            if twice:
                raise ValueError(f"{where}: {kind} names used twice: {', '.join(twice)}")
        quick = [v.name for v in active_variants(self, quick=True)]
        for check in self.checks:
            if not isinstance(check, Check):
                raise TypeError(f"{where}: checks must be Check objects, got {check!r}")
            below = check.below
            for variant in (check.variant, *((below.variant,) if below else ())):
                if not fnmatch.filter(names, variant):
                    raise ValueError(
                        f"{where}, check {check.label!r}: no variant '{variant}' "
                        f"(variants: {', '.join(names)})"
                    )
                if not check.full_only and not fnmatch.filter(quick, variant):
                    raise ValueError(
                        f"{where}, check {check.label!r}: '{variant}' is not run with "
                        "--quick; mark the check full_only=True"
                    )


def active_variants(repro: Reproduction, quick: bool) -> list[Variant]:
    """The variants run in this mode (``--quick`` leaves out the ``full_only`` ones)."""
    return [v for v in repro.variants if not (quick and v.full_only)]


def substitute(args: list[str] | tuple[str, ...], out: Path) -> list[str]:
    """``args`` with :data:`OUT` replaced by the output directory ``out``."""
    return [a.replace(OUT, str(out)) for a in args]


def variant_overrides(variant: Variant, quick: bool, out: Path) -> list[str]:
    """The ``pbdl train`` overrides of ``variant`` in this mode, for output directory ``out``."""
    return substitute([*variant.overrides, *(variant.quick if quick else ())], out)


# -- registry -------------------------------------------------------------------------------
REPRODUCTIONS: dict[str, Reproduction] = {}


def register(reproduction: Reproduction) -> Reproduction:
    """Add ``reproduction`` under its name (names are unique)."""
    if reproduction.name in REPRODUCTIONS:
        raise ValueError(f"reproduction '{reproduction.name}' is registered twice")
    REPRODUCTIONS[reproduction.name] = reproduction
    return reproduction


def get(name: str) -> Reproduction:
    """The registered reproduction ``name`` (an error naming the close ones if none)."""
    if name not in REPRODUCTIONS:
        close = difflib.get_close_matches(name, REPRODUCTIONS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise PbdlError(
            f"unknown reproduction '{name}'{hint}; available: {', '.join(sorted(REPRODUCTIONS))}"
        )
    return REPRODUCTIONS[name]
