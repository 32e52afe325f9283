"""Grid-data methods (supervised on grid data, unrolled, non, pre, sol): train and evaluate
end to end on a tiny generated dataset, windows and normalization, gradients through the
solver, and clean errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pbdl_cli.data.checksum import attributes_checksum
from pbdl_cli.data.normalization import Normalization, compute_normalization
from pbdl_cli.data.reader import read_trajectories
from pbdl_cli.errors import PbdlError
from pbdl_cli.methods import METHODS
from pbdl_cli.methods.grid import GridMethod
from pbdl_cli.methods.supervised_points import PointSupervised
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.solvers import SOLVERS, rollout
from pbdl_cli.solvers.rollout import unroll
from pbdl_cli.stages.solver_timing import reference_solver_runtime
from pbdl_cli.utils.seeding import derive_seed
from tests.conftest import run_cli
from tests.test_faults import assert_one_line_error

CPU = torch.device("cpu")
#: the problem of the dataset: 32 cells, 7 frames of dt = 0.05, nu in [0.01, 0.05]
PROBLEM = {
    "nx": 32,
    "t_end": 0.3,
    "dt": 0.05,
    "nu": 0.01,
    "nu_range": [0.01, 0.05],
    "ic": "sines",
    "bc": "periodic",
}
#: the same as command-line overrides (Burgers' defaults are the PINN benchmark's)
OVERRIDES = [f"problem.{k}={v}".replace(" ", "") for k, v in PROBLEM.items()]
TINY = {"name": "resnet", "width": 4, "blocks": 1}
METHOD_NAMES = ("supervised", "unrolled", "non", "pre", "sol")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny dataset: cell averages of a 2x finer simulation (4 / 2 / 2 trajectories)."""
    root = tmp_path_factory.mktemp("grid")
    result = run_cli(
        "generate",
        *OVERRIDES,
        "solver=burgers_sl",
        "data.n_train=4",
        "data.n_val=2",
        "data.n_test=2",
        "data.refine=2",
        "data.name=tiny",
        "threads=1",
        cwd=root,
    )
    assert result.returncode == 0, result.stderr
    return root / "datasets" / "burgers" / "tiny"


def build(name: str, root: Path, dtype: torch.dtype = torch.float64, **options):
    problem = PROBLEMS.build({"name": "burgers", **PROBLEM})
    solver = SOLVERS.build({"name": "burgers_sl"}, problem=problem)
    deps = {"solver": solver} if METHODS.get(name).needs_solver else {}
    config = {"name": name, "data": str(root), **options}
    return METHODS.build(config, problem=problem, device=CPU, dtype=dtype, **deps)


