"""Solvers: differentiable, batched torch time steppers. Importing this package registers
the built-in ones; :func:`rollout` is shared with learned steppers."""

from pbdl_cli.registry import Registry
from pbdl_cli.solvers.base import Solver, SolverConfig
from pbdl_cli.solvers.rollout import Stepper, rollout

SOLVERS: Registry[type[Solver]] = Registry("solver", group="solver")

from pbdl_cli.solvers import burgers_sl, burgers_spectral, ns_mac  # noqa: E402,F401

__all__ = ["SOLVERS", "Solver", "SolverConfig", "Stepper", "rollout"]
