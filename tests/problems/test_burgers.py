"""The Burgers problem: configuration checks, parameter sampling, initial conditions."""

from __future__ import annotations

import math

import pytest
import torch

from pbdl_cli.errors import PbdlError
from tests.conftest import build


@pytest.mark.parametrize("ic", ["sines", "grf"])
@pytest.mark.parametrize("bc", ["periodic", "dirichlet"])
def test_initial_state_is_the_same_function_at_every_resolution(ic, bc):
    """nx = 64 cell centres are every third nx = 192 centre; same seed, same function."""
    coarse, _ = build({"nx": 64, "ic": ic, "bc": bc})
    fine, _ = build({"nx": 192, "ic": ic, "bc": bc})
    params = {"nu": torch.full((1,), 0.01)}
    u_coarse = coarse.initial_state(params, torch.Generator().manual_seed(5))
    u_fine = fine.initial_state(params, torch.Generator().manual_seed(5))
    torch.testing.assert_close(coarse.coords()["x"], fine.coords()["x"][1::3])
    if ic == "sines":
        torch.testing.assert_close(u_fine[..., 1::3], u_coarse, rtol=0, atol=1e-12)
    else:  # the fine field adds modes 33..96, whose energy is small
        diff = (u_fine[..., 1::3] - u_coarse).norm() / u_coarse.norm()
        assert diff < 5e-3, diff


@pytest.mark.parametrize("bc", ["periodic", "dirichlet"])
def test_random_initial_conditions_are_scaled_and_satisfy_the_boundary(bc):
    problem, _ = build({"nx": 256, "ic": "sines", "bc": bc, "ic_amplitude": 0.7})
    params = problem.sample_params(16, torch.Generator().manual_seed(0))
    u = problem.initial_state(params, torch.Generator().manual_seed(1))
    assert u.shape == (16, 1, 256) and u.dtype == torch.float64
    peak = u.abs().amax(dim=-1)
    assert torch.allclose(peak, torch.full_like(peak, 0.7), atol=2e-3)  # max on cell centres
    grf, _ = build({"nx": 256, "ic": "grf", "bc": bc})
    v = grf.initial_state({"nu": torch.ones(400)}, torch.Generator().manual_seed(2))
    assert 0.85 < v.std().item() < 1.15  # unit pointwise standard deviation
    if bc == "dirichlet":  # values extrapolated to the walls vanish
        for field in (u, v):
            walls = torch.stack(
                [(3 * field[..., 0] - field[..., 1]) / 2, (3 * field[..., -1] - field[..., -2]) / 2]
            )
            assert walls.abs().max() < 0.05


def test_viscosity_is_fixed_or_log_uniform():
    fixed, _ = build({"nu": 0.03})
    assert fixed.sample_params(5, torch.Generator())["nu"].tolist() == [0.03] * 5
    ranged, _ = build({"nu_range": [1e-3, 1e-1]})
    nu = ranged.sample_params(4000, torch.Generator().manual_seed(0))["nu"]
    assert nu.min() >= 1e-3 and nu.max() <= 1e-1
    logs = nu.log10()
    assert abs(logs.mean().item() + 2) < 0.03  # log-uniform: mean of log10 is -2
    assert abs((logs < -2.5).float().mean().item() - 0.25) < 0.03


def test_times_grid_and_slug():
    problem, _ = build(
        {"nx": 100, "t_end": 0.5, "dt": 0.1, "nu": 0.02, "ic": "sines", "bc": "periodic"}
    )
    assert problem.times().tolist() == pytest.approx([0, 0.1, 0.2, 0.3, 0.4, 0.5])
    x = problem.coords()["x"]
    assert x[0].item() == pytest.approx(-1 + 0.01) and x[-1].item() == pytest.approx(1 - 0.01)
    assert problem.slug() == "sines_periodic_nx100_nu0.02"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"nx": 2}, "nx must be"),
        ({"nu": 0.0}, "nu must be"),
        ({"nu_range": [0.1, 0.01]}, "nu_range"),
        ({"t_end": 1.0, "dt": 0.3}, "multiple"),
        ({"ic": "square"}, "ic"),
    ],
)
def test_invalid_settings_are_rejected(override, message):
    with pytest.raises(PbdlError, match=message):
        build(override)


def test_reference_at_t0_is_minus_sine():
    problem, _ = build({"nx": 64, "ic": "sine", "nu": 0.01 / math.pi})
    ref = problem.reference(torch.tensor([0.0]), {"nu": torch.tensor([0.01 / math.pi])})
    expected = -torch.sin(math.pi * problem.coords()["x"])
    torch.testing.assert_close(ref[0, 0, 0], expected)
