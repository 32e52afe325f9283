"""Grid-data methods: the shared part of the methods that learn from ``pbdl generate``
datasets (neural surrogates and learned solver corrections; PBDL book ch. 7, 17-18).

A method of this family owns a dataset directory ``method.data`` holding the splits
``train.h5``, ``val.h5`` (optional) and ``test.h5`` (schema v1). It trains on windows
of the train split (:class:`~pbdl_cli.data.windows.WindowDataset`: k history frames, n
future frames, the trajectory's parameters), normalizes with statistics of the train
split (:class:`~pbdl_cli.data.normalization.Normalization`, deterministic, so ``pbdl
evaluate`` rebuilds the same), validates by rolling out a few val trajectories and
predicts by rolling out every test trajectory from its first k frames.

Every method defines one *stepper* ``advance(model, frames, params)``: the next state
s_{t+1} [B, C, *spatial] from the last k states [B, k, C, *spatial] in physical units.
Training, validation and prediction all roll out that same stepper (:meth:`unroll`):

    surrogate  (:class:`SurrogateMethod`):  s_{t+1} = D(f([N(s_{t-k+1}), ..., N(s_t)], p))
    corrected  (:class:`CorrectedMethod`):  s_{t+1} = P_s(s_t) + sigma * c(N(P_s(s_t)), p)

with N(s) = (s - mu) / sigma per channel (train statistics), D its inverse, f / c the
network, P_s the run's solver over one output interval ``problem.dt`` and p the
normalized trajectory parameters (constant input channels, ``model.num_params``). Losses
are mean squared errors of normalized states, i.e. of (prediction - target) / sigma.

Shapes: windows history [B, k, C, *spatial], future [B, n, C, *spatial], params [B, P]
(float32 on disk, the run's dtype and device in training); ``predict`` and ``reference``
return [B, T, C, *spatial] float64 on the CPU for the B test trajectories.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from abc import abstractmethod
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from pbdl_cli.data.loader import make_loader
from pbdl_cli.data.normalization import Normalization, compute_normalization
from pbdl_cli.data.reader import open_dataset
from pbdl_cli.data.windows import WindowDataset, windows_per_trajectory
from pbdl_cli.errors import PbdlError
from pbdl_cli.methods.base import Method
from pbdl_cli.models.base import MODELS
from pbdl_cli.models.utils import describe
from pbdl_cli.problems.base import Params, Problem
from pbdl_cli.registry import PluginConfig
from pbdl_cli.solvers import Solver
from pbdl_cli.utils.seeding import derive_seed

log = logging.getLogger("pbdl.methods")

SPLITS = ("train", "val", "test")
#: trajectories rolled out together by ``predict``
PREDICT_CHUNK = 256
#: problem keys that do not shape the data (inverse-problem observations)
_IGNORED_PROBLEM_KEYS = ("observe_",)
#: problem keys in which a ``test_data`` split may differ from the run (parameter ranges)
_TEST_MAY_DIFFER = ("_range",)


@dataclasses.dataclass
class GridConfig(PluginConfig):
    """Options of every grid-data method (``method.<key>``).

    Attributes:
        data: dataset directory written by ``pbdl generate`` (``datasets/<problem>/<name>``).
        history: k, input frames of the network (the solver methods need k = 1).
        batch_size: windows per training step.
        num_workers: DataLoader processes (0: load in the training process).
        in_memory: load the splits into memory (null: when they take <= 2 GiB).
        seed: seed of the network initialization, the batch order and the input noise.
        rollout_steps: steps of the validation rollouts (null: whole trajectories);
            ``predict`` always rolls out whole test trajectories.
        val_trajectories: val trajectories rolled out by ``validate`` (0: all).
        noise: std of Gaussian noise added to the normalized input frames of training
            windows (0: none).
        condition: feed the normalized trajectory parameters to the network as constant
            channels (``num_params``).
        test_data: optional dataset directory whose ``test.h5`` replaces the test split of
            ``data`` (what ``predict`` rolls out and ``pbdl evaluate`` scores), e.g. one
            generated with parameters beyond the training range; its problem settings
            may differ from the run's only in parameter ranges (``*_range`` keys).
    """

    data: str | None = None
    history: int = 1
    batch_size: int = 32
    num_workers: int = 0
    in_memory: bool | None = None
    seed: int = 0
    rollout_steps: int | None = None
    val_trajectories: int = 4
    noise: float = 0.0
    condition: bool = True
    test_data: str | None = None

    def __post_init__(self) -> None:
        if self.history < 1:
            raise ValueError("history must be >= 1")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.num_workers < 0 or self.val_trajectories < 0:
            raise ValueError("num_workers and val_trajectories must be >= 0")
        if self.rollout_steps is not None and self.rollout_steps < 1:
            raise ValueError("rollout_steps must be >= 1 (or null: whole trajectories)")
        if self.noise < 0:
            raise ValueError("noise must be >= 0")


@dataclasses.dataclass
class UnrollConfig:
    """Options of the methods that unroll several steps in training (mixed into a config).

    Attributes:
        unroll: predicted states per training window (m, or n of SOL-n).
        unroll_schedule: curriculum ``[[step, n], ...]``: from training step ``step`` on,
            unroll n states (before the first entry: ``unroll``); e.g.
            ``[[0, 1], [500, 2], [1000, 4]]``.
    """

    unroll: int = 4
    unroll_schedule: list[list[int]] = dataclasses.field(default_factory=list)

    def check_unroll(self) -> None:
        if self.unroll < 1:
            raise ValueError("unroll must be >= 1")
        last = -1
        for entry in self.unroll_schedule:
            if len(entry) != 2 or entry[0] <= last or entry[0] < 0 or entry[1] < 1:
                raise ValueError(
                    "unroll_schedule must be [[step, n], ...] with increasing steps >= 0 and "
                    f"n >= 1, got {self.unroll_schedule}"
                )
            last = entry[0]

    def unroll_at(self, step: int) -> int:
        """Unrolled states at training step ``step``."""
        n = self.unroll
        for start, value in self.unroll_schedule:
            if step >= start:
                n = value
        return n

    @property
    def max_unroll(self) -> int:
        return max([self.unroll, *(n for _, n in self.unroll_schedule)])


# -- the dataset directory ------------------------------------------------------------------
def dataset_splits(data: str | None, method: str) -> dict[str, Path]:
    """The split files of dataset directory ``data``: train and test required, val optional."""
    hint = (
        f"method '{method}' trains on a dataset of `pbdl generate`: pass "
        "method.data=datasets/<problem>/<name>"
    )
    if not data:
        raise PbdlError(f"{hint} (method.data is not set)")
    root = Path(data)
    if root.is_file() and root.suffix == ".h5":
        raise PbdlError(f"method.data={data} is a split file; pass its directory {root.parent}")
    if not root.is_dir():
        raise PbdlError(f"method.data={data}: no such directory; {hint}")
    files = {split: root / f"{split}.h5" for split in SPLITS}
    missing = [f.name for s, f in files.items() if s != "val" and not f.is_file()]
    if missing:
        present = sorted(p.name for p in root.iterdir())
        raise PbdlError(
            f"method.data={data} is not a dataset: it lacks {', '.join(missing)} "
            f"(it holds {', '.join(present) or 'nothing'}); generate one with pbdl generate "
            "data.n_train=... data.n_test=..."
        )
    if not files["val"].is_file():
        del files["val"]
    return files


def held_out_split(test_data: str, method: str) -> Path:
    """The ``test.h5`` of dataset directory ``test_data`` (``method.test_data``)."""
    path = Path(test_data) / "test.h5"
    if not path.is_file():
        raise PbdlError(
            f"method.test_data={test_data} has no test.h5; method '{method}' takes the test "
            "split of that dataset directory (generate one with pbdl generate data.n_train=0 "
            "data.n_val=0 data.n_test=...)"
        )
    return path


def _plain(value: Any) -> Any:
    """A config value as plain python (enums as their values)."""
    if isinstance(value, DictConfig) or dataclasses.is_dataclass(value):
        node = OmegaConf.structured(value) if dataclasses.is_dataclass(value) else value
        return OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def check_dataset_problem(path: Path, problem: Problem, may_differ: tuple[str, ...] = ()) -> None:
    """Raise :class:`PbdlError` unless split ``path`` was generated for ``problem``: the same
    problem plugin and settings (observation keys and keys ending with one of
    ``may_differ`` aside), grid, times and fields."""
    with open_dataset(path) as f:
        attrs = f.attrs
        fields = {name: tuple(ds.shape) for name, ds in f.fields.items()}
    name = str(attrs.get("problem", ""))
    if name != problem.name:
        raise PbdlError(
            f"dataset {path.parent} holds problem '{name}', the run is problem={problem.name}"
        )
    text = attrs.get("config")
    stored = OmegaConf.create(text).get("problem") if isinstance(text, str) else None
    if stored is not None:
        ours, theirs = _plain(problem.config), _plain(stored)
        diff = [
            key
            for key in sorted(set(ours) | set(theirs))
            if not key.startswith(_IGNORED_PROBLEM_KEYS)
            and not (may_differ and key.endswith(may_differ))
            and not _same(ours.get(key), theirs.get(key))
        ]
        if diff:
            had = " ".join(f"problem.{k}={_override(theirs.get(k))}" for k in diff)
            got = ", ".join(f"{k}={_override(ours.get(k))}" for k in diff)
            raise PbdlError(
                f"dataset {path.parent} was generated with other problem settings than this "
                f"run ({got}); train with the dataset's: {had}"
            )
    expected = (len(problem.times()), 1, *problem.grid.shape)
    for field in problem.fields:
        shape = fields.get(field)
        if shape is None or tuple(shape[1:]) != expected:
            raise PbdlError(
                f"dataset {path.parent}: field '{field}' has frames {shape and list(shape[1:])}, "
                f"the run's problem needs [T, 1, *spatial] = {list(expected)}"
            )


def _override(value: Any) -> str:
    """``value`` as written on the command line."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(_override(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


