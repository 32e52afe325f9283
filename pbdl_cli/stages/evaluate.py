"""``pbdl evaluate``: score a trained run. The config is composed and validated now; the
evaluation itself arrives with the training engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from pbdl_cli.config import EvaluateConfig, to_schema
from pbdl_cli.errors import PbdlError
from pbdl_cli.stages import STAGES
from pbdl_cli.stages.base import Stage


@STAGES.register("evaluate")
class Evaluate(Stage):
    """Evaluate a trained run on its test split (not implemented yet)."""

    config_name = "evaluate"
    implemented = False

    def validate(self, cfg: DictConfig) -> Path:
        config: EvaluateConfig = to_schema(cfg, EvaluateConfig, path="")
        run = Path(config.run)
        if not run.is_dir():
            raise PbdlError(f"run directory {run} does not exist")
        return run

    def run(self, settings: Any, cfg: DictConfig, run_dir: Path) -> Any:
        raise PbdlError("pbdl evaluate is not implemented yet", exit_code=1)
