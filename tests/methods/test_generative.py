"""The probabilistic methods' shared base: the Distribution problems' draws, batches that
depend only on (seed, step), the network input layout for points and fields, sampling
per condition, and the refusals."""

from __future__ import annotations

import math

import pytest
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods.ddpm import DDPM, DDPMConfig
from pbdl_cli.models.mlp import MLPConfig
from pbdl_cli.problems.base import StaticProblem
from pbdl_cli.problems.burgers import Burgers, BurgersConfig
from pbdl_cli.problems.distribution import Distribution, Draws
from pbdl_cli.problems.gaussian_mixture import GaussianMixture, GaussianMixtureConfig
from pbdl_cli.problems.parabola import Parabola, ParabolaConfig
from pbdl_cli.utils.seeding import generator

CPU = torch.device("cpu")


def ddpm(problem, **options) -> DDPM:
    config = DDPMConfig(name="ddpm", **({"n_train": 50, "n_val": 10, "batch_size": 8} | options))
    return DDPM(config, problem=problem, device=CPU, dtype=torch.float64)


def gm() -> GaussianMixture:
    return GaussianMixture(GaussianMixtureConfig(name="gaussian_mixture"))


def parabola(**options) -> Parabola:
    return Parabola(ParabolaConfig(name="parabola", **options))


def test_parabola_draws_both_branches_with_their_conditions() -> None:
    drawn = parabola().draw(4000, generator(0, "t"))
    x, y = drawn.condition, drawn.y
    assert x.shape == y.shape == (4000, 1)
    assert torch.allclose(y.abs(), x.sqrt(), atol=0, rtol=1e-15)
    positive = float((y > 0).double().mean())
    assert abs(positive - 0.5) < 0.03  # 3.8 standard deviations of a fair coin
    x = torch.tensor([0.49], dtype=torch.float64)
    reference = parabola().reference_samples(1000, generator(1), x)
    assert set(reference.reshape(-1).tolist()) == {-0.7, 0.7}


def test_parabola_scores_samples_by_their_branch() -> None:
    p = parabola()
    c = torch.tensor([0.25])
    exact = torch.tensor([[0.5], [-0.5], [0.5], [0.5]])
    assert p.sample_metrics(exact, c) == {"branch_distance": 0.0, "near_branch": 1.0}
    assert p.mode_labels(exact, c).tolist() == [1, 0, 1, 1]
    mean_answer = torch.zeros(4, 1)  # what a regression network learns: neither branch
    scores = p.sample_metrics(mean_answer, c)
    assert scores["branch_distance"] == pytest.approx(0.5) and scores["near_branch"] == 0.0


