"""Run the full (not --quick) reproductions and keep their reports in the repository.

For each reproduction this runs ``pbdl reproduce NAME --out outputs/reproduce/NAME``
(finished variants there are reused) and copies ``results.json``, ``report.md`` and the
plots into ``scripts/results/reproduce/NAME/`` (the run directories with checkpoints and
HDF5 files stay in ``outputs/``). Exit code: non-zero if any reproduction failed a check.

Usage:
    python scripts/reproduce_all.py                    # every reproduction
    python scripts/reproduce_all.py parabola oscillator_pinn --force
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "scripts" / "results" / "reproduce"


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


if __name__ == "__main__":
    sys.exit(main())
