"""Solver-in-the-loop on the Karman wake (PBDL book ch. 18 "Reducing numerical errors
with deep learning"; Um et al. 2020, NeurIPS, appendix B.1): the source solver alone
(NON), with a correction trained on precomputed steps (PRE), and with a correction
trained through 4 unrolled steps of the differentiable solver (SOL-4), all scored on
rollouts at the book's test Reynolds number Re = 73.24, outside the training range.

The book: mean relative (L1) error over 100 steps at Re 73.24, source 0.1086 vs
corrected 0.0312 (about 3.5x lower). The issue's acceptance: SOL's relative error at
most half of NON's.

The datasets are made by the reproduction itself (``prepare``): the reference on a 4x
finer grid in space and time (``experiment=karman_sol_data``) and the test split at
Re = 73.24 (``experiment=karman_sol_test``), under ``<out>/datasets``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from pbdl_cli.reproduce.base import Prepare, Reproduction, Variant, register
from pbdl_cli.reproduce.checks import Below, Check, Eval, Summary, VariantResult

SEED = 0
STEPS = 1000
QUICK_STEPS = 80
DATA = "{out}/datasets/karman/karman_sol"
TEST = "{out}/datasets/karman/karman_sol_test"
COMMON = ("experiment=karman_sol", f"method.data={DATA}", f"method.test_data={TEST}")
#: --quick: a shorter burn-in and rollout, the reference only 2x finer (the problem
#: settings must be the same for the datasets and the runs)
QUICK_PROBLEM = ("problem.t_end=12", "problem.warmup=30", "problem.warmup_jitter=8")
QUICK_TRAIN = (
    *QUICK_PROBLEM,
    f"trainer.max_steps={QUICK_STEPS}",
    "trainer.checkpoint_every=0",
    "trainer.log_every=20",
)
QUICK_DATA = (*QUICK_PROBLEM, "data.refine=2", "data.n_train=2")
SEEDED = (f"seed={SEED}",)
#: SOL-8 grows its unroll during training: 2, 4, 8 from 0, 25 % and 50 % of the steps
SOL8_SCHEDULE = f"method.unroll_schedule=[[0,2],[{STEPS // 4},4],[{STEPS // 2},8]]"

#: (variant, row label) of the table and the figure
GROUPS = [
    ("non", "NON: source solver alone"),
    ("pre", "PRE: correction, precomputed steps"),
    ("sol4", "SOL-4: correction, 4 steps in the loop"),
    ("sol8", "SOL-8: correction, 8 steps (curriculum 2-4-8)"),
]

VARIANTS: tuple[Variant, ...] = (
    Variant(
        "non",
        (*COMMON, "method=non", "trainer.max_steps=1", "trainer.log_every=1"),
        quick=QUICK_PROBLEM,
        label="the source solver alone (nothing trained)",
    ),
    Variant("pre", (*COMMON, "method=pre", *SEEDED), quick=QUICK_TRAIN, label="PRE, seed 0"),
    Variant(
        "sol4",
        (*COMMON, "method=sol", "method.unroll=4", *SEEDED),
        quick=QUICK_TRAIN,
        label="SOL-4, seed 0",
    ),
    Variant(
        "sol8",
        (*COMMON, "method=sol", "method.unroll=8", SOL8_SCHEDULE, *SEEDED),
        quick=QUICK_TRAIN,
        label="SOL-8 with a curriculum, seed 0",
        full_only=True,
    ),
)

LAST = Eval("rel_l2_last")
MEAN = Eval("rel_l2")
#: the book's mean relative error over 100 steps at Re 73.24 (ch. 18)
BOOK_SOURCE, BOOK_CORRECTED = 0.10863638424314559, 0.031211425131186844

CHECKS = (
    Check(
        "SOL-4 rel. L2, last frame <= 0.5 x NON",
        "sol4",
        LAST,
        criterion=Below("non", LAST, factor=0.5),
    ),
    Check(
        "SOL-4 rel. L2, all frames <= 0.5 x NON",
        "sol4",
        MEAN,
        criterion=Below("non", MEAN, factor=0.5),
    ),
    Check("PRE < NON (rel. L2, all frames)", "pre", MEAN, criterion=Below("non", MEAN), quick=True),
    Check(
        "SOL-4 < NON (rel. L2, all frames)", "sol4", MEAN, criterion=Below("non", MEAN), quick=True
    ),
    Check("SOL-4 < PRE (rel. L2, all frames)", "sol4", MEAN, criterion=Below("pre", MEAN)),
    Check("SOL-8 rel. L2, all frames", "sol8", MEAN, full_only=True),
    Check("NON rel. L2, last frame", "non", LAST),
    Check("PRE rel. L2, last frame", "pre", LAST),
)

PREPARE = (
    Prepare(
        "data",
        ("generate", "experiment=karman_sol_data", "data.root={out}/datasets", "threads=1"),
        creates="datasets/karman/karman_sol",
        quick=QUICK_DATA,
    ),
    Prepare(
        "test",
        ("generate", "experiment=karman_sol_test", "data.root={out}/datasets", "threads=1"),
        creates="datasets/karman/karman_sol_test",
        quick=(*QUICK_PROBLEM, "data.refine=2"),
    ),
)

NOTES = f"""
- **Setting** (docs/problems/karman.md). The book's channel (x in (0, 100) across,
  y in (0, 200) along the flow, flow along +y as in the book), cylinder of radius 10 at
  (50, 50), inflow strip y <= 5 held at v = 1 (a velocity region of `ns_mac`), open
  top, no-slip side walls, nu = 0.625 / Re (the book's mapping). Source grid 32 x 64
  cells, dt = 1; the source solver P_s is the book's scheme (semi-Lagrangian advection,
  explicit diffusion, exact pressure solve) with one step per frame.
