"""Run the full (not --quick) reproductions and keep their reports in the repository.

For each reproduction this runs ``pbdl reproduce NAME --out outputs/reproduce/NAME``
(finished variants there are reused) and copies ``results.json``, ``report.md`` and the
plots into ``scripts/results/reproduce/NAME/`` (the run directories with checkpoints and
HDF5 files stay in ``outputs/``). The kept ``results.json`` has every validation record
of each variant's history but at most :data:`TRAIN_RECORDS` of its training records
(evenly spaced, the last included): runs that log every step for the book's epoch means
would otherwise store megabytes; the full file stays in ``outputs/``. Exit code: non-zero
if any reproduction failed a check.

Usage:
    python scripts/reproduce_all.py                    # every reproduction
    python scripts/reproduce_all.py parabola oscillator_pinn --force
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "scripts" / "results" / "reproduce"
#: training records kept per variant history in the stored results.json
TRAIN_RECORDS = 500


def main() -> int:
    from pbdl_cli.reproduce.base import REPRODUCTIONS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="reproductions (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "reproduce")
    parser.add_argument("--force", action="store_true", help="rerun finished variants")
    args = parser.parse_args()
    names = args.names or sorted(REPRODUCTIONS)
    failed = []
    for name in names:
        out = args.out / name
        command = [sys.executable, "-m", "pbdl_cli", "reproduce", name, "--out", str(out)]
        code = subprocess.call(command + (["--force"] if args.force else []))
        if code != 0:
            failed.append(f"{name} (exit {code})")
        if (out / "results.json").exists():
            _keep(out, RESULTS / name)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


def _keep(out: Path, target: Path) -> None:
    """Copy the report, the results and every PNG, keeping relative paths (report links)."""
    if target.exists():
        shutil.rmtree(target)
    for path in [out / "results.json", out / "report.md", *out.rglob("*.png")]:
        if path.exists():
            dest = target / path.relative_to(out)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
    if (target / "results.json").exists():
        thin_results(target / "results.json")


def thin_history(history: list[dict], keep: int = TRAIN_RECORDS) -> list[dict]:
    """Every record with a ``val/`` entry, and at most ``keep`` of the others, evenly
    spaced with the last one included, in their original order."""
    train = [i for i, r in enumerate(history) if not any(k.startswith("val/") for k in r)]
    every = max(1, math.ceil(len(train) / keep))
    dropped = set(train) - set(train[::-1][::every])
    return [r for i, r in enumerate(history) if i not in dropped]


def thin_results(path: Path) -> None:
    """Rewrite a results.json with :func:`thin_history` applied to every variant."""
    results = json.loads(path.read_text())
    for variant in results.get("variants", {}).values():
        if isinstance(variant.get("history"), list):
            variant["history"] = thin_history(variant["history"])
    path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
