"""Raissi, Perdikaris & Karniadakis (2019), sec. 3.1: the Burgers PINN (continuous time,
data-free inference): relative L2 error 6.7e-4 with 10,000 collocation points, 100
initial/boundary points, a 9 x 20 tanh network and L-BFGS."""

from __future__ import annotations

from pbdl_cli.reproduce.base import Reproduction, Variant, register
from pbdl_cli.reproduce.checks import AtMost, Check, Eval, Summary

NOTES = """
- The paper trains with L-BFGS only (SciPy's L-BFGS-B, float32 TensorFlow); pbdl runs a
  short Adam phase first and then L-BFGS with a strong-Wolfe line search, in float64:
  in float32 our L-BFGS stalls near 2e-3 (docs/methods/pinn.md).
- The error is measured on the 101 x 256 space-time grid of pbdl's default train config
  against the exact Cole-Hopf solution (the paper uses the 100 x 256 grid of its
  reference data set).
- `--quick` shrinks the run to a CI smoke test; its error is not judged.
"""

register(
    Reproduction(
        name="burgers_pinn_raissi",
        title="Burgers PINN benchmark of Raissi et al. (2019)",
        source="Raissi, Perdikaris & Karniadakis, J. Comput. Phys. 378 (2019), sec. 3.1",
        variants=(
            Variant(
                "pinn",
                ("experiment=burgers_raissi",),
                quick=(
                    "trainer.max_steps=100",
                    "trainer.lbfgs_steps=5",
                    "method.n_collocation=1000",
                ),
                label="9 x 20 tanh PINN, 10,000 LHS points, Adam then L-BFGS, float64",
            ),
        ),
        checks=(
            Check(
                "relative L2 error",
                "pinn",
                Eval("rel_l2"),
                published=6.7e-4,
                criterion=AtMost(2e-3),
            ),
            Check("training time [s]", "pinn", Summary("seconds")),
        ),
        notes=NOTES,
    )
)
