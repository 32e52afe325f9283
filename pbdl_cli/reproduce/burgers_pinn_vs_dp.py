"""PBDL book ch. 11, 14 and 14.5: reconstruct Burgers' space-time solution from one
observation at t = 0.5, with a PINN and with differentiable physics (DP), and compare.

Book values: DP loss 0.382915 at iteration 0 and 0.003263 at iteration 45 (plain GD, lr
5); mean absolute error of the reconstructed space-time solution against the ground
truth: PINN 0.19298, DP 0.06382.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pbdl_cli.reproduce.base import Reproduction, Variant, register
from pbdl_cli.reproduce.checks import Below, Check, Eval, History, Summary, VariantResult, Within

NOTES = """
- **Viscosity.** The book's text and PINN code use nu = 0.01/pi; its DP code (ch. 14)
  simulates with nu = 0.01/(128 pi), but the observation array it fits was made with
  0.01/pi (the spec's re-implementation matches 0.01/pi to 2e-3 mean, 0.01/(128 pi)
  only to ~1e-2). pbdl uses **0.01/pi everywhere**: in the observations, the PINN
  residual, the DP solver and the ground truth.
- **Ground truth and observations** are the exact (Cole-Hopf) solution on the 128 cell
  centres of [-1, 1] at the 33 times k/32, not a forward simulation; the observations are
  its values at t = 0.5 (all 128 cells for DP, 100 random cells for the PINN, as in the
  book). The book's PINN uses linspace(-1, 1, 128) positions, endpoints included.
- **MAE** is the mean over the whole 33 x 128 space-time grid (the book divides the sum
  by 32 x 128, a small quirk).
- **DP loss** is the MSE of the simulated state at t = 0.5 (the book's
  `l2_loss * 2 / N`); `iteration i` is the loss evaluated before the (i+1)-th update.
- The DP solver is pbdl's `burgers_sl` with one step per frame: the book's scheme
  (explicit diffusion, then semi-Lagrangian advection), periodic.
"""

#: mean absolute error of the reconstructed space-time solution
MAE = Eval("mae")


def comparison(out: Path, results: Mapping[str, VariantResult]) -> list[Path]:
    """The book's fig. of ch. 14.5: ground truth, PINN and DP space-time images, and the
    errors of both (t across, x up), and the reconstructed initial states."""
    import h5py
    from matplotlib.figure import Figure

    from pbdl_cli.evaluation.figures import save_figure

    def field(variant: str, name: str) -> Any:
        with h5py.File(out / variant / "eval" / f"{name}.h5", "r") as f:
            return f["fields/u"][0, :, 0, :].T, f["coords/t"][()], f["coords/x"][()]

    truth, t, x = field("dp", "reference")
    images = {"ground truth": truth}
    images |= {
        f"{v.upper()} (MAE {MAE.read(results[v]):.3f})": field(v, "prediction")[0]
        for v in ("pinn", "dp")
    }
    fig = Figure(figsize=(12, 6), layout="constrained")
    axes = fig.subplots(2, 3, sharex=True, sharey=True)
    extent = (float(t[0]), float(t[-1]), float(x[0]), float(x[-1]))
    style = {"extent": extent, "origin": "lower", "aspect": "auto"}
    for ax, (title, image) in zip(axes[0], images.items(), strict=True):
        im = ax.imshow(image, cmap="RdBu_r", vmin=-1, vmax=1, **style)
        ax.set_title(title)
    fig.colorbar(im, ax=axes[0].tolist(), label="u")
    initial = fig.add_subplot(2, 3, 4)  # replaces the shared-axes panel: u0 of each
    axes[1, 0].remove()
    lines = zip(images.values(), ("k-", "C0--", "C3--"), ("truth", "PINN", "DP"), strict=True)
    for image, style_, label in lines:
        initial.plot(x, image[:, 0], style_, label=label, lw=1.2)
    initial.set(title="reconstructed initial state u(x, 0)", xlabel="x", ylabel="u")
    initial.legend(fontsize=8)
    for ax, (title, image) in zip(axes[1, 1:], list(images.items())[1:], strict=True):
        im = ax.imshow(abs(image - truth), cmap="magma", vmin=0, vmax=1, **style)
        ax.set_title(f"|error| {title.split()[0]}")
        ax.set_xlabel("t")
    axes[0, 0].set_ylabel("x")
    fig.colorbar(im, ax=axes[1, 1:].tolist(), label="|error|")
    return [save_figure(fig, out / "comparison.png")]


register(
    Reproduction(
        name="burgers_pinn_vs_dp",
        title="Burgers inverse problem: PINN vs differentiable physics",
        source="PBDL book ch. 11 (PINN), ch. 14 (DP) and the comparison in 14.5",
        variants=(
            Variant(
                "pinn",
                ("experiment=burgers_inverse_pinn",),
                quick=("trainer.max_steps=500",),
                label="PINN, 8x20 tanh, plain GD at lr 0.02 for 10000 steps",
            ),
            Variant(
                "dp",
                ("experiment=burgers_inverse_dp",),
                label="u0 optimized through 16 solver steps, plain GD at lr 5, 50 steps",
            ),
        ),
        checks=(
            Check(
                "DP loss, iteration 0",
                "dp",
                History("train/obs", at=0),
                published=0.382915,
                criterion=Within(2.0),
            ),
            Check(
                "DP loss, iteration 45",
                "dp",
                History("train/obs", at=45),
                published=0.003263,
                criterion=Within(2.0),
            ),
            Check("MAE PINN", "pinn", MAE, published=0.19298, criterion=Within(2.0)),
            Check("MAE DP", "dp", MAE, published=0.06382, criterion=Within(2.0)),
            Check("MAE DP < MAE PINN", "dp", MAE, criterion=Below("pinn", MAE), quick=True),
            Check("PINN training time [s]", "pinn", Summary("seconds"), published=101.02),
            Check("DP training time [s]", "dp", Summary("seconds"), published=132.33),
        ),
        notes=NOTES,
        figures=comparison,
    )
)
