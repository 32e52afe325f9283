"""Reference numbers and throughput of PhiFlow's Burgers scheme (PBDL book ch. 3.6), for comparison.

The scheme (Thuerey et al., "Physics-based Deep Learning", ch. 3.6 "Burgers forward simulation"):
1D periodic domain [-1, 1] of N cells (``CenteredGrid`` with ``PERIODIC`` extrapolation), and per
step ``v1 = diffuse.explicit(v, NU, DT)`` then ``v = advect.semi_lagrangian(v1, v1, DT)``.

The script measures two things:

1. The book case (N = 128, DT = 1/32, 32 steps, NU = 0.01 / (128 pi), v(x, 0) = -sin(pi x) at cell
   centres) with the NumPy backend, in PhiFlow's default float32 and in float64. It stores the
   states after 16 and 32 steps (the book prints the first five values at t = 1:
   [0.0057228, 0.01716715, 0.02861034, 0.040052, 0.05149214]), so that our own solver can be
   checked against them value by value.
2. Throughput on a batch of B = 64 random initial states (sums of three sines) with nx = 512,
   nu = 0.01/pi and DT = 1e-3 (diffusion number nu DT / dx² ≈ 0.21 <= 1/2): seconds per step and
   cell updates per second (B nx steps / seconds, median of 5 repeats after a warm-up step), for
   the NumPy backend (``phi.flow``) and the Torch backend (``phi.torch.flow``, CPU), each with and
   without ``@jit_compile``. phiml 1.16's Torch ``grid_sample`` rejects 1-D grids (it passes 3-D
   tensors to ``torch.nn.functional.grid_sample``); that failure is recorded as a string, and the
   variant ``torch_generic`` reruns with that one method answering ``NotImplemented`` for 1-D
   grids, which makes phiml use its own backend-generic linear interpolation.

Each configuration runs in a fresh subprocess of this script (``--worker``), because
``phi.torch.flow`` switches the process-wide default backend on import and a crash in one variant
must not take down the others.

PhiFlow is not a project dependency: it pins its own numpy/scipy/matplotlib ranges and is only
needed for this one-off comparison, so it lives in a separate virtualenv outside the repository::

    python3 -m venv /tmp/phienv
    /tmp/phienv/bin/pip install torch==2.13.0      # CPU wheel first, so phiflow pulls no CUDA torch
    /tmp/phienv/bin/pip install phiflow==3.4.0
    /tmp/phienv/bin/python scripts/bench_phiflow_burgers.py [--out PATH] [--steps 100]

The result is written as JSON (default ``scripts/results/bench_phiflow_burgers.json``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_phiflow_burgers.json"
BOOK_FIRST5 = [0.0057228, 0.01716715, 0.02861034, 0.040052, 0.05149214]
#: (backend module, patch 1-D grid_sample) per variant name
VARIANTS: dict[str, tuple[str, bool]] = {
    "numpy": ("phi.flow", False),
    "torch": ("phi.torch.flow", False),
    "torch_generic": ("phi.torch.flow", True),
}
_RESULT_MARK = "@@RESULT@@ "


def _import_flow(module: str, patch_grid_sample: bool) -> Any:
    """Import ``phi.flow`` or ``phi.torch.flow`` (which selects the default backend)."""
    import importlib

    flow = importlib.import_module(module)
    if patch_grid_sample:
        from phiml.backend.torch._torch_backend import TorchBackend

        original = TorchBackend.grid_sample

        def grid_sample(self: Any, grid: Any, coordinates: Any, extrapolation: str) -> Any:
            # grid is [batch, *spatial, channels]: 3-D means one spatial dim, unsupported by torch
            if self.as_tensor(grid).ndim == 3:
                return NotImplemented
            return original(self, grid, coordinates, extrapolation)

        TorchBackend.grid_sample = grid_sample
    return flow


def _step_fn(flow: Any, nu: float, dt: float) -> Any:
    def step(v: Any) -> Any:
        v1 = flow.diffuse.explicit(v, nu, dt)
        return flow.advect.semi_lagrangian(v1, v1, dt)

    return step


def _values(grid: Any) -> np.ndarray:
    """Grid values as a float64 numpy array ([x] or [b, x])."""
    values = grid.values
    return np.asarray(values.numpy(values.shape.names), dtype=np.float64)


def _worker_book(spec: dict[str, Any]) -> dict[str, Any]:
    """The book case with the NumPy backend at the requested precision (bits)."""
    flow = _import_flow("phi.flow", False)
    n, steps = 128, 32
    dx, dt, nu = 2.0 / n, 1.0 / steps, 0.01 / (n * np.pi)
    initial = np.asarray([-np.sin(np.pi * x) for x in np.linspace(-1 + dx / 2, 1 - dx / 2, n)])
    with flow.math.precision(spec["precision"]):
        v = flow.CenteredGrid(
            flow.math.tensor(initial, flow.spatial("x")),
            flow.extrapolation.PERIODIC,
            x=n,
            bounds=flow.Box(x=(-1, 1)),
        )
        step = _step_fn(flow, nu, dt)
        states = {}
        for i in range(1, steps + 1):
            v = step(v)
            if i in (16, 32):
                states[i] = _values(v)
    return {
        "precision_bits": spec["precision"],
        "dtype": str(v.values.dtype),
        "settings": {"n": n, "dt": dt, "steps": steps, "nu": nu, "bounds": [-1.0, 1.0]},
        "first5_t1": states[32][:5].tolist(),
        "max_abs_diff_first5_vs_book": float(np.max(np.abs(states[32][:5] - BOOK_FIRST5))),
        "state_step16": states[16].tolist(),
        "state_step32": states[32].tolist(),
    }


def random_initial_states(batch: int, nx: int, seed: int) -> np.ndarray:
    """Sums of three periodic sines with random amplitudes and phases at cell centres, [B, nx]."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-1 + 1 / nx, 1 - 1 / nx, nx)
    k = np.arange(1, 4)
    amp = rng.normal(scale=0.5, size=(batch, k.size))
    phase = rng.uniform(0.0, 2.0 * np.pi, size=(batch, k.size))
    return (amp[..., None] * np.sin(np.pi * k[None, :, None] * x + phase[..., None])).sum(axis=1)


