"""PBDL book ch. 22.5, "A simple normalizing flow based on affine couplings": RealNVP
(6 blocks, hidden 256) learns the book's 2D Gaussian mixture by maximum likelihood, 50,000
samples, batch 128, Adam 2e-4, 50 epochs (``experiment=gm_realnvp``). The book prints the
epoch means of its training loss (its units: the NLL minus 1/2 log 2 pi, see
:func:`~pbdl_cli.models.realnvp.book_offset`): 2.6399 after epoch 1, 1.9512 after epoch
2, 1.9213 after epoch 50 (:data:`BOOK`); the floor of those units is the mixture's
entropy 2.8174 minus 0.9189 = 1.8985. Ours: the same epoch means of ``train/book_loss``
(every step is logged), the final NLL in nats against the exact entropy, the energy
distance against its finite-sample floor, and the mode weights. Figures: the book's 2x2
(samples and likelihoods of the model and the mixture) and the per-layer progression.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pbdl_cli.reproduce import checks
from pbdl_cli.reproduce.base import Reproduction, Variant, register
from pbdl_cli.reproduce.checks import (
    AtLeast,
    AtMost,
    Check,
    MetricRef,
    Summary,
    VariantResult,
    Within,
)

#: the book's printed epoch means of the training loss (book units)
BOOK: dict[int, float] = {
    1: 2.6399,
    2: 1.9512,
    3: 1.9392,
    4: 1.9355,
    5: 1.9310,
    6: 1.9323,
    7: 1.9339,
    8: 1.9270,
    9: 1.9281,
    10: 1.9275,
    40: 1.9234,
    41: 1.9278,
    42: 1.9236,
    43: 1.9236,
    44: 1.9216,
    45: 1.9222,
    46: 1.9236,
    47: 1.9215,
    48: 1.9226,
    49: 1.9202,
    50: 1.9213,
}
#: 50,000 samples in batches of 128: 390 full ones and one of 80
STEPS_PER_EPOCH = 391
#: the mixture's entropy H(p) in nats (docs/problems/gaussian_mixture.md), the NLL floor
ENTROPY = 2.8174
#: (D - 1) / 2 log(2 pi) for D = 2: the book's loss is the NLL minus this
BOOK_OFFSET = 0.5 * math.log(2 * math.pi)
#: CI scale: the book's setting for its first 2 of 50 epochs
QUICK_EPOCHS = 2
QUICK = (
    f"trainer.max_steps={QUICK_EPOCHS * STEPS_PER_EPOCH}",
    f"trainer.checkpoint_every={QUICK_EPOCHS * STEPS_PER_EPOCH}",
)
VARIANT = "realnvp"


def EpochMean(key: str, epoch: int) -> checks.EpochMean:
    """The plain mean of ``key`` over the :data:`STEPS_PER_EPOCH` steps of epoch
    ``epoch``: the book's printed epoch loss."""
    return checks.EpochMean(key, epoch, n=50000, batch=128, weights="batches")


@dataclasses.dataclass(frozen=True)
class Difference(MetricRef):
    """``summary[key] - summary[minus]``: e.g. the NLL's excess over the exact entropy
    on the same reference samples, an estimate of KL(p || q)."""

    key: str
    minus: str

    def read(self, result: VariantResult) -> float | None:
        a, b = Summary(self.key).read(result), Summary(self.minus).read(result)
        return None if a is None or b is None else a - b

    def __str__(self) -> str:
        return f"summary.{self.key}-{self.minus}"


def loss(epoch: int) -> EpochMean:
    return EpochMean("train/book_loss", epoch)


NOTES = f"""
- `experiment=gm_realnvp`: the book's flow (6 affine couplings, s/t nets 1-256-256-2
  ReLU, 400,908 parameters, torch's default initialization), 50,000 mixture samples
  drawn once (seed 0), batch 128 (391 steps an epoch), Adam at 2e-4, no schedule,
  float32. Ours differs from the notebook in the draws, the initialization and
  `model.scale_clamp=3` (s = 3 tanh(s_raw / 3); the book's s is unclamped), which
  reaches every |s| < 3 (the trained flow's log-scales on the data stay below 1.5).
- **Epoch 1.** Our first epoch falls faster than the book's (2.07-2.14 over seeds 0-2,
  book 2.64; one epoch with `model.scale_clamp=0`: 2.096), so it is reported, not
  judged; from epoch 2 on the two agree to 0.02.
- **Units.** The book's loss adds the prior's -1/2 log 2 pi once instead of twice:
  book = NLL - {BOOK_OFFSET:.4f}. `train/loss` is the NLL in nats of a normalized density,
  `train/book_loss` the book's; the epoch means are over all {STEPS_PER_EPOCH} steps of
  an epoch (model changing during it, as the book's). The mixture's entropy
  H(p) = {ENTROPY} nats floors the NLL, so the book's floor is {ENTROPY - BOOK_OFFSET:.4f}.
- **Final scores** (`summary.test/*`, after training): 10,000 model samples against
  10,000 exact draws. `nll` is the model's NLL of the exact draws, `exact_nll` the
  mixture's own NLL of the same draws (their difference estimates KL(p || q));
  `reference_energy` is the energy distance between two independent exact sets of
  that size, the floor that finite samples put under `energy`. Mode shares label each
  sample by its most probable component (exact draws: about 0.49 / 0.51).
- `--quick` trains the book's setting for its first {QUICK_EPOCHS} epochs.
"""