- **Reference**: the same scheme 4x finer in space and time (128 x 256 cells, 4
  substeps), stored as face (flux) averages on the source grid. Every trajectory starts
  with a burn-in of 350 + (0..50) time units at the fine resolution from the uniform
  inflow plus a random transverse bump behind the cylinder (amplitude up to 1), long
  enough for a developed vortex street (~300 time units on the fine grid), with
  trajectories in different phases; 61 frames (t in [0, 60]) are stored.
- **Data** (smaller than the book's 6 x 500 training frames): 4 training trajectories
  with Re log-uniform in [100, 1000]; the scored **test split** has 2 trajectories at
  the book's test sample Re = 73.24 (below the training range), rolled out for 60 steps
  (the book: 100).
- **Network and training**: ResNet, width 32, 3x3 kernels, 2 blocks, Re (normalized)
  as input channel (38,466 parameters; the book's res_net: 47,330), last layer x 0.1
  at initialization, Adam 1e-3 with cosine decay, batches of 3 windows, {STEPS} steps
  (the book: 4,960), float32, one CPU thread; seed {SEED} only.
- **Metrics**: `eval.rel_l2` (relative L2 error over all frames of the test
  trajectories, frame 0 is given), `eval.rel_l2_last` (the last frame, t = 60), and
  the book's metric, the mean over the rollout steps of sum |p - r| / sum |r| (relative
  L1), in the summary table (book: source {BOOK_SOURCE:.4f}, corrected
  {BOOK_CORRECTED:.4f} over 100 steps).
- `--quick`: t in [0, 12] after a burn-in of 30-38, reference 2x finer, 2 training
  trajectories, {QUICK_STEPS} training steps, no SOL-8; it judges only that PRE and
  SOL-4 beat the plain solver.
"""


def _book_metric(run: Path) -> tuple[float, list[float]] | None:
    """The book's error of a run's evaluation: per frame sum|p - r| / sum|r| (mean over
    trajectories), and its mean over the predicted frames (1..T-1)."""
    import h5py
    import numpy as np

    folder = run / "eval"
    paths = folder / "prediction.h5", folder / "reference.h5"
    if not all(p.is_file() for p in paths):
        return None
    arrays = []
    for path in paths:
        with h5py.File(path, "r") as f:
            fields = f["fields"]
            arrays.append(np.concatenate([fields[k][()] for k in ("u", "v")], axis=2))
    p, r = arrays  # [B, T, C, nx, ny]
    axes = (2, 3, 4)
    per_frame = (np.abs(p - r).sum(axis=axes) / np.abs(r).sum(axis=axes)).mean(axis=0)
    return float(per_frame[1:].mean()), per_frame.tolist()


def _rows(results: Mapping[str, VariantResult]) -> list[tuple[str, str, VariantResult]]:
    return [(name, label, results[name]) for name, label in GROUPS if name in results]


def summary(results: Mapping[str, VariantResult]) -> str:
    """Our errors beside the book's."""
    lines = [
        "Test split (Re = 73.24, outside the training range [100, 1000]), seed 0:",
        "",
        "| method | rel. L1, mean over the rollout (book's metric) | book | "
        "rel. L2, all frames | rel. L2, last frame | training [s] |",
        "|---|---|---|---|---|---|",
    ]
    book = {"non": BOOK_SOURCE, "sol4": BOOK_CORRECTED}
    for name, label, result in _rows(results):
        metric = _book_metric(result.run)
        ours = "n/a" if metric is None else f"{metric[0]:.4f}"
        cells = [m.read(result) for m in (MEAN, LAST, Summary("seconds"))]
        text = ["n/a" if v is None or not math.isfinite(v) else f"{v:.4f}" for v in cells[:2]]
        seconds = "n/a" if cells[2] is None else f"{cells[2]:.0f}"
        published = f"{book[name]:.4f}" if name in book else ""
        lines.append(f"| {label} | {ours} | {published} | {text[0]} | {text[1]} | {seconds} |")
    return "\n".join(lines)


def figures(out: Path, results: Mapping[str, VariantResult]) -> list[Path]:
    """``errors.png``: the relative L1 (book) and L2 errors over the rollout."""
    import numpy as np
    from matplotlib.figure import Figure

    from pbdl_cli.evaluation.figures import save_figure

    fig = Figure(figsize=(11, 4), layout="constrained")
    l1, l2 = fig.subplots(1, 2)
    for _, label, result in _rows(results):
        metric = _book_metric(result.run)
        if metric is not None:
            l1.plot(np.arange(1, len(metric[1])), metric[1][1:], label=label)
        per_time = result.eval.get("per_time") or {}
        if per_time.get("rel_l2"):
            t = np.asarray(per_time["t"], dtype=float)
            l2.plot(t[1:], np.asarray(per_time["rel_l2"], dtype=float)[1:], label=label)
    l1.set(xlabel="rollout step", ylabel="sum|p - r| / sum|r|", title="rel. L1 (the book's)")
    l2.set(xlabel="t", ylabel="rel. L2", title="rel. L2 error over the rollout")
    for ax in (l1, l2):
        ax.legend(fontsize=7)
    return [save_figure(fig, out / "errors.png")]


register(
    Reproduction(
        name="karman_sol",
        title="Solver-in-the-loop on the Karman wake: NON vs PRE vs SOL-n at Re 73.24",
        source="PBDL book ch. 18; Um et al. 2020 (NeurIPS), appendix B.1",
        variants=VARIANTS,
        checks=CHECKS,
        notes=NOTES,
        figures=figures,
        prepare=PREPARE,
        summary=summary,
    )
)
