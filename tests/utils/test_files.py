"""utils/files.py: atomic writes leave either the old file or the complete new one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pbdl_cli.utils.files import atomic_path, atomic_write_text, default_mode


def test_atomic_path_replaces_on_success_and_keeps_the_old_file_on_failure(
    tmp_path: Path,
) -> None:
    target = tmp_path / "sub" / "result.png"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith(".tmp.png")
        assert not target.exists()  # nothing visible while writing
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == default_mode()

    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer died")
    assert target.read_text() == "new"
    assert sorted(os.listdir(target.parent)) == ["result.png"]  # no temporary file left


def test_atomic_write_text(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    target.write_text("old")
    atomic_write_text(target, '{"a": 1}\n')
    assert target.read_text() == '{"a": 1}\n'
    assert os.listdir(tmp_path) == ["summary.json"]