def _worker_bench(spec: dict[str, Any]) -> dict[str, Any]:
    """Time ``spec['steps']`` steps ``spec['repeats']`` times after one warm-up step."""
    module, patch = VARIANTS[spec["variant"]]
    flow = _import_flow(module, patch)
    from phiml.backend import default_backend

    batch, nx, steps = spec["batch"], spec["nx"], spec["steps"]
    # in the working precision from the start, so a jit trace of the warm-up step is reused
    u0 = random_initial_states(batch, nx, spec["seed"]).astype(f"float{spec['precision']}")
    info: dict[str, Any] = {"backend": str(default_backend())}
    if "torch" in module:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    with flow.math.precision(spec["precision"]):
        v = flow.CenteredGrid(
            flow.math.tensor(u0, flow.batch("b"), flow.spatial("x")),
            flow.extrapolation.PERIODIC,
            x=nx,
            bounds=flow.Box(x=(-1, 1)),
        )
        step = _step_fn(flow, spec["nu"], spec["dt"])
        if spec["jit"]:
            step = flow.jit_compile(step)
        t0 = time.perf_counter()
        v = step(v)  # warm-up (includes tracing for jit)
        info["warmup_s"] = time.perf_counter() - t0
        seconds = []
        for _ in range(spec["repeats"]):
            t0 = time.perf_counter()
            for _ in range(steps):
                v = step(v)
            _values(v)  # forces completion (no-op for synchronous CPU backends)
            seconds.append(time.perf_counter() - t0)
        final = _values(v)  # inside the context: numpy() casts to the active precision
    median = statistics.median(seconds)
    return {
        **info,
        "dtype": str(v.values.dtype),
        "repeat_seconds": seconds,
        "median_seconds": median,
        "min_seconds": min(seconds),
        "seconds_per_step": median / steps,
        "cell_updates_per_s": batch * nx * steps / median,
        "extrapolated_seconds_1000_steps": 1000 * median / steps,
        "final_state_after_steps": 1 + steps * spec["repeats"],
        "final_mean_abs": float(np.mean(np.abs(final))),
        "final_b0_first5": final[0, :5].tolist(),
    }


