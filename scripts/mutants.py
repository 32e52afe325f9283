"""Mutation testing: put single-line bugs into the package, one at a time, and check that
the tests meant to notice each one fail.

Every mutant in ``scripts/mutants_catalogue.py`` names a file, a line fragment that must
occur exactly once in it, its replacement and the tests that should catch it. The script
copies the checkout to a scratch directory (the working tree is never touched), applies
one mutant there, runs its tests with pytest (``-x``, one process) and restores the file.
A mutant is *killed* when pytest fails, *survives* when it passes; the JSON report lists
both, with the seconds each run took. Exit status 1 if any mutant survives.

    python scripts/mutants.py [--out scripts/results/mutants.json] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from mutants_catalogue import MUTANTS, Mutant  # noqa: E402

IGNORE = shutil.ignore_patterns(
    ".git", ".venv*", "outputs", "datasets", "__pycache__", "*.egg-info", ".ruff_cache"
)


def apply(tree: Path, mutant: Mutant) -> str:
    """Apply ``mutant`` inside ``tree``; returns the original text of its file."""
    path = tree / mutant.path
    original = path.read_text()
    count = original.count(mutant.find)
    if count != 1:
        raise SystemExit(f"{mutant.name}: {mutant.find!r} occurs {count} times in {mutant.path}")
    path.write_text(original.replace(mutant.find, mutant.replace))
    return original


def run_tests(tree: Path, mutant: Mutant, timeout: float) -> tuple[str, float, str]:
    """(killed | survived | timeout, seconds, last line of pytest's output)."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-x",
        "-q",
        "-n",
        "0",
        "-p",
        "no:cacheprovider",
        "-m",
        "",
        *mutant.tests,
    ]
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - start, ""
    seconds = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return ("survived" if done.returncode == 0 else "killed"), seconds, (lines or [""])[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "mutants.json")
    parser.add_argument("--only", nargs="*", default=None, help="mutant names to run")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per mutant")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if args.only is None or m.name in args.only]
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "tree"
        shutil.copytree(ROOT, tree, ignore=IGNORE)
        baseline = Mutant(
            "baseline", chosen[0].path, "", "", sorted({t for m in chosen for t in m.tests})
        )
        status, seconds, last = run_tests(tree, baseline, args.timeout * 4)
        print(f"unmutated tests: {status} in {seconds:.0f} s ({last})", flush=True)
        if status != "survived":
            raise SystemExit("the selected tests fail without any mutant; fix them first")
        for mutant in chosen:
            original = apply(tree, mutant)
            try:
                status, seconds, last = run_tests(tree, mutant, args.timeout)
            finally:
                (tree / mutant.path).write_text(original)
            results.append(
                {
                    "name": mutant.name,
                    "path": mutant.path,
                    "bug": mutant.why,
                    "status": status,
                    "seconds": round(seconds, 1),
                    "pytest": last,
                }
            )
            print(f"{status:8s} {seconds:6.1f} s  {mutant.name}: {mutant.why}", flush=True)
    survivors = [r["name"] for r in results if r["status"] != "killed"]
    report = {
        "mutants": len(results),
        "killed": len(results) - len(survivors),
        "survivors": survivors,
        "survival_rate": len(survivors) / max(len(results), 1),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['killed']}/{len(results)} killed; survivors: {survivors or 'none'}")
    return 1 if survivors else 0


if __name__ == "__main__":
    raise SystemExit(main())
