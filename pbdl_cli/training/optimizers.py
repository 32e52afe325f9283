"""The optimizer and learning-rate schedule of each training phase: the first-order
phase (Adam, AdamW or SGD with an optional schedule) and the L-BFGS phase after it
(or the whole run with ``trainer.optimizer=lbfgs``)."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from pbdl_cli.training.config import OptimizerName, SchedulerName, TrainerConfig


@dataclasses.dataclass
class Phase:
    name: str
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    first_step: int
    last_step: int  # exclusive


def make_phase(config: TrainerConfig, model: nn.Module, *, lbfgs: bool) -> Phase:
    params = list(model.parameters())
    if lbfgs:
        optimizer = torch.optim.LBFGS(
            params,
            lr=config.lbfgs_lr if config.optimizer is not OptimizerName.lbfgs else config.lr,
            max_iter=config.lbfgs_max_iter,
            history_size=config.lbfgs_history,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-12,
            tolerance_change=1e-14,
        )
        first = 0 if config.optimizer is OptimizerName.lbfgs else config.max_steps
        return Phase("lbfgs", optimizer, None, first, config.max_steps + config.lbfgs_steps)
    if config.optimizer is OptimizerName.sgd:
        optimizer = torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    else:
        kind = torch.optim.AdamW if config.optimizer is OptimizerName.adamw else torch.optim.Adam
        optimizer = kind(
            params, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay
        )
    return Phase(
        config.optimizer.value, optimizer, scheduler(config, optimizer), 0, config.max_steps
    )


def scheduler(
    config: TrainerConfig, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler | None:
    sched = torch.optim.lr_scheduler
    if config.scheduler is SchedulerName.cosine:
        return sched.CosineAnnealingLR(optimizer, T_max=max(config.max_steps, 1))
    if config.scheduler is SchedulerName.exponential:
        return sched.ExponentialLR(optimizer, gamma=config.gamma)
    if config.scheduler is SchedulerName.step:
        return sched.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    return None
