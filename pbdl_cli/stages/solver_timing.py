"""How long the solver that made a grid method's test data takes per output interval:
what a learned rollout replaces (``pbdl evaluate``'s ``runtime.reference_solver`` and
``speedup``, for datasets simulated on a finer grid)."""

from __future__ import annotations

import time
from typing import Any

import torch

from pbdl_cli.methods.grid import GridMethod
from pbdl_cli.problems import PROBLEMS
from pbdl_cli.stages.generate import refined_simulation


def reference_solver_runtime(method: GridMethod, max_steps: int = 10) -> dict[str, Any] | None:
    """Seconds per output interval of the solver that made the test split of a grid
    method, where it was simulated on a finer grid (``data.refine`` > 1; ``None``
    otherwise), on every test trajectory at once, on the run's device and dtype: what a
    learned rollout replaces. Times up to ``max_steps`` intervals from the test states'
    first frame (repeated onto the fine cells), after one untimed interval."""
    directory = method.directory
    refine = directory.refine("test")
    stored = directory.stored_config("test")
    if refine <= 1 or stored is None:
        return None
    problem = PROBLEMS.build(stored.problem)
    fine_problem, solver = refined_simulation(problem, stored.solver, refine)
    device, dtype = method.device, method.dtype
    first, _, _ = method.trajectories("test")
    state = first[:, -1].to(device, dtype)
    for axis in range(2, state.dim()):
        state = state.repeat_interleave(refine, dim=axis)
    params = {k: v.to(device, dtype) for k, v in directory.params("test").items()}
    steps = max(1, min(max_steps, method.num_times - 1))
    dt = fine_problem.dt
    with torch.no_grad():
        state = solver(state, dt, params)  # warm-up (allocations, kernels)
        _synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            state = solver(state, dt, params)
        _synchronize(device)
        seconds = time.perf_counter() - start
    return {
        "seconds_per_step": seconds / steps,
        "steps_timed": steps,
        "grid": list(fine_problem.grid.shape),
        "refine": refine,
        "solver": str(stored.solver.name),
    }


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
