"""What a report says, before any file is written: the results read, the matrix's jobs, every
cell, the failures grouped by signature with their history and re-runs (``build_report``), and how
each file names a cell (its verdict, place, environment and reproducer)."""

from __future__ import annotations

import json
import os
import shlex
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

from base.errors import InputError
from harness.runs import RESULTS_FILE, has_results, is_results_file, read_results

from ..history import History, SignatureStats
from ..matrix import jitprobe_commit
from ..signature import Signature, cell_key, cell_verdict, signature_of

__all__ = [
    "LOCK_FILE",
    "Failure",
    "Job",
    "Report",
    "Rerun",
    "build_report",
    "environment",
    "load_cells",
    "rate_text",
    "reproducer_of",
    "smallest_words",
    "summary_counts",
    "verdict_of",
    "where",
]

ROOT = Path(__file__).resolve().parents[2]
LOCK_FILE = ROOT / "images" / "packages.lock.json"


def _read(paths: Sequence[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    records: list[dict[str, Any]] = []
    warnings: list[str] = []
    for path in paths:
        # a results file stands for its folder: the matrix's workers each write one of the folder's files
        folder = path.parent if is_results_file(path) else path
        if not has_results(folder):
            raise InputError(
                "RESULTS", str(path),
                hint=f"not a results folder (no {RESULTS_FILE} nor results.<writer>.jsonl) nor such a file",
            )  # fmt: skip
        found, skipped = read_results(folder)
        records += found
        warnings += skipped
    return records, warnings


def _seed_of(reproducer: str) -> int | None:
    words = shlex.split(reproducer) if reproducer else []
    if "--seed" in words[:-1]:
        try:
            return int(words[words.index("--seed") + 1])
        except ValueError:
            return None
    return None


def _plain(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """A main-job step or an exec/boot result as a cell (None for records that are not results)."""
    if record.get("job") == "main":
        return {
            "arch": record.get("arch", "?"),
            "cpu": "",
            "suite": "main",
            "scenario": record.get("step", "?"),
            "mutation": "none",
            "verdict": record.get("verdict"),
            "detail": record.get("detail", ""),
            "run_dir": record.get("run_dir", ""),
            "violations": [],
            "reproducer": f"python -m ci.main_job --arch {record.get('arch', '?')}",
        }
    if "command" in record and "verdict" in record:
        violations = record.get("violations") or []
        return {
            "arch": record.get("arch", "?"),
            "cpu": record.get("cpu", ""),
            "smp": record.get("smp"),
            "suite": str(record["command"]),
            "scenario": str(record["command"]),
            "mutation": "none",
            "verdict": record["verdict"],
            "violations": violations,
            "expected_rules": [],
            "observed_rules": sorted({v.get("rule") for v in violations if isinstance(v, dict)}),
            "exit_code": record.get("exit_code"),
            "detail": (record.get("console_tail") or "")[-300:],
            "run_dir": record.get("run_dir", ""),
            "reproducer": "",
            "qemu_version": record.get("qemu_version"),
            "kernel": record.get("kernel"),
            "time": record.get("time"),
        }
    return None


@dataclass
class Job:
    """A matrix job's finished (or last, cut-off) attempt."""

    id: str
    night: str
    axes: dict[str, Any]
    verdict: str
    finished: dict[str, Any] | None
    cells: list[dict[str, Any]] = field(default_factory=list)


def load_cells(paths: Sequence[Path]) -> tuple[list[Job], list[dict[str, Any]], list[str]]:
    """(matrix jobs, every cell, warnings) of the results given; duplicates (the same record read
    twice) count once."""
    return _cells_of(*_read(paths))


def _order(end: Mapping[str, Any]) -> tuple[str, str]:
    return str(end.get("finished", "")), str(end.get("attempt", ""))


def _cells_of(
    records: list[dict[str, Any]], warnings: list[str]
) -> tuple[list[Job], list[dict[str, Any]], list[str]]:
    starts: dict[tuple[str, str], dict[str, Any]] = {}
    ends: dict[tuple[str, str], dict[str, Any]] = {}
    attempt_cells: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    plain: dict[str, dict[str, Any]] = {}
    for r in records:
        kind = r.get("job")
        if "matrix_job" in r:
            key = (str(r.get("night", "")), str(r["matrix_job"]))
            if kind == "matrix-start":
                starts.setdefault(key, {})[r["attempt"]] = r
            elif kind == "matrix-finished":
                # the attempt that finished last wins, whichever file was read first
                if key not in ends or _order(r) > _order(ends[key]):
                    ends[key] = r
            elif kind == "run":
                attempt_cells.setdefault(key, {}).setdefault(r["attempt"], {})
                attempt_cells[key][r["attempt"]][cell_key(r) + "|" + str(r.get("arch"))] = r
            continue
        cell = dict(r) if kind == "run" else _plain(r)
        if cell is None:
            continue
        identity = json.dumps({k: v for k, v in cell.items() if k != "schema"}, sort_keys=True, default=str)
        plain.setdefault(sha256(identity.encode()).hexdigest(), cell)
    jobs: list[Job] = []
    for key in sorted(set(starts) | set(ends) | set(attempt_cells)):
        night, job_id = key
        end = ends.get(key)
        by_attempt: Any = attempt_cells.get(key, {})
        if end is not None:
            attempt = end["attempt"]
        else:  # cut off: the attempt started last
            tried = starts.get(key, {})
            attempt = (
                max(tried, key=lambda a: tried[a].get("started", "")) if tried else next(iter(by_attempt))
            )
        axes = (end or next(iter(starts.get(key, {}).values()), {})).get("axes", {})
        job = Job(job_id, night, dict(axes), str(end["verdict"]) if end else "cut off", end)
        for cell in by_attempt.get(attempt, {}).values():
            cell = dict(cell)
            cell.setdefault("smp", axes.get("smp"))
            cell["seed"] = axes.get("seed")
            cell["sanitize"] = axes.get("sanitize", True)
            for fact in ("qemu_version", "kernel", "image", "commit"):
                cell[fact] = (end or {}).get(fact)
            job.cells.append(cell)
        jobs.append(job)
    cells = [c for job in jobs for c in job.cells]
    for cell in plain.values():
        cell.setdefault("seed", _seed_of(str(cell.get("reproducer", ""))))
        cells.append(cell)
    for job in jobs:
        if job.finished is None:
            warnings.append(
                f"job {job.id} ({job.night}) was cut off: {len(job.cells)} cells recorded, no end"
            )
    return jobs, cells, warnings


@dataclass(frozen=True)
class Rerun:
    """What ``matrix run --rerun N`` found for one signature (ci.rerun): the re-runs of the
    latest night that has any, summed over the jobs that re-ran it (one per shard at most)."""

    night: str
    runs: int
    reproduced: int
    errors: int
    smallest: dict[str, Any] | None  # iterations, threads, attempts, reproducer
    original: dict[str, Any] | None  # the scenario's own iterations and threads
    jobs: tuple[str, ...]

    @property
    def rate(self) -> str:
        if not self.runs:
            return f"0 runs ({self.errors} failed to run)"
        return f"{self.reproduced}/{self.runs} ({100 * self.reproduced / self.runs:.0f}%)"

    def as_dict(self) -> dict[str, Any]:
        return {"night": self.night, "runs": self.runs, "reproduced": self.reproduced, "errors": self.errors,
                "rate": self.reproduced / self.runs if self.runs else None, "smallest": self.smallest,
                "original": self.original, "jobs": list(self.jobs)}  # fmt: skip


def _reruns(records: Sequence[Mapping[str, Any]]) -> dict[str, Rerun]:
    """Each signature's Rerun from the ``rerun`` records (duplicates count once)."""
    unique = {
        (str(r.get("night", "")), str(r.get("matrix_job", "")), str(r["signature"])): r
        for r in records
        if r.get("job") == "rerun" and "signature" in r
    }
    by_sig: dict[str, list[Mapping[str, Any]]] = {}
    for key in sorted(unique):
        by_sig.setdefault(key[2], []).append(unique[key])
    out = {}
    for sig, found in by_sig.items():
        night = max(str(r.get("night", "")) for r in found)
        latest = [r for r in found if str(r.get("night", "")) == night]
        shrunk = [r["smallest"] for r in latest if isinstance(r.get("smallest"), dict)]
        out[sig] = Rerun(
            night=night,
            runs=sum(int(r.get("runs") or 0) for r in latest),
            reproduced=sum(int(r.get("reproduced") or 0) for r in latest),
            errors=sum(int(r.get("errors") or 0) for r in latest),
            smallest=min(shrunk, key=lambda s: (s.get("iterations", 0), s.get("threads", 0)), default=None),
            original=next((r["original"] for r in latest if r.get("original")), None),
            jobs=tuple(str(r.get("matrix_job", "")) for r in latest),
        )
    return out


@dataclass
class Failure:
    """Every cell with one signature."""

    signature: Signature
    cells: list[dict[str, Any]]
    stats: SignatureStats | None = None
    new: bool = True
    rerun: Rerun | None = None

    @property
    def first(self) -> dict[str, Any]:
        return self.cells[0]


@dataclass
class Report:
    jobs: list[Job]
    cells: list[dict[str, Any]]
    failures: list[Failure]
    warnings: list[str]
    night: str | None
    trend: list[tuple[str, int, int]]
    generated: str
    commit: str
    lock_hash: str | None


def _lock_hash() -> str | None:
    try:
        return sha256(LOCK_FILE.read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def _build_time() -> float:
    """$SOURCE_DATE_EPOCH when set (reproducible builds: the same results give the same files, as
    reproducible-builds.org specifies), else now."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is None:
        return time.time()
    if not epoch.isdigit():
        raise InputError("SOURCE_DATE_EPOCH", epoch, hint="seconds since 1970-01-01 UTC, a whole number")
    return float(epoch)


def build_report(paths: Sequence[Path], history: History | None = None) -> Report:
    """Read the results, group the failures by signature and, with ``history``, record the
    matrix's finished jobs there (one transaction each) and look up each signature."""
    records, warnings = _read(paths)
    jobs, cells, warnings = _cells_of(records, warnings)
    reruns = _reruns(records)
    if history is not None:
        for job in jobs:
            if job.finished is not None:
                history.record_job(job.finished, job.cells)
    groups: dict[str, Failure] = {}
    for cell in cells:
        sig = signature_of(cell)
        if sig is not None:
            groups.setdefault(sig.id, Failure(sig, [])).cells.append(cell)
    night = max((job.night for job in jobs), default=None)
    failures = sorted(groups.values(), key=lambda f: (f.signature.kind, f.signature.scenario, f.signature.id))
    for failure in failures:
        failure.rerun = reruns.get(failure.signature.id)
        if history is not None:
            failure.stats = history.signature_stats(failure.signature.id)
            failure.new = failure.stats.first_seen in (None, night)
    return Report(
        jobs=jobs,
        cells=cells,
        failures=failures,
        warnings=warnings,
        night=night,
        trend=history.trend() if history is not None else [],
        generated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_build_time())),
        commit=jitprobe_commit(),
        lock_hash=_lock_hash(),
    )


# -- what every file says of a cell ------------------------------------------------------------


def verdict_of(cell: Mapping[str, Any]) -> str:
    return cell_verdict(cell)


def where(cell: Mapping[str, Any]) -> str:
    """Architecture, CPU model and vCPUs: a column of the detection matrix."""
    smp = f" smp{cell['smp']}" if cell.get("smp") else ""
    return f"{cell.get('arch')} {cell.get('cpu') or ''}{smp}".strip()


def environment(cell: Mapping[str, Any], report: Report) -> dict[str, Any]:
    return {
        "arch": cell.get("arch"),
        "cpu": cell.get("cpu"),
        "smp": cell.get("smp"),
        "qemu_version": cell.get("qemu_version"),
        "kernel": cell.get("kernel"),
        "image": cell.get("image"),
        "image_lock": report.lock_hash,
        "commit": cell.get("commit"),
        "seed": cell.get("seed"),
        "night": cell.get("night"),
        "matrix_job": cell.get("matrix_job"),
    }


def reproducer_of(cell: Mapping[str, Any]) -> str:
    return str(cell.get("reproducer") or "")


def rate_text(stats: SignatureStats | None) -> str:
    if stats is None or stats.rate is None:
        return "-"
    return f"{stats.failed}/{stats.runs} ({100 * stats.rate:.0f}%)"


def smallest_words(rerun: Rerun) -> str:
    s = rerun.smallest
    if s is None:
        return ""
    was = rerun.original or {}
    return (f"iterations {s.get('iterations')}, threads {s.get('threads')} (the scenario's: "
            f"{was.get('iterations', '?')}, {was.get('threads', '?')}; "
            f"{s.get('attempts', 0)} shrink attempts)")  # fmt: skip


def summary_counts(report: Report) -> dict[str, Any]:
    return {
        "cells": len(report.cells),
        "verdicts": dict(Counter(verdict_of(c) for c in report.cells)),
        "jobs": len(report.jobs),
        "jobs_cut_off": sum(1 for j in report.jobs if j.finished is None),
        "failures": len(report.failures),
        "new_failures": sum(1 for f in report.failures if f.new),
    }
