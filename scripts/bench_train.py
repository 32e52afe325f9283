"""Training throughput of the grid-data methods, and the share of time spent on data.

Generates a periodic Burgers dataset (``experiment=burgers_sol_data`` at ``--nx`` cells,
reference 4x finer) in a temporary directory, then for each (method, model) pair builds
the method exactly as ``pbdl train`` does and times ``--steps`` optimizer steps (after a
warm-up): the whole step (loss, backward, Adam update) and, inside it, the time spent
fetching and normalizing the batch (``GridMethod.batch``). Writes JSON with samples/s
(windows per second; for unrolled methods a window covers ``unroll`` steps), seconds per
step and the data share, as medians over ``--repeats``; CPU, and CUDA when available.

Usage:
    python scripts/bench_train.py [--out scripts/results/bench_train.json] [--nx 128]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_train.json"
#: (method, model, extra method options)
CASES = (
    ("supervised", "resnet", {}),
    ("supervised", "unet", {}),
    ("supervised", "fno", {}),
    ("unrolled", "resnet", {"unroll": 4}),
    ("sol", "resnet", {"unroll": 4}),
)
MODELS = {
    "resnet": {"width": 32, "blocks": 2, "kernel_size": 5},
    "unet": {"width": 16, "levels": 3},
    "fno": {"width": 32, "modes": 16, "layers": 4},
}


def problem_config(nx: int) -> dict[str, Any]:
    return {
        "name": "burgers",
        "nx": nx,
        "bc": "periodic",
        "ic": "sines",
        "ic_modes": 3,
        "ic_amplitude": 1.0,
        "nu": 0.01,
        "nu_range": [0.005, 0.05],
        "t_end": 1.0,
        "dt": 0.05,
    }


def generate(root: Path, nx: int, n_train: int) -> Path:
    command = [
        sys.executable,
        "-m",
        "pbdl_cli",
        "generate",
        "experiment=burgers_sol_data",
        f"problem.nx={nx}",
        f"data.root={root}",
        f"data.n_train={n_train}",
        "data.n_val=4",
        "data.n_test=4",
    ]
    subprocess.run(command, check=True, capture_output=True)
    return root / "burgers" / "burgers_sol"


def bench_case(
    data: Path,
    nx: int,
    device: str,
    method_name: str,
    model_name: str,
    options: dict,
    batch_size: int,
    steps: int,
    warmup: int,
) -> dict[str, float]:
    from pbdl_cli.methods import METHODS, build_method
    from pbdl_cli.problems import PROBLEMS
    from pbdl_cli.solvers import SOLVERS

    dev = torch.device(device)
    problem = PROBLEMS.build(problem_config(nx))
    cfg = OmegaConf.create(
        {
            "method": {"name": method_name, "data": str(data), "batch_size": batch_size, **options},
            "solver": {"name": "burgers_sl", "substeps": None},
        }
    )
    method_config, solver_config = METHODS.config(cfg.method), SOLVERS.config(cfg.solver)
    method = build_method(
        method_config, solver_config, problem=problem, device=dev, dtype=torch.float32
    )
    model = method.build_model({"name": model_name, **MODELS[model_name]})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    grid = getattr(method, "impl", method)  # `supervised` delegates to its grid variant
    fetch = grid.batch
    waited = [0.0]

    def timed_batch(step: int) -> Any:
        start = time.perf_counter()
        out = fetch(step)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        waited[0] += time.perf_counter() - start
        return out

    grid.batch = timed_batch  # type: ignore[method-assign]
    for step in range(warmup + steps):
        if step == warmup:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            waited[0], start = 0.0, time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        method.loss(model, step)["loss"].backward()
        optimizer.step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    total = time.perf_counter() - start
    return {
        "seconds_per_step": total / steps,
        "samples_per_second": batch_size * steps / total,
        "data_share": waited[0] / total,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--nx", type=int, default=128)
    parser.add_argument("--n-train", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = generate(Path(tmp), args.nx, args.n_train)
        for device in devices:
            for method, model, options in CASES:
                runs = [
                    bench_case(
                        data,
                        args.nx,
                        device,
                        method,
                        model,
                        options,
                        args.batch_size,
                        args.steps,
                        args.warmup,
                    )
                    for _ in range(args.repeats)
                ]
                key = f"{method}/{model}"
                results.setdefault(device, {})[key] = {
                    k: statistics.median(r[k] for r in runs) for k in runs[0]
                } | {"options": options}
                row = results[device][key]
                print(
                    f"{device:4} {key:18} {row['samples_per_second']:9.0f} samples/s "
                    f"{1e3 * row['seconds_per_step']:7.2f} ms/step data {row['data_share']:.1%}"
                )
    payload = {
        "benchmark": "grid-method training throughput (Burgers, periodic)",
        "machine": {
            "platform": platform.platform(),
            "cpu_threads": args.threads,
            "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "settings": vars(args) | {"out": args.out.name, "models": MODELS},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
