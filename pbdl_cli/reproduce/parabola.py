"""PBDL book ch. 1-2, "A teaser example": invert P(y) = y^2 on [0, 1].

Supervised regression on samples (x, ±sqrt(x)) that mix both branches learns their
average f ~ 0; training through the physics P finds one branch. Book values (printed
epoch losses, which are the per-sample MSE / 5 because of how the notebook sums batch
means): supervised 0.100203, DP 0.000002 after 50 epochs. The generative half (ch. 2, "A
probabilistic generative AI approach"): flow matching learns the distribution p(y | x)
and recovers both branches; the book shows it in a figure (no number), the checks ask
for about half of the samples on each branch and nearly all near one at every test x.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pbdl_cli.reproduce.base import Reproduction, Variant, register
from pbdl_cli.reproduce.checks import (
    AtLeast,
    AtMost,
    Below,
    Check,
    Eval,
    History,
    PerCondition,
    VariantResult,
    Within,
)

NOTES = """
- Both variants use the book's network (1-128-128-1 ReLU, 16,897 parameters), Adam at
  1e-3, batch 5 and 50 epochs over N = 10,000 samples (100,000 steps).
- The book prints `sum of batch losses / N` with batch means, i.e. the per-sample MSE / 5.
  We report the per-sample MSE over all samples after training, times 1/5.
- Which branch DP finds depends on the initialization (`method.seed`); `positive_fraction`
  in the evaluation says which one.
- Flow matching (`experiment=parabola_flow_matching`): the book's 10,000 samples, batch
  128, 128-128 ReLU velocity net, Adam at 1e-3, 50 epochs (3,950 steps); the net sees
  [y, t, x] where the book's carries x as a frozen second coordinate; Euler with 20
  steps (the book: 100). `pbdl evaluate` draws 1,000 samples of p(y | x) at each test
  x (0.1, 0.25, 0.5, 0.75, 1): `mode_1_share` is the share on +sqrt(x) and
  `near_branch` the share within 0.1 sqrt(x) + 0.02 of a branch. Near x = 0 the branches
  nearly touch and the samples between them count as off-branch: the worst x is 0.1.
  `--quick` runs it in full.
"""

QUICK = ("trainer.max_steps=3000", "trainer.eval_every=1000", "trainer.checkpoint_every=1000")
SHARE = PerCondition("mode_1_share", "min"), PerCondition("mode_1_share", "max")
#: the figure's flow-matching samples: this many at each of as many x
FIGURE_X, FIGURE_N = 60, 30


def figures(out: Path, results: Mapping[str, VariantResult]) -> list[Path]:
    """``parabola.png``: the book's three panels (fig. 1.1): the supervised and the DP
    network's f(x), and flow-matching samples of p(y | x) at many x, over the data."""
    import torch
    from matplotlib.figure import Figure

    from pbdl_cli.evaluation.figures import save_figure
    from pbdl_cli.reproduce.trained import load_trained

    panels = [n for n in ("supervised", "dp", "flow_matching") if n in results]
    if not panels:
        return []
    x = torch.linspace(0, 1, 200, dtype=torch.float64)
    fig = Figure(figsize=(4.5 * len(panels), 4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, name in zip(axes, panels, strict=True):
        problem, method, model = load_trained(results[name].run)
        data = problem.observations({})
        ax.plot(data.x[:, 0], data.u[:, 0], ".", ms=1, color="lightgray", label="data")
        for sign in (1, -1):
            ax.plot(x, sign * x.sqrt(), color="gray", lw=0.8)
        if name == "flow_matching":
            conditions = torch.linspace(0.02, 1, FIGURE_X, dtype=torch.float64)[:, None]
            drawn = method.draw_samples(model, FIGURE_N, conditions=conditions)
            cx = conditions.expand(-1, FIGURE_N)
            ax.plot(cx.reshape(-1), drawn.samples.reshape(-1), ".", ms=2, color="tab:orange",
                    label="flow matching samples")  # fmt: skip
            ax.set_title("flow matching: samples of p(y | x)")
        else:
            with torch.no_grad():
                f = method.predict(model).reshape(-1).double()
            grid = problem.grid.cell_centres()
            label = {"supervised": "supervised (mean of the branches)", "dp": "DP (one branch)"}
            color = {"supervised": "tab:red", "dp": "tab:green"}[name]
            ax.plot(grid, f, color=color, lw=2, label=label[name])
            ax.set_title(label[name])
        ax.set(xlabel="x", ylabel="y", ylim=(-1.2, 1.2))
        ax.legend(loc="lower left", fontsize=8)
    return [save_figure(fig, out / "parabola.png")]


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
            Variant(
                "flow_matching",
                ("experiment=parabola_flow_matching",),
                label="flow matching: the distribution p(y | x)",
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
            Check(
                "flow matching: share on +sqrt(x), lowest over the test x",
                "flow_matching",
                SHARE[0],
                published=0.5,
                criterion=AtLeast(0.35),
                quick=True,
            ),
            Check(
                "flow matching: share on +sqrt(x), highest over the test x",
                "flow_matching",
                SHARE[1],
                published=0.5,
                criterion=AtMost(0.65),
                quick=True,
            ),
            Check(
                "flow matching: samples near a branch (mean over the test x)",
                "flow_matching",
                Eval("near_branch"),
                criterion=AtLeast(0.9),
                quick=True,
            ),
            Check(
                "flow matching: samples near a branch (worst test x)",
                "flow_matching",
                PerCondition("near_branch", "min"),
                criterion=AtLeast(0.75),
                quick=True,
            ),
            Check(
                "flow matching: energy distance to p(y | x)",
                "flow_matching",
                Eval("energy"),
            ),
        ),
        notes=NOTES,
        figures=figures,
    )
)
