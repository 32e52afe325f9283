"""Solvers: differentiable, batched torch time steppers. Importing this package registers
the built-in ones; :func:`rollout` is shared with learned steppers."""

from pbdl_cli.solvers import burgers_sl, burgers_spectral, ns_mac, sde_euler  # noqa: F401
from pbdl_cli.solvers.base import NO_SOLVER, SOLVERS, Solver, SolverConfig
from pbdl_cli.solvers.rollout import Stepper, rollout

__all__ = ["NO_SOLVER", "SOLVERS", "Solver", "SolverConfig", "Stepper", "rollout"]
