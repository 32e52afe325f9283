"""Grid-data methods: the shared part of the methods that learn from ``pbdl generate``
datasets (neural surrogates and learned solver corrections; PBDL book ch. 7, 17-18).

A method of this family owns a dataset directory ``method.data`` holding the splits
``train.h5``, ``val.h5`` (optional) and ``test.h5`` (schema v1), checked against the
run's problem (:class:`~pbdl_cli.data.directory.DatasetDirectory`). It trains on windows
of the train split (:class:`~pbdl_cli.data.windows.WindowDataset`: k history frames, n
future frames, the trajectory's parameters) in step-indexed, resumable batches
(:class:`~pbdl_cli.data.batches.StepBatches`), normalizes with statistics of the train
split (:class:`~pbdl_cli.data.normalization.Normalization`, deterministic, so ``pbdl
evaluate`` rebuilds the same), validates by rolling out a few val trajectories and
predicts by rolling out every test trajectory from its first k frames.

Every method defines one *stepper* ``advance(model, frames, params)``: the next state
s_{t+1} [B, C, *spatial] from the last k states [B, k, C, *spatial] in physical units.
Training, validation and prediction all roll out that same stepper
(:func:`~pbdl_cli.solvers.rollout.unroll`):

    surrogate  (``surrogate.py``):   s_{t+1} = D(f([N(s_{t-k+1}), ..., N(s_t)], p))
    corrected  (``correction.py``):  s_{t+1} = P_s(s_t) + sigma * c(N(P_s(s_t)), p)
    solver     (``non.py``):         s_{t+1} = P_s(s_t)

with N(s) = (s - mu) / sigma per channel (train statistics), D its inverse, f / c the
network, P_s the run's solver over one output interval ``problem.dt`` and p the
normalized trajectory parameters (constant input channels, ``model.num_params``). Losses
are mean squared errors of normalized states, i.e. of (prediction - target) / sigma;
:mod:`~pbdl_cli.methods.unroll` trains through several unrolled steps (``sol``, ``unrolled``).

Shapes: windows history [B, k, C, *spatial], future [B, n, C, *spatial], params [B, P]
(float32 on disk, the run's dtype and device in training); ``predict`` and ``reference``
return [B, T, C, *spatial] float64 on the CPU for the B test trajectories.
"""

from __future__ import annotations

import dataclasses
import logging
from abc import abstractmethod
from functools import cached_property
from typing import Any

import torch
from torch import Tensor, nn

from pbdl_cli.data.batches import StepBatches
from pbdl_cli.data.directory import DatasetDirectory, plain_config
from pbdl_cli.data.normalization import Normalization, compute_normalization
from pbdl_cli.data.windows import WindowDataset, windows_per_trajectory
from pbdl_cli.errors import PbdlError
from pbdl_cli.methods.base import Method, MethodConfig
from pbdl_cli.models.base import MODELS
from pbdl_cli.models.utils import describe
from pbdl_cli.problems.base import Params, Problem
from pbdl_cli.solvers import Solver
from pbdl_cli.solvers.rollout import unroll
from pbdl_cli.utils.seeding import derive_seed

log = logging.getLogger("pbdl.methods")

#: trajectories rolled out together by ``predict``
PREDICT_CHUNK = 256


