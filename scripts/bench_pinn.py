"""Time to accuracy of the default PINN (``pbdl train problem=burgers method=pinn``).

Runs the default training (plus ``--extra`` overrides) with a validation every
``--eval-every`` steps and writes JSON: the relative L2 error against the exact solution
over wall-clock time (the time-to-accuracy curve), the time at which the error first
drops below 1e-1, 3e-2, 1e-2 and 3e-3, steps per second of each phase, and the final
test error on the 101 x 256 output grid. CPU, and CUDA when available.

Usage:
    python scripts/bench_pinn.py [--out scripts/results/bench_pinn.json] [--eval-every 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_pinn.json"
MILESTONES = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3)


def run(device: str, eval_every: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        args = [
            sys.executable,
            "-m",
            "pbdl_cli",
            "train",
            "problem=burgers",
            "method=pinn",
            f"device={device}",
            f"trainer.eval_every={eval_every}",
            "trainer.log_every=10",
            f"hydra.run.dir={run_dir}",
            *extra,
        ]
        start = time.perf_counter()
        result = subprocess.run(args, capture_output=True, text=True, cwd=tmp)
        wall = time.perf_counter() - start
        if result.returncode != 0:
            return {"error": result.stderr.strip()[-1000:]}
        records = [
            json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        ]
        summary = json.loads((run_dir / "summary.json").read_text())
    curve = [(r["time"], r["val/rel_l2"]) for r in records if "val/rel_l2" in r]
    train = [r for r in records if "train/loss" in r]
    rates = {}
    for phase in sorted({r["phase"] for r in train}):
        rows = [r for r in train if r["phase"] == phase]
        if len(rows) > 1:
            rates[phase] = (rows[-1]["step"] - rows[0]["step"]) / (
                rows[-1]["time"] - rows[0]["time"]
            )
    return {
        "command_seconds": wall,
        "train_seconds": summary["seconds"],
        "test": summary.get("test"),
        "steps": summary["steps"],
        "steps_per_second": rates,
        "time_to_rel_l2": {
            f"{m:g}": next((t for t, e in curve if e <= m), None) for m in MILESTONES
        },
        "curve": [{"seconds": t, "rel_l2": e} for t, e in curve],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--extra", nargs="*", default=[], help="more overrides for pbdl train")
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    report = {
        "benchmark": "default PINN on Burgers (Raissi), time to accuracy",
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "overrides": args.extra,
        "results": {},
    }
    for device in devices:
        report["results"][device] = entry = run(device, args.eval_every, args.extra)
        if "error" in entry:
            print(f"{device}: failed: {entry['error']}")
            continue
        print(
            f"{device}: rel L2 {entry['test']['rel_l2']:.3e} in {entry['train_seconds']:.1f} s; "
            f"time to 1e-2: {entry['time_to_rel_l2']['0.01']}; steps/s {entry['steps_per_second']}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
