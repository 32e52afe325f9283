"""The base of the probabilistic methods (PBDL book Part V, ch. 21-26): a model
q_theta(y | c) of a problem's distribution p(y | c), learned from draws of it.

The problem is a :class:`~pbdl_cli.problems.distribution.Distribution`. The registered
methods differ in what the network is and how it is trained and sampled:

- ``nf``: a RealNVP coupling flow, maximum likelihood (ch. 22; fields flattened);
- ``cnf``: a continuous normalizing flow (FFJORD, or a grid velocity for fields),
  maximum likelihood (ch. 22.4);
- ``score``: denoising score matching, Langevin sampling (ch. 23);
- ``ddpm``: epsilon prediction, ancestral and DDIM sampling (ch. 24);
- ``flow_matching``: conditional flow matching, ODE sampling (ch. 25-26).

Data: ``n_train`` pairs (y, c) are drawn once from the method's seed and walked through
in shuffled batches, one permutation per epoch (``ceil(n_train / batch_size)`` steps); the
noise of step s comes from a generator of (seed, "noise", s). Both depend only on the
seed and the step, so a resumed run sees what an uninterrupted one would. ``validate``
is the mean loss over ``n_val`` held-out draws with the same noise every time.

Networks of ``ddpm``, ``flow_matching``, ``score`` and (for fields) ``cnf`` see y, a
time or noise level and the condition (:meth:`GenerativeMethod.model_input`): points
[B, D] go into an ``mlp`` as [y, t, c] ([B, D + 1 + C]); fields [B, C, *spatial] into a
grid model with t as one constant channel and the condition as further channels
(constant where c is a vector).

Sampling (:meth:`GenerativeMethod.sample`): ``samples`` per test condition, with the
method's ``sampler`` and ``steps`` (0: its default); every sampler reports its number of
network evaluations. ``pbdl sample``, ``pbdl evaluate`` and the train summary all go
through :meth:`GenerativeMethod.draw_samples`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from abc import abstractmethod
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.generative.common import Sampled, StepCallback
from pbdl_cli.methods.base import Method, MethodConfig
from pbdl_cli.models.base import MODELS, GridModel
from pbdl_cli.problems.base import Problem
from pbdl_cli.problems.distribution import Distribution, Draws, check_distribution
from pbdl_cli.utils.seeding import derive_seed, generator

#: draws per chunk when validating
CHUNK = 4096


@dataclasses.dataclass
class GenerativeConfig(MethodConfig):
    """Options shared by the probabilistic methods (``method.<key>``).

    Attributes:
        n_train: training pairs drawn once from the problem.
        batch_size: pairs per step.
        n_val: held-out pairs; ``val/loss`` is their mean loss (with fixed noise).
        samples: samples per test condition drawn by the train summary, ``pbdl
            evaluate`` and ``pbdl sample`` (which can change it: ``n=``).
        sampler: the sampler ('' : the method's default, the first of its list).
        steps: the sampler's number of steps (0: the method's default for it).
        chunk: samples drawn per network batch while sampling.
    """

    n_train: int = 10000
    batch_size: int = 128
    n_val: int = 1000
    samples: int = 1000
    sampler: str = ""
    steps: int = 0
    chunk: int = 4096

    def __post_init__(self) -> None:
        if self.n_train < 1 or self.batch_size < 1 or self.n_val < 1:
            raise ValueError("n_train, batch_size and n_val must be >= 1")
        if self.samples < 1 or self.steps < 0 or self.chunk < 1:
            raise ValueError("samples and chunk must be >= 1, steps >= 0")


class SampleSet(NamedTuple):
    """Samples at every test condition (or once, unconditionally).

    Attributes:
        samples: [M, n, *sample_shape] (M = 1 when unconditional), float64 on the CPU.
        conditions: [M, *condition_shape] or None.
        evaluations: network evaluations per condition (a list of M; the mean over the
            chunks of an adaptive sampler, rounded).
        seconds: wall-clock seconds per condition.
        sampler, steps: what drew them (steps as given: 0 is the method's default).
    """

    samples: Tensor
    conditions: Tensor | None
    evaluations: list[int]
    seconds: list[float]
    sampler: str
    steps: int


class GenerativeMethod(Method):
    """Learn p(y | c) of a :class:`Distribution` problem (see the module docstring)."""

    config: GenerativeConfig
    #: the samplers :meth:`sample` accepts; the first is the default
    samplers: ClassVar[tuple[str, ...]] = ()
    #: :meth:`log_prob` gives an exact log-likelihood (flows)
    has_likelihood: ClassVar[bool] = False
    #: the loss needs autograd even when validating (e.g. a CNF's divergence)
    validate_with_grad: ClassVar[bool] = False
    #: the loss changes from step to step: fresh batches or noise (``pbdl train``
    #: refuses L-BFGS for it)
    noisy_loss: ClassVar[bool] = True

    def __init__(
        self,
        config: GenerativeConfig,
        *,
        problem: Problem,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        super().__init__(config, problem=problem, device=device, dtype=dtype)
        self.distribution: Distribution = check_distribution(problem, config.name)
        self.check_sampler(config.sampler)
        self.train_set = self.distribution.draw(config.n_train, generator(config.seed, "train"))
        self.train_set = self.train_set.to(device, dtype)
        self.val_set = self.distribution.draw(config.n_val, generator(config.seed, "val"))
        self.val_set = self.val_set.to(device, dtype)
        self._epoch: tuple[int, Tensor] | None = None

    # shapes ---------------------------------------------------------------------------
    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.distribution.sample_shape)

    @property
    def condition_shape(self) -> tuple[int, ...] | None:
        shape = self.distribution.condition_shape
        return None if shape is None else tuple(shape)

    @property
    def is_field(self) -> bool:
        """Samples are fields [C, *spatial] (not points [D])."""
        return len(self.sample_shape) > 1

    @property
    def condition_features(self) -> int:
        """C of a vector condition (its size; 0 when unconditional)."""
        shape = self.condition_shape
        return 0 if shape is None else math.prod(shape)

    def condition_channels(self) -> int:
        """Input channels a condition adds to a grid model: a field condition
        [C_c, *spatial] its C_c channels, a vector condition one constant channel each."""
        shape = self.condition_shape
        if shape is None:
            return 0
        if len(shape) == len(self.sample_shape) and shape[1:] == self.sample_shape[1:]:
            return shape[0]
        return math.prod(shape)

    # the sampler ------------------------------------------------------------------------
    @property
    def default_sampler(self) -> str:
        return self.samplers[0]

    def check_sampler(self, name: str) -> str:
        """``name`` (or the default for '') if this method has it; a one-line refusal
        otherwise."""
        if not name:
            return self.config.sampler or self.default_sampler
        if name not in self.samplers:
            raise PbdlError(
                f"method '{self.config.name}' has no sampler '{name}'; choose one of "
                f"{', '.join(self.samplers)}"
            )
        return name

    # the network ------------------------------------------------------------------------
    def check_model_config(self, model_config: Any) -> None:
        """``mlp`` for points, a grid model (``unet``, ``fno``, ``resnet``) for fields."""
        name = MODELS.config(model_config).name
        grid = issubclass(MODELS.get(name), GridModel)
        if self.is_field and not grid:
            raise PbdlError(
                f"problem '{self.problem.name}' has field samples {list(self.sample_shape)}: "
                f"use a grid model (model=unet, fno or resnet), not model={name}"
            )
        if not self.is_field and name != "mlp":
            raise PbdlError(
                f"method '{self.config.name}' learns point samples [B, "
                f"{self.sample_shape[0]}] with model=mlp (got model={name})"
            )

    def build_model(self, model_config: Any) -> nn.Module:
        self.check_model_config(model_config)
        torch.manual_seed(derive_seed(self.config.seed, "model") % 2**31)
        return self.network(model_config).to(self.device, self.dtype)

    def network(self, model_config: Any) -> nn.Module:
        """The network for :meth:`model_input`: an MLP [D + 1 + C] -> [D] for points, a
        grid model [C + 1 + C_c channels] -> [C] for fields (not yet seeded)."""
        shape = self.sample_shape
        if self.is_field:
            return MODELS.build(
                model_config,
                in_channels=shape[0] + 1 + self.condition_channels(),
                out_channels=shape[0],
                num_spatial_dims=len(shape) - 1,
            )
        return MODELS.build(
            model_config, in_features=shape[0] + 1 + self.condition_features, out_features=shape[0]
        )

    def model_input(self, y: Tensor, t: Tensor, condition: Tensor | None) -> Tensor:
        """The network input of samples y [B, *sample_shape] at times (or noise levels)
        t [B] with conditions [B, *condition_shape] (see the module docstring)."""
        t = t.to(y.dtype).reshape(len(y))
        if not self.is_field:
            parts = [y, t[:, None]]
            if condition is not None:
                parts.append(condition.reshape(len(y), -1).to(y.dtype))
            return torch.cat(parts, dim=1)
        spatial = y.shape[2:]
        ones = (1,) * len(spatial)
        parts = [y, t.reshape(-1, 1, *ones).expand(-1, 1, *spatial)]
        if condition is not None:
            c = condition.to(y.dtype)
            if c.ndim != y.ndim or c.shape[2:] != spatial:  # a vector: constant channels
                c = c.reshape(len(y), -1, *ones).expand(-1, -1, *spatial)
            parts.append(c)
        return torch.cat(parts, dim=1)

    # data -------------------------------------------------------------------------------
    def batch(self, step: int) -> Draws:
        """The training pairs of step ``step`` (module docstring)."""
        c = self.config
        n = len(self.train_set)
        per_epoch = math.ceil(n / c.batch_size)
        epoch, k = divmod(step, per_epoch)
        if self._epoch is None or self._epoch[0] != epoch:
            order = torch.randperm(n, generator=generator(c.seed, "batches", epoch))
            self._epoch = (epoch, order.to(self.device))
        return self.train_set.select(self._epoch[1][k * c.batch_size : (k + 1) * c.batch_size])

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.config.n_train / self.config.batch_size)

    # the objective ----------------------------------------------------------------------
    @abstractmethod
    def sample_loss(
        self, model: nn.Module, y: Tensor, condition: Tensor | None, noise: torch.Generator
    ) -> dict[str, Tensor]:
        """``{"loss": mean over the batch, <term>: ...}`` of samples y [B, *sample_shape]
        with conditions [B, *condition_shape] (or None); all random draws from
        ``noise`` (a CPU generator)."""

    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        drawn = self.batch(step)
        return self.sample_loss(
            model, drawn.y, drawn.condition, generator(self.config.seed, "noise", step)
        )

    def validate(self, model: nn.Module) -> dict[str, float]:
        """The mean of every loss term over the validation pairs (the same noise every
        time)."""
        sums: dict[str, float] = {}
        n = len(self.val_set)
        noise = generator(self.config.seed, "val_noise")
        with torch.enable_grad() if self.validate_with_grad else torch.no_grad():
            for start in range(0, n, CHUNK):
                chunk = self.val_set.select(torch.arange(start, min(start + CHUNK, n)))
                terms = self.sample_loss(model, chunk.y, chunk.condition, noise)
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(chunk)
        return {k: v / n for k, v in sums.items()}

    # sampling ---------------------------------------------------------------------------
    @abstractmethod
    def sample(
        self,
        model: nn.Module,
        n: int,
        *,
        condition: Tensor | None,
        sampler: str,
        steps: int,
        generator: torch.Generator,
        callback: StepCallback | None = None,
    ) -> Sampled:
        """``n`` samples of q(y | condition): [n, *sample_shape] on the method's device,
        with the number of network evaluations. ``condition`` is one condition
        [*condition_shape] shared by all (None when unconditional); ``sampler`` is one of
        :attr:`samplers`, ``steps`` 0 means the method's default for it."""

    def expected_steps(self, sampler: str, steps: int) -> int | None:
        """How many times :meth:`sample` calls its step callback for ``sampler`` and
        ``steps`` (for a progress bar); None where the sampler chooses (adaptive ODE
        solvers). Default: None."""
        return None

    def log_prob(self, model: nn.Module, y: Tensor, condition: Tensor | None) -> Tensor:
        """log q(y | c) [n] of samples y [n, *sample_shape] (flows only)."""
        raise PbdlError(f"method '{self.config.name}' has no likelihood")

    def conditions(self) -> Tensor | None:
        """The problem's test conditions [M, *condition_shape] (None: unconditional)."""
        return self.distribution.test_conditions()

    def draw_samples(
        self,
        model: nn.Module,
        n: int | None = None,
        *,
        conditions: Tensor | None = None,
        sampler: str = "",
        steps: int | None = None,
        seed: int | None = None,
        callback: StepCallback | None = None,
    ) -> SampleSet:
        """``n`` samples (default ``method.samples``) at each of ``conditions`` (default:
        the problem's test conditions), drawn in chunks of ``method.chunk`` without
        gradients (unless the sampler needs them), seeded by (seed, "sample", k) per
        condition k; ``callback`` sees the first chunk's steps."""
        c = self.config
        n = c.samples if n is None else n
        sampler = self.check_sampler(sampler)
        steps = c.steps if steps is None else steps
        seed = c.seed if seed is None else seed
        if conditions is None:
            conditions = self.conditions()
        if conditions is None and self.condition_shape is not None:
            raise PbdlError(f"problem '{self.problem.name}' has no test conditions: give one")
        rows = [None] if conditions is None else list(conditions)
        samples, evaluations, seconds = [], [], []
        was_training = model.training
        model.eval()
        try:
            for k, row in enumerate(rows):
                cond = None if row is None else row.to(self.device, self.dtype)
                g = generator(seed, "sample", k)
                parts, counts = [], []
                start = time.perf_counter()
                for first in range(0, n, c.chunk):
                    size = min(c.chunk, n - first)
                    with torch.no_grad():
                        drawn = self.sample(
                            model,
                            size,
                            condition=cond,
                            sampler=sampler,
                            steps=steps,
                            generator=g,
                            callback=callback if first == 0 else None,
                        )
                    parts.append(drawn.x.detach().to("cpu", torch.float64))
                    counts.append(drawn.evaluations)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                seconds.append(time.perf_counter() - start)
                samples.append(torch.cat(parts))
                evaluations.append(round(sum(counts) / len(counts)))
        finally:
            model.train(was_training)
        return SampleSet(
            samples=torch.stack(samples),
            conditions=None if conditions is None else conditions.to("cpu", torch.float64),
            evaluations=evaluations,
            seconds=seconds,
            sampler=sampler,
            steps=steps,
        )

    # the Method interface ----------------------------------------------------------------
    def predict(self, model: nn.Module) -> Tensor:
        """Samples at the first test condition as trajectories of one frame,
        [n, 1, C, *spatial] float64 (points: C = 1, one axis of D); the distribution
        metrics come from :meth:`draw_samples`."""
        drawn = self.draw_samples(model)
        first = drawn.samples[0]
        return first[:, None, None] if not self.is_field else first[:, None]
