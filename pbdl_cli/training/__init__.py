"""Training: one readable loop for every method, checkpoints, metric logs."""

from pbdl_cli.training.checkpoint import load_checkpoint, save_checkpoint
from pbdl_cli.training.config import TrainerConfig
from pbdl_cli.training.trainer import TrainingDiverged, TrainResult, fit

__all__ = [
    "TrainResult",
    "TrainerConfig",
    "TrainingDiverged",
    "fit",
    "load_checkpoint",
    "save_checkpoint",
]
