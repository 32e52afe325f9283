"""Typed configuration: validating config nodes against their dataclass schemas.

Hydra composes a ``DictConfig``; :func:`to_schema` turns one node into its dataclass and
translates OmegaConf's exceptions into one-line :class:`PbdlError` messages that name
the key path and the allowed keys, types or values.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from pbdl_cli.errors import PbdlError, did_you_mean


def to_schema(node: DictConfig, schema: type, *, path: str) -> Any:
    """Merge ``node`` into ``schema`` and instantiate it (running ``__post_init__``).

    Args:
        node: a config node (plain or already typed).
        schema: the dataclass it must satisfy.
        path: the node's key path for messages (``"problem"``).
    """
    try:
        # resolve interpolations while the node still sits in its full config
        node = OmegaConf.create(OmegaConf.to_container(node, resolve=True, enum_to_str=True))
    except OmegaConfBaseException as error:  # its keys are relative to the root
        raise translate(error) from None
    _check_finite(OmegaConf.to_container(node), path)
    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema), node)
        # a merge keeps the schema's default where the node says ??? (missing): look at both
        missing = sorted(OmegaConf.missing_keys(node) | OmegaConf.missing_keys(typed))
        if missing:
            key = missing[0]
            parent, _, leaf = key.rpartition(".")
            owner = OmegaConf.get_type(OmegaConf.select(typed, parent) if parent else typed)
            full = join_key(path, key)
            kind = describe_type(owner, leaf) if isinstance(owner, type) else "a value"
            raise PbdlError(f"{full}: missing required value ({kind}); set it with {full}=...")
        return OmegaConf.to_object(typed)
    except PbdlError:
        raise
    except OmegaConfBaseException as error:
        raise translate(error, schema=schema, path=path) from None
    except (ValueError, TypeError) as error:  # raised by a schema's __post_init__
        raise PbdlError(f"{path or 'config'}: {error}") from None


def _check_finite(value: Any, path: str) -> None:
    """Refuse NaN and infinite numbers anywhere in a config: no setting means them, and
    they pass every range check (``nan < 0`` is false) only to fail far from the cause."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, join_key(path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_finite(item, f"{path}[{index}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise PbdlError(f"{path}: must be a finite number (got {value})")


def to_container(config: Any) -> dict[str, Any]:
    """A validated config (a dataclass, plugin nodes as their dataclasses) as plain python
    values (enums as their values): what datasets, checkpoints and run directories store,
    and what identifies a dataset."""
    container = OmegaConf.to_container(OmegaConf.structured(config), enum_to_str=True)
    assert isinstance(container, dict)
    return container


def to_yaml(config: Any) -> str:
    """:func:`to_container` as YAML (the provenance text stored with results)."""
    return OmegaConf.to_yaml(OmegaConf.create(to_container(config)))


def join_key(*parts: str) -> str:
    """``join_key("problem", "nu") == "problem.nu"``, skipping empty parts."""
    return ".".join(p for p in parts if p)


def translate(error: Exception, *, schema: type | None = None, path: str = "") -> PbdlError:
    """A readable :class:`PbdlError` for an OmegaConf/Hydra config exception."""
    full_key = getattr(error, "full_key", None) or ""
    key = join_key(path, str(full_key))
    object_type = getattr(error, "object_type", None) or schema
    leaf = full_key.rsplit(".", 1)[-1] if full_key else ""
    if isinstance(error, ConfigAttributeError | ConfigKeyError) and object_type is not None:
        valid = [f.name for f in dataclasses.fields(object_type)]
        return PbdlError(
            f"{key}: unknown key{did_you_mean(leaf, valid)}; valid keys here: {', '.join(valid)}"
        )
    if isinstance(error, MissingMandatoryValue):
        return PbdlError(f"{key}: missing required value; set it with {key}=...")
    if isinstance(error, ValidationError):
        message = str(error).splitlines()[0]
        expected = describe_type(object_type, leaf) if object_type and leaf else ""
        detail = f"expected {expected}" if expected else message
        value = message.split("'")[1] if message.count("'") >= 2 else "?"
        return PbdlError(f"{key}: invalid value '{value}': {detail}")
    return PbdlError(f"{key or 'config'}: {str(error).splitlines()[0]}")


def describe_type(schema: type, key: str) -> str:
    """Human description of the type of ``schema.key`` (with enum choices)."""
    if not dataclasses.is_dataclass(schema):
        return "a value"
    try:
        hints = typing.get_type_hints(schema)
    except Exception:  # pragma: no cover - unusual annotations
        return "a value"
    hint = hints.get(key)
    if hint is None:
        return "a value"
    return _describe(hint)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        inner = " or ".join(_describe(a) for a in args)
        return f"{inner} or null" if len(args) < len(typing.get_args(hint)) else inner
    if origin in (list, tuple):
        return f"a list ({_describe(args[0])} each)" if args else "a list"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + ", ".join(m.value if isinstance(m.value, str) else m.name for m in hint)
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


# -- shared by the stage schemas --------------------------------------------------------
class Precision(str, enum.Enum):
    float32 = "float32"
    float64 = "float64"
