"""Progress on the terminal: a spinner on stderr, only when stderr is a terminal.

stdout stays reserved for results (exactly one JSON object with --json).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

__all__ = ["json_printed", "print_json", "STDERR", "enabled", "status"]

STDERR = Console(stderr=True, soft_wrap=True)
_json_printed = False


def print_json(obj: object) -> None:
    """Print ``obj`` as the command's one JSON object on stdout (the contract's --json)."""
    global _json_printed
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
    _json_printed = True


def json_printed() -> bool:
    """Whether this process has printed its JSON object already."""
    return _json_printed


def enabled() -> bool:
    return sys.stderr.isatty()


@contextmanager
def status(message: str) -> Iterator[None]:
    """Show ``message`` with a spinner while the block runs (when stderr is a terminal)."""
    if enabled():
        with STDERR.status(message):
            yield
    else:
        yield
