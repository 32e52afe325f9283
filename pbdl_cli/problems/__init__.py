"""Problems: physics definitions. Importing this package registers the built-in ones."""

from pbdl_cli.problems.base import Grid, Params, PluginConfig, Problem
from pbdl_cli.registry import Registry

PROBLEMS: Registry[type[Problem]] = Registry("problem", group="problem")

from pbdl_cli.problems import burgers, oscillator, parabola  # noqa: E402,F401  (registers them)

__all__ = ["PROBLEMS", "Grid", "Params", "PluginConfig", "Problem"]
