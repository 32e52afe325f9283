"""``pbdl reproduce NAME``: the published results pbdl reproduces, one module each.

Importing this package registers the built-in reproductions in
:data:`pbdl_cli.reproduce.base.REPRODUCTIONS`. The parts: ``base`` (the
:class:`~pbdl_cli.reproduce.base.Reproduction` type and its registry), ``checks`` (metric
references, criteria, checks), ``results`` (judging the checks), ``runner`` (running the
variants) and ``report`` (``results.json``, ``report.md``, the printed table).
"""

from __future__ import annotations

from pbdl_cli.reproduce import (  # noqa: F401  (each module registers its reproduction)
    burgers_pinn_raissi,
    burgers_pinn_vs_dp,
    burgers_sol,
    gm_cnf,
    gm_ddpm,
    gm_flow_matching,
    gm_realnvp,
    gm_score,
    hhd,
    hig_oscillators,
    hig_toy,
    karman_sol,
    optimizer_toy,
    oscillator_pinn,
    parabola,
    sip_heat,
    sip_toy,
    smdp_toy,
    smoke_dp,
)
