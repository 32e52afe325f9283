"""Benchmark Burgers data generation: throughput and peak memory per solver and device.

Measures, for each solver (``burgers_sl``, ``burgers_spectral``) and device (CPU, and CUDA
when available), a batch of B random initial states (sums of three sines) of nx cells,
nu = 0.01/pi, rolled out for ``--steps`` output intervals of dt = 1e-3:

* ``simulate``: the batched rollout alone (median seconds over ``--repeats`` runs after a
  warm-up), as cell updates per second = B * nx * steps / seconds, and per substep;
* ``peak_rss_mb`` / ``peak_cuda_mb``: peak memory of a fresh process doing one rollout;
* ``generate``: the whole ``pbdl generate`` pipeline (sampling, rollout, streaming HDF5
  writes with checksums) for the same sizes, end to end;
* ``memory_vs_n``: peak RSS of ``pbdl generate`` for N = B and N = 8 B trajectories at a
  fixed batch size (streaming keeps it flat).

With ``--phiflow-python`` (the interpreter of a virtualenv with phiflow 3.4, see
scripts/bench_phiflow_burgers.py) it also runs PhiFlow's implementation of the same
scheme in the same session and reports our throughput as a ratio to PhiFlow's.

Usage:
    python scripts/bench_generate.py [--out scripts/results/bench_generate.json]
        [--batch 64 --nx 512 --steps 1000 --repeats 3] [--phiflow-python /tmp/phienv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "bench_generate.json"
NU = 0.01 / math.pi
DT = 1e-3


def build(solver: str, nx: int, steps: int):
    from pbdl_cli.plugins import load_plugins
    from pbdl_cli.problems import PROBLEMS
    from pbdl_cli.solvers import SOLVERS

    load_plugins()
    problem = PROBLEMS.build(
        {
            "name": "burgers",
            "nx": nx,
            "nu": NU,
            "ic": "sines",
            "bc": "periodic",
            "t_end": steps * DT,
            "dt": DT,
        }
    )
    return problem, SOLVERS.build({"name": solver}, problem=problem)


def simulate_once(solver_name: str, device: str, batch: int, nx: int, steps: int) -> dict:
    """One rollout in this process: seconds, substeps and peak memory."""
    from pbdl_cli.solvers import rollout

    problem, solver = build(solver_name, nx, steps)
    g = torch.Generator().manual_seed(0)
    params = problem.sample_params(batch, g)
    u0 = problem.initial_state(params, g).to(device, torch.float32)
    params = {k: v.to(device, torch.float32) for k, v in params.items()}
    substeps = solver.num_substeps(u0, DT, params).tolist()
    with torch.no_grad():  # warm-up: kernels, allocator, ETD coefficients
        rollout(solver, u0, 10, DT, params)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with torch.no_grad():
        traj = rollout(solver, u0, steps, DT, params)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    out = {
        "seconds": seconds,
        "substeps_first_interval": max(substeps),
        "finite": bool(torch.isfinite(traj).all()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device.startswith("cuda"):
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def worker(task: dict) -> dict:
    if task["kind"] == "simulate":
        return simulate_once(
            task["solver"], task["device"], task["batch"], task["nx"], task["steps"]
        )
    raise ValueError(task)


def in_subprocess(task: dict, timeout: float = 3600) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(task)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr else "failed"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def child_peak_rss(args: list[str], cwd: Path) -> float:
    """Peak RSS (MB) of one ``pbdl generate ARGS`` run in a fresh interpreter."""
    code = (
        "import resource, sys; sys.argv = ['pbdl'] + sys.argv[1:];"
        "from pbdl_cli.cli import main\n"
        "code = 0\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code or 0\n"
        "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "generate", *args], cwd=cwd, capture_output=True, text=True
    )
    for line in result.stdout.splitlines():
        if line.startswith("PEAK") and line.split()[2] == "0":
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"pbdl generate {' '.join(args)} failed: {result.stderr[-500:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--nx", type=int, default=512)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--solvers", nargs="+", default=["burgers_sl", "burgers_spectral"])
    parser.add_argument("--phiflow-python", type=Path, default=None)
    parser.add_argument("--phiflow-steps", type=int, default=100)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    report: dict[str, Any] = {
        "benchmark": "burgers generation",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "settings": {
            "batch": args.batch,
            "nx": args.nx,
            "output_steps": args.steps,
            "dt": DT,
            "nu": NU,
            "ic": "sines (3 modes)",
            "dtype": "float32",
            "repeats": args.repeats,
        },
        "results": {},
    }
    cells = args.batch * args.nx * args.steps
    for device in devices:
        for solver in args.solvers:
            runs = [
                in_subprocess(
                    {
                        "kind": "simulate",
                        "solver": solver,
                        "device": device,
                        "batch": args.batch,
                        "nx": args.nx,
                        "steps": args.steps,
                    }
                )
                for _ in range(args.repeats + 1)
            ][1:]  # the first run warms caches (and CUDA) and is dropped
            errors = [r["error"] for r in runs if "error" in r]
            if errors:
                report["results"][f"{solver}/{device}"] = {"error": errors[0]}
                continue
            seconds = statistics.median(r["seconds"] for r in runs)
            substeps = runs[0]["substeps_first_interval"]
            entry = {
                "seconds_median": seconds,
                "seconds_all": [r["seconds"] for r in runs],
                "cell_updates_per_s": cells / seconds,
                "substeps_per_interval": substeps,
                "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                "finite": all(r["finite"] for r in runs),
            }
            if device == "cuda":
                entry["peak_cuda_mb"] = max(r["peak_cuda_mb"] for r in runs)
            report["results"][f"{solver}/{device}"] = entry
            print(
                f"{solver}/{device}: {entry['cell_updates_per_s']:.3g} cell updates/s "
                f"({seconds:.2f} s, {substeps} substeps/interval)",
                flush=True,
            )

    # the full pipeline, and memory against dataset size (streaming keeps it flat)
    with tempfile.TemporaryDirectory() as tmp:
        common = [
            f"problem.nx={args.nx}",
            f"problem.nu={NU}",
            f"problem.t_end={args.steps * DT}",
            f"problem.dt={DT}",
            "problem.ic=sines",
            "problem.bc=periodic",
            f"data.batch_size={args.batch}",
            "data.n_val=0",
            "data.n_test=0",
            "device=cpu",
            "hydra.run.dir=" + str(Path(tmp) / "runs" / "${now:%H-%M-%S-%f}"),
        ]
        start = time.perf_counter()
        peak_one = child_peak_rss(
            [*common, f"data.n_train={args.batch}", "data.name=one"], Path(tmp)
        )
        one_seconds = time.perf_counter() - start
        report["results"]["generate/cpu"] = {
            "solver": "burgers_spectral",
            "trajectories": args.batch,
            "seconds_incl_startup": one_seconds,
            "cell_updates_per_s": cells / one_seconds,
            "peak_rss_mb": peak_one,
        }
        small = [f"problem.nx={args.nx}", "problem.t_end=0.2", "problem.dt=0.001"]
        memory = {}
        for n in (args.batch, 8 * args.batch):
            memory[str(n)] = child_peak_rss(
                [*common[6:], *small, f"data.n_train={n}", f"data.name=n{n}"], Path(tmp)
            )
        report["results"]["memory_vs_n"] = {
            "batch_size": args.batch,
            "output_steps": 200,
            "peak_rss_mb_by_n": memory,
            "ratio": memory[str(8 * args.batch)] / memory[str(args.batch)],
        }
        print(f"generate: {one_seconds:.1f} s end to end; peak RSS by N {memory}", flush=True)

    if args.phiflow_python:
        out = args.out.with_name("bench_phiflow_burgers.json")
        subprocess.run(
            [
                str(args.phiflow_python),
                str(HERE / "bench_phiflow_burgers.py"),
                "--out",
                str(out),
                "--batch",
                str(args.batch),
                "--nx",
                str(args.nx),
                "--steps",
                str(args.phiflow_steps),
                "--precisions",
                "32",
            ],
            check=False,
        )
        if out.exists():
            phi = json.loads(out.read_text())
            report["phiflow"] = {"source": str(out.relative_to(HERE.parent)), "variants": {}}
            ours = report["results"].get("burgers_sl/cpu", {}).get("cell_updates_per_s")
            for name, entry in _phiflow_variants(phi).items():
                rate = entry.get("cell_updates_per_s") if isinstance(entry, dict) else None
                report["phiflow"]["variants"][name] = (
                    {"cell_updates_per_s": rate, "burgers_sl_over_phiflow": ours / rate}
                    if isinstance(rate, (int, float)) and ours
                    else {
                        "error": str(
                            entry.get("error", entry) if isinstance(entry, dict) else entry
                        )
                    }
                )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


def _phiflow_variants(phi: dict) -> dict[str, dict]:
    """The throughput runs of bench_phiflow_burgers.json: {variant: entry}."""
    return dict(phi.get("benchmark", {}).get("runs", {}))


if __name__ == "__main__":
    main()
