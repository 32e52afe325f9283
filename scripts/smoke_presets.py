"""Run every experiment preset with ``debug=smoke`` in the stage it is meant for.

Each preset's header names its use (``pbdl <stage> experiment=<name>``; a train preset
that reads data names the data preset as ``after pbdl generate experiment=<data>``).
Data presets run first, in one scratch directory, so the train presets find their data;
every train run is then evaluated. Prints one line per run and writes JSON with the
seconds each took (a run that fails makes the script exit non-zero).

    python scripts/smoke_presets.py [--out scripts/results/smoke_presets.json] [NAME ...]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PRESETS = HERE.parent / "pbdl_cli" / "conf" / "experiment"


def header(path: Path) -> str:
    """The leading comment block of a preset."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# "))
    return " ".join(lines)


def uses(name: str) -> tuple[list[str], list[str]]:
    """(stages the preset names for itself, data presets it runs after)."""
    text = header(PRESETS / f"{name}.yaml")
    stages = sorted(set(re.findall(rf"pbdl (generate|train) experiment={name}\b", text)))
    needs = re.findall(r"after pbdl generate experiment=(\w+)", text)
    return stages, needs


def run(args: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pbdl_cli", *args], cwd=cwd, capture_output=True, text=True
    )
    return time.perf_counter() - start, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("names", nargs="*")
    args = parser.parse_args()
    names = args.names or sorted(p.stem for p in PRESETS.glob("*.yaml"))
    results: dict[str, dict[str, float]] = {}
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        plan = {n: uses(n) for n in names}
        data = sorted({d for _, needs in plan.values() for d in needs} - set(names))
        generate = [n for n in [*data, *names] if "generate" in plan.get(n, uses(n))[0]]
        train = [n for n in names if "train" in plan[n][0]]
        for stage, todo in (("generate", generate), ("train", train)):
            for name in todo:
                seconds, done = run([stage, f"experiment={name}", "debug=smoke"], cwd)
                entry = results.setdefault(name, {})
                entry[stage] = round(seconds, 2)
                if stage == "train" and done.returncode == 0:
                    runs = sorted((cwd / "outputs" / "train").glob("*/*"))
                    seconds_eval, done = run(["evaluate", f"run={runs[-1]}", "debug=smoke"], cwd)
                    entry["evaluate"] = round(seconds_eval, 2)
                status = "ok" if done.returncode == 0 else "FAILED"
                print(f"{stage:9s} {name:28s} {status} {entry}", flush=True)
                if done.returncode:
                    failed += 1
                    print("   " + (done.stderr.strip().splitlines() or [""])[-1], flush=True)
    if args.out:
        args.out.write_text(json.dumps({"debug=smoke seconds": results}, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
