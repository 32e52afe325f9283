"""Method ``score``: the DSM target and loss against closed forms (its floor for Gaussian
data, sigma^2 weighting), the book's epoch of every sample at every level, the
validation's exact-score terms, the samplers with the mixture's exact score, refusals."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.evaluation.distribution import energy_distance
from pbdl_cli.methods import METHODS
from pbdl_cli.problems import PROBLEMS
from tests.conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = torch.device("cpu")
BOOK_SIGMAS = [4.0, 2.0, 1.0, 0.5, 0.2, 0.01]


def setup(problem: dict | None = None, dtype=torch.float64, **method):
    p = PROBLEMS.build({"name": "gaussian_mixture", **(problem or {})})
    options = {"n_train": 64, "n_val": 32, "batch_size": 16, **method}
    return p, METHODS.build({"name": "score", **options}, problem=p, device=CPU, dtype=dtype)


def gaussian(s2: float) -> dict:
    """One isotropic Gaussian N(0, s2 I) in 2D, as a one-component mixture."""
    return {"means": [[0.0, 0.0]], "variances": [s2], "weights": [1.0]}


class ExactScore(nn.Module):
    """A "network" that returns the problem's exact noised score of its input [y, sigma]."""

    def __init__(self, problem) -> None:
        super().__init__()
        self.problem = problem

    def forward(self, inputs: Tensor) -> Tensor:
        y, sigma = inputs[:, :-1], inputs[:, -1]
        return self.problem.noised_score(y.double(), sigma.double()).to(inputs)


class Zero(nn.Module):
    def forward(self, inputs: Tensor) -> Tensor:
        return torch.zeros_like(inputs[:, :-1])


