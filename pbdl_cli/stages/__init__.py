"""Stages: the pipelines behind the CLI commands. Importing registers the built-in ones."""

from pbdl_cli.stages import evaluate, generate, sample, train  # noqa: F401
from pbdl_cli.stages.base import STAGES, Stage, store_stage_schemas

__all__ = ["STAGES", "Stage", "store_stage_schemas"]
