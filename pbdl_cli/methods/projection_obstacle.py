"""The zero-shot obstacle test of a learned pressure projection (PBDL book ch. 9).

A trained projection p = f(div u~) (``method=projection``) never sees an obstacle in
training. The book plugs it into a buoyant smoke simulation with a box obstacle and
compares the last frame with the same simulation using the exact projection with the
obstacle. This module runs that experiment, batched, without gradients:

- periodic box of ``n``^2 cells of size ``dx`` (the book: 32^2, dx = 1), smoke inflow
  ``0.6 x Sphere((16, 5), r=3)`` added every step, obstacle ``Box(x=(12, 20),
  y=(18, 20))`` (positions scaled by n dx / 32), ``dt = 0.1``, 50 steps;
- one step: smoke s <- MacCormack(s, u) + inflow; u <- u + dt (0, 1) s (the buoyancy,
  s resampled to the v faces); u <- MacCormack(u, u); obstacle boundary condition (every
  face touching a solid cell is 0); projection; obstacle boundary condition again;
- three runs side by side in one batch: ``nn`` (the network's projection: p = f(div u),
  u <- u - grad p with the periodic gradient, as the book's ``step_nn``), ``exact`` (the
  projection with the obstacle: CG on div(A grad p) = div u, A = 0 on the obstacle's
  faces, as ``make_incompressible(v, obstacle)``) and ``free`` (no projection at all: the
  baseline that tells how much the projection changes the result).

Reported (:class:`ObstacleResult`): the final smoke and velocity of each run, the mean
|div u| over the fluid cells after every step (and, for ``nn``, before its projection:
what the network had to remove), and the relative L2 difference of the final smoke of
``nn`` and ``free`` to ``exact``.

Shapes: smoke [3, n, n] and velocity [3, 2, n, n] (staggered, as in ``problem=hhd``),
runs in the order of :data:`RUNS`; divergences [3, steps].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor

from pbdl_cli.numerics.advection import Scheme, advect_centred, advect_velocity
from pbdl_cli.numerics.geometry import Boundary, box_mask, sphere_mask
from pbdl_cli.numerics.mac import MacGrid
from pbdl_cli.numerics.pressure import PressureSystem, project

#: the simulations of the batch, in order
RUNS = ("nn", "exact", "free")
#: the book's geometry on its 32^2 box (scaled with n)
BOOK_N = 32
INFLOW_CENTRE, INFLOW_RADIUS, INFLOW_RATE = (16.0, 5.0), 3.0, 0.6
OBSTACLE_LOWER, OBSTACLE_UPPER = (12.0, 18.0), (20.0, 20.0)

#: the network's pressure of a divergence [B, 1, n, n]: [B, n, n]
Pressure = Callable[[Tensor], Tensor]


@dataclasses.dataclass
class ObstacleResult:
    """What :func:`obstacle_test` measured (see the module docstring)."""

    smoke: Tensor  # [3, n, n] final smoke of nn, exact, free
    velocity: Tensor  # [3, 2, n, n] final staggered velocity
    divergence: Tensor  # [3, steps] mean |div u| over fluid cells after each step
    nn_input_divergence: Tensor  # [steps] the same for nn before its projection
    solid: Tensor  # [n, n] obstacle mask

    def run(self, name: str) -> int:
        return RUNS.index(name)

    def marker_rel_l2(self, name: str) -> float:
        """||s_name - s_exact|| / ||s_exact|| of the final smoke."""
        exact = self.smoke[self.run("exact")]
        diff = self.smoke[self.run(name)] - exact
        return float(diff.norm() / exact.norm().clamp_min(1e-30))

    def metrics(self) -> dict[str, float]:
        """The numbers ``pbdl evaluate`` stores (``obstacle_*``)."""
        div = self.divergence.mean(dim=1)
        return {
            "obstacle_marker_rel_l2": self.marker_rel_l2("nn"),
            "obstacle_marker_rel_l2_unprojected": self.marker_rel_l2("free"),
            "obstacle_div_nn": float(div[self.run("nn")]),
            "obstacle_div_exact": float(div[self.run("exact")]),
            "obstacle_div_unprojected": float(div[self.run("free")]),
            "obstacle_div_nn_final": float(self.divergence[self.run("nn"), -1]),
            "obstacle_div_nn_input": float(self.nn_input_divergence.mean()),
        }


def obstacle_grid(
    n: int = BOOK_N,
    dx: float = 1.0,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> MacGrid:
    """The periodic n^2 box of cell size dx with the book's box obstacle (its position
    scaled with the box: the book's box is 32 x 32)."""
    size = n * dx
    f = size / BOOK_N
    solid = box_mask(
        (n, n),
        (0.0, 0.0),
        (size, size),
        tuple(f * v for v in OBSTACLE_LOWER),
        tuple(f * v for v in OBSTACLE_UPPER),
    )
    return MacGrid(
        (n, n), (0.0, 0.0), (size, size), Boundary.periodic(), solid, device=device, dtype=dtype
    )


