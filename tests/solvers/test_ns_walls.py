"""ns_mac boundary velocities: a moving no-slip wall (the lid-driven cavity against
Ghia, Ghia & Shin 1982) and the refusal of a velocity where a side has no use for it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pbdl_cli.numerics.geometry import Boundary, Side, sphere_mask
from pbdl_cli.numerics.mac import MacGrid
from pbdl_cli.problems.base import Grid, Problem
from pbdl_cli.problems.flow import FlowSetup
from pbdl_cli.registry import PluginConfig
from pbdl_cli.solvers import SOLVERS

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
F64 = torch.float64
WALL = Side("no_slip")
#: Ghia, Ghia & Shin (1982), table I, Re = 100: u on the vertical centre-line x = 1/2
GHIA_RE100 = (
    (0.0547, -0.03717),
    (0.1016, -0.06434),
    (0.1719, -0.10150),
    (0.2813, -0.15662),
    (0.4531, -0.21090),
    (0.5000, -0.20581),
    (0.6172, -0.13641),
    (0.7344, 0.00332),
    (0.8516, 0.23151),
    (0.9531, 0.68717),
    (0.9766, 0.84123),
)


@dataclasses.dataclass
class CavityConfig(PluginConfig):
    n: int = 32
    lid: float = 1.0


class Cavity(Problem):
    """The unit square, lid y = 1 moving at u = lid, other walls at rest, nu = 1/100."""

    Config = CavityConfig
    fields = ("u", "v")
    t_end = 1.0
    dt = 1.0

    @property
    def grid(self) -> Grid:
        n = self.config.n
        return Grid((0.0, 0.0), (1.0, 1.0), (n, n), "dirichlet")

    def sample_params(self, n, generator):
        return {"nu": torch.full((n,), 0.01, dtype=F64)}

    def initial_state(self, params, generator):
        return torch.zeros(params["nu"].shape[0], 2, self.config.n, self.config.n, dtype=F64)

    def flow_setup(self, params):
        lid = Side("no_slip", (self.config.lid, 0.0))
        return FlowSetup(boundary=Boundary(WALL, WALL, WALL, lid))


def test_lid_driven_cavity_matches_ghia_at_re_100():
    """32 x 32 cells, MacCormack, explicit diffusion (46 substeps per unit time), dct
    pressure, run to t = 20 (about 3 s on one thread): steady (max change over the last
    unit of time 2.8e-6). Measured: max |u - u_Ghia| = 0.0085 on the 11 points (at
    y = 0.7344; 0.0034 on 48 x 48 cells: second order), so the tolerance 0.015 is 1.5 %
    of the lid speed."""
    problem = Cavity(CavityConfig(name="cavity"))
    solver = SOLVERS.build({"name": "ns_mac"}, problem=problem)
    params = problem.sample_params(1, torch.Generator())
    state = problem.initial_state(params, None)
    for _ in range(20):
        new = solver(state, 1.0, params)
        change, state = float((new - state).abs().max()), new
    assert change < 1e-4
    assert float(solver.last_info.divergence.max()) < 1e-10
    mac = MacGrid((32, 32), (0, 0), (1, 1), problem.flow_setup(params).boundary, dtype=F64)
    fx, _ = mac.extend(state[:, 0], state[:, 1])
    y = torch.tensor([[p[0] for p in GHIA_RE100]], dtype=F64)
    u = mac.sample_faces(fx, 0, torch.full_like(y, 0.5), y)[0]
    expected = torch.tensor([p[1] for p in GHIA_RE100], dtype=F64)
    assert float((u - expected).abs().max()) < 0.015
    # the flow is driven by the lid: clockwise, with the reverse flow below the centre
    assert float(u[4]) < -0.19 and float(u[-1]) > 0.8


def test_a_lid_at_rest_drives_nothing_and_the_first_step_is_linear_in_the_lid_speed():
    params = {"nu": torch.full((1,), 0.01, dtype=F64)}
    out = {}
    for lid in (0.0, 1.0, 2.0):
        problem = Cavity(CavityConfig(name="cavity", n=12, lid=lid))
        solver = SOLVERS.build({"name": "ns_mac", "substeps": 1}, problem=problem)
        out[lid] = solver(problem.initial_state(params, None), 0.01, params)
    assert float(out[0.0].abs().max()) == 0.0
    assert float(out[1.0][:, 0, 1:, -1].min()) > 0.01  # u faces under the lid (not x = 0)
    # from rest one substep is diffusion of the lid's ghost and a projection: linear
    assert torch.allclose(out[2.0], 2 * out[1.0], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Side("free_slip", (1.0, 0.0)), "free_slip side takes no velocity"),
        (lambda: Side("outflow", (0.0, 1.0)), "outflow side takes no velocity"),
        (lambda: Side("periodic", (0.0, 1.0)), "periodic side takes no velocity"),
        (lambda: Boundary(Side("no_slip", (1.0, 0.0)), WALL, WALL, WALL), "x_lo.*u = 1 must be 0"),
        (lambda: Boundary(WALL, WALL, WALL, Side("no_slip", (0.5, 1.0))), "y_hi.*v = 1 must be 0"),
        (lambda: Side("no_slip", (float("nan"), 0.0)), "finite"),
    ],
)
def test_a_velocity_without_meaning_is_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_a_moving_wall_sets_the_tangential_ghost():
    lid = Side("no_slip", (0.7, 0.0))
    mac = MacGrid((4, 5), (0, 0), (4.0, 5.0), Boundary(WALL, WALL, WALL, lid), dtype=F64)
    fx = torch.randn(1, 5, 5, dtype=F64, generator=torch.Generator().manual_seed(0))
    padded = mac.pad_faces(fx, 0)
    assert torch.allclose(padded[:, 1:-1, -1], 1.4 - fx[:, :, -1])  # u = 0.7 on the lid
    assert torch.allclose(padded[:, 1:-1, 0], -fx[:, :, 0])  # the bottom wall at rest
    assert torch.equal(mac.pad_faces(fx, 0, homogeneous=True)[:, 1:-1, -1], -fx[:, :, -1])


# -- inflow profiles ------------------------------------------------------------------
H, L = 4.1, 22.0  # the Schaefer-Turek channel (H = 0.41, L = 2.2), times 10


def schaefer_turek(ny: int = 20, peak: float = 1.5, tangential: float = 0.0) -> MacGrid:
    inflow = Side("inflow", (peak, tangential), profile="parabolic")
    boundary = Boundary(inflow, Side("outflow"), WALL, WALL)
    return MacGrid((5 * ny, ny), (0, 0), (L, H), boundary, dtype=F64)


def test_parabolic_inflow_faces_hold_the_parabola_and_its_flux():
    mac = schaefer_turek()
    u_in = mac.value_x[0, 0]  # the inflow faces x = 0, y = (j + 1/2) dy
    assert bool(mac.fixed_x[0, 0].all())
    y = (torch.arange(mac.ny, dtype=F64) + 0.5) * mac.dy
    point = 4 * 1.5 * y * (H - y) / H**2
    # face means of the parabola: its point values minus U h^2 / (3 H^2) (2e-3 here)
    assert torch.allclose(u_in, point - 1.5 * mac.dy**2 / (3 * H**2), atol=1e-12, rtol=0)
    # the mean flux is 2/3 U H exactly
    assert float(u_in.sum() * mac.dy) == pytest.approx(2 / 3 * 1.5 * H, rel=1e-12)
    assert float(u_in.max()) < 1.5 and float(u_in.min()) > 0


def test_a_parabolic_inflow_profiles_its_tangential_ghost_too():
    mac = schaefer_turek(ny=8, tangential=0.4)
    fy = torch.randn(1, mac.nx, mac.ny + 1, dtype=F64, generator=torch.Generator().manual_seed(3))
    ghost = mac.pad_faces(fy, 1)[:, 0, 1:-1]  # v ghosts left of x = 0, at y = j dy
    s = torch.arange(mac.ny + 1, dtype=F64) * mac.dy
    assert torch.allclose(ghost[0], 2 * 0.4 * 4 * s * (H - s) / H**2 - fy[0, 0], atol=1e-12)
    assert torch.equal(mac.pad_faces(fy, 1, homogeneous=True)[:, 0, 1:-1], -fy[:, 0])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Side("no_slip", profile="parabolic"), "needs an inflow side"),
        (lambda: Side("inflow", (1.0, 0.0), profile="cubic"), "cubic"),
        (
            lambda: Boundary(
                Side("inflow", (1.0, 0.0), profile="parabolic"), WALL, *[Side("periodic")] * 2
            ),
            "needs walls at its ends",
        ),
    ],
)
def test_a_profile_without_meaning_is_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@dataclasses.dataclass
class ChannelConfig(PluginConfig):
    ny: int = 12


class Channel(Problem):
    """The Schaefer-Turek 2D-1 layout in small: parabolic inflow (peak 0.3) at x = 0,
    outflow at x = L, walls, a cylinder at (2, 2) of radius 0.5, Re = 20."""

    Config = ChannelConfig
    fields = ("u", "v")
    t_end = 1.0
    dt = 0.5

    @property
    def grid(self) -> Grid:
        ny = self.config.ny
        return Grid((0.0, 0.0), (L, H), (5 * ny, ny), "dirichlet")

    def sample_params(self, n, generator):
        return {"nu": torch.full((n,), 0.01, dtype=F64)}

    def initial_state(self, params, generator):
        ny = self.config.ny
        return torch.zeros(params["nu"].shape[0], 2, 5 * ny, ny, dtype=F64)

    def flow_setup(self, params):
        g = self.grid
        inflow = Side("inflow", (0.3, 0.0), profile="parabolic")
        solid = sphere_mask(g.shape, g.lower, g.upper, (2.0, 2.0), 0.5)
        return FlowSetup(Boundary(inflow, Side("outflow"), WALL, WALL), obstacle=solid)


@pytest.mark.parametrize("pressure", ["direct", "cg"])
def test_a_parabolic_channel_run_stays_divergence_free(pressure):
    problem = Channel(ChannelConfig(name="channel"))
    solver = SOLVERS.build(
        {"name": "ns_mac", "pressure": pressure, "cg_tol": 1e-10}, problem=problem
    )
    params = problem.sample_params(1, torch.Generator())
    state = problem.initial_state(params, None)
    for _ in range(6):
        state = solver(state, 0.5, params)
    info = solver.last_info
    # measured: 1.5e-15 (direct), 1.9e-11 (cg)
    assert float(info.divergence.max()) < 1e-9
    mac = MacGrid(
        problem.grid.shape, (0, 0), (L, H), problem.flow_setup(params).boundary, dtype=F64
    )
    assert torch.equal(state[:, 0, 0], mac.value_x[:, 0])  # the inflow faces hold the profile
    flux_in = float(state[0, 0, 0].sum()) * mac.dy
    assert flux_in == pytest.approx(2 / 3 * 0.3 * H, rel=1e-12)
    # what enters leaves: the flux through every cross-section x = const is the same
    flux = state[0, 0].sum(dim=1) * mac.dy
    assert torch.allclose(flux, torch.full_like(flux, flux_in), rtol=1e-8)