# -- end to end ----------------------------------------------------------------------------
def test_train_and_evaluate_every_method(data: Path, tmp_path: Path):
    sweep = tmp_path / "sweep"
    trained = run_cli(
        "train",
        "-m",
        f"method={','.join(METHOD_NAMES)}",
        # ++: Hydra composes the sweep's base config with the default method (pinn) first
        f"++method.data={data}",
        *OVERRIDES,
        "solver=burgers_sl",
        "model=resnet",
        "model.width=4",
        "model.blocks=1",
        "trainer.max_steps=3",
        "trainer.lbfgs_steps=0",
        "trainer.eval_every=2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr
    runs = [sweep / str(i) for i in range(len(METHOD_NAMES))]
    evaluated = run_cli(
        "evaluate", "-m", "run=" + ",".join(map(str, runs)), "plots=false", cwd=tmp_path
    )
    assert evaluated.returncode == 0, evaluated.stderr
    test = read_trajectories(data / "test.h5")
    seen = set()
    for run in runs:
        metrics = json.loads((run / "eval" / "metrics.json").read_text())
        seen.add(metrics["method"])
        assert metrics["has_reference"] and metrics["shape"] == [2, 7, 1, 32]
        assert math.isfinite(metrics["metrics"]["rel_l2"])
        assert metrics["params"]["nu"] == pytest.approx(test["params"]["nu"].tolist())
        reference = read_trajectories(run / "eval" / "reference.h5")["fields"]["u"]
        np.testing.assert_array_equal(reference, test["fields"]["u"])  # the test data
        summary = json.loads((run / "summary.json").read_text())
        assert summary["steps"] == 3 and math.isfinite(summary["train"]["loss"])
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert any("val/rel_l2" in r for r in records)
        runtime = metrics["runtime"]  # the prediction timed, and the 2x finer solver
        assert runtime["steps"] == 6 and runtime["trajectories"] == 2
        assert runtime["seconds_per_step"] == pytest.approx(runtime["predict_seconds"] / 6)
        fine = runtime["reference_solver"]
        assert fine["grid"] == [64] and fine["refine"] == 2 and fine["solver"] == "burgers_sl"
        assert fine["seconds_per_step"] > 0
        assert runtime["speedup"] == pytest.approx(
            fine["seconds_per_step"] / runtime["seconds_per_step"]
        )
    assert seen == set(METHOD_NAMES)


def test_every_model_trains_and_evaluates_with_the_same_command(data: Path, tmp_path: Path):
    sweep = tmp_path / "models"
    trained = run_cli(
        "train",
        "-m",
        "model=resnet,unet,fno",
        "method=sol",
        f"++method.data={data}",
        *OVERRIDES,
        "solver=burgers_sl",
        "model.width=4",
        "trainer.max_steps=2",
        "trainer.lbfgs_steps=0",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr
    runs = [sweep / str(i) for i in range(3)]
    evaluated = run_cli(
        "evaluate", "-m", "run=" + ",".join(map(str, runs)), "plots=false", cwd=tmp_path
    )
    assert evaluated.returncode == 0, evaluated.stderr
    models = set()
    for run in runs:
        metrics = json.loads((run / "eval" / "metrics.json").read_text())
        models.add(metrics["model"])
        assert metrics["shape"] == [2, 7, 1, 32] and math.isfinite(metrics["metrics"]["rel_l2"])
    assert models == {"resnet", "unet", "fno"}


def test_reference_solver_runtime_needs_refined_data(data: Path, tmp_path: Path):
    plain = tmp_path / "plain"
    plain.mkdir()
    for split in ("train", "test"):  # the same data, marked as simulated on their own grid
        shutil.copy(data / f"{split}.h5", plain / f"{split}.h5")
        with h5py.File(plain / f"{split}.h5", "r+") as f:
            del f.attrs["refine"]
            f.attrs["attributes_checksum"] = attributes_checksum(f)  # as if written so
    assert reference_solver_runtime(build("non", plain)) is None
    timed = reference_solver_runtime(build("non", data), max_steps=2)
    assert timed is not None and timed["steps_timed"] == 2 and timed["grid"] == [64]


def test_dataset_and_problem_mismatch_is_a_clear_error(data: Path, tmp_path: Path):
    args = [o for o in OVERRIDES if not o.startswith("problem.nx")]
    result = run_cli(
        "train", "method=unrolled", f"method.data={data}", *args, "problem.nx=64", cwd=tmp_path
    )
    assert result.returncode == 2
    assert "other problem settings" in result.stderr and "nx=64" in result.stderr
    assert "problem.nx=32" in result.stderr  # the override that fixes it
    assert not (tmp_path / "outputs").exists()  # refused before any run directory


def test_a_changed_dataset_file_is_refused_before_training(data: Path, tmp_path: Path):
    """Issue 11, item 5: four changed bytes of train.h5 used to train silently."""
    changed = tmp_path / "changed"
    shutil.copytree(data, changed)
    with h5py.File(changed / "train.h5", "r+") as f:
        f["fields/u"][1, 2, 0, 3] = 1e30
    result = run_cli("train", "method=unrolled", f"method.data={changed}", *OVERRIDES, cwd=tmp_path)
    assert_one_line_error(result, 1, "train.h5 fails its checksum", "its data changed")
    assert not (tmp_path / "outputs").exists()


def test_evaluate_refuses_a_dataset_regenerated_after_training(data: Path, tmp_path: Path):
    """Issue 18: normalization.json is read back, so a model is never scored on data
    scaled unlike its training data."""
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    args = ("method=unrolled", f"method.data={copy}", *OVERRIDES, "solver=burgers_sl")
    small = ("model=resnet", "model.width=4", "model.blocks=1", "trainer.lbfgs_steps=0")
    run = tmp_path / "run"
    trained = run_cli(
        "train", *args, *small, "trainer.max_steps=2", f"hydra.run.dir={run}", cwd=tmp_path
    )
    assert trained.returncode == 0, trained.stderr
    stored = json.loads((run / "normalization.json").read_text())
    assert stored["source"]["checksum"].startswith("sha256:")
    shutil.copy(copy / "val.h5", copy / "train.h5")  # a valid split, but other data
    evaluated = run_cli("evaluate", f"run={run}", "plots=false", cwd=tmp_path)
    assert_one_line_error(evaluated, 2, "changed since this run was trained", "checksum was")
    assert not (run / "eval" / "metrics.json").exists()


# -- data ------------------------------------------------------------------------------------
def test_windows_and_normalization_round_trip_through_the_method(data: Path, tmp_path: Path):
    m = build("unrolled", data, unroll=2, history=2)
    raw = read_trajectories(data / "train.h5")
    u = torch.from_numpy(raw["fields"]["u"])  # [4, 7, 1, 32]
    assert m.normalization == compute_normalization(data / "train.h5", fields=("u",))
    assert m.param_names == ("nu",) and m.num_params == 1
    # 4 windows per trajectory; window g: trajectory g // 4, frames s..s+1 and s+2..s+3
    # with s = g % 4
    history, future, params = m.train_windows.get_batch([0, 5])
    assert torch.equal(history[0], u[0, 0:2]) and torch.equal(future[0], u[0, 2:4])
    assert torch.equal(history[1], u[1, 1:3]) and torch.equal(future[1], u[1, 3:5])
    assert params[:, 0].tolist() == pytest.approx(raw["params"]["nu"][:2].tolist())
    # normalized train data: zero mean, unit std; denormalize inverts normalize
    x = u.double()
    z = m.normalize(x)
    assert abs(float(z.mean())) < 1e-6 and float(z.std(unbiased=False)) == pytest.approx(1, 1e-6)
    torch.testing.assert_close(m.denormalize(z), x)
    nu = torch.from_numpy(raw["params"]["nu"]).double()[:, None]
    assert float(m.param_input(nu).std(unbiased=False)) == pytest.approx(1, 1e-5)
    # stored with a run and read back: the same statistics (pbdl evaluate rebuilds them)
    again = Normalization.load(m.normalization.save(tmp_path / "normalization.json"))
    assert again == m.normalization == build("unrolled", data).normalization
    # the reference of evaluate is the test split; params are its trajectories'
    test = read_trajectories(data / "test.h5")
    assert torch.equal(m.reference(), torch.from_numpy(test["fields"]["u"]).double())
    assert m.params["nu"].tolist() == pytest.approx(test["params"]["nu"].tolist())


def test_batches_depend_only_on_the_step(data: Path):
    a = build("supervised", data, batch_size=5)  # 24 windows: 5 batches per epoch
    seen = [a.batch(step) for step in range(10)]
    b = build("supervised", data, batch_size=5)  # a resumed run: new objects
    for step in (6, 2, 3):  # jump in, jump back, go on
        for x, y in zip(seen[step], b.batch(step), strict=True):
            assert torch.equal(x, y)
    first_epoch = torch.cat([h for h, _, _ in seen[:5]])
    assert first_epoch.shape[0] == 24  # every window once per epoch
    assert not torch.equal(first_epoch, torch.cat([h for h, _, _ in seen[5:]]))


# -- the steppers ----------------------------------------------------------------------------
def test_non_is_the_plain_solver_rollout(data: Path):
    m = build("non", data, dtype=torch.float32)
    model = m.build_model(TINY)
    assert sum(p.numel() for p in model.parameters()) == 0
    test = read_trajectories(data / "test.h5")
    u0 = torch.from_numpy(test["fields"]["u"][:, 0])
    params = {"nu": torch.from_numpy(test["params"]["nu"])}
    with torch.no_grad():
        expected = rollout(m.solver, u0, 6, m.problem.dt, params)
    assert torch.equal(m.predict(model), expected.double())
    terms = m.loss(model, 0)
    terms["loss"].backward()  # a graph, but nothing to train
    assert set(terms) == {"loss"} and 0 < float(terms["loss"].detach()) < 0.1


def test_unrolled_with_one_step_is_the_supervised_loss(data: Path):
    sup = build("supervised", data, residual=True)
    one = build("unrolled", data, unroll=1, residual=True)
    model, same = sup.build_model(TINY), one.build_model(TINY)
    for p, q in zip(model.parameters(), same.parameters(), strict=True):
        assert torch.equal(p, q)  # the same seed: the same network
    history, future, params = sup.batch(0)
    nu = (params - sup.normalization.param_mean[0]) / sup.normalization.param_std[0]
    x = sup.normalize(history)[:, 0]
    by_hand = (x + model(x, nu) - sup.normalize(future)[:, 0]).square().mean()
    torch.testing.assert_close(sup.loss(model, 0)["loss"], by_hand)
    torch.testing.assert_close(one.loss(same, 0)["loss"], by_hand)
    # two steps: the second input is the first prediction
    two = build("unrolled", data, unroll=2)
    model = two.build_model(TINY)
    history, future, params = two.batch(0)
    nu = (params - two.normalization.param_mean[0]) / two.normalization.param_std[0]
    first = model(two.normalize(history)[:, 0], nu)
    second = model(first, nu)
    target = two.normalize(future)
    by_hand = ((first - target[:, 0]).square().mean() + (second - target[:, 1]).square().mean()) / 2
    terms = two.loss(model, 0)
    torch.testing.assert_close(terms["loss"], by_hand)
    torch.testing.assert_close(terms["last"], (second - target[:, 1]).square().mean())


def test_pre_trains_the_correction_of_one_solver_step(data: Path):
    m = build("pre", data, init_scale=1.0)
    model = m.build_model(TINY)
    history, future, params = m.batch(0)
    coarse = m.solver(history[:, 0], m.problem.dt, {"nu": params[:, 0]})
    nu = (params - m.normalization.param_mean[0]) / m.normalization.param_std[0]
    corrected = coarse + m.std * model(m.normalize(coarse), nu)
    expected = ((corrected - future[:, 0]) / m.std).square().mean()
    torch.testing.assert_close(m.loss(model, 0)["loss"], expected)
    # the small start of corrections: init_scale multiplies model.out_init_scale
    small = build("pre", data).build_model(TINY)
    torch.testing.assert_close(small.decoder.weight, 0.1 * model.decoder.weight)


def test_sol_gradients_reach_the_network_through_the_solver(data: Path):
    """d(loss)/d(one encoder weight) of SOL-3 equals a central finite difference (float64);
    leaving out the path through the solver gives a different gradient."""
    m = build("sol", data, unroll=3, init_scale=1.0, batch_size=4)
    model = m.build_model(TINY)
    weight = model.encoder.weight
    index = (1, 0, 1)
    loss = m.loss(model, 0)["loss"]
    (grad,) = torch.autograd.grad(loss, weight)
    eps = 1e-6
    with torch.no_grad():
        original = weight[index].item()
        weight[index] = original + eps
        plus = m.loss(model, 0)["loss"].item()
        weight[index] = original - eps
        minus = m.loss(model, 0)["loss"].item()
        weight[index] = original
    difference = (plus - minus) / (2 * eps)
    assert grad[index].item() == pytest.approx(difference, rel=1e-6, abs=1e-12)
    # the same loss with the solver's input detached: only the network's own paths remain
    solve = m.solve
    m.solve = lambda state, params: solve(state.detach(), params)  # type: ignore[method-assign]
    (cut,) = torch.autograd.grad(m.loss(model, 0)["loss"], weight)
    assert abs(cut[index].item() - difference) > 1e-3 * abs(difference)


def test_unroll_schedule_and_horizon(data: Path):
    m = build("sol", data, unroll=1, unroll_schedule=[[0, 1], [10, 2], [20, 3]])
    assert [m.config.unroll_at(s) for s in (0, 9, 10, 25)] == [1, 1, 2, 3]
    assert m.horizon == 3 and m.train_windows.horizon == 3
    model = m.build_model(TINY)
    assert set(m.loss(model, 0)) == {"loss", "last"}
    with pytest.raises(PbdlError, match="unroll_schedule"):
        build("sol", data, unroll_schedule=[[10, 2], [5, 3]])


def test_model_sizes_padding_and_conditioning(data: Path):
    m = build("unrolled", data, history=2, unroll=1)
    model = m.build_model(TINY)
    assert model.in_channels == 2 and model.num_params == 1
    assert m.model_config(TINY)["padding"] == "circular"
    assert build("unrolled", data, condition=False).build_model(TINY).num_params == 0
    m.problem = PROBLEMS.build({"name": "burgers", **PROBLEM, "bc": "dirichlet"})
    assert m.model_config(TINY)["padding"] == "zeros"  # the default circular is replaced
    assert m.model_config({**TINY, "padding": "replicate"})["padding"] == "replicate"


# -- the supervised facade and errors ------------------------------------------------------
def test_supervised_dispatches_on_method_data(data: Path):
    grid = build("supervised", data)
    assert isinstance(grid.impl, GridMethod) and grid.config.batch_size is None
    assert grid.impl.config.batch_size == 32 and grid.reference() is not None
    osc = PROBLEMS.build({"name": "oscillator"})
    point = METHODS.build({"name": "supervised"}, problem=osc, device=CPU, dtype=torch.float64)
    assert isinstance(point.impl, PointSupervised) and point.impl.config.batch_size == 0
    assert point.reference() is None and point.in_features == 1  # attributes delegate
    with pytest.raises(PbdlError, match="history applies only to grid data"):
        METHODS.build(
            {"name": "supervised", "history": 2}, problem=osc, device=CPU, dtype=torch.float64
        )


def test_errors(data: Path, tmp_path: Path):
    with pytest.raises(PbdlError, match=r"method\.data is not set"):
        build("unrolled", data, data=None)
    with pytest.raises(PbdlError, match="no such directory"):
        build("unrolled", tmp_path / "nothing")
    with pytest.raises(PbdlError, match=r"not a dataset: it lacks train\.h5, test\.h5"):
        build("unrolled", tmp_path)
    with pytest.raises(PbdlError, match="is a split file"):
        build("unrolled", data / "train.h5")
    with pytest.raises(PbdlError, match="history must be 1"):
        build("sol", data, history=2)
    with pytest.raises(PbdlError, match="T=7 frames"):
        build("unrolled", data, unroll=7)
    with pytest.raises(PbdlError, match="needs a grid model"):
        build("unrolled", data).build_model({"name": "mlp"})
    problem = PROBLEMS.build({"name": "burgers", **PROBLEM})
    with pytest.raises(PbdlError, match="steps with a solver"):
        METHODS.build({"name": "sol", "data": str(data)}, problem=problem, device=CPU,
                      dtype=torch.float64)  # fmt: skip


# -- behaviour: frame order, held-out test data, input noise, validation error -------------
class _Linear(torch.nn.Module):
    """A fixed network: weights ``a`` on its input channels (oldest history frame first),
    no parameters to learn."""

    def __init__(self, *weights: float) -> None:
        super().__init__()
        self.weights = weights

    def forward(self, x: torch.Tensor, params: torch.Tensor | None) -> torch.Tensor:
        return sum(w * x[:, i : i + 1] for i, w in enumerate(self.weights))  # [B, 1, S]


def test_a_rollout_feeds_the_history_frames_oldest_first(data: Path):
    """history = 3: s_{t+1} = D(f(N(s_{t-2}), N(s_{t-1}), N(s_t))), each prediction becoming
    the newest frame; f = 1 x oldest + 10 x middle + 100 x newest (any reversal differs)."""
    m = build("unrolled", data, history=3, unroll=1)
    first, _, params = m.trajectories("test")  # [2, 3, 1, 32]
    mu, sigma = m.normalization.mean[0], m.normalization.std[0]
    z = [(first[:, i].double() - mu) / sigma for i in range(3)]  # oldest first
    for _ in range(4):
        z.append(1 * z[-3] + 10 * z[-2] + 100 * z[-1])
    expected = torch.stack([zi * sigma + mu for zi in z], dim=1)  # [2, 7, 1, 32]
    predicted = m.rollout(_Linear(1.0, 10.0, 100.0), first, params, 4)
    assert predicted.shape == expected.shape
    torch.testing.assert_close(predicted, expected, rtol=1e-12, atol=0)  # float64: exact
    # the shared rollout on its own: window [a, b, c] -> a + 2 b + 4 c, then [b, c, d]
    history = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1)
    step = lambda w: w[:, 0] + 2 * w[:, 1] + 4 * w[:, 2]  # noqa: E731
    out = unroll(step, history, 3)  # 1 + 4 + 12, then 2 + 6 + 68, then 3 + 34 + 304
    assert out.flatten().tolist() == [17.0, 76.0, 341.0]


def test_test_data_replaces_the_test_split(data: Path, tmp_path: Path):
    """method.test_data=DIR: predict, reference and params come from DIR/test.h5 (here the
    val split copied there), not from method.data's test split."""
    held_out = tmp_path / "held_out"
    held_out.mkdir()
    shutil.copy(data / "val.h5", held_out / "test.h5")
    m = build("supervised", data, test_data=str(held_out))
    val, test = read_trajectories(data / "val.h5"), read_trajectories(data / "test.h5")
    assert not np.array_equal(val["fields"]["u"], test["fields"]["u"])
    assert torch.equal(m.reference(), torch.from_numpy(val["fields"]["u"]).double())
    assert m.params["nu"].tolist() == pytest.approx(val["params"]["nu"].tolist())
    assert m.params["nu"].tolist() != pytest.approx(test["params"]["nu"].tolist())
    model = m.build_model(TINY)
    first = torch.from_numpy(val["fields"]["u"][:, :1]).double()
    torch.testing.assert_close(m.predict(model)[:, :1], first)  # rolled out from val's frames


def test_input_noise_is_scaled_by_the_channel_std(data: Path):
    """noise = 0.05: history + 0.05 sigma eps, eps ~ N(0, 1) drawn from (seed, "noise", step)
    for the whole batch; the future frames and params are left alone."""
    noisy, clean = build("unrolled", data, noise=0.05), build("unrolled", data)
    sigma = noisy.normalization.std[0]
    assert abs(sigma - 1) > 0.1  # measured sigma = 0.501: unscaled noise would differ
    for step in (0, 3):
        (h, f, p), (h0, f0, p0) = noisy.batch(step), clean.batch(step)
        assert torch.equal(f, f0) and torch.equal(p, p0)
        g = torch.Generator().manual_seed(derive_seed(0, "noise", step))
        eps = torch.randn(h.shape, generator=g, dtype=torch.float64)
        torch.testing.assert_close(h - h0, 0.05 * sigma * eps, rtol=1e-12, atol=1e-15)


def test_the_validation_error_is_relative_to_the_reference(data: Path):
    """val rel_l2 = ||prediction - reference|| / ||reference|| over the predicted frames of
    the val trajectories: with f = 0 the prediction is the train mean everywhere."""
    m = build("supervised", data)
    val = read_trajectories(data / "val.h5")["fields"]["u"]  # [2, 7, 1, 32]
    mean = m.normalization.mean[0]
    target = torch.from_numpy(val[:, 1:]).double()  # the frames after the given one
    prediction = torch.full_like(target, mean)
    by_hand = float((prediction - target).norm() / target.norm())
    assert by_hand == pytest.approx(1.0, abs=1e-3)  # measured 0.9999984: |mean| = 8.8e-4
    # over the prediction's norm instead: measured 597
    assert float((prediction - target).norm() / prediction.norm()) > 100
    assert m.validate(_Linear(0.0))["rel_l2"] == pytest.approx(by_hand, rel=1e-12)
