"""Room to work: writable locations, free disk and memory, and disk-full errors.

Stages check before any work starts that their output folders can be written
(:func:`check_writable`) and that the estimated sizes fit (:func:`check_disk`,
:func:`check_memory`); a disk that fills up while writing anyway (another process, an
estimate that was low) raises :class:`NoSpaceError` naming the file
(:func:`disk_full_error`). Errors are one line; see docs/cli.md for the exit codes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pbdl_cli.errors import PbdlError

#: errno values of a full disk or an exhausted quota
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
#: how h5py and torch word it when they do not keep the errno (RuntimeError, OSError)
_DISK_FULL_TEXT = ("no space left on device", "disk quota exceeded")


class NoSpaceError(PbdlError):
    """Not enough disk space or memory: the disk filled up while writing, or the
    estimated size of a run does not fit into what is available (checked first)."""

    exit_code = 1


class UnwritableError(PbdlError):
    """A folder a run would write to cannot be written (read-only, no permission)."""

    exit_code = 2


def human_size(n: float) -> str:
    """``n`` bytes as ``"512 B"``, ``"18.8 KiB"``, ``"1.2 GiB"``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"


# -- disk full while writing ---------------------------------------------------------------
def is_disk_full(error: BaseException | None) -> bool:
    """Whether ``error`` (or an error it was raised from) says the disk or the quota is
    full: an ``OSError`` with errno ENOSPC/EDQUOT, or the wording of h5py's and torch's
    ``OSError``/``RuntimeError`` that carry the errno only in their message."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, NoSpaceError):
            return True
        if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
            return True
        if isinstance(error, (OSError, RuntimeError)):
            text = str(error).lower()
            if any(words in text for words in _DISK_FULL_TEXT):
                return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


class DiskFullError(NoSpaceError):
    """The disk filled up while writing ``path``. The message says what is free there
    when it is shown (after the partial output was removed), and what was needed where
    it is known; ``cleaned``: the writer removed what it had written."""

    def __init__(self, path: Path | str, needed: int | None = None, cleaned: bool = True):
        super().__init__(f"no space left on the device while writing {path}")
        self.path, self.needed, self.cleaned = Path(path), needed, cleaned

    def __str__(self) -> str:
        free = free_disk(self.path)
        need = f"; it needs about {human_size(self.needed)}" if self.needed else ""
        have = f", {human_size(free)} free there" if free is not None else ""
        kept = "; the partial output was removed and earlier results are intact"
        kept = kept if self.cleaned else ""
        return f"{self.args[0]}{need}{have}{kept}: free some space or write elsewhere"


def disk_full_error(
    path: Path | str, needed: int | None = None, *, cleaned: bool = True
) -> DiskFullError:
    """The one-line error for a disk that filled up while writing ``path``."""
    return DiskFullError(path, needed, cleaned)


@contextlib.contextmanager
def disk_full_as_error(path: Path | str, needed: int | None = None) -> Iterator[None]:
    """Turn a disk-full error raised in the block into :func:`disk_full_error`."""
    try:
        yield
    except NoSpaceError:
        raise
    except (OSError, RuntimeError) as error:
        if not is_disk_full(error):
            raise
        raise disk_full_error(path, needed) from None


# -- checks before a run starts ------------------------------------------------------------
def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (what a run would create folders in)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_disk(path: Path) -> int | None:
    """Bytes free for this user on the file system that holds (or would hold) ``path``."""
    try:
        return shutil.disk_usage(existing_ancestor(path)).free
    except OSError:
        return None


def available_memory() -> int | None:
    """Bytes of memory a new allocation can get without swapping: ``MemAvailable`` of
    /proc/meminfo (Linux), else free pages x page size; None where neither is known."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def check_writable(path: Path, what: str) -> None:
    """Refuse when the folder ``path`` (or, where it does not exist yet, the nearest
    existing folder it would be created in) cannot be written: ``os.access`` first, then
    a real attempt (root passes ``os.access`` on a read-only file system)."""
    base = existing_ancestor(Path(path))
    shown = f"{path}" if base == Path(os.path.abspath(path)) else f"{path} (in {base})"
    if not base.is_dir():
        raise UnwritableError(f"cannot write the {what} {shown}: {base} is not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UnwritableError(
            f"cannot write the {what} {shown}: {base} is not writable ({_why(base)}); "
            "choose another location"
        )
    try:
        fd, probe = tempfile.mkstemp(dir=base, prefix=".pbdl-write-check-")
    except OSError as error:
        if is_disk_full(error):
            raise disk_full_error(base) from None
        reason = error.strerror or type(error).__name__
        raise UnwritableError(
            f"cannot write the {what} {shown}: {reason.lower()}; choose another location"
        ) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _why(folder: Path) -> str:
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except (OSError, AttributeError):
        pass
    return "permission denied"


def check_disk(path: Path, needed: int, what: str) -> None:
    """Refuse when about ``needed`` bytes for ``what`` at ``path`` exceed the free space."""
    free = free_disk(path)
    if free is not None and needed > free:
        raise NoSpaceError(
            f"{what} needs about {human_size(needed)} at {path}, but only {human_size(free)} "
            "is free there; free some space, write elsewhere or make it smaller"
        )


def check_memory(needed: int, what: str, *, available: int | None = None) -> None:
    """Refuse when about ``needed`` bytes of memory for ``what`` exceed what is available
    (``available``: a device's free memory; default: :func:`available_memory`)."""
    have = available if available is not None else available_memory()
    if have is not None and needed > have:
        raise NoSpaceError(
            f"{what} needs about {human_size(needed)} of memory, but only {human_size(have)} "
            "is available; make it smaller (fewer cells, a smaller data.batch_size)"
        )
