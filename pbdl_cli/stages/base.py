"""The Stage interface: a pipeline the CLI runs on a composed config.

A stage names its primary config (``conf/<name>.yaml``) and its typed schema
(``Config``, stored as ``schema/<name>``), turns the composed ``DictConfig`` into typed
settings once per run (:meth:`Stage.build`: every node validated against its schema, the
plugins built; it must fail fast with :class:`~pbdl_cli.errors.PbdlError` and touch no
files), and runs (:meth:`Stage.run`) inside the run directory Hydra created. Stages are
the only code that writes files or talks to the terminal.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from omegaconf import DictConfig

from pbdl_cli.registry import Registry


class Stage(ABC):
    """One command of the pipeline (generate, train, evaluate, ...)."""

    #: the typed schema of the stage's primary config (stored as ``schema/<stage>``)
    Config: ClassVar[type]
    #: name of the primary config in pbdl_cli/conf (usually the stage's name)
    config_name: ClassVar[str]
    #: False while a stage only validates its config (the CLI says so and exits 1)
    implemented: ClassVar[bool] = True
    #: ``resume=true`` continues the run in ``hydra.run.dir`` from its stored overrides
    resumable: ClassVar[bool] = False

    @abstractmethod
    def build(self, cfg: DictConfig) -> Any:
        """Typed, checked settings for :meth:`run` (the validated config and the plugins
        built from it); raises PbdlError on bad input; writes nothing."""

    def preflight(self, settings: Any, run_dir: Path | None) -> None:
        """Check what a run would find on disk (e.g. refuse to replace earlier results);
        raises PbdlError. Called before a run starts, not when a config is only shown
        (``pbdl show``, ``--cfg``). ``run_dir``: the run directory where it is known."""
        return None  # most stages find nothing on disk that a run could harm

    @abstractmethod
    def run(self, settings: Any, run_dir: Path) -> Any:
        """Execute the stage with the settings :meth:`build` returned (after
        :meth:`preflight`)."""


def plugin_configs(cfg: DictConfig, registries: Mapping[str, Registry[Any]]) -> dict[str, Any]:
    """The plugin nodes of ``cfg`` (``problem``, ``model``, ...) validated against the
    schemas of the plugins they name: ``{key: dataclass}``. They are checked before the
    stage's own keys, so that their errors name their own keys and allowed values."""
    return {key: registry.config(cfg[key]) for key, registry in registries.items()}


#: every registered stage (``pbdl <name>``)
STAGES: Registry[type[Stage]] = Registry("stage")


def store_stage_schemas() -> None:
    """Store every stage's schema in Hydra's ConfigStore as ``schema/<stage>`` (the
    primary configs start their defaults list with it)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for entry in STAGES:
        store.store(group="schema", name=entry.name, node=entry.obj.Config, provider="pbdl")
