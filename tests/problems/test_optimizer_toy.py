"""The optimizer toy of PBDL book ch. 37 and method=optimize: the book's iterates for
GD, Newton and the inverse simulator, the refusals, and the logged iterates."""

from __future__ import annotations

import json

import pytest
import torch

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods import METHODS
from pbdl_cli.models.base import MODELS
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.problems.optimization import Optimization
from pbdl_cli.registry import PluginConfig
from pbdl_cli.reproduce.optimizer_toy import BOOK
from pbdl_cli.training import TrainerConfig, fit

CPU, F64 = torch.device("cpu"), torch.float64
FIELD = MODELS.config({"name": "field"})


def toy():
    return PROBLEMS.build({"name": "optimizer_toy"})


def method(update: str, problem=None, **options):
    config = METHODS.config({"name": "optimize", "update": update, **options})
    return METHODS.create(config, problem=problem or toy(), device=CPU, dtype=F64)


def iterates(update: str, steps: int = 10, **options) -> list[list[float]]:
    """x after each of ``steps`` updates (the method's own step, without the trainer)."""
    m = method(update, **options)
    x = m.build_model(FIELD)().detach().clone()
    out = []
    for _ in range(steps):
        x = x + m.delta(x)
        out.append(x[0].tolist())
    return out


def test_the_problem_is_the_books():
    p = toy()
    assert p.start().tolist() == [3.0, 3.0] and p.is_static and p.grid.shape == (2,)
    x = p.start().requires_grad_()
    y = p.forward(x)
    assert y.tolist() == [3.0, 9.0] and float(p.objective(y.detach())) == 90.0
    (g,) = torch.autograd.grad(p.objective(y), x)
    assert g.tolist() == [6.0, 108.0]  # the book's dL/dx at the start: L = |y|^2
    back = p.inverse(y.detach(), x.detach())
    torch.testing.assert_close(back, x.detach(), rtol=0, atol=1e-15)
    assert p.inverse(torch.tensor([1.0, 4.0]), torch.tensor([0.0, -1.0])).tolist() == [1.0, -2.0]
    assert p.has_inverse and not PROBLEMS.build({"name": "parabola"}).has_inverse
    with pytest.raises(PbdlError, match="nothing to simulate"):
        p.initial_state({}, torch.Generator())


@pytest.mark.parametrize(
    ("update", "first"),
    [("gd", [2.94, 1.92]), ("newton", [2.0, 2.6666667]), ("inverse_simulator", [2.1, 2.5099802])],
)
def test_first_iterate_is_the_books(update, first):
    assert iterates(update, steps=1)[0] == pytest.approx(first, abs=1e-6)


@pytest.mark.parametrize("update", sorted(BOOK))
def test_every_iterate_matches_the_book_to_1e5(update):
    ours = iterates(update)
    for k, (mine, book) in enumerate(zip(ours, BOOK[update], strict=True)):
        assert mine == pytest.approx(list(book), abs=1e-5), f"{update} iterate {k}"
    distance = {"gd": 2.63, "newton": 0.925, "inverse_simulator": 0.51}[update]
    assert torch.tensor(ours[-1]).norm().item() == pytest.approx(distance, abs=5e-3)


def test_gauss_newton_on_the_toy():
    # J = diag(1, 2 x1), r = (x0, x1^2): the full step halves x1 and zeroes x0
    assert iterates("gauss_newton", steps=1, lr=1.0)[0] == pytest.approx([0.0, 1.5])


class NoInverse(Optimization):
    """y = 2 x, without an inverse simulator."""

    Config = PluginConfig

    def start(self):
        return torch.ones(1, dtype=F64)

    def forward(self, x):
        return 2 * x

    def target(self):
        return torch.zeros(1, dtype=F64)


def test_the_rules_refuse_what_a_problem_lacks():
    plain = NoInverse(PluginConfig(name="no_inverse"))
    with pytest.raises(PbdlError, match=r"needs an inverse simulator.*'no_inverse'"):
        method("inverse_simulator", problem=plain, lr=0.5)
    with pytest.raises(PbdlError, match="no inverse simulator"):
        plain.inverse(torch.ones(1), torch.ones(1))
    assert method("newton", problem=plain, lr=1.0).delta(torch.ones(1, 1)).item() == -1.0
    with pytest.raises(PbdlError, match=r"no step size for method\.update=gd; set method\.lr"):
        method("gd", problem=plain)
    with pytest.raises(PbdlError, match="not an optimization problem"):
        method("gd", problem=PROBLEMS.build({"name": "parabola"}), lr=0.1)
    with pytest.raises(PbdlError, match="use model=field"):
        method("gd").build_model(MODELS.config({"name": "mlp"}))


def test_the_trainer_logs_every_iterate(tmp_path):
    m = method("inverse_simulator")
    model = m.build_model(FIELD)
    config = TrainerConfig(
        optimizer="sgd", momentum=0.0, max_steps=10, log_every=1, eval_every=1,
        checkpoint_every=10, tensorboard=False,
    )  # fmt: skip
    fit(m, model, config, tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "train/x0" in r]
    val = [r for r in records if "val/x0" in r]
    assert [r["train/x0"] for r in train[:1]] == [3.0] and train[0]["train/loss"] == 90.0
    assert train[0]["lr"] == 0.3  # eta, not trainer.lr
    ours = [[r["val/x0"], r["val/x1"]] for r in val]
    for mine, book in zip(ours, BOOK["inverse_simulator"], strict=True):
        assert mine == pytest.approx(list(book), abs=1e-5)
    # train/* at step k + 1 is the state before update k + 1: iterate k - 1
    assert [r["train/x1"] for r in train[1:]] == [r["val/x1"] for r in val[:-1]]
    assert model().detach()[0].tolist() == ours[-1]
    prediction = m.predict(model)
    assert prediction.shape == (1, 1, 1, 2) and prediction.dtype == F64
    metrics = m.problem.metrics(prediction, {})
    assert metrics["x1"] == pytest.approx(0.50421, abs=1e-5)
    assert metrics["distance"] == pytest.approx(0.5113, abs=1e-4)


def test_a_singular_hessian_is_one_line_not_a_traceback(tmp_path):
    m = method("newton", lr=1.0)
    model = m.build_model(FIELD)
    with torch.no_grad():
        model.value.zero_()  # H = diag(2, 12 x1^2) is singular at x1 = 0
    config = TrainerConfig(optimizer="sgd", max_steps=1, tensorboard=False, checkpoint_every=1)
    with pytest.raises(PbdlError, match=r"method\.update=newton failed at x = \[0\.0, 0\.0\]"):
        fit(m, model, config, tmp_path)
