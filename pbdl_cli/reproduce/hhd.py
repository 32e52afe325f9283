"""PBDL book ch. 9, "Learning the Helmholtz-Hodge decomposition" (Tompson et al. 2017).

A U-Net p = f(div u~) is trained without pressure labels, by the divergence left after
the projection u~ - grad p, on 100 random divergent fields of a periodic 32^2 MAC grid,
then tested on 10 fields of finer noise (out of distribution). Book values (phiflow 3.3):
mean sum (div u)^2 over the OOD fields: original 2059.143, NN 11.510, solver 0.000
(mean of per-sample max |div|: 4.946, 0.417, 0); final training loss 0.679; initial
L2 of divergence of the training fields 195.28 (phiflow's l2_loss: half the sum of
squares, i.e. sum (div u)^2 = 390.6).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pbdl_cli.reproduce.base import Reproduction, Variant, register
from pbdl_cli.reproduce.checks import (
    AtLeast,
    AtMost,
    Below,
    Check,
    Eval,
    History,
    MetricRef,
    Summary,
    VariantResult,
    Within,
)

BOOK_ORIGINAL, BOOK_NN = 2059.143, 11.510

NOTES = """
- **Noise.** `problem=hhd` rebuilds phiflow's `StaggeredGrid(Noise(scale))` in torch:
  every velocity component is an independent Gaussian random field with Fourier
  amplitude 1/|k|^2 (smoothness 1), k = m scale / size, modes with |k|^2 <= 0.1 removed,
  then scaled to unit standard deviation and zero mean. The normalization cancels the
  amplitude, so `scale` acts only through the high-pass cut (scale 10: all modes but
  |m| = 1 along an axis; scale 2: |m| > 5.06, the finer OOD noise). Our OOD input numbers
  therefore match the book's (2060 vs 2059 for the mean divergence), but the random
  draws are torch's, not phiflow's. Our training fields have sum (div u)^2 = 306 on
  average where the book prints 390.6 (195.28 as half the sum); we found no difference
  in the definition that explains this 20% (the book's OOD value matches ours to 0.1%).
- **Network.** The book's phiflow `u_net(levels=4, filters=24)` has 24 channels on every
  level (3 max-pool down / bilinear up levels, 83,521 parameters). pbdl's `unet` with
  `levels=3 width=24 growth=1` has the same widths and levels (average pooling, nearest
  + conv upsampling, one more convolution per up block: 99,145 parameters). With
  channels doubling per level at a similar size (2 levels of width 13, 85,606
  parameters) the OOD reduction was ~130x (~33x with the raw input).
- **Input scaling.** The book feeds the raw divergence. We divide it by its per-sample
  root mean square and multiply the predicted pressure by the same factor
  (`method.normalize=rms`), which makes the learned projection equivariant to the
  amplitude of the velocity: the OOD fields are ~2.6x more divergent than the training
  fields. The variant `raw` is the book's unnormalized input with the same network
  (~100x reduction on the OOD fields in our runs, the book's 179x not reached).
- **Losses.** The loss and all reported divergences are sum over cells of (div u)^2 per
  field (the book's `2 * l2_loss`), averaged over the fields; the final training loss is
  measured over all 100 training fields after the last step (as the book prints it).
  Training: Adam 5e-3, 15 epochs x 10 batches of 10 fields in a fixed order, float32.
- **Solver.** The exact projection is the FFT solve of the 5-point Laplacian
  (`pbdl_cli.numerics.pressure`, method `fft`): its divergence is at round-off.
- **Pressure.** The NN pressure matches the solver's up to a constant (on a periodic
  box a divergence-free correction only fixes p up to one); the figure shows both with
  their means removed and prints the NN's offset.
- **Zero-shot obstacle test.** `pbdl evaluate` of a `projection` run also runs the
  book's smoke plume past a box (`pbdl_cli.methods.projection_obstacle`: periodic 32^2,
  inflow 0.6 x Sphere((16, 5), 3), obstacle Box(x=(12, 20), y=(18, 20)), dt 0.1, 50
  steps, MacCormack, buoyancy (0, 1) s, the obstacle condition before and after the
  projection, float32) three times side by side: with the network's projection, with
  the exact projection with the obstacle (CG), and with none. The book only says the
  last frames look "remarkably similar"; we report the relative L2 difference of the
  final smoke to the exact run's (`obstacle_marker_rel_l2`; the unprojected run's as
  the scale: `obstacle_marker_rel_l2_unprojected`) and the mean |div u| over the fluid
  cells after each step (`obstacle_div_*`; `obstacle_div_nn_input`: before the
  network's projection). `obstacle.png` shows the final smoke.
- Seeds: `nn_s0..2` differ in the network initialization and batch order
  (`seed=`); data are the same for all.
"""

QUICK = ("trainer.max_steps=60",)
SEEDS = (0, 1, 2)


def _nn(seed: int) -> Variant:
    return Variant(
        f"nn_s{seed}",
        ("experiment=hhd", f"seed={seed}"),
        quick=QUICK,
        label=f"U-Net p = f(div u), physical loss only (seed {seed})",
        full_only=seed > 0,
    )


VARIANTS = (
    *(_nn(s) for s in SEEDS),
    Variant(
        "raw",
        ("experiment=hhd", "method.normalize=none"),
        label="the same, with the raw divergence as input (the book's input scaling)",
        full_only=True,
    ),
)

CHECKS = (
    Check(
        "OOD mean sum (div u)^2: original",
        "nn_s0",
        Eval("input_div_loss"),
        published=BOOK_ORIGINAL,
        criterion=Within(1.2),
        quick=True,
    ),
    Check(
        "OOD mean max |div u|: original",
        "nn_s0",
        Eval("input_div_max"),
        published=4.946,
        criterion=Within(1.2),
        quick=True,
    ),
    Check(
        "OOD mean sum (div u)^2: NN",
        "nn_s*",
        Eval("div_loss"),
        published=BOOK_NN,
        criterion=Within(3.0),
    ),
    Check("OOD mean max |div u|: NN", "nn_s*", Eval("div_max"), published=0.417),
    Check(
        "OOD mean sum (div u)^2: solver",
        "nn_s0",
        Eval("solver_div_loss"),
        published=0.0,
        criterion=AtMost(1e-8),
        quick=True,
    ),
    Check("OOD mean max |div u|: solver", "nn_s0", Eval("solver_div_max"), published=0.0),
    Check(
        "OOD reduction original / NN",
        "nn_s*",
        Eval("div_reduction"),
        published=BOOK_ORIGINAL / BOOK_NN,
        criterion=AtLeast(50.0),
    ),
    Check(
        "OOD reduction original / NN (CI scale)",
        "nn_s0",
        Eval("div_reduction"),
        published=BOOK_ORIGINAL / BOOK_NN,
        criterion=AtLeast(10.0),
        quick=True,
    ),
    Check(
        "final train loss (100 fields)",
        "nn_s*",
        History("val/train_div_loss", at=-1),
        published=0.6786,
        criterion=Within(3.0),
    ),
    Check(
        "train fields: sum (div u)^2 before",
        "nn_s0",
        History("val/train_input_div_loss", at=-1),
        published=2 * 195.28241,
    ),
    Check(
        "OOD reduction, raw input (book's scaling)",
        "raw",
        Eval("div_reduction"),
        published=BOOK_ORIGINAL / BOOK_NN,
        full_only=True,
    ),
    Check("training time, s", "nn_s0", Summary("seconds"), published=16.0),
    Check(
        "obstacle: final smoke rel. L2, NN vs exact projection",
        "nn_s*",
        Eval("obstacle_marker_rel_l2"),
        criterion=Below("nn_s0", Eval("obstacle_marker_rel_l2_unprojected")),
    ),
    Check(
        "obstacle: final smoke rel. L2, unprojected vs exact",
        "nn_s0",
        Eval("obstacle_marker_rel_l2_unprojected"),
    ),
    Check(
        "obstacle: mean |div u| on fluid cells, NN (before its projection)",
        "nn_s*",
        Eval("obstacle_div_nn_input"),
    ),
    Check("obstacle: mean |div u| on fluid cells, NN", "nn_s*", Eval("obstacle_div_nn")),
    Check(
        "obstacle: mean |div u| on fluid cells, exact",
        "nn_s0",
        Eval("obstacle_div_exact"),
        criterion=AtMost(1e-4),
        quick=True,
    ),
    Check(
        "obstacle: mean |div u| on fluid cells, unprojected",
        "nn_s0",
        Eval("obstacle_div_unprojected"),
    ),
    Check(
        "obstacle: final smoke rel. L2, raw input vs exact",
        "raw",
        Eval("obstacle_marker_rel_l2"),
        full_only=True,
    ),
)


def summary(results: Mapping[str, VariantResult]) -> str:
    """original / NN / solver for every variant (the book's table)."""
    lines = [
        "OOD test (10 fields, noise scale 2): mean over fields of sum (div u)^2 and of "
        "max |div u|.",
        "",
        "| variant | original | NN | solver | reduction | max: original | NN | solver "
        "| final train loss | train s |",
        "|---" * 10 + "|",
        f"| book | {BOOK_ORIGINAL} | {BOOK_NN} | 0.000 | {BOOK_ORIGINAL / BOOK_NN:.1f}x "
        "| 4.946 | 0.417 | 0.000 | 0.679 | 16 |",
    ]
    for name, result in results.items():

        def get(metric: MetricRef, result: VariantResult = result) -> float:
            value = metric.read(result)
            return float("nan") if value is None else value

        lines.append(
            f"| {name} | {get(Eval('input_div_loss')):.1f} | {get(Eval('div_loss')):.3f} "
            f"| {get(Eval('solver_div_loss')):.1e} | {get(Eval('div_reduction')):.1f}x "
            f"| {get(Eval('input_div_max')):.3f} | {get(Eval('div_max')):.3f} "
            f"| {get(Eval('solver_div_max')):.1e} "
            f"| {get(History('val/train_div_loss', at=-1)):.3f} "
            f"| {get(Summary('seconds')):.1f} |"
        )
    lines += [
        "",
        "Zero-shot obstacle test (smoke plume past a box, 50 steps; the network never saw "
        "an obstacle): relative L2 difference of the final smoke to the run with the "
        "exact projection, and mean |div u| over the fluid cells (per step, averaged "
        "over the steps).",
        "",
        "| variant | smoke rel. L2: NN | unprojected | mean \\|div\\|: before NN | NN "
        "| exact | unprojected |",
        "|---" * 7 + "|",
    ]
    for name, result in results.items():
        values = [
            Eval(f"obstacle_{key}").read(result)
            for key in (
                "marker_rel_l2",
                "marker_rel_l2_unprojected",
                "div_nn_input",
                "div_nn",
                "div_exact",
                "div_unprojected",
            )
        ]
        if all(v is None for v in values):
            continue
        cells = ["n/a" if v is None else f"{v:.3g}" for v in values]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _load(results: Mapping[str, VariantResult], name: str, dtype: Any) -> tuple[Any, Any, Any]:
    """(problem, method, model) of variant ``name``'s last checkpoint, in ``dtype``."""
    import torch

    from pbdl_cli.methods import build_method
    from pbdl_cli.problems import PROBLEMS
    from pbdl_cli.stages.loading import stored_train_config
    from pbdl_cli.stages.train import train_config
    from pbdl_cli.training.checkpoint import load_checkpoint

    checkpoint = results[name].run / "checkpoints" / "last.pt"
    state = load_checkpoint(checkpoint)
    cfg = train_config(stored_train_config(state, checkpoint))
    problem = PROBLEMS.create(cfg.problem)
    cpu = torch.device("cpu")
    method = build_method(cfg.method, cfg.solver, problem=problem, device=cpu, dtype=dtype)
    model = method.build_model(cfg.model)  # in dtype, like the method
    model.load_state_dict(state["model"])
    model.eval()
    return problem, method, model


def figures(out: Path, results: Mapping[str, VariantResult]) -> list[Path]:
    """``projection.png`` (:func:`_projection_figure`) and ``obstacle.png``
    (:func:`_obstacle_figure`)."""
    name = "nn_s0" if "nn_s0" in results else next(iter(results))
    return [_projection_figure(out, results, name), _obstacle_figure(out, results, name)]


def _projection_figure(out: Path, results: Mapping[str, VariantResult], name: str) -> Path:
    """``projection.png``: one OOD test field: its divergence, the divergence after the
    learned projection, and the solver's and the network's pressure (means removed)."""
    import torch
    from matplotlib.figure import Figure

    from pbdl_cli.evaluation.figures import save_figure

    problem, method, model = _load(results, name, torch.float64)
    fields = problem.data("test")[:1]  # type: ignore[attr-defined]
    with torch.no_grad():
        p_nn = method.pressure(model, fields)  # type: ignore[attr-defined]
        corrected = problem.correct(fields, p_nn)  # type: ignore[attr-defined]
        _, p_solver = problem.project(fields)  # type: ignore[attr-defined]
        div_in = problem.divergence(fields)[0]  # type: ignore[attr-defined]
        div_nn = problem.divergence(corrected)[0]  # type: ignore[attr-defined]
    offset = float(p_nn.mean())
    panels = [
        (f"input div u (sum sq. {float(div_in.square().sum()):.0f})", div_in, "RdBu_r"),
        (f"after NN: div u (sum sq. {float(div_nn.square().sum()):.2f})", div_nn, "RdBu_r"),
        ("solver pressure", p_solver[0] - p_solver[0].mean(), "viridis"),
        (f"NN pressure - mean ({offset:+.3g})", p_nn[0] - offset, "viridis"),
    ]
    fig = Figure(figsize=(15, 3.8), layout="constrained")
    axes = fig.subplots(1, 4)
    plim = float(max(p_solver[0].abs().max(), (p_nn[0] - offset).abs().max()))
    for ax, (title, image, cmap) in zip(axes, panels, strict=True):
        values = image.T.numpy()  # x across, y up
        if cmap == "RdBu_r":
            lim = float(abs(values).max()) or 1.0
            im = ax.imshow(values, origin="lower", cmap=cmap, vmin=-lim, vmax=lim)
        else:
            im = ax.imshow(values - values.mean(), origin="lower", cmap=cmap, vmin=-plim, vmax=plim)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(f"learned Helmholtz-Hodge projection, OOD test field 0 ({name})")
    return save_figure(fig, out / "projection.png")


def _obstacle_figure(out: Path, results: Mapping[str, VariantResult], name: str) -> Path:
    """``obstacle.png``: the final smoke of the zero-shot obstacle test with the exact
    projection, with the network's, their difference, and without projection; the
    obstacle outlined. Rerun here in float32, as ``pbdl evaluate`` does."""
    import torch
    from matplotlib.figure import Figure

    from pbdl_cli.evaluation.figures import save_figure

    _, method, model = _load(results, name, torch.float32)
    result = method.obstacle_test(model)  # type: ignore[attr-defined]
    smoke = result.smoke.double()
    exact, nn, free = (smoke[result.run(k)] for k in ("exact", "nn", "free"))
    rel = result.marker_rel_l2("nn"), result.marker_rel_l2("free")
    panels = [
        ("exact projection (with the obstacle)", exact, "magma"),
        (f"NN projection (rel. L2 {rel[0]:.3f})", nn, "magma"),
        ("NN - exact", nn - exact, "RdBu_r"),
        (f"no projection (rel. L2 {rel[1]:.3f})", free, "magma"),
    ]
    top = float(max(exact.max(), nn.max()))
    solid = result.solid.T.double().numpy()
    fig = Figure(figsize=(15, 3.8), layout="constrained")
    axes = fig.subplots(1, 4)
    for ax, (title, image, cmap) in zip(axes, panels, strict=True):
        values = image.T.numpy()  # x across, y up
        if cmap == "RdBu_r":
            lim = float(abs(values).max()) or 1.0
            im = ax.imshow(values, origin="lower", cmap=cmap, vmin=-lim, vmax=lim)
        else:
            im = ax.imshow(values, origin="lower", cmap=cmap, vmin=0, vmax=top)
        ax.contour(solid, levels=[0.5], colors="cyan", linewidths=1.2)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.8)
    steps = result.divergence.shape[1]
    fig.suptitle(
        f"zero-shot obstacle test: smoke after {steps} steps ({name}; the network never "
        "saw an obstacle)"
    )
    return save_figure(fig, out / "obstacle.png")


register(
    Reproduction(
        name="hhd",
        title="Learning the Helmholtz-Hodge decomposition: a pressure projection from a "
        "physical loss",
        source="PBDL book ch. 9 (Tompson et al. 2017)",
        variants=VARIANTS,
        checks=CHECKS,
        notes=NOTES,
        figures=figures,
        summary=summary,
    )
)
