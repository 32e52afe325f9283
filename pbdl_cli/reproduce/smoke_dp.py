"""PBDL book ch. 16, "Differentiable fluid simulations": optimize the initial velocity of
four buoyant smoke plumes (inflows at (12,4), (13,6), (14,5), (16,5)) so that after 20
steps their markers match the fourth's. Book values (phiflow 3.1, torch backend): the
loss (PhiFlow's l2_loss, 1/2 sum of squares, summed over the batch) at GD iterations
0, 1, 2, 9, 19, ..., 79: 298.286163, 291.454376, 276.057831, 233.706482, 232.652145,
178.186951, 176.523254, 169.360931, 167.578674, 175.005310, 169.943680.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pbdl_cli.reproduce.base import Reproduction, Variant, register
from pbdl_cli.reproduce.checks import Below, Check, History, VariantResult, Within

BOOK = {
    0: 298.286163,
    1: 291.454376,
    2: 276.057831,
    9: 233.706482,
    19: 232.652145,
    29: 178.186951,
    39: 176.523254,
    49: 169.360931,
    59: 167.578674,
    69: 175.005310,
    79: 169.943680,
}

NOTES = """
- **Setup** (`conf/experiment/smoke_dp.yaml`): `problem=smoke` on a 32 x 40 box of 32 x 40
  cells, inflow discs of radius 3 (hard cell masks: cells whose centre is inside, 32
  cells each), 1/3 added per step, buoyancy 1, no viscosity, closed box (zero velocity on
  the walls, Neumann pressure), dt 1, 20 steps; `ns_mac` with MacCormack for the marker,
  semi-Lagrangian for the velocity, no diffusion, one substep per step, exact (DCT)
  pressure solve. The initial state is at rest; only u and v are unknowns
  (`method.optimize=[u,v]`), the initial marker stays 0.
- **Loss** (`method.target=trajectory`): the final marker of every simulation minus the
  final marker of the 4th (gradient stopped), PhiFlow's `l2_loss` = 1/2 sum over cells,
  summed over the four simulations (`method.reduction=half_sum`). The 4th contributes 0
  and gets no gradient, so its velocity stays 0 and its plume is a fixed target. The
  mean-square normalization would give 304.2 / 1280 / 2 = 0.12 at iteration 0: the book's
  298.3 identifies the 1/2-sum.
- **Iteration i** is the loss before the (i+1)-th update (plain GD, lr 1e-3, no momentum).
- **Differences.** Our iteration-0 loss is 304.2 (book 298.3, +2 %): the forward
  simulation differs slightly, most likely in the MacCormack step (PhiFlow 3.1's
  `mac_cormack` clamps to the min/max of the forward step's stencil like ours, but its
  boundary handling and interpolation of the staggered velocity at the centres are not
  identical). The loss curve is non-monotonic in both (GD with a fixed step on a
  non-convex objective); the individual values after iteration 2 differ by up to 15 %.
