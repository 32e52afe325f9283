"""PBDL book ch. 1-2, "A teaser example": invert P(y) = y^2 on [0, 1].

Supervised regression on samples (x, ±sqrt(x)) that mix both branches learns their
average f ~ 0; training through the physics P finds one branch. Book values (printed
epoch losses, which are the per-sample MSE / 5 because of how the notebook sums batch
means): supervised 0.100203, DP 0.000002 after 50 epochs.
"""

from __future__ import annotations

from pbdl_cli.reproduce.base import Reproduction, Variant, register
from pbdl_cli.reproduce.checks import AtLeast, AtMost, Below, Check, Eval, History, Within

NOTES = """
- Both variants use the book's network (1-128-128-1 ReLU, 16,897 parameters), Adam at
  1e-3, batch 5 and 50 epochs over N = 10,000 samples (100,000 steps).
- The book prints `sum of batch losses / N` with batch means, i.e. the per-sample MSE / 5.
  We report the per-sample MSE over all samples after training, times 1/5.
- Which branch DP finds depends on the initialization (`method.seed`); `positive_fraction`
  in the evaluation says which one.
- The book's flow-matching part (both branches as a distribution) is not reproduced here.
"""

QUICK = ("trainer.max_steps=3000", "trainer.eval_every=1000", "trainer.checkpoint_every=1000")

register(
    Reproduction(
        name="parabola",
        title="Inverse of a parabola: supervised averaging vs differentiable physics",
        source="PBDL book ch. 1-2 (teaser)",
        variants=(
            Variant(
                "supervised",
                ("experiment=parabola_supervised",),
                quick=QUICK,
                label="regression on (x, ±sqrt(x)) samples",
            ),
            Variant(
                "dp",
                ("experiment=parabola_dp",),
                quick=QUICK,
                label="trained through P(y) = y^2 (no y data)",
            ),
        ),
        checks=(
            Check(
                "supervised loss, epoch 50 (MSE / 5)",
                "supervised",
                History("val/data_mse", at=-1),
                published=0.100203,
                criterion=Within(1.2),
                scale=0.2,
            ),
            Check(
                "DP loss, epoch 50 (MSE / 5)",
                "dp",
                History("val/physics_mse", at=-1),
                published=2e-6,
                criterion=Within(10.0),
                scale=0.2,
            ),
            Check(
                "supervised: distance to nearest branch (rel.)",
                "supervised",
                Eval("branch_rel_l2"),
                criterion=AtLeast(0.5),
                quick=True,
            ),
            Check(
                "DP: distance to nearest branch (rel.)",
                "dp",
                Eval("branch_rel_l2"),
                criterion=AtMost(0.05),
                quick=True,
            ),
            Check(
                "DP: residual mean |f(x)^2 - x|",
                "dp",
                Eval("residual"),
                criterion=Below("supervised", Eval("residual")),
                quick=True,
            ),
        ),
        notes=NOTES,
    )
)
