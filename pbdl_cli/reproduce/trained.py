"""A finished variant's trained model, rebuilt in this process (for figures that sample or
predict with it beyond what ``pbdl evaluate`` stored)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple


class Trained(NamedTuple):
    """The problem, method and model (in eval mode, on the CPU) of one run."""

    problem: Any
    method: Any
    model: Any


def load_trained(run: Path) -> Trained:
    """The run's ``checkpoints/last.pt`` rebuilt from its stored train config on the CPU
    (:func:`pbdl_cli.stages.loading.load_run`)."""
    from pbdl_cli.stages.loading import CheckpointChoice, load_run

    loaded = load_run(str(run), CheckpointChoice.last, "cpu")
    return Trained(loaded.problem, loaded.method, loaded.model())
