"""Finding plugins: the built-in ones, installed packages, and the user's own modules.

A plugin is any module that registers something with a registry decorator
(``@PROBLEMS.register("name")``, ``@SOLVERS.register(...)``, ...). pbdl imports:

1. its built-in plugin packages;
2. every entry point in the group ``pbdl.plugins`` of installed distributions
   (``[project.entry-points."pbdl.plugins"] mine = "my_package.plugins"``);
3. the modules listed in the environment variable ``PBDL_PLUGINS`` (comma-separated);
4. the modules given on the command line as ``plugins=[my_module,other.module]``
   (also stored in the run's config, so later stages import them again).

Importing a module twice is harmless, so loading is idempotent.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from importlib.metadata import entry_points

from pbdl_cli.errors import PbdlError

ENTRY_POINT_GROUP = "pbdl.plugins"
ENV_VAR = "PBDL_PLUGINS"
_BUILTIN = (
    "pbdl_cli.problems",
    "pbdl_cli.solvers",
    "pbdl_cli.models",
    "pbdl_cli.methods",
    "pbdl_cli.evaluation.metrics",
)
_loaded: set[str] = set()


def load_plugins(extra: Iterable[str] = ()) -> None:
    """Import built-in, entry-point, ``PBDL_PLUGINS`` and ``extra`` plugin modules."""
    for module in _BUILTIN:
        importlib.import_module(module)
    if "entry points" not in _loaded:
        _loaded.add("entry points")
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                loaded = ep.load()
            except Exception as error:
                raise PbdlError(
                    f"plugin entry point '{ep.name} = {ep.value}' failed to load: "
                    f"{type(error).__name__}: {error}"
                ) from error
            if callable(loaded):
                loaded()
    env = [m.strip() for m in os.environ.get(ENV_VAR, "").split(",") if m.strip()]
    for module in [*env, *extra]:
        _import_user_module(module)
    _register_default_solvers()


def _import_user_module(module: str) -> None:
    if module in _loaded:
        return
    try:
        importlib.import_module(module)
    except ImportError as error:
        raise PbdlError(
            f"cannot import plugin module '{module}': {error}. Is it installed or on "
            "PYTHONPATH (the current directory is searched too)?"
        ) from error
    _loaded.add(module)


def _register_default_solvers() -> None:
    """Store ``solver/<problem>_default``: the default solver option of each problem.

    The stage configs select ``solver: ${problem}_default``, so that ``problem=X`` brings
    X's solver along unless the user picks one with ``solver=...``.
    """
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from pbdl_cli.problems import PROBLEMS
    from pbdl_cli.solvers import NO_SOLVER, SOLVERS

    store = ConfigStore.instance()
    for entry in PROBLEMS:
        default = getattr(entry.obj, "default_solver", None)
        if default is None:
            node = OmegaConf.create({"name": NO_SOLVER})
        else:
            schema = SOLVERS.entry(default).schema
            node = OmegaConf.structured(schema)
            node.name = default
        store.store(group="solver", name=f"{entry.name}_default", node=node, provider="pbdl")
