"""Run folders (one per jitprobe command and architecture) and the results file."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from base.errors import InfraError
from base.files import locked

__all__ = [
    "RESULTS_FILE", "RESULTS_SCHEMA", "RUNS_ENV", "append_result", "new_run_dir", "read_results", "runs_root",
]

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


RESULTS_SCHEMA = 1  # the "schema" field of every record; readers refuse other versions


def append_result(results_dir: Path, record: Mapping[str, object]) -> Path:
    """Append ``record`` (with ``"schema": RESULTS_SCHEMA``) as one JSON line to
    ``results_dir``/results.jsonl (created if missing).

    The line is built whole and written under an exclusive lock on an O_APPEND descriptor, so
    parallel runs may share the file. A writer killed mid-write leaves a fragment without a line
    end; the next append first ends that line, so the fragment stays one bad line (which
    read_results skips and reports) and never swallows the next record.
    Raises InfraError if the folder or file cannot be written."""
    path = results_dir / RESULTS_FILE
    data = (json.dumps({"schema": RESULTS_SCHEMA, **record}, sort_keys=True) + "\n").encode()
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        with open(path, "ab+") as fh, locked(fh):
            size = os.fstat(fh.fileno()).st_size
            if size and os.pread(fh.fileno(), 1, size - 1) != b"\n":
                data = b"\n" + data
            view = memoryview(data)
            fd = fh.fileno()
            while view:  # unbuffered: one record in as few write calls as the kernel allows
                view = view[os.write(fd, view):]
    except OSError as exc:
        raise InfraError(f"cannot append to {path}: {exc}") from exc
    return path


def read_results(results_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The records of ``results_dir``/results.jsonl and a description of each line skipped (torn
    by a killed writer, not JSON, or of another schema). Raises InfraError if the file cannot be
    read."""
    path = results_dir / RESULTS_FILE
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InfraError(f"cannot read {path}: {exc}") from exc
    records: list[dict[str, Any]] = []
    skipped: list[str] = []
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        torn = number == len(lines)  # no line end: a writer was killed while writing it
        try:
            record = json.loads(line)
        except ValueError:
            skipped.append(f"{path}:{number}: {'torn record (no line end)' if torn else 'not JSON'}, "
                           f"{len(line)} bytes")  # fmt: skip
            continue
        if not isinstance(record, dict) or record.get("schema") != RESULTS_SCHEMA:
            schema = record.get("schema") if isinstance(record, dict) else None
            skipped.append(f"{path}:{number}: schema {schema!r}, expected {RESULTS_SCHEMA}")
            continue
        records.append(record)
    return records, skipped
