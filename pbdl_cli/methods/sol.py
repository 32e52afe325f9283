"""SOL: solver-in-the-loop training of a learned correction (Um et al. 2020,
"Solver-in-the-loop: learning from differentiable physics to interact with iterative
PDE-solvers", NeurIPS; PBDL book ch. 18).

From a reference state r_t, the differentiable coarse solver P_s and the correction
network c are unrolled n times, and the corrected states are compared with the reference
frames (e.g. cell averages of a ``data.refine=4`` simulation):

    s~_t = r_t,   s~_{t+i} = P_s(s~_{t+i-1}) + sigma c(N(P_s(s~_{t+i-1})), p)   (i = 1..n)
    L = 1/n sum_{i=1..n} mean ((s~_{t+i} - r_{t+i}) / sigma)^2

The gradient dL/dtheta flows through every network application and every solver step
(book eq. 17.1), so the network learns from the states the corrected solver actually
produces: n = 1 is PRE, larger n gives SOL-n. ``unroll_schedule`` grows n during
training (a curriculum); ``init_scale`` (default 0.1) keeps the initial corrections
small, so unrolling is stable from the start (as the book's gain-0.1 initialization).

Shapes: windows history [B, 1, C, *spatial], future [B, n, C, *spatial] (n = the largest
unroll); ``predict`` [B, T, C, *spatial] (see :mod:`pbdl_cli.methods.grid` and
:mod:`pbdl_cli.methods.unroll`).
"""

from __future__ import annotations

import dataclasses

from pbdl_cli.methods.base import METHODS
from pbdl_cli.methods.correction import CorrectedMethod, CorrectionConfig
from pbdl_cli.methods.unroll import UnrollConfig, UnrolledTraining


@dataclasses.dataclass
class SolConfig(CorrectionConfig, UnrollConfig):
    """Options of ``sol``: those of corrections
    (:class:`~pbdl_cli.methods.correction.CorrectionConfig`) and ``unroll`` n, ``unroll_schedule``
    (:class:`~pbdl_cli.methods.unroll.UnrollConfig`)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_unroll()


@METHODS.register("sol")
class SolverInTheLoop(UnrolledTraining, CorrectedMethod):
    """Correction network trained through n unrolled steps of the differentiable solver."""

    Config = SolConfig
    config: SolConfig
