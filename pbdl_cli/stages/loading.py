"""Loading a trained run: its checkpoint, stored train config, and the problem, method
and model rebuilt from them (``pbdl evaluate`` and ``pbdl sample``).

Checkpoints are untrusted files: they are read with ``weights_only=True``
(:func:`~pbdl_cli.training.checkpoint.load_checkpoint`) and their config is parsed as
data (OmegaConf YAML), never executed.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods import METHODS, Method, build_method
from pbdl_cli.models.base import MODELS
from pbdl_cli.plugins import load_plugins
from pbdl_cli.problems import PROBLEMS, Problem
from pbdl_cli.stages.train import TrainConfig, train_config
from pbdl_cli.training.checkpoint import load_checkpoint
from pbdl_cli.utils.device import resolve_device, resolve_dtype

log = logging.getLogger("pbdl.run")


class CheckpointChoice(str, enum.Enum):
    best = "best"
    last = "last"


def find_checkpoint(run: Path, choice: CheckpointChoice) -> Path:
    """``<run>/checkpoints/<choice>.pt``; ``best`` falls back to ``last``."""
    folder = run / "checkpoints"
    wanted = folder / f"{choice.value}.pt"
    if wanted.is_file():
        return wanted
    if choice is CheckpointChoice.best and (folder / "last.pt").is_file():
        log.info("%s has no best.pt; using last.pt", run)
        return folder / "last.pt"
    present = sorted(p.name for p in folder.glob("*.pt")) if folder.is_dir() else []
    if present:
        raise PbdlError(
            f"{wanted} does not exist (the run has {', '.join(present)}); "
            f"choose one with checkpoint=best|last"
        )
    raise PbdlError(
        f"{run} has no checkpoints/best.pt or checkpoints/last.pt; is it a pbdl train run "
        "directory (outputs/train/<date>/<time>) whose training saved a checkpoint?"
    )


def stored_train_config(state: dict[str, Any], checkpoint: Path) -> DictConfig:
    """The resolved train config stored in a checkpoint, as a DictConfig."""
    text = state.get("config")
    if not isinstance(text, str):
        raise PbdlError(f"{checkpoint} holds no train config; it was not written by pbdl train")
    try:
        cfg = OmegaConf.create(text)
    except Exception as error:
        raise PbdlError(f"{checkpoint}: its stored config is not valid YAML ({error})") from None
    if not isinstance(cfg, DictConfig):
        raise PbdlError(f"{checkpoint}: its stored config is not a mapping")
    return cfg


@dataclasses.dataclass
class LoadedRun:
    """A train run rebuilt from one of its checkpoints."""

    run: Path
    checkpoint: Path
    state: dict[str, Any]
    #: the run's train config (plugin nodes as their schemas)
    train: TrainConfig
    problem: Problem
    method: Method
    device: torch.device
    dtype: torch.dtype

    def model(self) -> nn.Module:
        """The run's model with the checkpoint's weights, in eval mode; a one-line
        PbdlError when they do not fit."""
        model = self.method.build_model(self.train.model)
        try:
            model.load_state_dict(self.state["model"])
        except (RuntimeError, KeyError, TypeError) as error:
            text = str(error).strip()
            first = text.splitlines()[0] if text else type(error).__name__
            raise PbdlError(
                f"the weights in {self.checkpoint} do not fit the model built from its "
                f"config: {first}"
            ) from None
        model.eval()
        return model


def load_run(run: str, choice: CheckpointChoice, device: str) -> LoadedRun:
    """Rebuild the run in directory ``run`` from its ``choice`` checkpoint on ``device``
    (one-line PbdlErrors for a missing directory or checkpoint, a foreign file, a plugin
    that is not registered here, a config this version cannot rebuild)."""
    path = Path(run)
    if not path.exists():
        raise PbdlError(f"run directory {path} does not exist")
    if not path.is_dir():
        raise PbdlError(f"run={path} is not a directory; pass a pbdl train run directory")
    checkpoint = find_checkpoint(path, choice)
    state = load_checkpoint(checkpoint)
    train_cfg = stored_train_config(state, checkpoint)
    load_plugins(list(train_cfg.get("plugins", None) or []))
    names = state.get("plugins") or {}
    registries = {"problem": PROBLEMS, "model": MODELS, "method": METHODS}
    for kind, registry in registries.items():
        name = names.get(kind)
        if name is not None and name not in registry:
            raise PbdlError(
                f"this run used {kind} '{name}', which is not registered here; import "
                f"the module that defines it with plugins=[module]"
            )
    resolved = resolve_device(device)
    try:
        train = train_config(train_cfg)
        dtype = resolve_dtype(train.dtype.value)
        problem = PROBLEMS.create(train.problem)
        method = build_method(
            train.method, train.solver, problem=problem, device=resolved, dtype=dtype
        )
    except PbdlError as error:
        raise PbdlError(f"cannot rebuild the run from {checkpoint}: {error}") from None
    return LoadedRun(path, checkpoint, state, train, problem, method, resolved, dtype)