"""


def loss(iteration: int) -> History:
    """The loss before the (iteration + 1)-th GD update (-1: after the last)."""
    return History("train/obs", at=iteration)


QUICK = ("trainer.max_steps=5", "trainer.eval_every=5", "trainer.checkpoint_every=5")


def differences(out: Path, results: Mapping[str, VariantResult]) -> list[Path]:
    """The book's figure: final marker minus the reference's, before (u0 = 0) and after
    the optimization, for the three non-reference plumes; and the losses."""
    import h5py
    import numpy as np
    import torch
    from matplotlib.figure import Figure
    from omegaconf import OmegaConf

    from pbdl_cli.evaluation.figures import save_figure
    from pbdl_cli.plugins import load_plugins
    from pbdl_cli.problems import PROBLEMS
    from pbdl_cli.solvers import SOLVERS, rollout

    load_plugins()
    run = results["dp"].run
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    problem = PROBLEMS.build(OmegaConf.to_container(cfg.problem, resolve=True))
    solver = SOLVERS.build(OmegaConf.to_container(cfg.solver, resolve=True), problem=problem)
    batch = int(cfg.method.trajectories)
    params = problem.sample_params(batch, torch.Generator().manual_seed(int(cfg.method.seed)))
    steps = int(cfg.method.steps) or problem.num_steps
    state = problem.initial_state(params, torch.Generator())
    with torch.no_grad():
        before = rollout(solver, state, steps, problem.dt, params)[:, -1, 2].numpy()
    with h5py.File(run / "eval" / "prediction.h5", "r") as f:
        after = f["fields/marker"][:, steps, 0]  # [B, nx, ny]
    ref = int(cfg.method.reference) % batch
    others = [b for b in range(batch) if b != ref]
    fig = Figure(figsize=(3.2 * len(others) + 3.6, 7), layout="constrained")
    axes = fig.subplots(2, len(others) + 1, squeeze=False)
    limit = float(np.abs(before - before[ref]).max())
    style = {"origin": "lower", "cmap": "RdBu_r", "vmin": -limit, "vmax": limit}
    for row, (label, marker) in enumerate((("before", before), ("after", after))):
        for col, b in enumerate(others):
            diff = marker[b] - marker[ref]
            im = axes[row, col].imshow(diff.T, **style)
            centre = (float(params["inflow_x"][b]), float(params["inflow_y"][b]))
            loss = 0.5 * float((diff**2).sum())
            axes[row, col].set_title(f"{label}: inflow {centre}\n1/2 sum diff^2 = {loss:.1f}")
        fig.colorbar(im, ax=axes[row, : len(others)].tolist(), label="marker - reference")
    target = axes[0, -1].imshow(before[ref].T, origin="lower", cmap="magma")
    axes[0, -1].set_title("reference (final marker)")
    fig.colorbar(target, ax=axes[0, -1])
    history = results["dp"].history
    losses = [r["train/obs"] for r in history if "train/obs" in r]
    axes[1, -1].plot(range(len(losses)), losses, "C0-", label="pbdl")
    axes[1, -1].plot(list(BOOK), list(BOOK.values()), "ko", ms=4, label="book")
    axes[1, -1].set(xlabel="GD iteration", ylabel="loss", title="loss")
    axes[1, -1].legend()
    for ax in axes[:, :-1].flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return [save_figure(fig, out / "differences.png")]


def table(results: Mapping[str, VariantResult]) -> str:
    """The book's printed losses next to ours."""
    lines = ["| GD iteration | book | pbdl |", "|---|---|---|"]
    for i, book in BOOK.items():
        ours = loss(i).read(results["dp"])
        lines.append(f"| {i} | {book:.2f} | {'-' if ours is None else f'{ours:.2f}'} |")
    return "\n".join(lines)


register(
    Reproduction(
        name="smoke_dp",
        title="Differentiable smoke: optimizing the initial velocity of four plumes",
        source="PBDL book ch. 16 (differentiable fluid simulations)",
        variants=(
            Variant(
                "dp",
                ("experiment=smoke_dp",),
                quick=QUICK,
                label="initial u, v of 4 plumes through 20 ns_mac steps, plain GD, lr 1e-3",
            ),
        ),
        checks=(
            Check("loss, iteration 0", "dp", loss(0), published=BOOK[0], criterion=Within(2)),
            *(
                Check(f"loss, iteration {i}", "dp", loss(i), published=v, full_only=True)
                for i, v in BOOK.items()
                if i not in (0, 79)
            ),
            Check(
                "loss, iteration 79",
                "dp",
                loss(79),
                published=BOOK[79],
                criterion=Within(1.5),
                full_only=True,
            ),
            Check(
                "final loss < 0.7 x initial",
                "dp",
                loss(-1),
                criterion=Below("dp", loss(0), factor=0.7),
                full_only=True,
            ),
            Check(
                "the loss decreases",
                "dp",
                loss(-1),
                criterion=Below("dp", loss(0)),
                quick=True,
            ),
        ),
        notes=NOTES,
        figures=differences,
        summary=table,
    )
)
