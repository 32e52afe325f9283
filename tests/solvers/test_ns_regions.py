"""ns_mac: interior velocity regions (inflow strips), the direct pressure solve and the
problem's viscosity hook."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pbdl_cli.numerics.geometry import Boundary, Side, VelocityRegion, sphere_mask
from pbdl_cli.numerics.mac import MacGrid
from pbdl_cli.numerics.pressure import PressureSystem, SymmetricSolve
from pbdl_cli.problems.base import Grid, Problem
from pbdl_cli.problems.flow import FlowSetup
from pbdl_cli.registry import PluginConfig
from pbdl_cli.solvers import SOLVERS

F64 = torch.float64
WALL, PERIODIC = Side("no_slip"), Side("periodic")
CHANNEL = Boundary(WALL, WALL, Side("inflow", (0.0, 1.0)), Side("outflow"))


@dataclasses.dataclass
class StripConfig(PluginConfig):
    nx: int = 10
    ny: int = 16
    speed: float = 1.0
    obstacle: bool = True


class Strip(Problem):
    """A channel with an inflow strip y <= 2 (v = speed), a disc, Re as parameter."""

    Config = StripConfig
    fields = ("u", "v")
    t_end = 1.0
    dt = 0.5

    @property
    def grid(self) -> Grid:
        c = self.config
        return Grid((0.0, 0.0), (float(c.nx), float(c.ny)), (c.nx, c.ny), "dirichlet")

    def sample_params(self, n, generator):
        return {"re": torch.full((n,), 50.0, dtype=F64)}

    def initial_state(self, params, generator):
        c = self.config
        g = torch.Generator().manual_seed(0)
        return 0.1 * torch.randn(params["re"].shape[0], 2, c.nx, c.ny, generator=g, dtype=F64)

    def viscosity(self, params):
        return 1.0 / params["re"]

    def flow_setup(self, params):
        c = self.config
        shape, hi = (c.nx, c.ny), (c.nx, c.ny)
        solid = sphere_mask(shape, (0, 0), hi, (c.nx / 2, c.ny / 2), 2.0) if c.obstacle else None
        speed = params.get("speed", c.speed)
        velocity = (
            torch.stack([torch.zeros_like(speed), speed], -1)
            if torch.is_tensor(speed)
            else (0.0, speed)
        )
        strip = VelocityRegion(upper=(None, 2.0), velocity=velocity)
        return FlowSetup(boundary=CHANNEL, obstacle=solid, velocity_regions=(strip,))


def _solver(problem, **options):
    return SOLVERS.build({"name": "ns_mac", "pressure": "direct", **options}, problem=problem)


def test_region_faces_are_fixed_by_position():
    region = VelocityRegion(lower=(2.0, None), upper=(None, 2.0), velocity=(0.5, 1.5))
    mac = MacGrid((4, 6), (0, 0), (4.0, 6.0), CHANNEL, regions=(region,), dtype=F64)
    x, y = mac.face_positions(1)  # v faces: x = i + 1/2, y = j
    inside = (x >= 2) & (y <= 2)
    assert torch.equal(mac.fixed_y[0] & (y > 0), inside & (y > 0))
    assert torch.equal(mac.value_y[0][inside], torch.full((int(inside.sum()),), 1.5, dtype=F64))
    xu, yu = mac.face_positions(0)  # u faces: x = i, y = j + 1/2; walls at x = 0, 4
    inner = (xu > 0) & (xu < 4)
    assert torch.equal(mac.fixed_x[0] & inner, (xu >= 2) & (yu <= 2) & inner)
    with pytest.raises(ValueError, match="lower"):
        VelocityRegion(lower=(3.0, None), upper=(1.0, None))


def test_strip_holds_its_velocity_and_flow_stays_divergence_free():
    problem = Strip(StripConfig(name="strip"))
    solver = _solver(problem)
    params = problem.sample_params(2, torch.Generator())
    state = problem.initial_state(params, torch.Generator())
    for _ in range(3):
        state = solver(state, problem.dt, params)
    # v faces at y = 0, 1, 2 and u faces at y = 0.5, 1.5: exactly the prescribed values
    assert torch.equal(state[:, 1, :, :3], torch.ones_like(state[:, 1, :, :3]))
    assert torch.equal(state[:, 0, :, :2], torch.zeros_like(state[:, 0, :, :2]))
    assert float(solver.last_info.divergence.max()) < 1e-10
    assert solver.config.pressure.value == "direct"


def test_viscosity_comes_from_the_problem_hook():
    problem = Strip(StripConfig(name="strip"))
    params = problem.sample_params(1, torch.Generator())
    solver = _solver(problem, diffusion="explicit", substeps=None)
    # 1/Re = 0.02 on unit cells: explicit limit 0.45 / (0.02 * 2) = 11.25 > dt
    assert float(solver.stable_dt(problem.initial_state(params, None), params)[0]) == pytest.approx(
        11.25
    )


def test_gradients_flow_into_the_region_velocity_not_the_overwritten_faces():
    problem = Strip(StripConfig(name="strip", obstacle=True))
    solver = _solver(problem)
    speed = torch.tensor([1.0, 0.7], dtype=F64, requires_grad=True)
    params = {"re": torch.full((2,), 50.0, dtype=F64), "speed": speed}
    state = problem.initial_state(params, None).requires_grad_(True)
    out = solver(state, problem.dt, params)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    (out * weight).sum().backward()
    assert speed.grad is not None and bool((speed.grad != 0).all())
    assert float(state.grad[:, 1, :, :3].abs().max()) == 0.0  # the strip's v faces
    assert float(state.grad[:, 1, :, 6:].abs().max()) > 0


def test_region_step_gradcheck():
    problem = Strip(StripConfig(name="strip", nx=6, ny=8, obstacle=False))
    solver = _solver(problem, substeps=1)
    params = problem.sample_params(1, torch.Generator())
    state = problem.initial_state(params, None).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: solver(s, 0.5, params), (state,), atol=1e-6)


BOUNDARIES = {
    "channel": CHANNEL,
    "closed": Boundary.closed(),
    "periodic_x": Boundary(PERIODIC, PERIODIC, Side("inflow", (0.0, 1.0)), Side("outflow")),
    "periodic_y": Boundary(Side("inflow", (1.0, 0.0)), Side("outflow"), PERIODIC, PERIODIC),
    "closed_periodic_x": Boundary(PERIODIC, PERIODIC, WALL, WALL),
}


@pytest.mark.parametrize("obstacle", [True, False])
@pytest.mark.parametrize("name", list(BOUNDARIES))
def test_direct_solve_matches_cg(name, obstacle):
    shape, hi = (7, 9), (7.0, 11.7)
    solid = sphere_mask(shape, (0, 0), hi, (3.5, 5), 1.6) if obstacle else None
    boundary = BOUNDARIES[name]
    # a strip needs an outflow: in a closed box its cells would be isolated fluid cells,
    # outside the constant null space both solvers assume
    strip = VelocityRegion(upper=(None, 2.0), velocity=(0.0, 1.0))
    regions = (strip,) if boundary.has_outflow else ()
    mac = MacGrid(shape, (0, 0), hi, boundary, solid, regions=regions, dtype=F64)
    rhs = torch.randn(3, *shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    if mac.fluid is not None:
        rhs = rhs * mac.fluid
    cg = PressureSystem(mac, "cg", tol=1e-13, max_iter=5000).solve(rhs)
    direct = PressureSystem(mac, "direct")
    p = direct.solve(rhs)
    assert float(direct.info.residual.max()) < 1e-10

    def correction(q):  # what the projection subtracts (p itself is defined up to constants)
        gx, gy = mac.gradient(q)
        return mac.open_x * gx, mac.open_y * gy

    for a, b in zip(correction(p), correction(cg), strict=True):
        assert torch.allclose(a, b, atol=1e-9)


def test_direct_solve_gradient_is_the_adjoint_solve():
    mac = MacGrid(
        (5, 6),
        (0, 0),
        (5.0, 6.0),
        CHANNEL,
        sphere_mask((5, 6), (0, 0), (5, 6), (2.5, 3), 1),
        dtype=F64,
    )
    system = PressureSystem(mac, "direct")
    rhs = torch.randn(2, 5, 6, dtype=F64, generator=torch.Generator().manual_seed(2))
    rhs = (rhs * mac.fluid).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda r: SymmetricSolve.apply(r, system), (rhs,))


def test_direct_needs_a_non_periodic_axis():
    mac = MacGrid((4, 4), (0, 0), (1.0, 1.0), Boundary.periodic(), dtype=F64)
    with pytest.raises(ValueError, match="non-periodic"):
        PressureSystem(mac, "direct")
