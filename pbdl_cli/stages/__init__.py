"""Stages: the pipelines behind the CLI commands. Importing registers the built-in ones."""

from pbdl_cli.registry import Registry
from pbdl_cli.stages.base import Stage

STAGES: Registry[type[Stage]] = Registry("stage")

from pbdl_cli.stages import evaluate, generate, train  # noqa: E402,F401

__all__ = ["STAGES", "Stage"]
