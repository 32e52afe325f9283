"""utils/progress.py: outside a terminal, long work reports progress in log lines."""

from __future__ import annotations

import logging

import pytest

from pbdl_cli.utils.progress import LoggedProgress, progress


def test_without_a_terminal_progress_is_logged_at_an_interval(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setenv("PBDL_PROGRESS_SECONDS", "0")
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    caplog.set_level(logging.INFO, logger="pbdl.progress")
    with progress(4, desc="train", unit="step", initial=1) as bar:
        assert isinstance(bar, LoggedProgress)
        bar.set_postfix({"loss": "0.5"})
        for _ in range(3):
            bar.update(1)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("train: 2/4 step (50%), 0 s, ~0 s left [loss=0.5]")
    assert lines[-1].startswith("train: 4/4 step (100%)") and "left" not in lines[-1]
    assert len(lines) == 3  # steps 2 and 3, then the end (not twice)


def test_a_long_interval_logs_only_the_end_and_disabled_logs_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setenv("PBDL_PROGRESS_SECONDS", "3600")
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    caplog.set_level(logging.INFO, logger="pbdl.progress")
    with progress(10, desc="train", unit="traj") as bar:
        bar.update(10)
    with progress(10, desc="other", unit="traj", enabled=False) as bar:
        bar.update(10)
    assert [r.getMessage().split(",")[0] for r in caplog.records] == ["train: 10/10 traj (100%)"]
