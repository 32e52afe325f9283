"""Unrolled training of a neural surrogate (PBDL book ch. 17, "unrolling"; the
autoregressive training of learned simulators, e.g. Brandstetter et al. 2022).

The network is rolled out m times from the k history frames of a window, each prediction
becoming the next input, and the loss averages the normalized MSE over the m states:

    s~_{t+i} = D(f([N(s~_{t+i-k}), ..., N(s~_{t+i-1})], p)),   s~_{t-k+1..t} = s_{t-k+1..t}
    L = 1/m sum_{i=1..m} mean ((s~_{t+i} - s_{t+i}) / sigma)^2

Gradients flow through all m network applications, so the network learns to correct the
drift of its own inputs (unlike one-step ``supervised``, which m = 1 reproduces exactly).
``unroll_schedule`` grows m during training (a curriculum), ``noise`` perturbs the
history frames (Sanchez-Gonzalez et al. 2020).

Shapes: history [B, k, C, *spatial], future [B, m, C, *spatial] (m = the largest unroll),
params [B, P]; ``predict`` [B, T, C, *spatial] (see :mod:`pbdl_cli.methods.grid` and
:mod:`pbdl_cli.methods.unroll`).
"""

from __future__ import annotations

import dataclasses

from pbdl_cli.methods.base import METHODS
from pbdl_cli.methods.surrogate import SurrogateConfig, SurrogateMethod
from pbdl_cli.methods.unroll import UnrollConfig, UnrolledTraining


@dataclasses.dataclass
class UnrolledConfig(SurrogateConfig, UnrollConfig):
    """Options of ``unrolled``: those of grid surrogates
    (:class:`~pbdl_cli.methods.surrogate.SurrogateConfig`) and ``unroll`` m,
    ``unroll_schedule`` (:class:`~pbdl_cli.methods.unroll.UnrollConfig`)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_unroll()


@METHODS.register("unrolled")
class Unrolled(UnrolledTraining, SurrogateMethod):
    """m-step autoregressive training of a surrogate through its own predictions."""

    Config = UnrolledConfig
    config: UnrolledConfig
