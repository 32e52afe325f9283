"""PBDL book ch. 24.3: DDPM on the 2D Gaussian mixture (``experiment=gm_ddpm``).

The book trains DdpmNet (2 x 128 ReLU on [x, t / T]) for 100 epochs of 157 batches with
the constant schedule beta = 0.02 over T = 1000 steps and prints the epoch-mean MSE:
0.1529 at epoch 1, 0.0624 at epoch 100; 1,000 ancestral samples (T network evaluations,
sigma_t^2 = beta_t) capture both modes ("Diffusion Model Reverse Process"). Ours: the
same epoch means from ``metrics.jsonl`` (every step is logged), the samples' energy
distance to the mixture next to the floor that 1,000 exact samples reach, the mode
weights, DDIM with K = 50 and 20 evaluations on the same training, and the linear
schedule (1e-4..0.02) as a comparison. Figures: the forward process with the linear
schedule (the book's figure), the reverse-process snapshots, and samples vs the mixture.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pbdl_cli.reproduce import checks
from pbdl_cli.reproduce.base import Reproduction, Variant, register
from pbdl_cli.reproduce.checks import (
    AtLeast,
    AtMost,
    Below,
    Check,
    History,
    Summary,
    VariantResult,
    Within,
)
from pbdl_cli.reproduce.results import fmt

#: batches per epoch: ceil(10,000 / 64)
EPOCH = 157
#: the variants that only sample differently log one step per epoch (small results.json)
SPARSE = ("trainer.log_every=157",)
#: the book's reverse-process snapshots (its t: the state after its loop's step t)
SNAPSHOTS = (999, 500, 200, 100, 50, 1)
#: the book's forward-process figure (its t indexes alphas_cumprod from 0)
FORWARD = (0, 200, 400, 600, 800, 999)


def EpochBatchMean(key: str, epoch: int) -> checks.EpochMean:
    """The plain mean of ``key`` over the 157 steps of epoch ``epoch`` (1 the first, -1
    the last complete one): the book's printed epoch loss, ``sum of batch losses /
    len(data_loader)`` (its last batch of 16 counts as much as the others of 64)."""
    return checks.EpochMean(key, epoch, n=10000, batch=64, weights="batches")


#: name -> (overrides on top of experiment=gm_ddpm, label, full only)
RUNS: dict[str, tuple[tuple[str, ...], str, bool]] = {
    "ancestral": ((), "constant beta 0.02, ancestral, T = 1000 evaluations (the book)", False),
    "ddim50": (
        ("method.sampler=ddim", "method.steps=50", *SPARSE),
        "constant beta 0.02, DDIM K = 50 (eta 0)",
        True,
    ),
    "ddim20": (
        ("method.sampler=ddim", "method.steps=20", *SPARSE),
        "constant beta 0.02, DDIM K = 20 (eta 0)",
        True,
    ),
    "linear": (
        ("method.schedule=linear", *SPARSE),
        "linear beta 1e-4..0.02, ancestral, T = 1000",
        True,
    ),
    "linear_ddim50": (
        ("method.schedule=linear", "method.sampler=ddim", "method.steps=50", *SPARSE),
        "linear beta 1e-4..0.02, DDIM K = 50",
        True,
    ),
}

ENERGY = Summary("test/energy")
FLOOR = Summary("test/reference_energy")

NOTES = """
- `experiment=gm_ddpm`: the book's 10,000 mixture samples (drawn once from the seed),
  batch 64 in shuffled epochs, MLP [x, t / T] -> 128 ReLU -> 128 ReLU -> 2 (17,282
  parameters, torch's default initialization), Adam at 1e-3, no schedule, 100 epochs =
  15,700 steps, t ~ U{1..T}, eps-prediction MSE. Schedule: the book's GM notebook trains
  and samples with the constant beta = 0.02 (variants `ancestral`, `ddim50`, `ddim20`);
  only its forward-process figure uses the linear 1e-4..0.02 (variants `linear`,
  `linear_ddim50` train and sample with it).
- The epoch loss is the mean of the 157 per-step losses of that epoch, as the book
  prints it; with fresh t and eps each step it fluctuates by about +-0.003 from epoch
  to epoch (book epochs 90-100: 0.0570-0.0632). The loss cannot go below the
  Bayes-optimal network's (the exact E[eps | x_t] of the mixture), computed below.
- Sample quality: 1,000 samples (the book's `n_infer`) against 1,000 exact draws of the
  mixture: the energy distance, next to the same distance between two independent sets
  of 1,000 exact draws (`reference_energy`, the floor that finite samples allow), and the
  share of samples in each component (most probable component of each sample).
- The same seed trains the same network in `ancestral`, `ddim50` and `ddim20`; they
  differ only in the sampler. DDIM on the constant schedule spends most of its K steps
  where abar_t ~ 0 (abar_t = 0.98^t is 0.018 at t = 200): few steps are left for the
  structure, which the linear schedule keeps longer.
- Figures: the forward process with the book's linear `DDPMForwardProcess` at its
  t = 0, 200, ..., 999 (its index t is our step t + 1); the reverse process of the
  trained `ancestral` network at the book's t = 999, 500, 200, 100, 50, 1 (the state
  after that step, x_{t-1}), over a density of q(x_{t-1}) under the network's own
  (constant) schedule (the book draws the linear one's); samples vs the mixture.
- `--quick` runs the book's variant `ancestral` alone, at the full settings (100 epochs
  take about a minute on one CPU core; sample quality still improves after the loss has
  settled: 20 epochs reach a loss of 0.066 but an energy distance of 0.07, 5x the
  final); the full run adds the other samplers and the linear schedule.
"""


def bayes_optimal_loss(schedule: str, *, n: int = 200_000, seed: int = 0) -> float:
    """The expected loss of the exact E[eps | x_t] for the book's mixture, t ~ U{1..T}
    (Monte Carlo over ``n`` draws): x_t | component k ~ N(sqrt(a) mu_k, (a s_k + 1 - a) I)
    and E[eps | x_t, k] = sqrt(1 - a) (x_t - sqrt(a) mu_k) / (a s_k + 1 - a), weighted by
    the posterior of k. The floor under the training loss of any network."""
    from pbdl_cli.generative.schedules import noise_schedule
    from pbdl_cli.problems.gaussian_mixture import GaussianMixture, GaussianMixtureConfig

    mixture = GaussianMixture(GaussianMixtureConfig())
    table = noise_schedule(schedule, 1000).alpha_bar
    g = torch.Generator().manual_seed(seed)
    y = mixture.sample(n, g)
    t = torch.randint(1, 1001, (n,), generator=g)
    eps = torch.randn(n, 2, generator=g, dtype=torch.float64)
    a = table[t - 1][:, None]  # [n, 1]
    x = a.sqrt() * y + (1 - a).sqrt() * eps
    var = a * mixture.variances[None] + 1 - a  # [n, K]
    centred = x[:, None, :] - a.sqrt()[:, :, None] * mixture.means[None]  # [n, K, 2]
    log_p = mixture.weights.log() - centred.square().sum(-1) / (2 * var) - var.log()
    posterior = torch.softmax(log_p, dim=1)
    optimal = ((1 - a).sqrt()[:, :, None] * centred / var[:, :, None] * posterior[..., None]).sum(1)
    return float((eps - optimal).square().mean())


def _load(run: Path) -> tuple[Any, nn.Module]:
    """The method and the trained network of a finished run (its last checkpoint), on
    the CPU."""
    from pbdl_cli.stages.loading import CheckpointChoice, load_run

    loaded = load_run(str(run), CheckpointChoice.last, "cpu")
    return loaded.method, loaded.model()


def _panel(
    ax: Any, points: Tensor, title: str, density: Tensor | None = None, colors: Any = None
) -> None:
    """Scatter of points [n, 2] on the book's [-5, 5]^2, over KDE contours of ``density``
    points (the points themselves when None)."""
    import numpy as np
    from scipy.stats import gaussian_kde

    xx, yy = np.mgrid[-5:5:100j, -5:5:100j]
    cloud = (points if density is None else density).numpy().T
    kde = gaussian_kde(cloud)(np.vstack([xx.ravel(), yy.ravel()])).reshape(xx.shape)
    ax.contour(xx, yy, kde, levels=10, alpha=0.8)
    ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.8, c=colors)
    ax.set(xlim=(-5, 5), ylim=(-5, 5), aspect="equal", title=title)


def figures(out: Path, results: Mapping[str, VariantResult]) -> list[Path]:
    """The forward process (linear schedule, the book's figure), the reverse process of
    the trained ``ancestral`` network, and its samples (and DDIM's) vs the mixture."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small MLP: one thread is fastest (as pbdl train's default)
    try:
        return _figures(out, results)
    finally:
        torch.set_num_threads(threads)


def _figures(out: Path, results: Mapping[str, VariantResult]) -> list[Path]:
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from pbdl_cli.evaluation.figures import save_figure
    from pbdl_cli.generative.schedules import noise_schedule, q_sample
    from pbdl_cli.problems.gaussian_mixture import GaussianMixture, GaussianMixtureConfig
    from pbdl_cli.utils.seeding import generator

    mixture = GaussianMixture(GaussianMixtureConfig())
    g = generator(0, "figures")
    paths = []
    linear = noise_schedule("linear", 1000)
    fig = Figure(figsize=(13, 9), layout="constrained")
    x0 = mixture.sample(1000, g)
    for ax, t in zip(fig.subplots(2, 3).ravel(), FORWARD, strict=True):
        eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
        _panel(ax, q_sample(x0, t + 1, eps, linear), f"t = {t}")
    fig.suptitle("Forward process (data to noise), linear beta 1e-4..0.02")
    paths.append(save_figure(fig, out / "forward_process.png"))
    if "ancestral" not in results:
        return paths
    method, model = _load(results["ancestral"].run)
    snapshots: dict[int, Tensor] = {}

    def keep(step: int, t: float, x: Tensor) -> None:
        if int(t) + 1 in SNAPSHOTS:
            snapshots[int(t) + 1] = x.detach().double().cpu()

    method.draw_samples(model, 1000, sampler="ancestral", callback=keep)
    fig = Figure(figsize=(13, 9), layout="constrained")
    schedule = method.schedule
    start = snapshots[SNAPSHOTS[0]]  # each sample coloured by its angle there (the book's)
    angle = (torch.atan2(start[:, 1], start[:, 0]) + math.pi) / (2 * math.pi)
    colors = colormaps["hsv"](angle.numpy())
    for ax, t in zip(fig.subplots(2, 3).ravel(), SNAPSHOTS, strict=True):
        background = mixture.sample(5000, g)
        eps = torch.randn(background.shape, generator=g, dtype=torch.float64)
        density = q_sample(background, t - 1, eps, schedule)
        _panel(ax, snapshots[t], f"t = {t}", density, colors)
    fig.suptitle("Diffusion Model Reverse Process (constant beta 0.02, ancestral)")
    paths.append(save_figure(fig, out / "reverse_process.png"))
    samplers = [("ancestral", "ancestral, T = 1000", "ancestral", 0)]
    samplers += [(f"ddim{k}", f"DDIM, K = {k}", "ddim", k) for k in (50, 20)]
    fig = Figure(figsize=(17, 4.5), layout="constrained")
    axes = fig.subplots(1, len(samplers) + 1)
    _panel(axes[0], mixture.sample(1000, g), "the mixture (1,000 exact draws)")
    for ax, (name, label, sampler, steps) in zip(axes[1:], samplers, strict=True):
        drawn = method.draw_samples(model, 1000, sampler=sampler, steps=steps).samples[0]
        energy = results[name].summary.get("test", {}).get("energy") if name in results else None
        _panel(ax, drawn, label + (f", energy {fmt(energy)}" if energy is not None else ""))
    fig.suptitle("Samples of the trained DDPM (constant beta 0.02) vs the mixture")
    paths.append(save_figure(fig, out / "samples.png"))
    return paths


def summary(results: Mapping[str, VariantResult]) -> str:
    """A table over the variants: epoch losses, sampler evaluations and sample scores;
    the Bayes-optimal loss of each schedule."""
    rows = [
        "| variant | epoch 1 / last loss | evaluations | samples/s | energy (floor) | "
        "mode shares (true 0.5 / 0.5) |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        test, sampling = result.summary.get("test", {}), result.summary.get("sampling", {})
        first, last = EpochBatchMean("train/loss", 1).read(result), EpochBatchMean("train/loss", -1)
        last_value = last.read(result)
        losses = f"{fmt(first)} / {fmt(last_value)}"
        if first is None:  # one step per epoch logged: the last step's loss
            losses = f"- / {fmt(History('train/loss', at=-1).read(result))} (last step)"
        rows.append(
            f"| {name} | {losses} | {sampling.get('evaluations', ['-'])[0]} | "
            f"{fmt(sampling.get('samples_per_second'))} | {fmt(test.get('energy'))} "
            f"({fmt(test.get('reference_energy'))}) | {fmt(test.get('mode_0_share'))} / "
            f"{fmt(test.get('mode_1_share'))} |"
        )
    floors = ", ".join(f"{s} {bayes_optimal_loss(s):.4f}" for s in ("constant", "linear"))
    return (
        "\n".join(rows)
        + f"\n\nBayes-optimal loss (exact E[eps | x_t], 200,000 draws, T = 1000): {floors}.\n"
    )


def _variants() -> tuple[Variant, ...]:
    return tuple(
        Variant(
            name,
            ("experiment=gm_ddpm", *overrides),
            label=label,
            full_only=full,
        )
        for name, (overrides, label, full) in RUNS.items()
    )


register(
    Reproduction(
        name="gm_ddpm",
        title="DDPM on the 2D Gaussian mixture: training loss, ancestral and DDIM samples",
        source="PBDL book ch. 24.3 (Ho, Jain & Abbeel 2020; DDIM: Song et al. 2021)",
        variants=_variants(),
        checks=(
            Check(
                "epoch 1 loss",
                "ancestral",
                EpochBatchMean("train/loss", 1),
                published=0.1529,
                criterion=Within(1.25),
                quick=True,
            ),
            Check(
                "epoch 100 loss",
                "ancestral",
                EpochBatchMean("train/loss", 100),
                published=0.0624,
                criterion=Within(1.2),
                quick=True,
            ),
            Check(
                "ancestral T = 1000: energy distance < 10x the reference floor",
                "ancestral",
                ENERGY,
                criterion=Below("ancestral", FLOOR, factor=10),
                quick=True,
            ),
            Check(
                "ancestral T = 1000: mode weight error (both peaks captured)",
                "ancestral",
                Summary("test/mode_weight_error"),
                criterion=AtMost(0.05),
                quick=True,
            ),
            Check(
                "ancestral T = 1000: modes covered",
                "ancestral",
                Summary("test/mode_coverage"),
                criterion=AtLeast(1.0),
                quick=True,
            ),
            Check("DDIM K = 50: energy distance", "ddim50", ENERGY, full_only=True),
            Check(
                "DDIM K = 50: mode weight error",
                "ddim50",
                Summary("test/mode_weight_error"),
                full_only=True,
            ),
            Check("DDIM K = 20: energy distance", "ddim20", ENERGY, full_only=True),
            Check("linear schedule, ancestral: energy distance", "linear", ENERGY, full_only=True),
            Check(
                "linear schedule, DDIM K = 50: energy distance",
                "linear_ddim50",
                ENERGY,
                full_only=True,
            ),
        ),
        notes=NOTES,
        figures=figures,
        summary=summary,
    )
)
