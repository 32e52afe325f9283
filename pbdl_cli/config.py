"""Typed configuration: validating config nodes against plugin schemas.

Hydra composes a ``DictConfig``; :func:`to_schema` turns one node into its dataclass and
translates OmegaConf's exceptions into one-line :class:`PbdlError` messages that name
the key path and the allowed keys, types or values.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
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


# -- stage schemas -----------------------------------------------------------------------
class Precision(str, enum.Enum):
    float32 = "float32"
    float64 = "float64"


@dataclasses.dataclass
class DataConfig:
    """Where datasets live and how large the splits are (``data.<key>``).

    Attributes:
        root: datasets are written to ``<root>/<problem>/<name>/{train,val,test}.h5``.
        name: dataset name; ``auto`` derives it from the problem settings and a hash of
            everything that determines the data (problem, solver, sizes, seed, dtype).
        n_train, n_val, n_test: trajectories per split (0 skips a split).
        batch_size: trajectories simulated together; changes speed and memory only.
        compression: optional HDF5 filter for the fields (``gzip`` or ``lzf``).
        refine: simulate on a grid ``refine`` times finer per axis (and, where the solver
            has fixed substeps, with ``refine`` times more of them) and store the cell
            averages on the problem's grid: the reference data of solver-in-the-loop
            training (1: simulate on the problem's grid).
    """

    root: str = "datasets"
    name: str = "auto"
    n_train: int = 64
    n_val: int = 16
    n_test: int = 16
    batch_size: int = 64
    compression: str | None = None
    refine: int = 1

    def __post_init__(self) -> None:
        if self.refine < 1:
            raise ValueError("refine must be >= 1")
        if min(self.n_train, self.n_val, self.n_test) < 0:
            raise ValueError("split sizes must be >= 0")
        if self.n_train + self.n_val + self.n_test == 0:
            raise ValueError("all split sizes are 0: nothing to generate")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.compression not in (None, "gzip", "lzf"):
            raise ValueError("compression must be null, gzip or lzf")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"invalid dataset name {self.name!r}")


@dataclasses.dataclass
class GenerateConfig:
    """Top level of ``pbdl generate`` (see conf/generate.yaml for the defaults)."""

    problem: Any = MISSING
    solver: Any = MISSING
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    seed: int = 0
    device: str = "auto"
    dtype: Precision = Precision.float32
    threads: int | None = None
    overwrite: bool = False
    plugins: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be >= 1 (or null for torch's default)")


class CheckpointChoice(str, enum.Enum):
    best = "best"
    last = "last"


class AnimationFormat(str, enum.Enum):
    auto = "auto"  # mp4 where ffmpeg is available, else gif
    gif = "gif"
    mp4 = "mp4"


@dataclasses.dataclass
class GalleryConfig:
    """``gallery.*`` of ``pbdl evaluate``: the figures of 2D predictions
    (:mod:`pbdl_cli.evaluation.gallery`).

    Attributes:
        fields: the fields (or derived ``vorticity``) to show; null: all.
        trajectory: the trajectory (index into B) shown.
        panels: frames in ``frames_<field>.png``, evenly spaced, first and last included.
        animate: write an animation per field.
        format: ``gif`` (pillow), ``mp4`` (ffmpeg) or ``auto`` (mp4 where ffmpeg is found).
        max_frames: most frames of an animation (evenly subsampled).
        fps: animation frames per second.
        dpi: resolution of the animations (the PNGs use the figures' usual one).
    """

    fields: list[str] | None = None
    trajectory: int = 0
    panels: int = 5
    animate: bool = True
    format: AnimationFormat = AnimationFormat.auto
    max_frames: int = 50
    fps: int = 10
    dpi: int = 72

    def __post_init__(self) -> None:
        if self.trajectory < 0:
            raise ValueError("gallery.trajectory must be >= 0")
        if min(self.panels, self.max_frames, self.fps, self.dpi) < 1:
            raise ValueError("gallery.panels, max_frames, fps and dpi must be >= 1")


@dataclasses.dataclass
class EvaluateConfig:
    """Top level of ``pbdl evaluate`` (see conf/evaluate.yaml and docs/evaluate.md).

    Attributes:
        run: the ``pbdl train`` run directory; results go to ``<run>/eval``.
        checkpoint: ``last`` (the final model, what ``pbdl train`` reported) or ``best``
            (the best validation value; falls back to ``last`` without a ``best.pt``).
        device: where the model runs (``auto``, ``cpu``, ``cuda``, ...).
        threads: torch CPU threads; null takes the train run's setting.
        plots: write the PNG figures.
        time_reference_solver: for data simulated on a finer grid (``data.refine``), time
            that solver on the test states and report the prediction's speed-up over it.
        gallery: the figures and animations of 2D predictions.
    """

    run: str = MISSING
    checkpoint: CheckpointChoice = CheckpointChoice.last
    device: str = "auto"
    threads: int | None = None
    plots: bool = True
    time_reference_solver: bool = True
    gallery: GalleryConfig = dataclasses.field(default_factory=GalleryConfig)
    plugins: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be >= 1 (or null for the train run's setting)")


def _trainer_config() -> Any:
    from pbdl_cli.training.trainer import TrainerConfig

    return TrainerConfig()


@dataclasses.dataclass
class TrainConfig:
    """Top level of ``pbdl train`` (see conf/train.yaml for the defaults)."""

    problem: Any = MISSING
    solver: Any = MISSING
    model: Any = MISSING
    method: Any = MISSING
    trainer: Any = dataclasses.field(default_factory=_trainer_config)
    device: str = "auto"
    dtype: Precision = Precision.float32
    threads: int | None = None
    resume: bool = False
    plugins: list[str] = dataclasses.field(default_factory=list)


STAGE_SCHEMAS: dict[str, type] = {
    "generate": GenerateConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
}


def register_stage_schemas() -> None:
    """Store the stage schemas in Hydra's ConfigStore as ``schema/<stage>``."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for stage, schema in STAGE_SCHEMAS.items():
        store.store(group="schema", name=stage, node=schema, provider="pbdl")
