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


def load_trained(run: Path, dtype: Any = None) -> Trained:
    """The run's ``checkpoints/last.pt`` rebuilt from its stored train config, on the CPU
    in ``dtype`` (default: the run's own)."""
    import torch

    from pbdl_cli.methods import build_method
    from pbdl_cli.problems import PROBLEMS
    from pbdl_cli.stages.evaluate import stored_train_config
    from pbdl_cli.stages.train import train_config
    from pbdl_cli.training.checkpoint import load_checkpoint
    from pbdl_cli.utils.device import resolve_dtype

    checkpoint = run / "checkpoints" / "last.pt"
    state = load_checkpoint(checkpoint)
    cfg = train_config(stored_train_config(state, checkpoint))
    dtype = resolve_dtype(cfg.dtype.value) if dtype is None else dtype
    problem = PROBLEMS.create(cfg.problem)
    cpu = torch.device("cpu")
    method = build_method(cfg.method, cfg.solver, problem=problem, device=cpu, dtype=dtype)
    model = method.build_model(cfg.model)
    model.load_state_dict(state["model"])
    model.eval()
    return Trained(problem, method, model)
