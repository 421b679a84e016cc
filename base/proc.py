"""Running host tools: the one subprocess wrapper, which turns every failure into InfraError."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from base.errors import InfraError

__all__ = ["run"]


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    what: str = "",
    tail: int = 2000,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to completion with its output captured as text, and return it.

    ``what`` names the step in messages (default: the command line); the last ``tail``
    characters of stderr (or stdout) go into the error. Raises InfraError when the program
    cannot be started, or, with ``check``, when it exits non-zero."""
    label = what or " ".join(argv)
    try:
        proc = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True)
    except OSError as exc:
        raise InfraError(f"cannot run {argv[0]}: {exc}") from exc
    if check and proc.returncode != 0:
        message = (proc.stderr.strip() or proc.stdout.strip())[-tail:]
        raise InfraError(f"{label} failed (exit {proc.returncode}): {message}")
    return proc
