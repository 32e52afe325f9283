"""Scores of probabilistic samples: exact draws score near the finite-sample floor, a
shifted or collapsed model is found out, and the per-condition bookkeeping."""

from __future__ import annotations

import pytest
import torch

from pbdl_cli.evaluation.sample_scores import reference_sets, score_condition, score_samples
from pbdl_cli.problems.gaussian_mixture import GaussianMixture, GaussianMixtureConfig
from pbdl_cli.problems.parabola import Parabola, ParabolaConfig
from pbdl_cli.utils.seeding import generator

#: the entropy of the book's mixture in nats (docs/problems/gaussian_mixture.md)
GM_ENTROPY = 2.8174


def gm() -> GaussianMixture:
    return GaussianMixture(GaussianMixtureConfig(name="gaussian_mixture"))


def test_exact_samples_score_at_the_floor() -> None:
    p = gm()
    samples, reference = p.sample(2000, generator(1)), p.sample(2000, generator(2))
    scores = score_condition(p, samples, reference, None)
    assert scores["energy"] < 3 * scores["reference_energy"] + 1e-3
    assert scores["exact_nll"] == pytest.approx(GM_ENTROPY, abs=0.1)  # 3.8 standard errors
    assert scores["mode_weight_error"] < 0.03 and scores["mode_coverage"] == 1.0
    assert scores["mode_0_share"] + scores["mode_1_share"] == pytest.approx(1.0)


def test_a_shifted_or_collapsed_model_scores_worse() -> None:
    p = gm()
    reference = p.sample(1000, generator(2))
    exact = score_condition(p, p.sample(1000, generator(1)), reference, None)
    shifted = score_condition(p, p.sample(1000, generator(1)) + 1.0, reference, None)
    assert shifted["energy"] > 10 * exact["energy"]
    assert shifted["sliced_w2"] > 10 * exact["sliced_w2"]
    one_mode = p.means[0] + torch.randn(1000, 2, generator=generator(3), dtype=torch.float64)
    collapsed = score_condition(p, one_mode, reference, None)
    assert collapsed["mode_coverage"] == 0.5
    assert collapsed["mode_weight_error"] > 0.35


def test_model_likelihood_is_scored_on_the_reference() -> None:
    p = gm()
    reference = p.sample(500, generator(2))
    scores = score_condition(p, reference, reference, None, model_log_density=p.log_density)
    assert scores["nll"] == pytest.approx(scores["exact_nll"], rel=1e-12)


def test_conditions_are_scored_one_by_one_and_averaged() -> None:
    p = Parabola(ParabolaConfig(name="parabola", test_x=[0.25, 1.0]))
    conditions = p.test_conditions()
    reference = reference_sets(p, conditions, 400, seed=0)
    assert reference.shape == (2, 400, 1)
    assert torch.equal(reference[1].abs(), torch.ones(400, 1, dtype=torch.float64))
    good = reference_sets(p, conditions, 400, seed=1)
    bad = torch.zeros_like(good)  # the regression answer: the mean of both branches
    scores = score_samples(p, torch.stack([good[0], bad[1]]), reference, conditions)
    per = scores["per_condition"]
    assert [row["condition"] for row in per] == [[0.25], [1.0]]
    assert per[0]["near_branch"] == 1.0 and per[1]["near_branch"] == 0.0
    assert scores["near_branch"] == pytest.approx(0.5)
    assert per[1]["branch_distance"] == pytest.approx(1.0)
    assert "exact_nll" not in scores  # the branches are deltas: no density
