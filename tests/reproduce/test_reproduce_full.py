"""The full reproductions (slow: minutes to tens of minutes each; run by
scripts/reproduce_all.py or ``pytest -m slow``): every judged check must pass."""

from __future__ import annotations

import json

import pytest

from pbdl_cli.reproduce.base import REPRODUCTIONS
from tests.conftest import run_cli


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REPRODUCTIONS))
def test_full_reproduction_passes_its_checks(workdir, name):
    out = workdir / name
    result = run_cli("reproduce", name, "--out", str(out), cwd=workdir, timeout=3600)
    payload = json.loads((out / "results.json").read_text())
    failed = [c["label"] for c in payload["checks"] if c["pass"] is False]
    assert result.returncode == 0 and not failed, (failed, result.stdout[-3000:])
