"""The options of the training loop (``trainer.<key>``): optimizer, schedule, phases,
logging and checkpoint intervals, seed, strategy."""

from __future__ import annotations

import dataclasses
import enum


class OptimizerName(str, enum.Enum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"
    lbfgs = "lbfgs"


class StrategyName(str, enum.Enum):
    single = "single"
    ddp = "ddp"


class SchedulerName(str, enum.Enum):
    none = "none"
    cosine = "cosine"
    exponential = "exponential"
    step = "step"


@dataclasses.dataclass
class TrainerConfig:
    """Options of the training loop (``trainer.<key>``).

    Attributes:
        max_steps: steps of the first phase (``optimizer``).
        optimizer: adam, adamw, sgd, or lbfgs (then the whole run is L-BFGS).
        lr, weight_decay, momentum, betas: optimizer settings (momentum: SGD only).
        scheduler: none, cosine (to 0 over the phase), exponential (``gamma`` per step)
            or step (``gamma`` every ``step_size`` steps).
        grad_clip: clip the gradient norm to this value (first-order phase only).
        lbfgs_steps: L-BFGS steps after the first phase (0: none).
        lbfgs_lr, lbfgs_max_iter, lbfgs_history: L-BFGS step size, function evaluations
            per step and history size (strong-Wolfe line search).
        log_every, eval_every, checkpoint_every: in steps (0 disables eval/checkpoints
            until the end).
        seed: seeds torch, numpy and python's random at the start (``pbdl train`` sets
            it to the run's ``seed``).
        tensorboard: also write TensorBoard event files to ``<run dir>/tensorboard``
            (``null``: when the ``tensorboard`` package is installed).
        strategy: single (one process) or ddp (data-parallel over the processes of a
            torchrun launch; the method's batch is per process).
        max_seconds: also stop once this many seconds of training have passed (checked
            after each step; the step that crosses it ends the run as the last one would:
            validated, checkpointed). Counted from the start of this process's training,
            so a resumed run gets the budget again. null: no limit.
    """

    max_steps: int = 1000
    optimizer: OptimizerName = OptimizerName.adam
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.999])
    scheduler: SchedulerName = SchedulerName.none
    gamma: float = 0.5
    step_size: int = 1000
    grad_clip: float | None = None
    lbfgs_steps: int = 0
    lbfgs_lr: float = 1.0
    lbfgs_max_iter: int = 20
    lbfgs_history: int = 50
    log_every: int = 50
    eval_every: int = 500
    checkpoint_every: int = 500
    seed: int = 0
    tensorboard: bool | None = None
    strategy: StrategyName = StrategyName.single
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        # plain strings (a config built in Python) become the enums the loop compares with
        for field, kind in (
            ("optimizer", OptimizerName),
            ("scheduler", SchedulerName),
            ("strategy", StrategyName),
        ):
            value = getattr(self, field)
            try:
                setattr(self, field, kind(value))
            except ValueError:
                choices = ", ".join(k.value for k in kind)
                raise ValueError(f"{field} must be one of {choices} (got {value!r})") from None
        if self.max_steps < 0 or self.lbfgs_steps < 0 or self.max_steps + self.lbfgs_steps < 1:
            raise ValueError("max_steps and lbfgs_steps must be >= 0 and not both 0")
        if self.lr <= 0 or self.lbfgs_lr <= 0:
            raise ValueError("learning rates must be > 0")
        if self.log_every < 1 or self.eval_every < 0 or self.checkpoint_every < 0:
            raise ValueError("log_every must be >= 1; eval_every, checkpoint_every >= 0")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError("grad_clip must be > 0 (or null)")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError("max_seconds must be > 0 (or null: no time limit)")
        if self.max_seconds is not None and self.strategy is StrategyName.ddp:
            raise ValueError("max_seconds needs strategy=single (processes would stop apart)")
        if len(self.betas) != 2:
            raise ValueError("betas must be [beta1, beta2]")
