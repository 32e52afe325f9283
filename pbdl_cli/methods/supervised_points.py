"""Supervised regression on point data (PBDL book ch. 2 and 5: the data-only baseline);
the implementation of ``method=supervised`` without ``method.data`` (see
:mod:`pbdl_cli.methods.supervised`).

A coordinate network u_theta(x, t) (inputs scaled to [-1, 1], see
:mod:`pbdl_cli.methods.points`) is fitted to the problem's observations (x_i, t_i, u_i):

    L = mean_i |u_theta(x_i, t_i) - u_i|^2

on all N points (``batch_size=0``) or on shuffled mini-batches: epoch e visits the points in
a permutation drawn from (seed, e), and step s uses batch s mod ceil(N / batch_size) of
epoch s // ceil(N / batch_size), so a resumed run sees the same batches. No physics enters
the loss; the PDE residual of the fit is only measured (``residual``).

Shapes: the network maps [N, F] (F = D spatial coordinates + t, t left out for static
problems) to [N, C]; ``predict`` returns [1, T, C, *spatial] on the output grid.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor, nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods.base import MethodConfig
from pbdl_cli.methods.points import CHUNK, CoordinateMethod
from pbdl_cli.models.base import MODELS
from pbdl_cli.problems.base import Problem
from pbdl_cli.utils.seeding import derive_seed


@dataclasses.dataclass
class PointSupervisedConfig(MethodConfig):
    """Options of ``supervised`` on point data (``method.<key>``).

    Attributes:
        batch_size: observations per step (0: all of them, full batch).
        seed: seed of the batch order, the network initialization and the parameters.
        eval_nx, eval_nt: resolution of the validation grid (rel. L2 against the
            reference); 0: the output grid's.
    """

    batch_size: int = 0
    seed: int = 0
    eval_nx: int = 0
    eval_nt: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 0:
            raise ValueError("batch_size must be >= 0")
        if self.eval_nx < 0 or self.eval_nt < 0:
            raise ValueError("eval_nx and eval_nt must be >= 0")


class PointSupervised(CoordinateMethod):
    """Regression of a coordinate network on the problem's observations (MSE)."""

    Config = PointSupervisedConfig
    config: PointSupervisedConfig

    def __init__(
        self,
        config: PointSupervisedConfig,
        *,
        problem: Problem,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        super().__init__(config, problem=problem, device=device, dtype=dtype)
        observed = problem.observations(self.params)
        if observed is None or len(observed) == 0:
            raise PbdlError(
                f"problem '{problem.name}' has no observations to fit; method=supervised "
                "needs point data (choose another method, e.g. method=pinn)"
            )
        x, t = self.to_device(observed.x), self.to_device(observed.t)
        self.data_inputs = self.inputs(x, t)  # [N, F]
        self.data_targets = self.to_device(observed.u)  # [N, C]
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.long)

    def build_model(self, model_config: Any) -> nn.Module:
        torch.manual_seed(derive_seed(self.config.seed, "model") % 2**31)
        model = MODELS.build(
            model_config, in_features=self.in_features, out_features=self.problem.num_channels
        )
        return model.to(self.device, self.dtype)

    def batch(self, step: int) -> Tensor | None:
        """Indices [b] of the observations of training step ``step`` (None: all)."""
        n, size = self.data_targets.shape[0], self.config.batch_size
        if size == 0 or size >= n:
            return None
        per_epoch = math.ceil(n / size)
        epoch, k = divmod(step, per_epoch)
        if epoch != self._epoch:  # derived from the step, so a resumed run gets the same
            g = torch.Generator().manual_seed(derive_seed(self.config.seed, "batches", epoch))
            self._order = torch.randperm(n, generator=g).to(self.device)
            self._epoch = epoch
        return self._order[k * size : (k + 1) * size]

    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        index = self.batch(step)
        inputs, targets = self.data_inputs, self.data_targets
        if index is not None:
            inputs, targets = inputs[index], targets[index]
        mse = (model(inputs) - targets).square().mean()
        return {"loss": mse, "data": mse}

    def validate(self, model: nn.Module) -> dict[str, float]:
        """The base metrics (see :class:`CoordinateMethod`) plus ``data_mse``: the MSE over
        all observations (the full training loss, where steps see mini-batches)."""
        metrics = super().validate(model)
        with torch.no_grad():
            fit = torch.cat([model(chunk) for chunk in self.data_inputs.split(CHUNK)])
        metrics["data_mse"] = float((fit - self.data_targets).square().mean())
        return metrics
