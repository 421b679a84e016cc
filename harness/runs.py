"""Run folders (one per jitprobe command and architecture) and the results files.

A results folder holds ``results.jsonl`` and, where several writers run at once (the matrix's
parallel workers), each writer's own ``results.<writer>.jsonl``, so that no two of them append to
the same file. Readers take every one of them: together they are the folder's records.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from base.errors import InfraError
from base.files import locked

__all__ = [
    "RESULTS_FILE", "RESULTS_SCHEMA", "RUNS_ENV", "append_result", "has_results", "is_results_file",
    "new_results_dir", "new_run_dir", "read_results", "results_files", "runs_root",
]

RUNS_ENV = "JITPROBE_RUNS"
RESULTS_FILE = "results.jsonl"
_WRITER_NAME = r"[A-Za-z0-9_-]{1,64}"
_WRITER = re.compile(_WRITER_NAME)
_WRITER_FILE = re.compile(rf"results\.{_WRITER_NAME}\.jsonl")


def runs_root() -> Path:
    """$JITPROBE_RUNS, or ./runs when unset."""
    return Path(os.environ.get(RUNS_ENV) or "runs").resolve()


def _new_folder(root: Path, name: str) -> Path:
    """Create and return ``<root>/<name>[-n]/``, a folder no other process got (two commands
    started in the same second get two). Raises InfraError if impossible."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            path = root / (name + (f"-{n}" if n > 1 else ""))
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return path
    except OSError as exc:
        raise InfraError(f"cannot create a run folder under {root}: {exc}") from exc
    raise InfraError(f"cannot create a run folder under {root}: 999 folders named {name}")


def new_run_dir(command: str, arch: str, root: Path | None = None) -> Path:
    """Create and return ``<root>/<timestamp>-<command>-<arch>[-n]/``. Raises InfraError if impossible."""
    return _new_folder(root or runs_root(), f"{time.strftime('%Y%m%d-%H%M%S')}-{command}-{arch}")


def new_results_dir(kind: str) -> Path:
    """Create and return a command's default results folder, ``<runs>/<kind>-<timestamp>[-n]/``
    (run, matrix, main). Raises InfraError if impossible."""
    return _new_folder(runs_root(), f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}")


RESULTS_SCHEMA = 1  # the "schema" field of every record; readers refuse other versions


def is_results_file(path: Path) -> bool:
    """Whether ``path`` is named like a results file: results.jsonl or results.<writer>.jsonl."""
    return path.name == RESULTS_FILE or _WRITER_FILE.fullmatch(path.name) is not None


def results_files(results_dir: Path) -> list[Path]:
    """The results files of ``results_dir`` that exist: results.jsonl first, then the writers'
    own files by name (none when the folder is missing or unreadable)."""
    try:
        found = [p for p in results_dir.iterdir() if is_results_file(p) and p.is_file()]
    except OSError:
        return []
    return sorted(found, key=lambda p: (p.name != RESULTS_FILE, p.name))


def has_results(results_dir: Path) -> bool:
    """Whether ``results_dir`` holds any results file."""
    return bool(results_files(results_dir))


def append_result(results_dir: Path, record: Mapping[str, object], writer: str | None = None) -> Path:
    """Append ``record`` (with ``"schema": RESULTS_SCHEMA``) as one JSON line to
    ``results_dir``/results.jsonl, or with ``writer`` to that writer's own
    ``results_dir``/results.<writer>.jsonl (created if missing).

    The line is built whole and written under an exclusive lock on an O_APPEND descriptor, so
    parallel runs may share the file. A writer killed mid-write leaves a fragment without a line
    end; the next append first ends that line, so the fragment stays one bad line (which
    read_results skips and reports) and never swallows the next record.
    Raises ValueError for a writer name that is not 1-64 letters, digits, ``_`` or ``-``, and
    InfraError if the folder or file cannot be written."""
    if writer is not None and not _WRITER.fullmatch(writer):
        raise ValueError(f"results writer name {writer!r}: expected 1-64 letters, digits, '_' or '-'")
    path = results_dir / (RESULTS_FILE if writer is None else f"results.{writer}.jsonl")
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
    """The records of every results file of ``results_dir`` (results.jsonl, then each writer's
    own, in results_files' order) and a description of each line skipped (torn by a killed
    writer, not JSON, or of another schema). Raises InfraError if there is no results file or
    one cannot be read."""
    records: list[dict[str, Any]] = []
    skipped: list[str] = []
    for path in results_files(results_dir) or [results_dir / RESULTS_FILE]:
        found, bad = _read_file(path)
        records += found
        skipped += bad
    return records, skipped


def _read_file(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
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
