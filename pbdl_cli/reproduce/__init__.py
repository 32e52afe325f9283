"""``pbdl reproduce NAME``: the published results pbdl reproduces, one module each.

Importing this package registers the built-in reproductions in :data:`REPRODUCTIONS`.
"""

from __future__ import annotations

from pbdl_cli.errors import PbdlError
from pbdl_cli.reproduce.base import Check, Reproduction, Variant, run_reproduction

REPRODUCTIONS: dict[str, Reproduction] = {}


def register(reproduction: Reproduction) -> Reproduction:
    """Add ``reproduction`` under its name (names are unique)."""
    if reproduction.name in REPRODUCTIONS:
        raise ValueError(f"reproduction '{reproduction.name}' is registered twice")
    REPRODUCTIONS[reproduction.name] = reproduction
    return reproduction


def get(name: str) -> Reproduction:
    if name not in REPRODUCTIONS:
        import difflib

        close = difflib.get_close_matches(name, REPRODUCTIONS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise PbdlError(
            f"unknown reproduction '{name}'{hint}; available: {', '.join(sorted(REPRODUCTIONS))}"
        )
    return REPRODUCTIONS[name]


from pbdl_cli.reproduce import (  # noqa: E402,F401
    burgers_pinn_raissi,
    burgers_pinn_vs_dp,
    burgers_sol,
    hhd,
    karman_sol,
    oscillator_pinn,
    parabola,
    smoke_dp,
)

__all__ = [
    "REPRODUCTIONS",
    "Check",
    "Reproduction",
    "Variant",
    "get",
    "register",
    "run_reproduction",
]
