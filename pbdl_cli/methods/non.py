"""NON: the coarse solver alone, without a correction (Um et al. 2020, "Solver-in-the-loop:
learning from differentiable physics to interact with iterative PDE-solvers", NeurIPS;
PBDL book ch. 18, "source" / "low fidelity" simulation).

The baseline of the correction methods ``pre`` and ``sol``: the run's solver P_s at the
problem's resolution rolls every test trajectory out from its first frame,

    s_{t+1} = P_s(s_t),

and is scored against the dataset (e.g. cell averages of a ``data.refine=4`` simulation).
Nothing is trained: the model is an empty module (one parameter of size 0, so that the
optimizer and checkpoints work) and each training step only evaluates the one-step
solver error (normalized MSE, logged as ``loss``) without an optimizer update. Use
``trainer.max_steps=1 trainer.lbfgs_steps=0`` (``experiment=burgers_non`` does).

Shapes: windows history [B, 1, C, *spatial], future [B, 1, C, *spatial]; ``predict``
[B, T, C, *spatial] (see :mod:`pbdl_cli.methods.grid`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from pbdl_cli.methods.base import METHODS
from pbdl_cli.methods.grid import GridConfig, GridMethod


class SolverOnly(nn.Module):
    """The model of ``non``: nothing to learn (a parameter of size 0 keeps the trainer's
    optimizers and checkpoints working)."""

    def __init__(self) -> None:
        super().__init__()
        self.nothing = nn.Parameter(torch.zeros(0))

    def summary(self) -> str:
        return "the solver alone, nothing trained"


@METHODS.register("non")
class NoCorrection(GridMethod):
    """The coarse solver alone (the baseline of ``pre`` and ``sol``)."""

    Config = GridConfig
    needs_solver = True
    uses_solver = True
    horizon = 1

    def build_model(self, model_config: Any) -> nn.Module:
        """An empty module; ``model_config`` is not used."""
        return SolverOnly().to(self.device, self.dtype)

    def advance(self, model: nn.Module, frames: Tensor, params: Tensor) -> Tensor:
        return self.solve(frames[:, -1], params)

    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        """The one-step solver error (normalized MSE); zero gradient."""
        history, future, params = self.batch(step)
        with torch.no_grad():
            mse = self.normalized_mse(self.solve(history[:, -1], params)[:, None], future)[0]
        anchor = sum(p.sum() for p in model.parameters())  # 0, but backward() needs a graph
        return {"loss": mse + 0 * anchor}

    def step(self, optimizer: torch.optim.Optimizer, closure: Callable[[], Tensor]) -> bool:
        """The trainer's custom step: evaluate the loss, update nothing."""
        closure()
        return True
