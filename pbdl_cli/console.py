"""The terminal: one rich console for output and one for messages on stderr."""

from __future__ import annotations

import os

from rich.console import Console
from rich.text import Text

console = Console()
errors = Console(stderr=True)


def debug_enabled() -> bool:
    """True when tracebacks should be shown (``--debug`` or ``PBDL_DEBUG=1``)."""
    return os.environ.get("PBDL_DEBUG", "").lower() not in ("", "0", "false", "no")


def report_error(message: str) -> None:
    """Print ``error: <message>`` on stderr (no markup interpretation of the message)."""
    errors.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