def _inflow(mac: MacGrid) -> Tensor:
    f = mac.upper[0] / BOOK_N
    centre = tuple(f * v for v in INFLOW_CENTRE)
    mask = sphere_mask((mac.nx, mac.ny), mac.lower, mac.upper, centre, f * INFLOW_RADIUS)
    return INFLOW_RATE * mask.to(mac.device, mac.dtype)


def _mean_abs_div(mac: MacGrid, fx: Tensor, fy: Tensor) -> Tensor:
    assert mac.fluid is not None
    div = mac.divergence(fx, fy).abs() * mac.fluid
    return div.sum(dim=(1, 2)) / mac.fluid.sum(dim=(1, 2))


@torch.no_grad()
def obstacle_test(
    pressure: Pressure,
    *,
    n: int = BOOK_N,
    dx: float = 1.0,
    steps: int = 50,
    dt: float = 0.1,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    cg_tol: float = 1e-5,
) -> ObstacleResult:
    """Run the three smoke simulations (module docstring) with the network ``pressure``
    on n^2 cells of size ``dx`` (the network's training grid spacing: a pressure learned
    for one dx is not the projection for another); ``cg_tol`` is the relative tolerance
    of the exact projection's solve."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    mac = obstacle_grid(n, dx, device=device, dtype=dtype)
    system = PressureSystem(mac, "cg", tol=cg_tol, max_iter=10 * n * n)
    inflow = _inflow(mac)
    nn, exact = RUNS.index("nn"), RUNS.index("exact")
    smoke = torch.zeros(len(RUNS), n, n, device=device, dtype=dtype)
    fx, fy = torch.zeros_like(smoke), torch.zeros_like(smoke)
    divergence, before = [], []
    for _ in range(steps):
        smoke = advect_centred(mac, smoke, fx, fy, dt, Scheme.maccormack) + inflow
        fy = fy + dt * mac.centre_to_faces(smoke, 1)  # buoyancy (0, 1) s
        fx, fy = advect_velocity(mac, fx, fy, dt, Scheme.maccormack)
        fx, fy = mac.apply_bc(fx, fy)
        # the network's projection (periodic gradient, as the book's step_nn)
        before.append(_mean_abs_div(mac, fx[nn : nn + 1], fy[nn : nn + 1])[0])
        p = pressure(mac.divergence(fx[nn : nn + 1], fy[nn : nn + 1])[:, None])
        gx, gy = mac.gradient(p)
        fx, fy = fx.clone(), fy.clone()
        fx[nn], fy[nn] = fx[nn] - gx[0], fy[nn] - gy[0]
        # the exact projection with the obstacle
        px, py, _, _ = project(mac, fx[exact : exact + 1], fy[exact : exact + 1], system)
        fx[exact], fy[exact] = px[0], py[0]
        fx, fy = mac.apply_bc(fx, fy)
        divergence.append(_mean_abs_div(mac, fx, fy))
    assert mac.solid is not None
    return ObstacleResult(
        smoke=smoke,
        velocity=torch.stack([fx, fy], dim=1),
        divergence=torch.stack(divergence, dim=1),
        nn_input_divergence=torch.stack(before),
        solid=mac.solid[0],
    )
