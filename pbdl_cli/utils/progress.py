"""Progress of long work: a tqdm bar in a terminal, log lines elsewhere.

Outside a terminal (piped output, CI, a batch job) a bar prints nothing until the work
ends, so :func:`progress` then logs one line at most every ``PBDL_PROGRESS_SECONDS``
(default 30) seconds instead: ``train: 120/1000 step (12%), 31 s, ~3.8 min left``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from tqdm.auto import tqdm

log = logging.getLogger("pbdl.progress")

ENV_VAR = "PBDL_PROGRESS_SECONDS"
DEFAULT_SECONDS = 30.0


def progress(
    total: float,
    *,
    desc: str,
    unit: str,
    initial: float = 0,
    enabled: bool = True,
    **bar_options: Any,
) -> Any:
    """A progress reporter with tqdm's ``update``/``set_postfix``/``close`` (and a context
    manager): a bar on a terminal, periodic log lines otherwise, nothing if disabled."""
    if enabled and not sys.stderr.isatty():
        return LoggedProgress(total, desc=desc, unit=unit, initial=initial)
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        disable=None if enabled else True,
        **bar_options,
    )


def _interval() -> float:
    try:
        return max(float(os.environ.get(ENV_VAR, DEFAULT_SECONDS)), 0.0)
    except ValueError:
        return DEFAULT_SECONDS


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class LoggedProgress:
    """Logs ``desc: n/total unit (p%), elapsed, ~remaining left [postfix]`` at most
    every :func:`_interval` seconds, and once more when the work is complete."""

    def __init__(self, total: float, *, desc: str, unit: str, initial: float = 0) -> None:
        self.total, self.desc, self.unit = total, desc.strip(), unit
        self.n = self._start = initial
        self._postfix = ""
        self._began = self._last = time.perf_counter()
        self._interval = _interval()
        self._closed = False

    def __enter__(self) -> LoggedProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self._last >= self._interval and self.n < self.total:
            self._last = now
            self._emit(now)

    def set_postfix(self, values: dict[str, Any] | None = None, refresh: bool = True) -> None:
        self._postfix = ", ".join(f"{k}={v}" for k, v in (values or {}).items())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.n >= self.total and self.n > self._start:
                self._emit(time.perf_counter())

    def _emit(self, now: float) -> None:
        elapsed = now - self._began
        done = self.n - self._start
        line = f"{self.desc}: {self.n:.0f}/{self.total:.0f} {self.unit}"
        if self.total:
            line += f" ({100 * self.n / self.total:.0f}%)"
        line += f", {_duration(elapsed)}"
        if done > 0 and self.n < self.total:
            line += f", ~{_duration(elapsed / done * (self.total - self.n))} left"
        if self._postfix:
            line += f" [{self._postfix}]"
        log.info(line)
