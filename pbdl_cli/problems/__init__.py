"""Problems: physics definitions. Importing this package registers the built-in ones."""

from pbdl_cli.problems import (  # noqa: F401
    burgers,
    heat,
    hhd,
    karman,
    optimizer_toy,
    oscillator,
    parabola,
    smoke,
    taylor_green,
)
from pbdl_cli.problems.base import PROBLEMS, Grid, Params, Problem

__all__ = ["PROBLEMS", "Grid", "Params", "Problem"]
