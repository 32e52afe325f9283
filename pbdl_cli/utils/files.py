"""Atomic file and directory operations: readers never see half-written results."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pbdl_cli.utils.space import disk_full_as_error


@functools.cache
def default_mode() -> int:
    """The permissions a plain ``open(path, "w")`` would give: 0o666 minus the umask
    (``mkstemp`` creates its files 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: Path, *, needed: int | None = None) -> Iterator[Path]:
    """A temporary path next to ``path`` that becomes ``path`` when the block succeeds and
    is removed when it fails, so readers see the old file or the complete new one.

    The temporary name keeps the suffix (``.<name>.<random>.tmp<suffix>``) for writers that
    choose their format by the extension; it has the permissions ``open(path, "w")`` gives.
    A full disk (:func:`~pbdl_cli.utils.space.is_disk_full`) raises a one-line
    :class:`~pbdl_cli.utils.space.NoSpaceError` naming ``path`` (and ``needed`` bytes,
    where the caller knows them); the old file stays.
    """
    with disk_full_as_error(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}"
        )
    os.close(fd)
    os.chmod(tmp, default_mode())
    try:
        with disk_full_as_error(path, needed):
            yield Path(tmp)
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_path`), flushed to disk."""
    with atomic_path(path) as tmp, tmp.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(target: Path) -> list[Path]:
    """Delete ``<target>.partial-<pid>`` directories whose writing process has died."""
    removed = []
    for candidate in target.parent.glob(f"{target.name}.partial-*"):
        pid = candidate.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


def publish_directory(partial: Path, target: Path, *, overwrite: bool) -> None:
    """Rename the finished ``partial`` directory to ``target`` (replacing it if allowed).

    The old target is first renamed aside and only deleted once the new one is in place,
    so at every instant ``target`` is either the complete old or the complete new data.
    """
    if target.exists():
        if not overwrite:
            raise FileExistsError(target)
        aside = target.with_name(f"{target.name}.old-{os.getpid()}")
        os.replace(target, aside)
        os.replace(partial, target)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(partial, target)