def test_the_target_is_the_kernel_score():
    """y~ = y + sigma z and the target -(y~ - y) / sigma^2 = -z / sigma (eq. 23.2): the
    same z from the same generator; a zero network's loss is mean |z|^2 / sigma^2."""
    _, m = setup(sigmas=[0.5])
    y = torch.tensor([[1.0, 2.0], [-3.0, 0.5]], dtype=torch.float64)
    z = torch.randn(y.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    noisy, target = m.perturb(y, torch.tensor([0.5, 0.5]), torch.Generator().manual_seed(7))
    torch.testing.assert_close(noisy, y + 0.5 * z, rtol=0, atol=0)
    torch.testing.assert_close(target, -(noisy - y) / 0.25, rtol=1e-14, atol=1e-14)
    loss = m.sample_loss(Zero(), y, None, torch.Generator().manual_seed(7))["loss"]
    torch.testing.assert_close(loss, z.square().sum(1).mean() / 0.25, rtol=1e-14, atol=0)


@pytest.mark.parametrize(("weighting", "lam"), [("none", 1.0), ("sigma2", 0.09)])
def test_the_loss_of_the_exact_score_is_the_closed_form_floor(weighting, lam):
    """For p = N(0, s^2 I) the score of p_sigma is -y~ / (s^2 + sigma^2), and the DSM loss
    of it is lambda D (1 / sigma^2 - 1 / (s^2 + sigma^2)): the residual
    -y / v + z s^2 / (sigma v) has per-entry variance s^2 / (sigma^2 v), v = s^2 + sigma^2.
    n = 200,000 draws: the relative standard error is sqrt(2 / (D n)) = 0.0022."""
    s2, sigma, n = 0.8, 0.3, 200_000
    p, m = setup(gaussian(s2), sigmas=[sigma], weighting=weighting)
    g = torch.Generator().manual_seed(3)
    y = p.sample(n, g)
    loss = m.sample_loss(ExactScore(p), y, None, g)["loss"]
    floor = lam * 2 * (1 / sigma**2 - 1 / (s2 + sigma**2))
    assert float(loss) == pytest.approx(floor, rel=0.012)
    worse = m.sample_loss(Zero(), y, None, torch.Generator().manual_seed(4))["loss"]
    assert float(worse) == pytest.approx(lam * 2 / sigma**2, rel=0.012)  # E|z|^2 / sigma^2


def test_one_epoch_pairs_every_sample_with_every_level_once():
    _, m = setup(n_train=10, batch_size=4, sigmas=[1.0, 0.5, 0.1])
    assert m.steps_per_epoch == 8  # ceil(10 x 3 / 4)
    items = torch.cat([m.items(step) for step in range(8)])
    assert sorted(items.tolist()) == list(range(30))
    pairs = {(int(i) // 3, int(i) % 3) for i in items}
    assert pairs == {(k, j) for k in range(10) for j in range(3)}
    assert not torch.equal(m.items(8), m.items(0))  # a new order in the next epoch
    _, again = setup(n_train=10, batch_size=4, sigmas=[1.0, 0.5, 0.1])  # resume: same
    assert torch.equal(again.items(13), m.items(13))
    torch.testing.assert_close(m.batch(5).y, m.train_set.y[m.items(5) // 3])


def test_the_steps_levels_reach_the_loss():
    """Every item's level sets its sigma: with the sigma^2 weighting and a zero network
    the loss of level j is sigma_j^2 |z / sigma_j|^2 = |z|^2, whatever the level."""
    _, m = setup(sigmas=[2.0, 0.1], weighting="sigma2")
    y = torch.zeros(4, 2, dtype=torch.float64)
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    levels = torch.tensor([0, 1, 0, 1])
    loss = m.sample_loss(Zero(), y, None, torch.Generator().manual_seed(1), levels=levels)
    torch.testing.assert_close(loss["loss"], z.square().sum(1).mean(), rtol=1e-14, atol=0)


def test_validation_of_the_exact_score_has_no_excess_and_the_floor_of_every_level():
    """validate() with the exact score: loss == loss_exact, no score error; the loss is the
    mean over the levels of each level's floor (Gaussian data, 4,000 draws per level)."""
    s2 = 0.5
    p, m = setup(gaussian(s2), sigmas=[1.0, 0.3], n_val=4000)
    out = m.validate(ExactScore(p))
    assert out["loss"] == pytest.approx(out["loss_exact"], rel=1e-12)
    assert abs(out["excess"]) < 1e-9 and out["score_rel"] < 1e-12
    assert out["score_rel_1"] < 1e-12 and out["score_rel_0.3"] < 1e-12
    floors = [2 * (1 / s**2 - 1 / (s2 + s**2)) for s in (1.0, 0.3)]
    assert out["loss"] == pytest.approx(sum(floors) / 2, rel=0.05)
    zero = m.validate(Zero())  # the score error of 0 is 100 %, its excess E|s*|^2 > 0
    assert zero["score_rel"] == pytest.approx(1.0) and zero["excess"] > 0


def test_the_books_mixture_floor_at_sigma_01():
    """The book's flat loss (192-198): D / sigma^2 - E|grad log p_sigma|^2 = 195.44 for its
    mixture at sigma = 0.1 (J = 4.557 by 4 million draws); 10,000 draws estimate it to
    +- 2 (the per-draw standard deviation of |z|^2 / sigma^2 is 2 / sigma^2 = 200)."""
    p, m = setup(sigmas=[0.1], n_val=10_000)
    out = m.validate(ExactScore(p))
    assert out["loss_exact"] == pytest.approx(195.44, abs=8.0)


def test_langevin_with_the_exact_score_reaches_a_gaussian():
    p, m = setup(gaussian(0.5), sigmas=[0.05], samples=1000, dtype=torch.float32)
    drawn = m.draw_samples(ExactScore(p))
    assert drawn.evaluations == [500] and drawn.sampler == "langevin"
    reference = p.sample(1000, torch.Generator().manual_seed(9))
    floor = energy_distance(reference, p.sample(1000, torch.Generator().manual_seed(10)))
    assert float(energy_distance(drawn.samples[0], reference)) < 5 * float(floor) + 5e-3


def test_annealed_langevin_with_the_exact_score_reaches_the_books_mixture():
    """From [-10, 10]^2 through the book's levels and steps (eps 1e-5, 150 per level):
    both modes at their weight 1/2, and the samples near the mixture (the last levels
    barely move them, so they keep the spread of p_0.2: an energy distance of a few 1e-3)."""
    p, m = setup(sigmas=BOOK_SIGMAS, samples=2000, dtype=torch.float32)
    seen = []
    drawn = m.draw_samples(ExactScore(p), callback=lambda j, sigma, x: seen.append(sigma))
    assert drawn.sampler == "annealed_langevin" and drawn.evaluations == [900]
    assert seen == BOOK_SIGMAS and m.expected_steps("annealed_langevin", 0) == 6
    x = drawn.samples[0]
    share = p.component_of(x).float().mean()
    assert abs(float(share) - 0.5) < 0.05
    reference = p.sample(2000, torch.Generator().manual_seed(2))
    assert float(energy_distance(x, reference)) < 0.02


def test_plain_langevin_uses_the_smallest_level_and_its_steps():
    p, m = setup(sigmas=[1.0, 0.2], samples=8, dtype=torch.float32)
    seen: list[float] = []

    class Record(ExactScore):
        def forward(self, inputs: Tensor) -> Tensor:
            seen.extend(inputs[:, -1].tolist())
            return super().forward(inputs)

    drawn = m.draw_samples(Record(p), sampler="langevin", steps=7)
    assert drawn.evaluations == [7] and len(seen) == 7 * 8
    assert all(v == pytest.approx(0.2) for v in seen)
    assert m.expected_steps("langevin", 7) == 7 and m.expected_steps("langevin", 0) == 500


def test_training_lowers_the_score_error():
    """200 Adam steps on a small network: the Fisher excess of the noised
    score (loss - loss_exact) falls below its value at initialization."""
    torch.manual_seed(0)
    _, m = setup(sigmas=[0.5], n_train=2000, n_val=1000, batch_size=64, dtype=torch.float32)
    model = m.build_model({"name": "mlp", "depth": 2, "width": 32, "activation": "silu"})
    before = m.validate(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(200):
        optimizer.zero_grad()
        m.loss(model, step)["loss"].backward()
        optimizer.step()
    after = m.validate(model)
    assert after["excess"] < 0.4 * before["excess"], (before, after)
    assert after["score_rel"] < 0.6 * before["score_rel"], (before, after)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sigmas": [0.1, 1.0]}, "decrease strictly"),
        ({"sigmas": []}, "non-empty"),
        ({"sigmas": [1.0, -0.5]}, "> 0"),
        ({"langevin_eps": 0.0}, "langevin_eps"),
        ({"annealed_steps": 0}, "annealed_steps"),
        ({"weighting": "sigma"}, "sigma"),
    ],
)
def test_config_refusals(options, message):
    with pytest.raises(PbdlError, match=message):
        setup(**options)


def test_annealing_needs_several_levels():
    with pytest.raises(PbdlError, match="one; give several") as error:
        setup(sigmas=[0.1], sampler="annealed_langevin")
    assert "\n" not in str(error.value)
    _, m = setup(sigmas=[0.1])
    with pytest.raises(PbdlError, match="no sampler 'ddim'"):
        m.check_sampler("ddim")
    with pytest.raises(PbdlError, match="use sampler=langevin"):
        m.check_sampler("annealed_langevin")


def test_the_cli_refuses_annealing_one_level_in_one_line(workdir):
    result = run_cli(
        "train",
        "experiment=gm_score",
        "method.sampler=annealed_langevin",
        "trainer.max_steps=1",
        cwd=workdir,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "anneals over noise" in line]
    assert len(lines) == 1 and lines[0].rstrip().endswith("use sampler=langevin")


def test_a_problem_without_a_distribution_is_refused():
    p = PROBLEMS.build({"name": "hig_toy"})
    with pytest.raises(PbdlError, match="learns a probability distribution"):
        METHODS.build({"name": "score"}, problem=p, device=CPU, dtype=torch.float64)
