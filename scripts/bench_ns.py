"""Benchmark the ``ns_mac`` flow solver: seconds per step of a buoyant smoke plume.

The problem is ``smoke`` (PBDL book §3.7) in a closed square box of n x n cells for
n = 64, 128, 256 (``--sizes``): domain 100 x 100, inflow disc at (50, 15) of radius 10
(so the plume covers the same cells at every resolution), 0.2 per step, buoyancy 1,
nu 0.01, dt 1.5, with the book's scheme (semi-Lagrangian advection of marker and
velocity, explicit diffusion, one substep per step). For each pressure solver
(``dct``: exact, FFT of the mirror extension; ``cg``: Jacobi-preconditioned conjugate
gradients, relative tolerance ``--cg-tol``) and dtype (float32, float64):

* ``s_per_step``: median over ``--repeats`` runs of ``--steps`` steps, each from the same
  state after ``--warmup`` steps (the plume has started to rise, so the pressure solve
  is not trivial; kernels and caches are warm);
* ``cg_iterations_mean`` / ``_max``: CG iterations per step over the timed steps (0 for dct);
* ``max_divergence``: max |div u| after the last projection, and relative to the
  divergence before it (``relative_divergence``).

PhiFlow reference (the issue): PhiFlow 3.4 needs about 0.3 s per step at 128 x 128 with
its SciPy CG in float64. ``speedup_vs_phiflow`` = 0.3 / our s_per_step for every
128 x 128 float64 entry. Timings on a shared CPU are noisy.

Usage:
    python scripts/bench_ns.py [--out scripts/results/bench_ns.json] [--sizes 64 128 256]
        [--steps 10 --warmup 10 --repeats 3] [--device auto] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "bench_ns.json"
PHIFLOW_S_PER_STEP = 0.3  # PhiFlow 3.4, 128 x 128, SciPy CG, float64 (from the issue)
DT = 1.5


def build(n: int, pressure: str, cg_tol: float):
    from pbdl_cli.plugins import load_plugins
    from pbdl_cli.problems import PROBLEMS
    from pbdl_cli.solvers import SOLVERS

    load_plugins()
    problem = PROBLEMS.build(
        {
            "name": "smoke",
            "resolution": [n, n],
            "domain": [100.0, 100.0],
            "inflow_center": [50.0, 15.0],
            "inflow_radius": 10.0,
            "inflow_amount": 0.2,
            "nu": 0.01,
            "dt": DT,
            "t_end": DT,
        }
    )
    solver = SOLVERS.build(
        {
            "name": "ns_mac",
            "advection": "semi_lagrangian",
            "scalar_advection": "semi_lagrangian",
            "diffusion": "explicit",
            "substeps": 1,
            "pressure": pressure,
            "cg_tol": cg_tol,
            "cg_max_iter": 20000,
        },
        problem=problem,
    )
    return problem, solver


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_one(
    n: int, pressure: str, dtype: torch.dtype, device: torch.device, args: argparse.Namespace
) -> dict[str, Any]:
    problem, solver = build(n, pressure, args.cg_tol)
    params = problem.sample_params(1, torch.Generator().manual_seed(0))
    params = {k: v.to(device, dtype) for k, v in params.items()}
    state = problem.initial_state(params, torch.Generator()).to(device, dtype)
    with torch.no_grad():
        for _ in range(args.warmup):
            state = solver(state, DT, params)
        sync(device)
        times, iterations = [], []
        divergence = relative = float("nan")
        for _ in range(args.repeats):
            x = state.clone()
            sync(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                x = solver(x, DT, params)
                if pressure == "cg":  # reading the count syncs; dct has none to read
                    iterations.append(int(solver.last_info.iterations.max()))
            sync(device)
            times.append((time.perf_counter() - start) / args.steps)
        info = solver.last_info
        divergence = float(info.divergence.max())
        # divergence before the last projection: undo it from the stored pressure
        before = _divergence_before(solver, x, params)
        relative = divergence / before if before > 0 else float("nan")
    peak = float(x[:, :2].abs().max())
    return {
        "n": n,
        "pressure": pressure,
        "dtype": str(dtype).removeprefix("torch."),
        "s_per_step": statistics.median(times),
        "s_per_step_all": times,
        "cg_iterations_mean": statistics.fmean(iterations) if iterations else 0,
        "cg_iterations_max": max(iterations) if iterations else 0,
        "max_divergence": divergence,
        "relative_divergence": relative,
        "max_velocity": peak,
    }


def _divergence_before(solver: Any, state: Tensor, params: dict) -> float:
    """max |div u*| of the last projection: div of the state plus the pressure gradient."""
    from pbdl_cli.numerics.mac import MacGrid

    problem = solver.problem
    setup = problem.flow_setup(params)
    g = problem.grid
    mac = MacGrid(
        g.shape, g.lower, g.upper, setup.boundary, None, device=state.device, dtype=state.dtype
    )
    fx, fy = mac.extend(state[:, 0], state[:, 1])
    gx, gy = mac.gradient(solver.last_pressure)
    fx, fy = fx + mac.open_x * gx, fy + mac.open_y * gy
    return float(mac.divergence(fx, fy).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--pressures", nargs="+", default=["dct", "cg"])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    parser.add_argument("--warmup", type=int, default=10, help="steps before timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cg-tol", type=float, default=1e-5, help="relative CG tolerance")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (0: torch's default; 1 by default: on a small shared CPU "
        "intra-op threads mostly wait for each other)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)
    results = []
    for n in args.sizes:
        for pressure in args.pressures:
            for name in args.dtypes:
                r = bench_one(n, pressure, getattr(torch, name), device, args)
                if n == 128 and name == "float64":
                    r["speedup_vs_phiflow"] = PHIFLOW_S_PER_STEP / r["s_per_step"]
                results.append(r)
                print(
                    f"n={n:4d} {pressure:4s} {r['dtype']:8s} {r['s_per_step'] * 1e3:9.2f} ms/step"
                    f"  cg it {r['cg_iterations_mean']:7.1f} (max {r['cg_iterations_max']})"
                    f"  max|div| {r['max_divergence']:.2e} (rel {r['relative_divergence']:.1e})",
                    flush=True,
                )
    best = [r for r in results if r["n"] == 128 and r["dtype"] == "float64"]
    payload = {
        "benchmark": "ns_mac smoke plume in a closed square box (book scheme, SL advection)",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": __import__("os").cpu_count(),
        "settings": {
            "steps": args.steps,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "cg_tol_relative": args.cg_tol,
            "dt": DT,
            "domain": [100.0, 100.0],
            "inflow": {"center": [50.0, 15.0], "radius": 10.0, "amount": 0.2},
            "nu": 0.01,
        },
        "phiflow_reference_s_per_step": PHIFLOW_S_PER_STEP,
        "phiflow_reference": "PhiFlow 3.4, 128x128, SciPy CG, float64 (from the issue)",
        "speedup_vs_phiflow": {r["pressure"]: r["speedup_vs_phiflow"] for r in best},
        "results": results,
        "note": "2-core shared CPU: timings are noisy (medians over repeats)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