def curve(result: VariantResult) -> list[tuple[int, float]]:
    """(epoch, mean book loss) of every fully logged epoch."""
    out = []
    for epoch in range(1, 1 + max((r["step"] for r in result.history), default=0)):
        value = loss(epoch).read(result)
        if value is None:
            break
        out.append((epoch, value))
    return out


def table(results: Mapping[str, VariantResult]) -> str:
    """The book's printed epoch losses next to ours (book units)."""
    ours = dict(curve(results[VARIANT])) if VARIANT in results else {}
    lines = ["| epoch | book | pbdl |", "|---|---|---|"]
    for epoch, book in BOOK.items():
        if epoch in ours:
            lines.append(f"| {epoch} | {book:.4f} | {ours[epoch]:.4f} |")
    return "\n".join(lines) + (
        f"\n\nEpoch-mean training loss in the book's units (NLL - {BOOK_OFFSET:.4f}); "
        f"floor {ENTROPY - BOOK_OFFSET:.4f}."
    )


def _load(result: VariantResult) -> tuple[Any, Any]:
    """(problem, model) of a variant's last checkpoint (float32 as trained, CPU, eval
    mode)."""
    from pbdl_cli.stages.loading import CheckpointChoice, load_run

    loaded = load_run(str(result.run), CheckpointChoice.last, "cpu")
    return loaded.problem, loaded.model()


