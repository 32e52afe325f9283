"""Problems: physics definitions. Importing this package registers the built-in ones."""

from pbdl_cli.problems import burgers, hhd, karman, oscillator, parabola, smoke, taylor_green  # noqa: F401
from pbdl_cli.problems.base import PROBLEMS, Grid, Params, Problem

__all__ = ["PROBLEMS", "Grid", "Params", "Problem"]
