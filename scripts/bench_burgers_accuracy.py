"""Accuracy and cost of the Burgers solvers against the exact (Cole-Hopf) solution.

Raissi et al.'s benchmark: u_t + u u_x = (0.01/pi) u_xx on [-1, 1], u(x, 0) = -sin(pi x),
u(±1, t) = 0, evaluated at t = 1 (the steep front at x = 0 is fully formed). For each solver,
resolution and dtype the script records the relative L2 error at t = 1, the wall time of the
solve (median of ``--repeats``), and the number of substeps, and writes JSON.

Usage:
    python scripts/bench_burgers_accuracy.py [--out scripts/results/bench_burgers_accuracy.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_burgers_accuracy.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nx", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    args = parser.parse_args()

    from pbdl_cli.evaluation.metrics import rel_l2
    from pbdl_cli.plugins import load_plugins
    from pbdl_cli.problems import PROBLEMS
    from pbdl_cli.solvers import SOLVERS

    load_plugins()
    rows = []
    for solver_name in ("burgers_spectral", "burgers_sl"):
        for dtype in (torch.float32, torch.float64):
            for nx in args.nx:
                problem = PROBLEMS.build(
                    {
                        "name": "burgers",
                        "nx": nx,
                        "nu": 0.01 / math.pi,
                        "ic": "sine",
                        "bc": "dirichlet",
                        "t_end": 1.0,
                        "dt": 1.0,
                    }
                )
                solver = SOLVERS.build({"name": solver_name}, problem=problem)
                params = {"nu": torch.tensor([0.01 / math.pi], dtype=dtype)}
                u0 = problem.initial_state(params, torch.Generator()).to(dtype)
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    with torch.no_grad():
                        final = solver(u0, 1.0, params)
                    times.append(time.perf_counter() - start)
                exact = problem.reference(torch.tensor([1.0], dtype=torch.float64), params)[:, 0]
                row = {
                    "solver": solver_name,
                    "dtype": str(dtype).removeprefix("torch."),
                    "nx": nx,
                    "rel_l2_t1": rel_l2(final.double(), exact).item(),
                    "seconds_median": statistics.median(times),
                    "substeps_first_interval": int(solver.num_substeps(u0, 1.0, params).max()),
                }
                rows.append(row)
                print(
                    f"{solver_name:17s} {row['dtype']:8s} nx={nx:5d} "
                    f"rel L2 {row['rel_l2_t1']:.2e} in {row['seconds_median']:.2f} s",
                    flush=True,
                )
    report = {
        "benchmark": "Burgers accuracy vs Cole-Hopf (nu = 0.01/pi, -sin(pi x), Dirichlet, t = 1)",
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
