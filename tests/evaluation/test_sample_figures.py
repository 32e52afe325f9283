"""Figures of model samples (pbdl_cli/evaluation/sample_figures.py, sample_points.py): the
files chosen per sample shape, what the panels show, the density helpers against closed
forms, and clear refusals of shapes without figures."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from pbdl_cli.evaluation import sample_figures as figures_module
from pbdl_cli.evaluation import sample_points
from pbdl_cli.evaluation.sample_figures import (
    kde_2d,
    plot_density_panels,
    plot_field_moments,
    plot_histograms_1d,
    plot_trajectory,
    sample_figures,
    sample_kind,
)
from pbdl_cli.evaluation.sample_points import density_image, log_density_on

CENTRES = torch.tensor([[-1.5, 0.0], [1.5, 0.5]], dtype=torch.float64)
SIGMA = 0.4


def mixture(n: int, seed: int = 0) -> torch.Tensor:
    """n draws of an equal mixture of N(mu_k, SIGMA^2 I) at CENTRES: [n, 2]."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(0, 2, (n,), generator=g)
    return CENTRES[k] + SIGMA * torch.randn(n, 2, generator=g, dtype=torch.float64)


def mixture_log_density(y: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
    d2 = (y[:, None, :] - CENTRES.to(y)).square().sum(-1)
    log_n = -d2 / (2 * SIGMA**2) - math.log(2 * math.pi * SIGMA**2)
    return torch.logsumexp(log_n, dim=1) - math.log(2)


def branches(n: int, x: float, seed: int) -> torch.Tensor:
    """The parabola's p(y | x): y = +-sqrt(x) with equal weight, a little noise: [n, 1]."""
    g = torch.Generator().manual_seed(seed)
    sign = torch.randint(0, 2, (n, 1), generator=g) * 2 - 1
    return sign * math.sqrt(x) + 0.02 * torch.randn(n, 1, generator=g, dtype=torch.float64)


def is_png(path: Path) -> bool:
    with Image.open(path) as image:
        return image.format == "PNG" and min(image.size) > 100


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """File name -> the titles and axis labels of its figure, recorded as it is saved."""
    seen: dict[str, list[str]] = {}
    real = sample_points.save_figure

    def recording(fig: Figure, path: Path, **kwargs: Any) -> Path:
        texts = [fig.get_suptitle()]
        for ax in fig.axes:
            texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
            texts += [t.get_text() for t in ax.texts]
        seen[path.name] = [t for t in texts if t]
        return real(fig, path, **kwargs)

    monkeypatch.setattr(sample_points, "save_figure", recording)
    monkeypatch.setattr(figures_module, "save_figure", recording)
    return seen


# -- the figures per shape ---------------------------------------------------------------
def test_points_2d(tmp_path: Path, drawn: dict[str, list[str]]) -> None:
    samples, reference = mixture(800, 1)[None].float(), mixture(600, 2)[None]
    snapshots = [
        (f"t = {s:.1f}", (1 - s) * torch.randn(300, 2) + s * mixture(300))
        for s in np.linspace(0, 1, 5)
    ]
    paths = sample_figures(
        tmp_path / "fig",
        samples,
        reference,
        log_density=mixture_log_density,
        model_log_density=mixture_log_density,
        snapshots=snapshots,
        names=["y1", "y2"],
    )
    assert [p.name for p in paths] == ["scatter.png", "density.png", "trajectory.png"]
    assert all(is_png(p) for p in paths)
    assert "800 model samples over the true density" in drawn["scatter.png"]
    assert {"model likelihood", "true likelihood", "model samples (800)"} <= set(
        drawn["density.png"]
    )
    assert [t for t in drawn["trajectory.png"] if t.startswith("t = ")] == [
        "t = 0.0",
        "t = 0.2",
        "t = 0.5",
        "t = 0.8",
        "t = 1.0",
    ]

    # without densities: a KDE of the reference, and no likelihood row
    paths = sample_figures(tmp_path / "kde", samples, reference)
    assert [p.name for p in paths] == ["scatter.png", "density.png"]
    assert "800 model samples over the reference KDE" in drawn["scatter.png"]
    assert not any("likelihood" in t for t in drawn["density.png"])


def test_points_2d_conditions_and_non_finite(tmp_path: Path, drawn: dict[str, list[str]]) -> None:
    samples = torch.stack([mixture(200, s) for s in range(3)])
    samples[1, 0, 0] = float("nan")
    samples[1, 1, 1] = float("inf")
    paths = sample_figures(
        tmp_path,
        samples,
        None,
        condition=torch.tensor([[0.0], [0.5], [1.0]]),
        condition_names=["x"],
        max_conditions=2,
    )
    names = [p.name for p in paths]
    assert names == ["scatter-c0.png", "density-c0.png", "scatter-c2.png", "density-c2.png"]
    paths = sample_figures(
        tmp_path, samples[1:2], None, condition=torch.tensor([[0.5]]), condition_names=["x"]
    )
    assert "198 model samples | x = 0.5  (2 non-finite left out)" in drawn["scatter.png"]
    assert "no reference samples" in drawn["density.png"]


def test_points_1d(tmp_path: Path, drawn: dict[str, list[str]]) -> None:
    xs = [0.1, 0.25, 0.5, 0.9]
    samples = torch.stack([branches(500, x, k) for k, x in enumerate(xs)])
    reference = torch.stack([branches(400, x, 10 + k) for k, x in enumerate(xs)])
    snapshots = [
        (f"step {k}", (1 - k / 4) * torch.randn(100, 1) + k / 4 * samples[0, :100])
        for k in range(5)
    ]
    paths = sample_figures(
        tmp_path,
        samples,
        reference,
        condition=torch.tensor(xs)[:, None],
        snapshots=snapshots,
        names=["y"],
        condition_names=["x"],
    )
    assert [p.name for p in paths] == ["histograms.png", "trajectory.png"]
    assert all(is_png(p) for p in paths)
    titles = [t for t in drawn["histograms.png"] if t.startswith("p(")]
    assert titles == ["p(y | x = 0.1)", "p(y | x = 0.25)", "p(y | x = 0.5)", "p(y | x = 0.9)"]
    assert "100 sample paths | x = 0.1" in drawn["trajectory.png"]

    # more conditions than panels: spread, ends included
    many = torch.randn(20, 50, 1)
    plot_histograms_1d(
        tmp_path / "many.png", many, condition=torch.arange(20.0)[:, None], max_conditions=3
    )
    assert [t for t in drawn["many.png"] if t.startswith("p(")] == [
        "p(y | c = 0)",
        "p(y | c = 10)",
        "p(y | c = 19)",
    ]


def test_fields(tmp_path: Path, drawn: dict[str, list[str]]) -> None:
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(2, 12, 2, 10, 8, generator=g)
    reference = torch.randn(2, 15, 2, 10, 8, generator=g, dtype=torch.float64)
    snapshots = [(f"s{k}", samples[0] * k) for k in range(3)]
    paths = sample_figures(
        tmp_path,
        samples,
        reference,
        condition=torch.zeros(2, 3, 10, 8),
        snapshots=snapshots,
        names=["u", "v"],
    )
    assert [p.name for p in paths] == ["fields-c0.png", "fields-c1.png", "trajectory.png"]
    assert all(is_png(p) for p in paths)
    titles = drawn["fields-c1.png"]
    assert "condition 1: ensemble of 12 samples, reference 15" in titles
    for who in ("model", "reference"):
        for stat in ("mean", "std"):
            assert {f"{who} {stat}: u", f"{who} {stat}: v"} <= set(titles)

    path = plot_field_moments(tmp_path / "alone.png", samples[0], None)
    assert is_png(path)
    assert not any("reference" in t for t in drawn["alone.png"])


@pytest.mark.parametrize("shape", [(1, 40, 2), (2, 40, 1), (1, 4, 1, 6, 5)])
def test_a_diverged_model_still_gets_its_figures(tmp_path: Path, shape: tuple[int, ...]) -> None:
    """Samples that are all NaN (a diverged sampler) are left out of every panel, with no
    crash and no warning, next to a finite reference."""
    samples = torch.full(shape, float("nan"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = sample_figures(
            tmp_path,
            samples,
            torch.randn(shape),
            snapshots=[("start", torch.randn(shape[1:])), ("end", samples[0])],
        )
    assert paths and all(is_png(p) for p in paths)


# -- refusals ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("samples", "reference", "condition", "phrase"),
    [
        (torch.zeros(1, 5, 3), None, None, "no sample figures for samples of shape [1, 5, 3]"),
        (torch.zeros(1, 5, 2, 4), None, None, "no sample figures"),
        (torch.zeros(5, 2), None, None, "no sample figures"),
        (torch.zeros(1, 0, 2), None, None, "no sample figures"),
        (torch.zeros(2, 5, 2), torch.zeros(1, 5, 2), None, "reference has shape [1, 5, 2]"),
        (torch.zeros(1, 5, 1), torch.zeros(1, 5, 2), None, "reference has shape"),
        (torch.zeros(2, 5, 1), None, torch.zeros(3, 1), "condition has shape [3, 1]"),
        (torch.zeros(1, 1, 1, 4, 4), None, None, "n >= 2"),
    ],
)
def test_wrong_shapes_are_refused(
    tmp_path: Path, samples: Any, reference: Any, condition: Any, phrase: str
) -> None:
    with pytest.raises(ValueError) as caught:
        sample_figures(tmp_path / "out", samples, reference, condition=condition)
    assert phrase in str(caught.value) and "\n" not in str(caught.value)
    assert not any((tmp_path / "out").glob("*.png"))


def test_other_refusals(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="snapshots differ in shape"):
        plot_trajectory(tmp_path / "t.png", [("a", torch.zeros(4, 2)), ("b", torch.zeros(5, 2))])
    with pytest.raises(ValueError, match="snapshots must be points"):
        plot_trajectory(tmp_path / "t.png", [("a", torch.zeros(4, 3))])
    with pytest.raises(ValueError, match="at least one snapshot"):
        plot_trajectory(tmp_path / "t.png", [])
    with pytest.raises(ValueError, match=r"must map \[B, \.\.\.\] to \[B\]"):
        plot_density_panels(tmp_path / "d.png", mixture(50), log_density=lambda y, c: y)
    with pytest.raises(ValueError, match=r"samples must be points \[n, 2\]"):
        plot_density_panels(tmp_path / "d.png", torch.zeros(5, 3))
    assert not any(tmp_path.iterdir())


def test_sample_kind() -> None:
    assert sample_kind((1,)) == "points1d" and sample_kind((2,)) == "points2d"
    assert sample_kind((3, 16, 8)) == "fields"
    assert sample_kind((3,)) is None and sample_kind((1, 16)) is None and sample_kind(()) is None


# -- the density helpers ---------------------------------------------------------------
def test_kde_of_a_gaussian() -> None:
    """The expected KDE of N(0, s^2) draws with a Gaussian kernel of width h is the density
    of N(0, s^2 + h^2) (per axis, independent axes)."""
    rng = np.random.default_rng(0)
    s = np.array([1.0, 0.5])
    n = 20000
    points = rng.normal(size=(n, 2)) * s
    xs, ys = np.linspace(-2.0, 2.0, 41), np.linspace(-1.0, 1.0, 31)
    estimate = kde_2d(points, xs, ys)
    assert estimate.shape == (31, 41)
    h = points.std(axis=0, ddof=1) * n ** (-1 / 6)
    var = s**2 + h**2
    exact = np.exp(-(xs[None, :] ** 2) / (2 * var[0]) - ys[:, None] ** 2 / (2 * var[1])) / (
        2 * np.pi * np.sqrt(var[0] * var[1])
    )
    np.testing.assert_allclose(estimate, exact, rtol=0.08, atol=0.004)
    with pytest.raises(ValueError, match="at least 2 points"):
        kde_2d(points[:1], xs, ys)


def test_density_image_orientation_and_normalization() -> None:
    """Row i of the image is ys[i]: the peak of a Gaussian at (1, -0.5) lands there, and the
    image integrates to about 1 over a window that holds the mass."""
    centre = torch.tensor([1.0, -0.5], dtype=torch.float64)

    def gaussian(y: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        assert c is not None and c.shape == (1,) and y.dtype == torch.float64
        return -(y - centre).square().sum(-1) / (2 * 0.09) - math.log(2 * math.pi * 0.09)

    xs, ys, p = density_image(
        gaussian, np.array([-1.0, -2.0]), np.array([3.0, 1.0]), np.array([0.7])
    )
    i, j = np.unravel_index(np.argmax(p), p.shape)
    assert abs(ys[i] + 0.5) < 0.05 and abs(xs[j] - 1.0) < 0.05
    mass = p.sum() * (xs[1] - xs[0]) * (ys[1] - ys[0])
    assert abs(mass - 1.0) < 0.02
    assert density_image(lambda y, c: None, np.zeros(2), np.ones(2), None) is None


def test_log_density_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sample_points, "CHUNK", 7)
    points = mixture(50).numpy()
    calls = []

    def counted(y: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        calls.append(len(y))
        return mixture_log_density(y, c)

    values = log_density_on(counted, points, None)
    assert calls == [7] * 7 + [1]
    exact = mixture_log_density(torch.as_tensor(points), None).numpy()
    np.testing.assert_array_equal(values, exact)
    # a zero density is -inf, not NaN
    assert log_density_on(lambda y, c: torch.full((len(y),), float("nan")), points, None).max() == (
        -np.inf
    )


def test_density_levels() -> None:
    p = np.array([[0.0, 2.0], [0.5, np.nan]])
    levels = sample_points.density_levels(p, 4)
    assert levels is not None
    np.testing.assert_allclose(levels, 2.0 * np.geomspace(1e-3, 0.9, 4))
    ratios = levels[1:] / levels[:-1]
    np.testing.assert_allclose(ratios, ratios[0])  # evenly spaced in log p
    assert sample_points.density_levels(np.zeros((3, 3)), 4) is None
    assert sample_points.density_levels(np.full((2, 2), np.nan), 4) is None
