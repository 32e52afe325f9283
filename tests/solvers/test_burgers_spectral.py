"""burgers_spectral (pbdl_cli/solvers/burgers_spectral.py): options and caches that a
user changes between calls — the ETDRK4 coefficients must follow the viscosity, and
``dealias`` must decide whether the quadratic term folds back into resolved modes."""

from __future__ import annotations

import math

import torch

from tests.conftest import build, initial

F64 = torch.float64
PERIODIC = {"nx": 64, "bc": "periodic", "ic": "sines", "nu": 0.05, "dt": 0.05}


def test_one_solver_stepping_two_viscosities_in_turn_matches_fresh_solvers():
    """The coefficient cache is keyed by (step, nu): a solver that alternates between two
    viscosities with the same step must give what a fresh solver gives for each."""
    problem, shared = build(PERIODIC, {"substeps": 2})
    _, u0 = initial(problem, batch=2, seed=3)
    viscosities = (0.01, 0.2)
    states = {nu: u0.clone() for nu in viscosities}
    fresh = {nu: build(PERIODIC, {"substeps": 2})[1] for nu in viscosities}
    expected = {nu: u0.clone() for nu in viscosities}
    worst = 0.0
    with torch.no_grad():
        for _ in range(4):
            for nu in viscosities:
                params = {"nu": torch.full((2,), nu, dtype=F64)}
                states[nu] = shared(states[nu], problem.dt, params)
                expected[nu] = fresh[nu](expected[nu], problem.dt, params)
                worst = max(worst, float((states[nu] - expected[nu]).abs().max()))
    # measured: 0 (the same arithmetic); a cache that reuses the other viscosity's
    # coefficients gives 0.68 here
    assert worst == 0.0
    # the two viscosities really give different flows (a cache hit would hide this)
    assert float((states[0.01] - states[0.2]).abs().max()) > 0.1


def test_a_batch_with_two_viscosities_matches_its_members_alone():
    problem, solver = build(PERIODIC, {"substeps": 2})
    _, u0 = initial(problem, batch=2, seed=4)
    nu = torch.tensor([0.01, 0.2], dtype=F64)
    with torch.no_grad():
        together = solver(u0, problem.dt, {"nu": nu})
        alone = [solver(u0[b : b + 1], problem.dt, {"nu": nu[b : b + 1]}) for b in range(2)]
    # measured: 0 in float64
    torch.testing.assert_close(together, torch.cat(alone), rtol=0, atol=1e-15)


def test_dealias_removes_the_folded_mode_of_the_quadratic_term():
    """u = sin(k x) with k = 0.4 m (m = 64 points): u^2 has the mode 2k = 0.8 m, beyond
    Nyquist. Without dealiasing it folds back to m - 2k (mode 12 here); the 3/2
    rule leaves the resolved modes of (u^2)_x empty."""
    m = PERIODIC["nx"]
    k = round(0.4 * m)  # 26
    x = torch.arange(m, dtype=F64) * 2 * math.pi / m
    u = torch.sin(k * x).view(1, 1, m)
    folded = {}
    for dealias in (True, False):
        _, solver = build(PERIODIC, {"dealias": dealias})
        term = solver.nonlinear(solver.encode(u))  # [1, 1, m // 2 + 1]
        folded[dealias] = float(term.abs().amax())
    alias_mode = m - 2 * k
    _, aliased = build(PERIODIC, {"dealias": False})
    term = aliased.nonlinear(aliased.encode(u))
    assert float(term[..., alias_mode].abs()) == folded[False]  # the largest mode
    # measured: 3.2e-14 with dealias (round-off), |N_12| = 4.71 = 3 pi / 2 without
    assert folded[True] < 1e-12
    assert folded[False] > 1.0
