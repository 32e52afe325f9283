"""Methods: how learning meets physics (PINN, differentiable physics, supervised, ...).
Importing this package registers the built-in ones."""

from typing import Any

import torch

from pbdl_cli.methods import (  # noqa: F401
    dp,
    non,
    pinn,
    pre,
    projection,
    sol,
    supervised,
    unrolled,
)
from pbdl_cli.methods.base import METHODS, Method
from pbdl_cli.problems.base import Problem


def build_method(cfg: Any, *, problem: Problem, device: torch.device, dtype: torch.dtype) -> Method:
    """Build the method of a train config ``cfg`` (its ``method`` node) for ``problem``;
    methods that train through a solver also get the one of ``cfg.solver`` (or None)."""
    deps: dict[str, Any] = {"problem": problem, "device": device, "dtype": dtype}
    if METHODS.get(METHODS.config(cfg.method).name).needs_solver:
        from pbdl_cli.solvers import SOLVERS

        solver = cfg.get("solver") or {}
        has_solver = solver.get("name") not in (None, "none")
        # the method says what it needs: static problems train through no solver
        deps["solver"] = SOLVERS.build(solver, problem=problem) if has_solver else None
    return METHODS.build(cfg.method, **deps)


__all__ = ["METHODS", "Method", "build_method"]
