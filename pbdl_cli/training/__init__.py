"""Training: one readable loop for every method, checkpoints, metric logs."""

from pbdl_cli.training.checkpoint import load_checkpoint, save_checkpoint
from pbdl_cli.training.trainer import TrainerConfig, TrainingDiverged, TrainResult, fit

__all__ = [
    "TrainResult",
    "TrainerConfig",
    "TrainingDiverged",
    "fit",
    "load_checkpoint",
    "save_checkpoint",
]