def angle_colors(points: Any) -> Any:
    """RGB [n, 3] of points [n, 2] by their angle: red -> green -> blue -> red in three
    120-degree segments (the book's ``get_angle_colors``)."""
    import numpy as np

    degrees = np.degrees(np.arctan2(points[:, 1], points[:, 0])) % 360
    segment = np.minimum((degrees // 120).astype(int), 2)
    f = (degrees - 120 * segment) / 120
    colors = np.zeros((len(points), 3))
    rows = np.arange(len(points))
    colors[rows, segment] = 1 - f
    colors[rows, (segment + 1) % 3] = f
    return colors


def figures(out: Path, results: Mapping[str, VariantResult]) -> list[Path]:
    """``losses.png`` (epoch means, ours and the book's), ``samples_likelihoods.png``
    (the book's 2x2) and ``layers.png`` (samples and likelihood after k = 0..K layers)."""
    import numpy as np
    import torch
    from matplotlib.figure import Figure

    from pbdl_cli.evaluation.figures import save_figure

    if VARIANT not in results:
        return []
    paths = []
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    epochs, values = zip(*curve(results[VARIANT]), strict=True)
    ax.plot(epochs, values, "o-", label="pbdl", ms=3)
    ax.plot(list(BOOK), list(BOOK.values()), "+", ms=9, label="book")
    ax.axhline(ENTROPY - BOOK_OFFSET, color="gray", ls="--", lw=1, label="floor H(p) - 0.919")
    ax.set(xlabel="epoch", ylabel="epoch-mean loss (book units)")
    ax.legend()
    paths.append(save_figure(fig, out / "losses.png"))

    problem, model = _load(results[VARIANT])
    g = torch.Generator().manual_seed(0)
    axis = np.linspace(-5, 5, 100)
    grid_x, grid_y = np.meshgrid(axis, axis)
    grid = torch.tensor(np.column_stack([grid_x.ravel(), grid_y.ravel()]), dtype=torch.float32)
    with torch.no_grad():
        samples = model.sample(1000, g).numpy()
        density = model.log_prob(grid).exp().reshape(100, 100).numpy()
    exact = problem.sample(1000, g).numpy()
    exact_density = problem.log_density(grid.double()).exp().reshape(100, 100).numpy()
    fig = Figure(figsize=(11, 9.5), layout="constrained")
    axes = fig.subplots(2, 2)
    for row, (name, points, values) in enumerate(
        (("RealNVP", samples, density), ("Gaussian mixture", exact, exact_density))
    ):
        axes[row, 0].scatter(points[:, 0], points[:, 1], s=6, alpha=0.5)
        axes[row, 0].set(title=f"samples of the {name}", xlim=(-3, 5), ylim=(-3, 4))
        filled = axes[row, 1].contourf(grid_x, grid_y, values, levels=50, cmap="viridis")
        fig.colorbar(filled, ax=axes[row, 1], label="density")
        axes[row, 1].set(title=f"{name} density (normalized)")
    paths.append(save_figure(fig, out / "samples_likelihoods.png"))

    blocks = len(model.flows)
    z = torch.randn(1000, 2, generator=g)
    colors = angle_colors(z.numpy())
    fig = Figure(figsize=(2.9 * (blocks + 1), 6), layout="constrained")
    axes = fig.subplots(2, blocks + 1)
    for k in range(blocks + 1):
        with torch.no_grad():
            x = model.inverse(z, layers=k).numpy()
            latent, log_det = model(grid, layers=k)
            log_q = -0.5 * latent.square().sum(-1) - math.log(2 * math.pi) + log_det
        axes[0, k].scatter(x[:, 0], x[:, 1], s=4, alpha=0.7, c=colors)
        axes[0, k].set(title=f"layers: {k}", xlim=(-5, 5), ylim=(-5, 5))
        values = log_q.exp().reshape(100, 100).numpy()
        axes[1, k].contourf(grid_x, grid_y, values, levels=50, cmap="viridis")
        for ax in axes[:, k]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("samples after k inverse layers (colour: angle of z) and density at k layers")
    paths.append(save_figure(fig, out / "layers.png"))
    return paths


KL = Difference("test/nll", "test/exact_nll")
REFERENCE_ENERGY = Summary("test/reference_energy")

_checks = (
    # reported: our first epoch falls faster than the book's (notes)
    Check("loss, epoch 1 (book units)", VARIANT, loss(1), published=BOOK[1]),
    Check(
        "loss, epoch 2 (book units)",
        VARIANT,
        loss(2),
        published=BOOK[2],
        criterion=Within(1.03),
        quick=True,
    ),
    Check(
        "loss, epoch 50 (book units)",
        VARIANT,
        loss(50),
        published=BOOK[50],
        criterion=Within(1.01),
        full_only=True,
    ),
    Check(
        "loss, epoch 50, not below the floor 1.8985 (book units)",
        VARIANT,
        loss(50),
        published=ENTROPY - BOOK_OFFSET,
        criterion=AtLeast(ENTROPY - BOOK_OFFSET - 0.01),
        full_only=True,
    ),
    Check(
        "final NLL of exact draws (nats; entropy H(p))",
        VARIANT,
        Summary("test/nll"),
        published=ENTROPY,
        criterion=Within(1.05),
        quick=True,
    ),
    Check(
        "NLL - exact NLL, KL(p || q) (nats)",
        VARIANT,
        KL,
        published=BOOK[50] - (ENTROPY - BOOK_OFFSET),
        criterion=AtMost(0.15),
        quick=True,
    ),
    Check(
        "NLL - exact NLL after 50 epochs (nats)",
        VARIANT,
        KL,
        published=BOOK[50] - (ENTROPY - BOOK_OFFSET),
        criterion=AtMost(0.05),
        full_only=True,
    ),
    Check(
        "energy distance to exact draws",
        VARIANT,
        Summary("test/energy"),
        criterion=AtMost(0.03),
        quick=True,
    ),
    Check(
        "energy distance after 50 epochs",
        VARIANT,
        Summary("test/energy"),
        criterion=AtMost(0.006),
        full_only=True,
    ),
    Check("energy distance between two exact sets (floor)", VARIANT, REFERENCE_ENERGY),
    Check(
        "mode weights: total-variation error",
        VARIANT,
        Summary("test/mode_weight_error"),
        criterion=AtMost(0.05),
        quick=True,
    ),
    Check("share of the component at (0, 0)", VARIANT, Summary("test/mode_0_share"), 0.5),
)

register(
    Reproduction(
        name="gm_realnvp",
        title="RealNVP normalizing flow on the book's 2D Gaussian mixture",
        source="PBDL book ch. 22.5 (affine coupling flow, maximum likelihood)",
        variants=(
            Variant(
                VARIANT,
                ("experiment=gm_realnvp",),
                quick=QUICK,
                label="6 coupling blocks x 256, 50,000 samples, batch 128, Adam 2e-4",
            ),
        ),
        checks=_checks,
        notes=NOTES,
        figures=figures,
        summary=table,
    )
)
