"""Problems: physics definitions. Importing this package registers the built-in ones."""

from pbdl_cli.problems.base import Grid, Params, PluginConfig, Problem
from pbdl_cli.registry import Registry

PROBLEMS: Registry[type[Problem]] = Registry("problem", group="problem")

# importing registers them
from pbdl_cli.problems import burgers, hhd, karman, oscillator, parabola, smoke, taylor_green  # noqa: E402,F401

__all__ = ["PROBLEMS", "Grid", "Params", "PluginConfig", "Problem"]
