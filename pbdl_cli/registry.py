"""A small generic registry of named plugins.

Every kind of plugin (problem, solver, model, method, metric) has one registry. A plugin
registers under a short, stable name together with a dataclass that is the typed schema
of its configuration::

    @SOLVERS.register("burgers_sl")
    class BurgersSemiLagrangian(Solver):
        Config = BurgersSemiLagrangianConfig
        ...

Names are what configs and checkpoints store, so they must never change. Registering a
plugin also stores its schema in Hydra's ConfigStore as option ``<group>/<name>``, so
``problem=<name>`` works on the command line without any YAML file, and a typo in a key
or a value of the wrong type fails while the config is composed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from omegaconf import MISSING, DictConfig, OmegaConf

from pbdl_cli.config import to_schema
from pbdl_cli.errors import PbdlError, did_you_mean

T = TypeVar("T")


@dataclasses.dataclass
class PluginConfig:
    """Base of every plugin schema: ``name`` selects the registered plugin."""

    name: str = MISSING


@dataclasses.dataclass
class Entry(Generic[T]):
    """One registered plugin: its name, the object, its config schema and where it lives."""

    name: str
    obj: T
    schema: type | None
    summary: str
    module: str


class Registry(Generic[T]):
    """Named plugins of one kind.

    Args:
        kind: singular noun used in messages and as the Hydra config group
            (``"problem"`` -> ``problem=<name>``).
        group: Hydra config group to store schemas in; ``None`` for plugins that are
            not selected through a config group (e.g. metrics).
    """

    def __init__(self, kind: str, *, group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, Entry[T]] = {}

    # -- registration -------------------------------------------------------------------
    def register(self, name: str, *, schema: type | None = None) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``.

        The schema is ``schema`` or, for classes, their ``Config`` attribute. Duplicate
        names are rejected so that a plugin can never silently replace another.
        """
        if not name or not name.replace("_", "").isalnum() or name != name.lower():
            raise ValueError(f"{self.kind} name {name!r} must be lower_snake_case")

        def decorator(obj: T) -> T:
            if name in self._entries:
                other = self._entries[name].module
                raise ValueError(
                    f"{self.kind} {name!r} is already registered (by {other}); pick another name"
                )
            config = schema if schema is not None else getattr(obj, "Config", None)
            if config is not None and not dataclasses.is_dataclass(config):
                raise TypeError(f"schema of {self.kind} {name!r} must be a dataclass")
            doc = (getattr(obj, "__doc__", None) or "").strip()
            entry = Entry(
                name=name,
                obj=obj,
                schema=config,
                summary=doc.splitlines()[0] if doc else "",
                module=getattr(obj, "__module__", "?"),
            )
            self._entries[name] = entry
            if self.group is not None and config is not None:
                _store_schema(self.group, name, config)
            return obj

        return decorator

    # -- lookup -------------------------------------------------------------------------
    def get(self, name: str) -> T:
        """The plugin registered as ``name``; unknown names list the valid ones."""
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise PbdlError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self._entries)}; "
                f"available: {', '.join(self.names()) or '(none registered)'}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)

    # -- construction -------------------------------------------------------------------
    def config(self, cfg: DictConfig | dict[str, Any] | Any) -> Any:
        """Validate a config node against the plugin's schema; return the dataclass.

        ``cfg`` holds ``name`` plus the plugin's parameters. Unknown keys, wrong types and
        missing values raise :class:`PbdlError` naming the key; the dataclass's own
        ``__post_init__`` checks (ranges, choices) run too. An instance of the plugin's
        own schema is already validated and returned as it is.
        """
        if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
            entry = self.entry(str(cfg.name))  # type: ignore[attr-defined]
            if type(cfg) is entry.schema:
                return cfg
            cfg = OmegaConf.structured(cfg)
        elif isinstance(cfg, dict):
            cfg = OmegaConf.create(cfg)
        name = cfg.get("name") if isinstance(cfg, DictConfig) else None
        if name is None:
            raise PbdlError(f"{self.kind} config has no 'name'; choose one of {self.names()}")
        entry = self.entry(str(name))
        if entry.schema is None:
            raise PbdlError(f"{self.kind} '{name}' takes no configuration")
        return to_schema(cfg, entry.schema, path=self.group or self.kind)

    def create(self, config: Any, /, **deps: Any) -> T:
        """The plugin of a validated ``config`` (from :meth:`config`): ``obj(config, **deps)``."""
        return self.get(config.name)(config, **deps)  # type: ignore[operator]

    def build(self, cfg: Any, /, **deps: Any) -> T:
        """Validate ``cfg`` (:meth:`config`) and create the plugin it names."""
        return self.create(self.config(cfg), **deps)


def _store_schema(group: str, name: str, schema: type) -> None:
    """Store ``schema`` in Hydra's ConfigStore as option ``group/name`` with ``name`` set."""
    from hydra.core.config_store import ConfigStore

    if "name" not in {f.name for f in dataclasses.fields(schema)}:
        raise TypeError(f"{schema.__name__} must have a 'name: str' field (use PluginConfig)")
    node = OmegaConf.structured(schema)
    node.name = name
    ConfigStore.instance().store(group=group, name=name, node=node, provider="pbdl")