def test_conditions_are_parsed_or_refused_in_one_line() -> None:
    assert parabola().parse_condition([0.5]).tolist() == [0.5]
    bad = (([0.5, 0.1], "needs 1 value"), ([2.0], "in [0, 1]"), ([math.nan], "finite"))
    for values, message in bad:
        with pytest.raises(PbdlError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parabola().parse_condition(values)
    with pytest.raises(PbdlError, match="unconditional"):
        gm().parse_condition([1.0])


def test_batches_walk_each_epoch_once_and_depend_only_on_seed_and_step() -> None:
    method = ddpm(gm())
    per_epoch = method.steps_per_epoch
    assert per_epoch == math.ceil(50 / 8) == 7
    seen = torch.cat([method.batch(s).y for s in range(per_epoch)])
    order = lambda t: t[torch.argsort(t[:, 0])]  # noqa: E731
    assert torch.equal(order(seen), order(method.train_set.y))
    assert not torch.equal(method.batch(0).y, method.batch(per_epoch).y)  # a new permutation
    fresh = ddpm(gm())  # a resumed run: no earlier steps visited
    assert torch.equal(fresh.batch(per_epoch + 3).y, method.batch(per_epoch + 3).y)
    other = ddpm(gm(), seed=1)
    assert not torch.equal(other.train_set.y, method.train_set.y)


def test_the_loss_noise_depends_on_the_step_only() -> None:
    method = ddpm(gm())
    torch.manual_seed(0)
    model = method.build_model(MLPConfig(name="mlp", depth=1, width=4))
    first = method.loss(model, 5)["loss"]
    method.loss(model, 6)
    assert torch.equal(method.loss(model, 5)["loss"], first)
    assert not torch.equal(method.loss(model, 4)["loss"], first)


def test_point_input_is_sample_time_condition() -> None:
    method = ddpm(parabola())
    y, t, c = torch.tensor([[1.0], [2.0]]), torch.tensor([0.5, 0.25]), torch.tensor([[3.0], [4.0]])
    assert method.model_input(y, t, c).tolist() == [[1.0, 0.5, 3.0], [2.0, 0.25, 4.0]]
    net = method.build_model(MLPConfig(name="mlp", depth=1, width=4))
    assert net.net[0].in_features == 3 and net.net[-1].out_features == 1


class _Fields(StaticProblem, Distribution):
    """A field-valued stand-in: samples [2, 4, 4] with a vector condition [3]."""

    name = "fields"
    fields = ("a", "b")
    sample_shape = (2, 4, 4)
    condition_shape = (3,)

    def __init__(self) -> None:
        pass

    grid = None  # type: ignore[assignment]  # not used: no solver, no grid output
    initial_state = sample_params = None  # type: ignore[assignment]

    def draw(self, n: int, generator: torch.Generator) -> Draws:
        y = torch.randn(n, 2, 4, 4, generator=generator, dtype=torch.float64)
        return Draws(y, torch.randn(n, 3, generator=generator, dtype=torch.float64))


def test_field_input_has_a_time_channel_and_constant_condition_channels() -> None:
    m = ddpm(_Fields())
    y = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    c = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64)
    x = m.model_input(y, torch.tensor([0.25, 0.5]), c)
    assert x.shape == (2, 6, 4, 4)
    assert torch.equal(x[:, :2], y)
    time = torch.tensor([0.25, 0.5], dtype=torch.float64).reshape(2, 1, 1).expand(2, 4, 4)
    assert torch.equal(x[:, 2], time)
    assert torch.equal(x[1, 3:], c[1].reshape(3, 1, 1).expand(3, 4, 4))
    assert m.condition_channels() == 3
    from pbdl_cli.models.unet import UNetConfig

    net = m.build_model(UNetConfig(name="unet", levels=1))
    assert net(x.to(next(net.parameters()).dtype)).shape == y.shape
    with pytest.raises(PbdlError, match="grid model"):
        m.check_model_config(MLPConfig(name="mlp"))


def test_draw_samples_per_condition_counts_evaluations_and_is_seeded() -> None:
    method = ddpm(parabola(test_x=[0.25, 1.0]), T=20, ddim_steps=4, chunk=7)
    model = method.build_model(MLPConfig(name="mlp", depth=1, width=4))
    drawn = method.draw_samples(model, 15)
    assert drawn.samples.shape == (2, 15, 1) and drawn.conditions.tolist() == [[0.25], [1.0]]
    assert drawn.evaluations == [20, 20] and drawn.sampler == "ancestral"
    again = method.draw_samples(model, 15)
    assert torch.equal(again.samples, drawn.samples)
    ddim = method.draw_samples(model, 5, sampler="ddim", conditions=torch.tensor([[0.5]]))
    assert ddim.samples.shape == (1, 5, 1) and ddim.evaluations == [4]


def test_refusals() -> None:
    burgers = Burgers(BurgersConfig(name="burgers"))
    with pytest.raises(PbdlError, match="defines none"):
        ddpm(burgers)
    with pytest.raises(PbdlError, match="no sampler 'rk4'"):
        ddpm(gm(), sampler="rk4")
    from pbdl_cli.models.unet import UNetConfig

    with pytest.raises(PbdlError, match="model=mlp"):
        ddpm(gm()).check_model_config(UNetConfig(name="unet"))
    method = ddpm(gm(), T=10)
    model = method.build_model(MLPConfig(name="mlp", depth=1, width=4))
    with pytest.raises(PbdlError, match="all T = 10 steps"):
        method.draw_samples(model, 3, steps=5)
