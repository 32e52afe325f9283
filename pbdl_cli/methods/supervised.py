"""Supervised learning (PBDL book ch. 2, 5 and 7: the data-only baseline), on two kinds
of data; one registered method ``supervised`` delegates to one of two implementations:

- ``method.data`` unset: regression of a coordinate network u(x, t) on the problem's point
  observations, L = mean_i |u(x_i, t_i) - u_i|^2
  (:class:`~pbdl_cli.methods.supervised_points.PointSupervised`).
- ``method.data=<dataset dir>``: a one-step neural surrogate trained on the windows of a
  ``pbdl generate`` dataset (:class:`SupervisedGrid`): the MSE of the normalized next
  state,

      L = mean ((D(f([N(s_{t-k+1}), ..., N(s_t)], p)) - s_{t+1}) / sigma)^2

  with N / D the per-channel normalization of the train split (see
  :mod:`pbdl_cli.methods.grid`); ``predict`` rolls the network out autoregressively over
  every test trajectory from its first k frames.

Shapes: point data as in :mod:`pbdl_cli.methods.supervised_points`; grid windows
history [B, k, C, *spatial] -> next state [B, C, *spatial]; ``predict`` [B, T, C, *spatial].
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from pbdl_cli.methods.base import METHODS, Delegating, Method
from pbdl_cli.methods.grid import GridConfig
from pbdl_cli.methods.points import CoordinateMethod
from pbdl_cli.methods.supervised_points import PointSupervised, PointSupervisedConfig
from pbdl_cli.methods.surrogate import SurrogateConfig, SurrogateMethod
from pbdl_cli.problems.base import Problem

#: options that only apply to grid data
_GRID_ONLY = ("history", "num_workers", "in_memory", "rollout_steps", "val_trajectories")
_GRID_ONLY += ("noise", "condition", "residual")


@dataclasses.dataclass
class SupervisedConfig(SurrogateConfig):
    """Options of ``supervised`` (``method.<key>``): those of grid data
    (:class:`~pbdl_cli.methods.surrogate.SurrogateConfig`, used with ``data``) and of point data.

    Attributes:
        batch_size: windows (grid data, default 32) or observations (point data, default
            all of them: 0) per step; null: the default of the data kind.
        eval_nx, eval_nt: point data: resolution of the validation grid (0: the output
            grid's).
    """

    batch_size: int | None = None  # type: ignore[assignment]
    eval_nx: int = 0
    eval_nt: int = 0

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 0:
            raise ValueError("batch_size must be >= 0")
        if self.data is None:
            PointSupervisedConfig(**self.point_options())  # its own checks
            defaults = SurrogateConfig()
            changed = [k for k in _GRID_ONLY if getattr(self, k) != getattr(defaults, k)]
            if changed:
                verb = "applies" if len(changed) == 1 else "apply"
                raise ValueError(
                    f"{', '.join(changed)} {verb} only to grid data: set "
                    "data=<dataset directory> (or leave them out for point data)"
                )
        else:
            if self.batch_size == 0:
                raise ValueError("batch_size must be >= 1 with grid data")
            self.grid_options()

    def point_options(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "batch_size": self.batch_size or 0,
            "seed": self.seed,
            "eval_nx": self.eval_nx,
            "eval_nt": self.eval_nt,
        }

    def grid_options(self) -> SurrogateConfig:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(SurrogateConfig)}
        if values["batch_size"] is None:
            values["batch_size"] = GridConfig.batch_size
        return SurrogateConfig(**values)


class SupervisedGrid(SurrogateMethod):
    """One-step surrogate on grid data: MSE of the normalized next state."""

    horizon = 1

    def loss(self, model: nn.Module, step: int) -> dict[str, Tensor]:
        return self.unrolled_loss(model, step, 1)


@METHODS.register("supervised")
class SupervisedMethod(Delegating):
    """Supervised learning on point observations or, with ``method.data``, on grid data."""

    Config = SupervisedConfig
    config: SupervisedConfig
    #: helpers of the point-data implementation, reachable from the registered class
    grid_points = staticmethod(CoordinateMethod.grid_points)

    def __init__(
        self,
        config: SupervisedConfig,
        *,
        problem: Problem,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        super().__init__(config, problem=problem, device=device, dtype=dtype)
        deps = {"problem": problem, "device": device, "dtype": dtype}
        if config.data is None:
            point = PointSupervisedConfig(**config.point_options())
            self.impl: Method = PointSupervised(point, **deps)
        else:
            self.impl = SupervisedGrid(config.grid_options(), **deps)
        self.params = self.impl.params


__all__ = ["SupervisedConfig", "SupervisedGrid", "SupervisedMethod"]
