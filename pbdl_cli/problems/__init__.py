"""Problems: physics definitions. Importing this package registers the built-in ones."""

from pbdl_cli.problems import (  # noqa: F401
    burgers,
    coupled_oscillators,
    gaussian_mixture,
    heat,
    hhd,
    hig_toy,
    karman,
    optimizer_toy,
    oscillator,
    parabola,
    rotated_sine,
    sde_toy,
    smoke,
    taylor_green,
)
from pbdl_cli.problems.base import PROBLEMS, Grid, Params, Problem

__all__ = ["PROBLEMS", "Grid", "Params", "Problem"]