# -- the base class -------------------------------------------------------------------------
class GridMethod(Method):
    """Base of the methods training on grid datasets; see the module docstring.

    Subclasses define :meth:`advance` (the stepper) and :meth:`loss`, and set ``horizon``
    (future frames of a training window) before calling ``super().__init__``.
    """

    config: GridConfig
    supports_ddp = True
    #: future frames per training window (n of the windows)
    horizon: int = 1
    #: whether the stepper runs the solver (then ``solver`` must be given)
    uses_solver: bool = False
    #: data-parallel training (:meth:`set_distributed`): this process's shard of each batch
    rank: int = 0
    world_size: int = 1

    def __init__(
        self,
        config: GridConfig,
        *,
        problem: Problem,
        device: torch.device,
        dtype: torch.dtype,
        solver: Solver | None = None,
    ) -> None:
        super().__init__(config, problem=problem, device=device, dtype=dtype)
        name = config.name
        if problem.is_static or problem.grid.num_spatial_dims == 0:
            raise PbdlError(
                f"method '{name}' learns time steps on a grid; problem '{problem.name}' has "
                "no time axis or no spatial grid"
            )
        if self.uses_solver:
            if solver is None:
                raise PbdlError(
                    f"method '{name}' steps with a solver, but problem '{problem.name}' has "
                    "none; choose one with solver=..."
                )
            if config.history != 1:
                raise PbdlError(
                    f"method '{name}' advances one state with the solver: method.history "
                    f"must be 1 (got {config.history})"
                )
        self.solver = solver
        self.files = dataset_splits(config.data, name)
        check_dataset_problem(self.files["train"], problem)
        if config.test_data:  # e.g. parameters beyond the training range
            self.files["test"] = held_out_split(config.test_data, name)
            check_dataset_problem(self.files["test"], problem, _TEST_MAY_DIFFER)
        self.history = config.history
        self.num_times = len(problem.times())
        if windows_per_trajectory(self.num_times, self.history, self.horizon) == 0:
            raise PbdlError(
                f"dataset {config.data} has T={self.num_times} frames per trajectory, fewer "
                f"than history {self.history} + {self.horizon} unrolled steps"
            )
        self.fields = tuple(problem.fields)
        self.normalization: Normalization = compute_normalization(
            self.files["train"], fields=self.fields
        )
        shape = (-1,) + (1,) * problem.grid.num_spatial_dims
        self._mean = torch.tensor(self.normalization.mean, dtype=dtype, device=device).view(shape)
        self._std = torch.tensor(self.normalization.std, dtype=dtype, device=device).view(shape)
        self._p_mean = torch.tensor(self.normalization.param_mean, dtype=dtype, device=device)
        self._p_std = torch.tensor(self.normalization.param_std, dtype=dtype, device=device)
        self.param_names = self.normalization.params
        self.num_params = len(self.param_names) if config.condition else 0
        self.params = _read_params(self.files["test"])
        if self.uses_solver and not _refined(self.files["train"]):
            log.warning(
                "dataset %s is not a data.refine=r dataset: the reference data come from the "
                "same resolution as the solver, so there is little to correct",
                config.data,
            )
        # training batches: (step, batch) of the last step, the iterator and its position
        self._batch: tuple[int, tuple[Tensor, Tensor, Tensor]] | None = None
        self._iterator: Iterator[Any] | None = None
        self._position = (-1, -1)

    # -- data -----------------------------------------------------------------------------
    @cached_property
    def train_windows(self) -> WindowDataset:
        """Windows (history k, horizon n) of the train split, physical units."""
        c = self.config
        return WindowDataset(
            self.files["train"],
            history=self.history,
            horizon=self.horizon,
            fields=self.fields,
            in_memory="auto" if c.in_memory is None else c.in_memory,
        )

    @cached_property
    def loader(self) -> torch.utils.data.DataLoader:
        """Batches of ``batch_size`` windows; data-parallel: this process's shard of the
        global batches of ``world_size x batch_size`` windows."""
        c = self.config
        windows = self.train_windows
        if self.world_size > 1:
            windows = _ShardOfBatch(windows, self.rank, self.world_size)  # type: ignore[assignment]
        return make_loader(
            windows,
            batch_size=c.batch_size * self.world_size,
            seed=derive_seed(c.seed, "batches"),
            num_workers=c.num_workers,
        )

    def _trajectories(self, split: str, count: int = 0) -> tuple[Tensor, Tensor, Tensor]:
        """The first ``count`` (0: all) trajectories of ``split``: first k frames
        [B, k, C, *S], the rest [B, T - k, C, *S] and params [B, P] (float32, CPU)."""
        path = self.files[split]
        with open_dataset(path) as f:
            total = f.num_trajectories
        windows = WindowDataset(
            path,
            history=self.history,
            horizon=self.num_times - self.history,
            fields=self.fields,
            trajectories=range(min(count, total)) if count else None,
            in_memory=True,
        )
        if windows.num_times != self.num_times:
            raise PbdlError(
                f"{path} has {windows.num_times} frames per trajectory, the problem "
                f"{self.num_times}"
            )
        return windows.get_batch(range(len(windows)))

    def batch(self, step: int) -> tuple[Tensor, Tensor, Tensor]:
        """The training window batch of step ``step`` on the device: history [B, k, C, *S]
        (with input noise), future [B, n, C, *S], params [B, P] (physical units).

        Epoch e = step // (batches per epoch) visits the windows in the order of
        (seed, e), so a resumed run sees the same batches; the batch of a step is cached
        (L-BFGS evaluates a step's loss several times)."""
        if self._batch is not None and self._batch[0] == step:
            return self._batch[1]
        per_epoch = len(self.loader)
        epoch, index = divmod(step, per_epoch)
        if self._iterator is None or index == 0 or self._position != (epoch, index):
            self.loader.sampler.set_epoch(epoch)
            self._iterator = iter(self.loader)
            for _ in range(index):
                next(self._iterator)
        history, future, params = next(self._iterator)
        self._position = (epoch, index + 1)
        history, future, params = (
            x.to(self.device, self.dtype, non_blocking=True) for x in (history, future, params)
        )
        if self.config.noise > 0:
            g = torch.Generator(device=self.device)
            g.manual_seed(derive_seed(self.config.seed, "noise", step))
            # the noise of the global batch, of which this process takes its shard's part
            size, (lo, hi) = self._shard(step)
            shape = (size, *history.shape[1:])
            eps = torch.randn(shape, generator=g, device=self.device, dtype=self.dtype)[lo:hi]
            history = history + self.config.noise * self._std * eps
        self._batch = (step, (history, future, params))
        return self._batch[1]

    # -- data-parallel training -----------------------------------------------------------
    def set_distributed(self, rank: int, world_size: int) -> None:
        """Train as process ``rank`` of ``world_size`` (``trainer.strategy=ddp``): the loss
        of step s is computed on shard ``rank`` of the global batch of ``world_size x
        batch_size`` windows that one process with that batch size would draw at step s
        (contiguous shards, sizes differing by at most one), so that the averaged
        gradients equal those of the single process (see :meth:`shard_weight`)."""
        if (rank, world_size) == (self.rank, self.world_size):
            return
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        self.rank, self.world_size = rank, world_size
        self.__dict__.pop("loader", None)  # a new loader of global batches
        self._batch, self._iterator, self._position = None, None, (-1, -1)

    def shard_weight(self, step: int) -> float:
        """Factor on this process's loss at step ``step`` such that the mean over the
        processes is the loss of the global batch: shard size x world size / global batch
        size (1 for even shards; 0 for a process without windows in the last batch of an
        epoch, which evaluates one window to take part in the gradient average)."""
        size, _ = self._shard(step)
        lo, hi = _shard_bounds(size, self.rank, self.world_size)
        return (hi - lo) * self.world_size / size

    def _shard(self, step: int) -> tuple[int, tuple[int, int]]:
        """Size of step ``step``'s global batch and this process's rows of it."""
        per_epoch = len(self.loader)
        global_size = self.config.batch_size * self.world_size
        index = step % per_epoch
        size = min(global_size, len(self.train_windows) - index * global_size)
        lo, hi = _shard_bounds(size, self.rank, self.world_size)
        return size, (lo, hi) if hi > lo else (0, 1)

    # -- normalization --------------------------------------------------------------------
    def normalize(self, x: Tensor) -> Tensor:
        """(x - mu) / sigma per channel; x [..., C, *spatial]."""
        return (x - self._mean) / self._std

    def denormalize(self, x: Tensor) -> Tensor:
        """x sigma + mu per channel; inverse of :meth:`normalize`."""
        return x * self._std + self._mean

    def param_input(self, params: Tensor) -> Tensor | None:
        """The network's conditioning [B, P] (normalized), or None without conditioning."""
        if self.num_params == 0:
            return None
        return (params - self._p_mean) / self._p_std

    def param_dict(self, params: Tensor) -> Params:
        """Physical parameters [B, P] as the solver's ``{name: [B]}`` (an entry ``a[i]`` of
        a vector parameter ``a`` is gathered into ``a`` [B, n])."""
        groups: dict[str, list[int]] = {}
        for j, name in enumerate(self.param_names):
            groups.setdefault(name.split("[")[0], []).append(j)
        return {
            k: params[:, j[0]] if k in self.param_names else params[:, j] for k, j in groups.items()
        }

    def normalized_mse(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Mean squared error of normalized states, per predicted step: [n] for
        prediction and target [B, n, C, *S]."""
        error = (prediction - target) / self._std
        return error.square().transpose(0, 1).flatten(1).mean(dim=1)

    # -- model ----------------------------------------------------------------------------
    def model_config(self, model_config: Any) -> dict[str, Any]:
        """The model config with the method's adjustments: ``padding`` from the problem's
        boundary condition (a non-periodic problem replaces the default ``circular`` with
        ``zeros``; an explicit ``zeros``/``replicate`` is kept)."""
        cfg = _plain(MODELS.config(model_config))  # every key, with the schema's defaults
        if not self.problem.grid.is_periodic and cfg.get("padding") == "circular":
            cfg["padding"] = "zeros"
            log.info("problem boundary '%s': model.padding=zeros", self.problem.grid.bc)
        return cfg

    def build_model(self, model_config: Any) -> nn.Module:
        """A grid model: k C normalized input channels (+ P parameter channels), C outputs."""
        cfg = self.model_config(model_config)
        torch.manual_seed(derive_seed(self.config.seed, "model") % 2**31)
        c = self.problem.num_channels
        try:
            model = MODELS.build(
                cfg,
                in_channels=self.history * c,
                out_channels=c,
                num_spatial_dims=self.problem.grid.num_spatial_dims,
                num_params=self.num_params,
            )
        except TypeError:  # a model of another kind (mlp, field) takes other sizes
            raise PbdlError(
                f"method '{self.config.name}' needs a grid model (model=resnet, unet or fno), "
                f"got model={cfg['name']}"
            ) from None
        log.info("%s", describe(model))
        return model.to(self.device, self.dtype)

    # -- the stepper ----------------------------------------------------------------------
    @abstractmethod
    def advance(self, model: nn.Module, frames: Tensor, params: Tensor) -> Tensor:
        """The next state [B, C, *S] from the last k states ``frames`` [B, k, C, *S] and
        the physical parameters [B, P] (physical units in and out)."""

    def solve(self, state: Tensor, params: Tensor) -> Tensor:
        """One output interval of the solver: P_s(state) for ``state`` [B, C, *S]."""
        assert self.solver is not None
        return self.solver(state, self.problem.dt, self.param_dict(params))

    def unroll(self, model: nn.Module, history: Tensor, params: Tensor, steps: int) -> Tensor:
        """Roll the stepper out ``steps`` times from ``history`` [B, k, C, *S]:
        the predicted states [B, steps, C, *S]."""
        frames, out = history, []
        for _ in range(steps):
            state = self.advance(model, frames, params)
            out.append(state)
            frames = torch.cat([frames[:, 1:], state[:, None]], dim=1)
        return torch.stack(out, dim=1)

    def unrolled_loss(self, model: nn.Module, step: int, steps: int) -> dict[str, Tensor]:
        """Mean normalized MSE of ``steps`` unrolled states against the window's future."""
        history, future, params = self.batch(step)
        prediction = self.unroll(model, history, params, steps)
        per_step = self.normalized_mse(prediction, future[:, :steps])  # [steps]
        terms = {"loss": per_step.mean()}
        if self.horizon > 1:  # the error of the last state: how errors grow when unrolled
            terms["last"] = per_step[-1].detach()
        return terms

    @torch.no_grad()
    def rollout(self, model: nn.Module, first: Tensor, params: Tensor, steps: int) -> Tensor:
        """Trajectories rolled out from their first k frames ``first`` [B, k, C, *S] (CPU,
        physical units) in chunks: the given frames followed by ``steps`` predicted ones,
        [B, k + steps, C, *S] float64 CPU."""
        out = []
        for h, p in zip(first.split(PREDICT_CHUNK), params.split(PREDICT_CHUNK), strict=True):
            h, p = h.to(self.device, self.dtype), p.to(self.device, self.dtype)
            out.append(torch.cat([h, self.unroll(model, h, p, steps)], dim=1).double().cpu())
        return torch.cat(out)

    # -- the Method interface -------------------------------------------------------------
    def validate(self, model: nn.Module) -> dict[str, float]:
        """``rel_l2``: relative L2 error of the predicted frames of ``val_trajectories``
        val trajectories rolled out for ``rollout_steps`` steps (the given k frames left
        out); empty without a val split."""
        if "val" not in self.files:
            return {}
        first, rest, params = self._val
        steps = min(self.config.rollout_steps or rest.shape[1], rest.shape[1])
        prediction = self.rollout(model, first, params, steps)[:, self.history :]
        target = rest[:, :steps].double()
        return {"rel_l2": float((prediction - target).norm() / target.norm())}

    @cached_property
    def _val(self) -> tuple[Tensor, Tensor, Tensor]:
        return self._trajectories("val", self.config.val_trajectories)

    def predict(self, model: nn.Module) -> Tensor:
        """Every test trajectory rolled out from its first k frames: [B, T, C, *S]."""
        first, rest, params = self._trajectories("test")
        return self.rollout(model, first, params, rest.shape[1])

    def reference(self) -> Tensor:
        """The test trajectories, [B, T, C, *S] float64 CPU (what ``predict`` is scored
        against where the problem has no exact solution)."""
        first, rest, _ = self._trajectories("test")
        return torch.cat([first, rest], dim=1).double()

    def reference_solver_runtime(self, max_steps: int = 10) -> dict[str, Any] | None:
        """Seconds per output interval of the solver that made the test split, where it
        was simulated on a finer grid (``data.refine`` > 1; ``None`` otherwise), on every
        test trajectory at once, on this run's device and dtype: what a learned rollout
        replaces. Times up to ``max_steps`` intervals from the test states' first frame
        (repeated onto the fine cells), after one untimed interval."""
        from pbdl_cli.problems.base import PROBLEMS
        from pbdl_cli.stages.generate import refined_simulation

        path = self.files["test"]
        with open_dataset(path) as f:
            refine = int(f.attrs.get("refine", 1))
            text = f.config
        if refine <= 1 or not isinstance(text, str):
            return None
        stored = OmegaConf.create(text)
        problem = PROBLEMS.build(stored.problem)
        fine_problem, solver = refined_simulation(problem, stored.solver, refine)
        first, _, _ = self._trajectories("test")
        state = first[:, -1].to(self.device, self.dtype)
        for axis in range(2, state.dim()):
            state = state.repeat_interleave(refine, dim=axis)
        params = {k: v.to(self.device, self.dtype) for k, v in _read_params(path).items()}
        steps = max(1, min(max_steps, self.num_times - 1))
        dt = fine_problem.dt
        with torch.no_grad():
            state = solver(state, dt, params)  # warm-up (allocations, kernels)
            _synchronize(self.device)
            start = time.perf_counter()
            for _ in range(steps):
                state = solver(state, dt, params)
            _synchronize(self.device)
            seconds = time.perf_counter() - start
        return {
            "seconds_per_step": seconds / steps,
            "steps_timed": steps,
            "grid": list(fine_problem.grid.shape),
            "refine": refine,
            "solver": str(stored.solver.name),
        }


@dataclasses.dataclass
class SurrogateConfig(GridConfig):
    """Options of the neural surrogates (``supervised`` on grid data, ``unrolled``).

    Attributes:
        residual: the network predicts the normalized change of the last input frame
            (s_{t+1} = D(N(s_t) + f(...))) instead of the next state itself.
    """

    residual: bool = False


class SurrogateMethod(GridMethod):
    """A network alone advances the state: s_{t+1} = D(f([N(s_{t-k+1..t})], p)), or with
    ``residual`` s_{t+1} = D(N(s_t) + f(...))."""

    config: SurrogateConfig

    def advance(self, model: nn.Module, frames: Tensor, params: Tensor) -> Tensor:
        x = self.normalize(frames)  # [B, k, C, *S]
        out = model(x.flatten(1, 2), self.param_input(params))  # [B, C, *S]
        if self.config.residual:
            out = x[:, -1] + out
        return self.denormalize(out)


@dataclasses.dataclass
class CorrectionConfig(GridConfig):
    """Options of the learned solver corrections (``pre``, ``sol``).

    Attributes:
        init_scale: factor on ``model.out_init_scale`` (the last layer's initial weights
            and bias), so the correction starts small and the corrected solver close to
            the plain one (the book's gain-0.1 initialization); 0: it starts as the zero
            function (its last layer still gets gradients).
    """

    init_scale: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init_scale < 0:
            raise ValueError("init_scale must be >= 0")


class CorrectedMethod(GridMethod):
    """The solver advances, a network corrects (Um et al. 2020; PBDL book ch. 18):
    s_{t+1} = P_s(s_t) + sigma * c(N(P_s(s_t)), p)."""

    config: CorrectionConfig
    needs_solver = True
    uses_solver = True

    def model_config(self, model_config: Any) -> dict[str, Any]:
        """As :meth:`GridMethod.model_config`, with ``out_init_scale`` times ``init_scale``."""
        cfg = super().model_config(model_config)
        if "out_init_scale" in cfg:
            cfg["out_init_scale"] = cfg["out_init_scale"] * self.config.init_scale
        return cfg

    def correct(self, model: nn.Module, state: Tensor, params: Tensor) -> Tensor:
        """state + sigma c(N(state), p): the corrected solver output [B, C, *S]."""
        return state + self._std * model(self.normalize(state), self.param_input(params))

    def advance(self, model: nn.Module, frames: Tensor, params: Tensor) -> Tensor:
        return self.correct(model, self.solve(frames[:, -1], params), params)


def _shard_bounds(size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows [lo, hi) of process ``rank`` of a batch of ``size`` rows split into
    ``world_size`` contiguous shards (the first ``size % world_size`` one row larger)."""
    base, extra = divmod(size, world_size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


class _ShardOfBatch:
    """Windows whose batches are one process's shard of the requested global batch (one
    window, weighted 0 by :meth:`GridMethod.shard_weight`, where its shard is empty)."""

    def __init__(self, windows: WindowDataset, rank: int, world_size: int) -> None:
        self.windows, self.rank, self.world_size = windows, rank, world_size

    def __len__(self) -> int:
        return len(self.windows)

    def get_batch(self, indices: list[int]) -> tuple[Tensor, Tensor, Tensor]:
        lo, hi = _shard_bounds(len(indices), self.rank, self.world_size)
        return self.windows.get_batch(indices[lo:hi] if hi > lo else indices[:1])


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _read_params(path: Path) -> Params:
    """The physical parameters of every trajectory of a split, ``{name: [N, ...]}`` float64."""
    with open_dataset(path) as f:
        group = f.params
        return {name: torch.from_numpy(group[name][()]).double() for name in sorted(group)}


def _refined(path: Path) -> bool:
    with open_dataset(path) as f:
        return int(f.attrs.get("refine", 1)) > 1
