"""Learned solver corrections on grid data (Um et al. 2020, "Solver-in-the-loop";
PBDL book ch. 18; the stepper of ``pre`` and ``sol``): the solver advances, a network
corrects,

    q = P_s(s_t),   s_{t+1} = q + sigma c(N(q), p),

with P_s the run's solver over one output interval, N the per-channel normalization of
the train split, sigma its std and p the normalized trajectory parameters (see
:mod:`pbdl_cli.methods.grid`). ``init_scale`` starts the correction small.

Shapes: state [B, C, *spatial] -> correction [B, C, *spatial]; the solver methods use
history k = 1.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import Tensor, nn

from pbdl_cli.methods.grid import GridConfig, GridMethod


@dataclasses.dataclass
class CorrectionConfig(GridConfig):
    """Options of the learned solver corrections (``pre``, ``sol``).

    Attributes:
        init_scale: factor on ``model.out_init_scale`` (the last layer's initial weights
            and bias), so the correction starts small and the corrected solver close to
            the plain one (the book's gain-0.1 initialization); 0: it starts as the zero
            function (its last layer still gets gradients).
    """

    init_scale: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init_scale < 0:
            raise ValueError("init_scale must be >= 0")


class CorrectedMethod(GridMethod):
    """The solver advances, a network corrects (Um et al. 2020; PBDL book ch. 18):
    s_{t+1} = P_s(s_t) + sigma * c(N(P_s(s_t)), p)."""

    config: CorrectionConfig
    needs_solver = True
    uses_solver = True

    def model_config(self, model_config: Any) -> dict[str, Any]:
        """As :meth:`GridMethod.model_config`, with ``out_init_scale`` times ``init_scale``."""
        cfg = super().model_config(model_config)
        if "out_init_scale" in cfg:
            cfg["out_init_scale"] = cfg["out_init_scale"] * self.config.init_scale
        return cfg

    def correct(self, model: nn.Module, state: Tensor, params: Tensor) -> Tensor:
        """state + sigma c(N(state), p): the corrected solver output [B, C, *S]."""
        return state + self.std * model(self.normalize(state), self.param_input(params))

    def advance(self, model: nn.Module, frames: Tensor, params: Tensor) -> Tensor:
        return self.correct(model, self.solve(frames[:, -1], params), params)