def _run_worker(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one configuration in a subprocess; failures come back as {'error': str}."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(_RESULT_MARK):
            return json.loads(line[len(_RESULT_MARK) :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"worker exited with {proc.returncode}: " + " | ".join(tail)}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """Platform, CPU and package versions of the interpreter running the benchmark."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cpu_model = None
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": cpu_model or platform.processor(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "versions": {d: _version(d) for d in ("phiflow", "phiml", "numpy", "scipy", "torch")},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--nx", type=int, default=512)
    parser.add_argument("--nu", type=float, default=0.01 / math.pi)
    parser.add_argument("--dt", type=float, default=1e-3)
    parser.add_argument("--steps", type=int, default=100, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precisions", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per configuration")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker is not None:
        spec = json.loads(args.worker)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = _worker_book(spec) if spec["task"] == "book" else _worker_bench(spec)
            except Exception as exc:  # reported, not raised: the parent records it as a string
                traceback.print_exc()
                result = {"error": f"{type(exc).__name__}: {exc}"}
        messages = sorted({str(w.message)[:300] for w in caught})
        if messages:
            result["warnings"] = messages
        print(_RESULT_MARK + json.dumps(result), flush=True)
        return

    dx = 2.0 / args.nx
    diffusion_number = args.nu * args.dt / dx**2
    if diffusion_number > 0.5:
        parser.error(f"explicit diffusion unstable: nu dt / dx^2 = {diffusion_number:.3f} > 0.5")

    report: dict[str, Any] = {"machine": machine_info(), "book_case": {}, "benchmark": {}}
    for bits in (32, 64):
        print(f"book case, numpy backend, float{bits} ...", flush=True)
        report["book_case"][f"numpy_float{bits}"] = _run_worker(
            {"task": "book", "precision": bits}, args.timeout
        )

    settings = {
        "batch": args.batch,
        "nx": args.nx,
        "nu": args.nu,
        "dt": args.dt,
        "dx": dx,
        "diffusion_number": diffusion_number,
        "steps_timed": args.steps,
        "repeats": args.repeats,
        "warmup_steps": 1,
        "seed": args.seed,
        "initial_state": "sum over k=1..3 of N(0, 0.5) sin(k pi x + U(0, 2 pi)), at cell centres",
        "cell_updates_per_s": "batch * nx * steps_timed / median seconds",
    }
    report["benchmark"]["settings"] = settings
    runs: dict[str, Any] = {}
    for bits in args.precisions:
        for variant in args.variants:
            for jit in (False, True):
                name = f"{variant}{'_jit' if jit else ''}_float{bits}"
                print(f"benchmark {name} ...", flush=True)
                spec = {"task": "bench", "variant": variant, "jit": jit, "precision": bits}
                spec.update({k: settings[k] for k in ("batch", "nx", "nu", "dt", "seed")})
                spec.update(steps=args.steps, repeats=args.repeats)
                runs[name] = _run_worker(spec, args.timeout)
                summary = runs[name].get("error") or (
                    f"{runs[name]['seconds_per_step'] * 1e3:.3f} ms/step, "
                    f"{runs[name]['cell_updates_per_s']:.3e} cell updates/s"
                )
                print(f"  {summary}", flush=True)
    report["benchmark"]["runs"] = runs

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
