"""Sampling cost against sample quality of the probabilistic methods on the book's 2D
Gaussian mixture (PBDL book ch. 22-25): samples per second and network evaluations
(NFE) per sample, each with the energy distance its samples reach.

Methods and samplers (each method optional: one that is not registered, or whose preset
is missing, is skipped with a note in the JSON):

- ``ddpm`` (``experiment=gm_ddpm``, the book's constant beta = 0.02): ancestral over all
  T = 1000 steps, DDIM with K = 50, 20, 10; ``ddpm_linear``: the same network trained
  and sampled with the linear schedule 1e-4..0.02 (``method.schedule=linear``);
- ``flow_matching`` (``experiment=gm_flow_matching``): Euler with K = 1..20 steps,
  midpoint and RK4 (2 and 4 evaluations per step), the adaptive dopri5;
- ``cnf`` (``experiment=gm_cnf``): dopri5 (adaptive), RK4 and Euler.

Each model is trained first by ``pbdl train`` with its preset (at most ``--train-seconds``
of training: ``trainer.max_seconds``), or taken from a finished run (``--run
ddpm=outputs/train/...``). For every sampler: the median over ``--repeats`` draws of
``--samples`` samples of the wall time (samples per second, one CPU thread unless
``--threads``; CUDA too when available), the NFE per sample, and the energy distance of
the first draw to as many exact draws of the mixture, next to the distance between two
exact sets of that size (the floor that finite samples allow).

Target: flow matching with at most 20 evaluations within 1.5x of DDPM-1000's energy
distance (the book's constant schedule), i.e. at least 50x fewer evaluations for about
the same sample quality; the JSON also gives the ratio to the linear-schedule DDPM.

Usage:
    python scripts/bench_sample.py [--out scripts/results/bench_sample.json]
        [--samples 2000] [--repeats 3] [--train-seconds 300] [--run ddpm=DIR ...]
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

from pbdl_cli.evaluation.distribution import energy_distance
from pbdl_cli.methods import METHODS
from pbdl_cli.stages.loading import CheckpointChoice, load_run
from pbdl_cli.utils.seeding import generator

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "scripts" / "results" / "bench_sample.json"
PRESETS = ROOT / "pbdl_cli" / "conf" / "experiment"

#: name -> (method, preset, extra train overrides, [(sampler, steps), ...])
MODELS: dict[str, tuple[str, str, tuple[str, ...], list[tuple[str, int]]]] = {
    "ddpm": (
        "ddpm",
        "gm_ddpm",
        (),
        [("ancestral", 0), ("ddim", 50), ("ddim", 20), ("ddim", 10)],
    ),
    "ddpm_linear": (
        "ddpm",
        "gm_ddpm",
        ("method.schedule=linear", "trainer.log_every=157"),
        [("ancestral", 0), ("ddim", 50), ("ddim", 20), ("ddim", 10)],
    ),
    "flow_matching": (
        "flow_matching",
        "gm_flow_matching",
        (),
        [
            ("euler", 1),
            ("euler", 2),
            ("euler", 5),
            ("euler", 10),
            ("euler", 20),
            ("midpoint", 10),
            ("rk4", 5),
            ("adaptive", 0),
        ],
    ),
    "cnf": ("cnf", "gm_cnf", (), [("dopri5", 0), ("rk4", 8), ("euler", 32)]),
}
#: the target: flow matching within this factor of DDPM-1000 with at most MAX_NFE
TARGET_RATIO, MAX_NFE = 1.5, 20


def available(name: str) -> str | None:
    """None if model ``name`` can be benchmarked here, else why not."""
    method, preset, _, _ = MODELS[name]
    if method not in METHODS:
        return f"method '{method}' is not registered in this checkout"
    if not (PRESETS / f"{preset}.yaml").is_file():
        return f"preset experiment={preset} is missing in this checkout"
    return None


def train(name: str, folder: Path, seconds: float) -> tuple[Path, float]:
    """``pbdl train`` of model ``name`` with its preset into ``folder``; its wall time."""
    _, preset, extra, _ = MODELS[name]
    run = folder / name
    command = [
        sys.executable,
        "-m",
        "pbdl_cli",
        "train",
        f"experiment={preset}",
        *extra,
        "device=cpu",
        f"trainer.max_seconds={seconds}",
        f"hydra.run.dir={run}",
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"training {name} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return run, time.perf_counter() - start


def bench(
    run: Path, device: str, configs: list[tuple[str, int]], n: int, repeats: int
) -> list[dict[str, Any]]:
    """Every (sampler, steps) of ``configs`` on the trained run at ``run``."""
    loaded = load_run(str(run), CheckpointChoice.last, device)
    method, model = loaded.method, loaded.model()
    mixture = method.distribution
    reference = mixture.reference_samples(n, generator(0, "bench", "reference"))
    second = mixture.reference_samples(n, generator(0, "bench", "floor"))
    floor = float(energy_distance(second, reference))
    rows = []
    for sampler, steps in configs:
        if sampler not in method.samplers:
            rows.append({"sampler": sampler, "steps": steps, "skipped": "no such sampler"})
            continue
        method.draw_samples(model, min(n, 64), sampler=sampler, steps=steps)  # warm-up
        draws = [
            method.draw_samples(model, n, sampler=sampler, steps=steps, seed=k)
            for k in range(repeats)
        ]
        seconds = statistics.median(d.seconds[0] for d in draws)
        energy = float(energy_distance(draws[0].samples[0], reference))
        rows.append(
            {
                "sampler": sampler,
                "steps": steps,
                "evaluations": draws[0].evaluations[0],
                "seconds_median": seconds,
                "samples_per_second": n / seconds,
                "energy": energy,
                "reference_energy": floor,
                "energy_over_floor": energy / floor,
            }
        )
        print(f"  {device} {sampler:>9} steps {steps:>3}: {json.dumps(rows[-1])}", flush=True)
    return rows


def target(results: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Flow matching's best energy with <= MAX_NFE evaluations over DDPM-1000's (CPU)."""
    out: dict[str, Any] = {
        "statement": f"flow matching with <= {MAX_NFE} network evaluations within "
        f"{TARGET_RATIO}x of DDPM-1000's energy distance (ancestral, the book's constant "
        f"schedule), i.e. >= {1000 // MAX_NFE}x fewer evaluations",
        "ratio_bound": TARGET_RATIO,
        "max_evaluations": MAX_NFE,
    }
    cpu = results.get("cpu", {})

    def ancestral(name: str) -> dict[str, Any] | None:
        return next((r for r in cpu.get(name, []) if r.get("sampler") == "ancestral"), None)

    fm = [r for r in cpu.get("flow_matching", []) if r.get("evaluations", 1e9) <= MAX_NFE]
    ddpm = ancestral("ddpm")
    if not fm or ddpm is None:
        out["met"] = None
        out["note"] = "not evaluated: " + (
            "flow_matching is not benchmarked here" if not fm else "no DDPM-1000 result"
        )
        return out
    best = min(fm, key=lambda r: r["energy"])
    out |= {
        "flow_matching": {k: best[k] for k in ("sampler", "steps", "evaluations", "energy")},
        "ddpm_1000_energy": ddpm["energy"],
        "energy_ratio": best["energy"] / ddpm["energy"],
        "evaluation_ratio": ddpm["evaluations"] / best["evaluations"],
        "met": best["energy"] <= TARGET_RATIO * ddpm["energy"],
    }
    linear = ancestral("ddpm_linear")
    if linear is not None:
        out["energy_ratio_to_ddpm_linear_1000"] = best["energy"] / linear["energy"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--samples", type=int, default=2000, help="samples per draw")
    parser.add_argument("--repeats", type=int, default=3, help="timed draws per sampler")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--train-seconds", type=float, default=300.0)
    parser.add_argument("--run", action="append", default=[], help="NAME=RUN_DIR (no training)")
    parser.add_argument("--only", nargs="*", default=None, help="models to run (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    given = dict(item.split("=", 1) for item in args.run)
    devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    models: dict[str, dict[str, Any]] = {}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {d: {} for d in devices}
    with tempfile.TemporaryDirectory(prefix="bench_sample_") as scratch:
        for name in args.only or list(MODELS):
            reason = available(name)
            if reason is not None:
                models[name] = {"status": "skipped", "note": reason}
                print(f"{name}: skipped ({reason})")
                continue
            method, preset, extra, configs = MODELS[name]
            if name in given:
                run, seconds = Path(given[name]), None
            else:
                print(f"{name}: training (experiment={preset} {' '.join(extra)})", flush=True)
                run, seconds = train(name, Path(scratch), args.train_seconds)
            summary = json.loads((run / "summary.json").read_text())
            models[name] = {
                "status": "ok",
                "method": method,
                "train": ["pbdl", "train", f"experiment={preset}", *extra],
                "run": str(run) if name in given else "(trained here)",
                "train_steps": summary.get("steps"),
                "train_seconds": summary.get("seconds"),
                "train_wall_seconds": seconds,
            }
            for device in devices:
                results[device][name] = bench(run, device, configs, args.samples, args.repeats)
    report = {
        "benchmark": "sampling cost vs quality on the book's 2D Gaussian mixture (ch. 22-25)",
        "machine": {
            "platform": platform.platform(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "settings": {
            "samples": args.samples,
            "repeats": args.repeats,
            "train_seconds_limit": args.train_seconds,
            "dtype": "float32 (the presets')",
        },
        "models": models,
        "results": results,
        "target": target(results),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["target"], indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
