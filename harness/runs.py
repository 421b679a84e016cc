"""Run folders (one per jitprobe command and architecture) and the results file."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path

from base.errors import InfraError
from base.files import locked

__all__ = ["RESULTS_FILE", "RUNS_ENV", "append_result", "new_run_dir", "runs_root"]

RUNS_ENV = "JITPROBE_RUNS"
RESULTS_FILE = "results.jsonl"


def runs_root() -> Path:
    """$JITPROBE_RUNS, or ./runs when unset."""
    return Path(os.environ.get(RUNS_ENV) or "runs").resolve()


def new_run_dir(command: str, arch: str, root: Path | None = None) -> Path:
    """Create and return ``<root>/<timestamp>-<command>-<arch>[-n]/``. Raises InfraError if impossible."""
    root = root or runs_root()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        root.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            path = root / (f"{stamp}-{command}-{arch}" + (f"-{n}" if n > 1 else ""))
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return path
    except OSError as exc:
        raise InfraError(f"cannot create a run folder under {root}: {exc}") from exc
    raise InfraError(f"cannot create a run folder under {root}: 999 folders named {stamp}-{command}-{arch}")


def append_result(results_dir: Path, record: Mapping[str, object]) -> Path:
    """Append ``record`` as one JSON line to ``results_dir``/results.jsonl (created if missing).

    Lines are written whole under an exclusive lock, so parallel runs may share the file.
    Raises InfraError if the folder or file cannot be written."""
    path = results_dir / RESULTS_FILE
    line = json.dumps(record, sort_keys=True) + "\n"
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh, locked(fh):
            fh.write(line)
    except OSError as exc:
        raise InfraError(f"cannot append to {path}: {exc}") from exc
    return path
