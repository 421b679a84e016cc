"""Nightly history: one SQLite database with every job's verdict and cells per night.

Each job is written in one transaction (BEGIN IMMEDIATE ... COMMIT), so a process killed in the
middle leaves the database as it was before that job: SQLite's rollback journal undoes the
partial write the next time the file is opened. Writers in several threads or processes each
open their own connection and wait for the lock (busy timeout).

Per failure signature the history answers: the night it was first seen, the last night the
cells it hit passed, and how often those cells failed with it since it was first seen.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from base.errors import InfraError

from .signature import cell_key, cell_verdict, signature_of

__all__ = ["HISTORY_FILE", "History", "SignatureStats", "default_history_path"]

HISTORY_FILE = "history.sqlite"
_SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nights (night TEXT PRIMARY KEY, started TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    night TEXT NOT NULL, job_id TEXT NOT NULL, axes TEXT NOT NULL, verdict TEXT NOT NULL,
    duration_s REAL, finished TEXT, commit_id TEXT,
    PRIMARY KEY (night, job_id));
CREATE TABLE IF NOT EXISTS cells (
    night TEXT NOT NULL, job_id TEXT NOT NULL, cell TEXT NOT NULL, verdict TEXT NOT NULL,
    signature TEXT, signature_text TEXT,
    PRIMARY KEY (night, job_id, cell));
CREATE INDEX IF NOT EXISTS cells_by_signature ON cells (signature);
"""


def default_history_path(results_dir: Path) -> Path:
    """The database beside a results folder: ``<its parent>/history.sqlite``."""
    return results_dir.resolve().parent / HISTORY_FILE


@dataclass(frozen=True)
class SignatureStats:
    """What the history knows of one signature."""

    first_seen: str | None  # night
    last_seen: str | None
    last_passed: str | None  # last night a cell it hit passed (None: never)
    failed: int  # runs of the cells it hit, since first seen, that showed it
    runs: int  # runs of those cells since first seen
    nights: int  # nights it was seen

    @property
    def rate(self) -> float | None:
        return self.failed / self.runs if self.runs else None


class History:
    """The history database at ``path`` (created with its folder when missing).

    Raises InfraError when it cannot be opened or is not a jitprobe history."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._transaction() as conn:
                conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
                if row is None:
                    conn.execute("INSERT INTO meta VALUES ('schema', ?)", (_SCHEMA_VERSION,))
                elif row[0] != _SCHEMA_VERSION:
                    raise InfraError(f"{self.path}: history schema {row[0]}, expected {_SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as exc:
            raise InfraError(f"cannot open the history database {self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 60000")
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode; the caller issues BEGIN IMMEDIATE; committed when the
        block ends normally, rolled back on an exception."""
        conn = self._connect()
        try:
            yield conn
            if conn.in_transaction:
                conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def record_job(self, finished: Mapping[str, Any], cells: Iterable[Mapping[str, Any]]) -> None:
        """Write one job of one night (its ``matrix-finished`` record and its cells), replacing
        what the database had for that job and night, in one transaction. Raises InfraError."""
        night, job_id = str(finished["night"]), str(finished["matrix_job"])
        try:
            with self._transaction() as conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT OR IGNORE INTO nights VALUES (?, ?)", (night, finished.get("started", ""))
                )
                conn.execute(
                    "UPDATE nights SET started = MIN(started, ?) WHERE night = ?",
                    (finished.get("started", ""), night),
                )
                conn.execute(
                    "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        night,
                        job_id,
                        json.dumps(finished.get("axes", {}), sort_keys=True),
                        str(finished.get("verdict")),
                        finished.get("duration_s"),
                        finished.get("finished"),
                        finished.get("commit"),
                    ),
                )
                conn.execute("DELETE FROM cells WHERE night = ? AND job_id = ?", (night, job_id))
                for cell in cells:
                    sig = signature_of(cell)
                    conn.execute(
                        "INSERT OR REPLACE INTO cells VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            night,
                            job_id,
                            cell_key(cell),
                            cell_verdict(cell),
                            sig.id if sig else None,
                            sig.text if sig else None,
                        ),
                    )
        except sqlite3.Error as exc:
            raise InfraError(f"cannot write the history database {self.path}: {exc}") from exc

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            conn = self._connect()
            try:
                return conn.execute(sql, args).fetchall()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise InfraError(f"cannot read the history database {self.path}: {exc}") from exc

    def durations(self, last: int = 5) -> dict[str, float]:
        """Median duration of each job over its last ``last`` nights (jobs that did not end in infra)."""
        rows = self._query(
            "SELECT j.job_id, j.duration_s FROM jobs j JOIN nights n USING (night) "
            "WHERE j.duration_s IS NOT NULL AND j.verdict != 'infra' ORDER BY n.started DESC"
        )
        by_job: dict[str, list[float]] = {}
        for job_id, duration in rows:
            if len(by_job.setdefault(job_id, [])) < last:
                by_job[job_id].append(float(duration))
        return {job_id: statistics.median(values) for job_id, values in by_job.items()}

    def nights(self) -> list[str]:
        """Every night, oldest first."""
        return [row[0] for row in self._query("SELECT night FROM nights ORDER BY started, night")]

    def signature_stats(self, signature: str) -> SignatureStats:
        """First seen, last passed and failure rate of ``signature`` (a Signature.id)."""
        rows = self._query(
            "SELECT c.night, n.started, c.job_id, c.cell, c.verdict, c.signature FROM cells c "
            "JOIN nights n USING (night) WHERE (c.job_id, c.cell) IN "
            "(SELECT job_id, cell FROM cells WHERE signature = ?) ORDER BY n.started, c.night",
            (signature,),
        )
        hits = [(started, night) for night, started, _, _, _, sig in rows if sig == signature]
        if not hits:
            return SignatureStats(None, None, None, 0, 0, 0)
        first = min(hits)
        since = [r for r in rows if (r[1], r[0]) >= first]
        passed = [(started, night) for night, started, _, _, verdict, _ in rows if verdict == "pass"]
        return SignatureStats(
            first_seen=first[1],
            last_seen=max(hits)[1],
            last_passed=max(passed)[1] if passed else None,
            failed=sum(1 for r in since if r[5] == signature),
            runs=len(since),
            nights=len({night for _, night in hits}),
        )

    def trend(self) -> list[tuple[str, int, int]]:
        """(night, cells that did not pass, cells) per night, oldest first."""
        rows = self._query(
            "SELECT c.night, SUM(c.signature IS NOT NULL), COUNT(*) FROM cells c JOIN nights n USING (night) "
            "GROUP BY c.night ORDER BY MIN(n.started), c.night"
        )
        return [(str(night), int(bad), int(total)) for night, bad, total in rows]
