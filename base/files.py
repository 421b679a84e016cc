"""jitprobe's cache folder and the one file-lock helper every part uses."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["cache_root", "file_lock", "locked"]


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/jitprobe``, or ``~/.cache/jitprobe`` when the variable is unset or empty."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jitprobe"


@contextmanager
def locked(fh: IO[str] | IO[bytes]) -> Iterator[None]:
    """Hold an exclusive flock on the open file ``fh`` for the ``with`` block.

    flock rather than the filelock library: callers also lock data files they append to, which
    filelock would open with O_TRUNC. Raises OSError if the lock cannot be taken."""
    fcntl.flock(fh, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created, with its folder, if missing) for the block.

    Raises OSError if the file cannot be created or locked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh, locked(fh):
        yield