@dataclasses.dataclass
class GridConfig(MethodConfig):
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
        self.num_times = len(problem.times())
        self.directory = DatasetDirectory(
            config.data,
            method=name,
            problem=problem.name,
            problem_config=problem.config,
            fields=problem.fields,
            frame_shape=(self.num_times, 1, *problem.grid.shape),
            test_data=config.test_data,
        )
        self.files = self.directory.files
        self.history = config.history
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
        # the statistics on the run's device, once: Normalization.normalize would copy them
        # there at every call (on CUDA a host-to-device copy that synchronizes the stream)
        stats = {"dtype": dtype, "device": device}
        self._mean = torch.tensor(self.normalization.mean, **stats).view(shape)
        #: sigma, the per-channel std [C, 1, ...] on the run's device and dtype
        self.std = torch.tensor(self.normalization.std, **stats).view(shape)
        self._p_mean = torch.tensor(self.normalization.param_mean, **stats)
        self._p_std = torch.tensor(self.normalization.param_std, **stats)
        self.param_names = self.normalization.params
        self.num_params = len(self.param_names) if config.condition else 0
        self.params = self.directory.params("test")
        if self.uses_solver and self.directory.refine("train") <= 1:
            log.warning(
                "dataset %s is not a data.refine=r dataset: the reference data come from the "
                "same resolution as the solver, so there is little to correct",
                config.data,
            )

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
    def batches(self) -> StepBatches:
        """The training batches of every step, for this process (built on first use)."""
        c = self.config
        return StepBatches(
            self.train_windows,
            batch_size=c.batch_size,
            seed=c.seed,
            num_workers=c.num_workers,
            device=self.device,
            dtype=self.dtype,
            rank=self.rank,
            world_size=self.world_size,
            noise=c.noise,
            noise_scale=self.std,
        )

    def trajectories(self, split: str, count: int = 0) -> tuple[Tensor, Tensor, Tensor]:
        """The first ``count`` (0: all) trajectories of ``split``: first k frames
        [B, k, C, *S], the rest [B, T - k, C, *S] and params [B, P] (float32, CPU)."""
        path = self.files[split]
        total = self.directory.num_trajectories(split)
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
        (with input noise of std ``noise`` x sigma), future [B, n, C, *S], params [B, P]
        (physical units); resumable and sharded (:class:`~pbdl_cli.data.batches.StepBatches`)."""
        return self.batches.batch(step)

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
        self.__dict__.pop("batches", None)  # new batches: this process's shards

    def shard_weight(self, step: int) -> float:
        """Factor on this process's loss at step ``step``; see
        :meth:`~pbdl_cli.data.batches.StepBatches.shard_weight`."""
        return self.batches.shard_weight(step)

    # -- normalization --------------------------------------------------------------------
    def normalize(self, x: Tensor) -> Tensor:
        """N(x) = (x - mu) / sigma per channel, x [..., C, *spatial] on the run's device
        (:meth:`~pbdl_cli.data.normalization.Normalization.normalize` with device-resident
        statistics)."""
        return (x - self._mean) / self.std

    def denormalize(self, x: Tensor) -> Tensor:
        """D(x) = x sigma + mu per channel; inverse of :meth:`normalize`."""
        return x * self.std + self._mean

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
        error = (prediction - target) / self.std
        return error.square().transpose(0, 1).flatten(1).mean(dim=1)

    # -- model ----------------------------------------------------------------------------
    def model_config(self, model_config: Any) -> dict[str, Any]:
        """The model config with the method's adjustments: ``padding`` from the problem's
        boundary condition (a non-periodic problem replaces the default ``circular`` with
        ``zeros``; an explicit ``zeros``/``replicate`` is kept)."""
        cfg = plain_config(MODELS.config(model_config))  # every key, with the schema's defaults
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
        the predicted states [B, steps, C, *S] (:func:`~pbdl_cli.solvers.rollout.unroll`)."""
        return unroll(lambda frames: self.advance(model, frames, params), history, steps)

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
        return self.trajectories("val", self.config.val_trajectories)

    def predict(self, model: nn.Module) -> Tensor:
        """Every test trajectory rolled out from its first k frames: [B, T, C, *S]."""
        first, rest, params = self.trajectories("test")
        return self.rollout(model, first, params, rest.shape[1])

    def reference(self) -> Tensor:
        """The test trajectories, [B, T, C, *S] float64 CPU (what ``predict`` is scored
        against where the problem has no exact solution)."""
        first, rest, _ = self.trajectories("test")
        return torch.cat([first, rest], dim=1).double()
