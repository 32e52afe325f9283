"""Neural surrogates on grid data: a network alone advances the state (PBDL book ch. 7
and 17; the stepper of ``supervised`` on grid data and ``unrolled``):

    s_{t+1} = D(f([N(s_{t-k+1}), ..., N(s_t)], p))          (default)
    s_{t+1} = D(N(s_t) + f([N(s_{t-k+1}), ..., N(s_t)], p))  (``residual``)

with N / D the per-channel normalization of the train split and p the normalized
trajectory parameters (see :mod:`pbdl_cli.methods.grid`).

Shapes: frames [B, k, C, *spatial] -> network input [B, k C, *spatial] (+ params [B, P])
-> next state [B, C, *spatial].
"""

from __future__ import annotations

import dataclasses

from torch import Tensor, nn

from pbdl_cli.methods.grid import GridConfig, GridMethod


@dataclasses.dataclass
class SurrogateConfig(GridConfig):
    """Options of the neural surrogates (``supervised`` on grid data, ``unrolled``).

    Attributes:
        residual: the network predicts the normalized change of the last input frame
            (s_{t+1} = D(N(s_t) + f(...))) instead of the next state itself.
    """

    residual: bool = False


class SurrogateMethod(GridMethod):
    """A network alone advances the state: s_{t+1} = D(f([N(s_{t-k+1..t})], p)), or with
    ``residual`` s_{t+1} = D(N(s_t) + f(...))."""

    config: SurrogateConfig

    def advance(self, model: nn.Module, frames: Tensor, params: Tensor) -> Tensor:
        x = self.normalize(frames)  # [B, k, C, *S]
        out = model(x.flatten(1, 2), self.param_input(params))  # [B, C, *S]
        if self.config.residual:
            out = x[:, -1] + out
        return self.denormalize(out)
