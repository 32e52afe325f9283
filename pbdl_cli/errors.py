"""User-facing errors.

Anything a user can cause (a bad override, an unknown plugin, a missing dataset, a
dataset that already exists) is raised as :class:`PbdlError`. The CLI prints its
message on one line block and exits with its ``exit_code`` (2 for usage errors, as
argparse and click do), without a traceback unless ``--debug`` or ``PBDL_DEBUG=1``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PbdlError(Exception):
    """An error the user can fix; the message says how."""

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ' (did you mean 'x'?)' suffix for the closest choice, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
