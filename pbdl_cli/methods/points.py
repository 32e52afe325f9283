"""Coordinate networks: the shared part of the methods whose model is a function u(x, t).

A network N maps scaled coordinates to the C channels of the problem,

    u(x, t) = N(2 (x_1 - a_1) / (b_1 - a_1) - 1, ..., 2 (x_D - a_D) / (b_D - a_D) - 1,
                2 t / t_end - 1)

on the box [a, b] of the problem's grid; the time input is left out for static problems
(t_end = 0) and the spatial ones for time-only problems (D = 0, e.g. an ODE). Methods built
on it (``pinn``, ``supervised``) get the output-grid prediction, validation against the
reference (or the problem's own metrics where it has none) and the mean PDE residual.

Shapes: points x [N, D], t [N, 1]; network inputs [N, F] with F = D + (0 if static else 1);
outputs [N, C]; grid predictions [1, T, C, *spatial] (float64, CPU).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from pbdl_cli.errors import PbdlError
from pbdl_cli.methods.base import Method
from pbdl_cli.problems.base import Params, Problem

#: points per forward pass when evaluating on a grid
CHUNK = 65536
#: points per forward and backward pass of the residual (second derivatives cost memory)
RESIDUAL_CHUNK = 16384


class CoordinateMethod(Method):
    """Base of methods training a coordinate network u(x, t) = N(scaled x, scaled t).

    Subclass configs provide ``seed`` (the trajectory parameters and the network
    initialization) and ``eval_nx``, ``eval_nt`` (validation grid; 0: the output grid's).
    """

    def __init__(
        self, config: Any, *, problem: Problem, device: torch.device, dtype: torch.dtype
    ) -> None:
        super().__init__(config, problem=problem, device=device, dtype=dtype)
        self.num_spatial_dims = problem.grid.num_spatial_dims
        self.static = problem.is_static
        if self.static and self.num_spatial_dims == 0:
            raise PbdlError(f"problem '{problem.name}' has neither space nor time coordinates")
        self.in_features = self.num_spatial_dims + (0 if self.static else 1)
        # the physical parameters of the one solution the network represents ([1] each)
        self.params = problem.sample_params(1, torch.Generator().manual_seed(config.seed))
        self._params_on_device: Params = {k: v.to(device, dtype) for k, v in self.params.items()}
        self._validation: tuple[list[Tensor], Tensor, Tensor | None] | None = None

    # -- inputs ------------------------------------------------------------------------------
    def scale(self, x: Tensor, t: Tensor | None) -> list[Tensor]:
        """The network's input columns [N, 1] each: scaled x_1..x_D, then t (not static)."""
        grid = self.problem.grid
        columns = []
        for d, (lo, hi) in enumerate(zip(grid.lower, grid.upper, strict=True)):
            xd = x if self.num_spatial_dims == 1 else x[:, d : d + 1]
            columns.append(2 * (xd - lo) / (hi - lo) - 1)
        if not self.static:
            columns.append(2 * t / self.problem.t_end - 1)
        return columns

    def inputs(self, x: Tensor, t: Tensor | None) -> Tensor:
        """Network inputs [N, F] of points x [N, D], t [N, 1] (physical units)."""
        columns = self.scale(x, t)
        return torch.cat(columns, dim=-1) if len(columns) > 1 else columns[0]

    def evaluate(self, model: nn.Module, x: Tensor, t: Tensor | None) -> Tensor:
        """u(x, t) at points x [N, D], t [N, 1] (physical units) -> [N, C]."""
        return model(self.inputs(x, t))

    def to_device(self, tensor: Tensor) -> Tensor:
        return tensor.to(self.device, self.dtype)

    # -- output grid -------------------------------------------------------------------------
    def output_axes(self) -> list[Tensor]:
        """Cell centres of every spatial axis of the output grid, float64 [S_d] each."""
        return [self.problem.grid.cell_centres(d) for d in range(self.num_spatial_dims)]

    @staticmethod
    def grid_points(axes: Sequence[Tensor], ts: Tensor) -> tuple[Tensor, Tensor]:
        """All points of the tensor grid ``ts`` x ``axes`` in (t, x_1, ..., x_D) order:
        x [N, D], t [N, 1] with N = T prod(S_d)."""
        mesh = torch.meshgrid(ts, *axes, indexing="ij")
        t = mesh[0].reshape(-1, 1)
        if not axes:
            return t.new_zeros(t.shape[0], 0), t
        if len(axes) == 1:
            return mesh[1].reshape(-1, 1), t
        return torch.stack([m.reshape(-1) for m in mesh[1:]], dim=-1), t

    @torch.no_grad()
    def on_grid(self, model: nn.Module, axes: Sequence[Tensor], ts: Tensor) -> Tensor:
        """u on the tensor grid ``ts`` [T] x ``axes`` [S_d]: [1, T, C, *S] float64, CPU."""
        x, t = self.grid_points(axes, ts)
        values = torch.cat(
            [
                self.evaluate(model, self.to_device(xc), self.to_device(tc))
                for xc, tc in zip(x.split(CHUNK), t.split(CHUNK), strict=True)
            ]
        )
        shape = [len(ts), *(len(a) for a in axes)]
        values = values.double().cpu().reshape(*shape, -1)  # [T, *S, C]
        return values.movedim(-1, 1)[None]

    def predict(self, model: nn.Module) -> Tensor:
        """The prediction on the output grid (problem times x cell centres), [1, T, C, *S]."""
        return self.on_grid(model, self.output_axes(), self.problem.times())

    # -- validation --------------------------------------------------------------------------
    def _validation_grid(self) -> tuple[list[Tensor], Tensor, Tensor | None]:
        """Axes, times and reference of the validation grid (``eval_nx`` x ``eval_nt``)."""
        c, p = self.config, self.problem
        if self.static or not c.eval_nt:
            ts = p.times()
        else:
            ts = torch.linspace(0, p.t_end, c.eval_nt, dtype=torch.float64)
        if self.num_spatial_dims == 1 and c.eval_nx:
            lo, hi = p.grid.lower[0], p.grid.upper[0]
            xs = torch.linspace(lo, hi, c.eval_nx, dtype=torch.float64)
            return [xs], ts, p.reference(ts, self.params, x=xs)
        return self.output_axes(), ts, p.reference(ts, self.params)

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Relative L2 error against the problem's reference on the validation grid; for
        problems without one, the problem's own metrics of the output-grid prediction."""
        if self._validation is None:
            self._validation = self._validation_grid()
        axes, ts, exact = self._validation
        if exact is None:
            return {
                k: float(v)
                for k, v in self.problem.metrics(self.predict(model), self.params).items()
            }
        prediction = self.on_grid(model, axes, ts)
        return {"rel_l2": float((prediction - exact).norm() / exact.norm())}

    # -- residual ----------------------------------------------------------------------------
    def residual(self, model: nn.Module) -> float | None:
        """Mean |R| of the problem's PDE residual R over the output grid (all channels);
        None for problems without a residual."""
        x, t = self.grid_points(self.output_axes(), self.problem.times())
        total, count = 0.0, 0
        for xc, tc in zip(x.split(RESIDUAL_CHUNK), t.split(RESIDUAL_CHUNK), strict=True):
            xc = self.to_device(xc).requires_grad_(True)
            tc = self.to_device(tc).requires_grad_(not self.static)
            with torch.enable_grad():
                u = self.evaluate(model, xc, tc)
                try:
                    r = self.problem.pde_residual(u, xc, tc, self._params_on_device)
                except NotImplementedError:
                    return None
            total += float(r.detach().abs().double().sum())
            count += r.numel()
        return total / count
