"""PRE: a learned solver correction trained on precomputed solver steps, without the solver
in the loop (Um et al. 2020, "Solver-in-the-loop", NeurIPS; PBDL book ch. 18, the
``msteps = 1`` variant).

The coarse solver P_s advances every reference state r_t (a window's frame) by one output
interval without gradients, and a network c learns the additive correction towards the
reference's next frame:

    s_{t+1} = P_s(r_t) + sigma c(N(P_s(r_t)), p)
    L = mean ((s_{t+1} - r_{t+1}) / sigma)^2

Since r_t does not depend on the network, this is SOL-1 (``sol`` with ``unroll=1``)
without building the solver's graph. At test time the corrected solver is rolled out
autoregressively, so the network meets corrected states it never saw in training (the
data shift that ``sol`` addresses). ``init_scale`` (default 0.1) scales the network's
initial output (``model.out_init_scale``), so training starts near the plain solver.

Shapes: windows history [B, 1, C, *spatial], future [B, 1, C, *spatial]; the network maps
[B, C, *spatial] (+ P parameter channels) to [B, C, *spatial]; ``predict`` [B, T, C, *spatial].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pbdl_cli.methods.base import METHODS
from pbdl_cli.methods.correction import CorrectedMethod, CorrectionConfig


@METHODS.register("pre")
class PrecomputedCorrection(CorrectedMethod):
    """Correction network trained on solver steps from reference states (no solver
    gradient)."""

    Config = CorrectionConfig
    horizon = 1

    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        history, future, params = self.batch(step)
        with torch.no_grad():  # the solver only generates the inputs
            coarse = self.solve(history[:, -1], params)
        corrected = self.correct(model, coarse, params)
        mse = self.normalized_mse(corrected[:, None], future)[0]
        return {"loss": mse}
