"""``jitprobe report RESULTS... --out DIR``: triage reports from results files.

Reads every record of the results folders (or results.jsonl files) given: the matrix's jobs and
cells (only the attempt of a job that finished; a job never finished is reported as cut off),
``jitprobe run`` cells, ``jitprobe exec``/``boot`` results and the main job's steps. Each is a
test case; each that did not pass has a signature (ci.signature), and failures with the same
signature are one entry listing every job they hit. Writes index.html (self-contained: inline
CSS and SVG, no script, nothing fetched), summary.md, junit.xml and results.json.
"""

from __future__ import annotations

import html
import json
import shlex
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

from base.errors import InfraError, InputError
from harness.runs import RESULTS_FILE, read_results

from .history import History, SignatureStats
from .matrix import jitprobe_commit
from .signature import NO_VERDICT, Signature, cell_key, cell_verdict, signature_of
from .triage import console_excerpt, disassemble_around, events

__all__ = [
    "LOCK_FILE",
    "Failure",
    "Job",
    "Report",
    "Rerun",
    "build_report",
    "index_html",
    "junit_xml",
    "load_cells",
    "results_json",
    "summary_md",
    "write_report",
]

_VIOLATION_COLUMNS = (
    "rule", "pc", "vcpu", "insn", "disasm", "symbol", "writer_pc", "writer_vcpu", "count", "space",
)  # fmt: skip

ROOT = Path(__file__).resolve().parent.parent
LOCK_FILE = ROOT / "images" / "packages.lock.json"
REPORT_SCHEMA = 1


def _read(paths: Sequence[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    records: list[dict[str, Any]] = []
    warnings: list[str] = []
    for path in paths:
        folder = path.parent if path.name == RESULTS_FILE else path
        if not (folder / RESULTS_FILE).is_file():
            raise InputError("RESULTS", str(path), hint=f"not a results folder (no {RESULTS_FILE}) nor file")
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
                ends[key] = r  # the last finished attempt wins
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
        generated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        commit=jitprobe_commit(),
        lock_hash=_lock_hash(),
    )


# -- the four files -----------------------------------------------------------------------------


def _verdict(cell: Mapping[str, Any]) -> str:
    return cell_verdict(cell)


def _where(cell: Mapping[str, Any]) -> str:
    smp = f" smp{cell['smp']}" if cell.get("smp") else ""
    return f"{cell.get('arch')} {cell.get('cpu') or ''}{smp}".strip()


def _env(cell: Mapping[str, Any], report: Report) -> dict[str, Any]:
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


def _reproducer(cell: Mapping[str, Any]) -> str:
    return str(cell.get("reproducer") or "")


def _failure_json(failure: Failure, report: Report) -> dict[str, Any]:
    first = failure.first
    stats = failure.stats
    detail: dict[str, Any] = {
        "signature": failure.signature.as_dict(),
        "new": failure.new,
        "count": len(failure.cells),
        "hits": [
            {
                **_env(c, report),
                "verdict": _verdict(c),
                "run_dir": c.get("run_dir"),
                "reproducer": _reproducer(c),
            }
            for c in failure.cells
        ],
        "environment": _env(first, report),
        "reproducer": _reproducer(first),
        "rerun": failure.rerun.as_dict() if failure.rerun else None,
        "detail": first.get("detail", ""),
        "violations": (first.get("violations") or [])[:50],
        "history": None
        if stats is None
        else {
            "first_seen": stats.first_seen,
            "last_seen": stats.last_seen,
            "last_passed": stats.last_passed,
            "failed": stats.failed,
            "runs": stats.runs,
            "rate": stats.rate,
            "nights": stats.nights,
        },
    }
    return detail


def _summary_counts(report: Report) -> dict[str, Any]:
    return {
        "cells": len(report.cells),
        "verdicts": dict(Counter(_verdict(c) for c in report.cells)),
        "jobs": len(report.jobs),
        "jobs_cut_off": sum(1 for j in report.jobs if j.finished is None),
        "failures": len(report.failures),
        "new_failures": sum(1 for f in report.failures if f.new),
    }


def results_json(report: Report) -> dict[str, Any]:
    return {
        "schema": REPORT_SCHEMA,
        "generated": report.generated,
        "commit": report.commit,
        "night": report.night,
        "image_lock": report.lock_hash,
        "summary": _summary_counts(report),
        "jobs": [
            {
                "id": j.id,
                "night": j.night,
                "axes": j.axes,
                "verdict": j.verdict,
                "cells": len(j.cells),
                "duration_s": (j.finished or {}).get("duration_s"),
            }
            for j in report.jobs
        ],
        "cells": [{k: v for k, v in c.items() if k not in ("schema",)} for c in report.cells],
        "failures": [_failure_json(f, report) for f in report.failures],
        "trend": [{"night": n, "failing": bad, "cells": total} for n, bad, total in report.trend],
        "warnings": report.warnings,
    }


def junit_xml(report: Report) -> ET.ElementTree:
    """One testsuite per ``<arch>.<suite>`` classname, one testcase per cell."""
    root = ET.Element("testsuites", name="jitprobe")
    suites: dict[str, ET.Element] = {}
    counts: dict[str, Counter[str]] = {}
    reruns = {f.signature.id: f.rerun for f in report.failures if f.rerun}
    for cell in report.cells:
        classname = f"{cell.get('arch')}.{cell.get('suite')}"
        suite = suites.get(classname)
        if suite is None:
            suite = suites[classname] = ET.SubElement(root, "testsuite", name=classname)
            counts[classname] = Counter()
        name = f"{cell.get('scenario')}/{cell.get('mutation', 'none')} [{_where(cell)}" + (
            f" job {cell['matrix_job']}]" if cell.get("matrix_job") else "]"
        )
        case = ET.SubElement(suite, "testcase", classname=classname, name=name)
        verdict = _verdict(cell)
        counts[classname]["tests"] += 1
        sig = signature_of(cell)
        if sig is None:
            if verdict in NO_VERDICT:
                ET.SubElement(case, "skipped", message=str(cell.get("detail", ""))[:500])
                counts[classname]["skipped"] += 1
            continue
        tag = "failure" if verdict == "fail" else "error"
        counts[classname]["failures" if tag == "failure" else "errors"] += 1
        element = ET.SubElement(case, tag, message=f"[{sig.id}] {sig.text}", type=sig.kind)
        element.text = (
            f"signature {sig.id}: {sig.text}\nverdict: {verdict}\ndetail: {cell.get('detail', '')}\n"
            f"reproducer: {_reproducer(cell) or '(none recorded)'}\nrun folder: {cell.get('run_dir', '')}\n"
        ) + _rerun_text(reruns.get(sig.id))
    for classname, suite in suites.items():
        for key in ("tests", "failures", "errors", "skipped"):
            suite.set(key, str(counts[classname][key]))
    total = Counter[str]()
    for c in counts.values():
        total.update(c)
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(total[key]))
    ET.indent(root)
    return ET.ElementTree(root)


def _smallest_words(rerun: Rerun) -> str:
    s = rerun.smallest
    if s is None:
        return ""
    was = rerun.original or {}
    return (f"iterations {s.get('iterations')}, threads {s.get('threads')} (the scenario's: "
            f"{was.get('iterations', '?')}, {was.get('threads', '?')}; "
            f"{s.get('attempts', 0)} shrink attempts)")  # fmt: skip


def _rerun_text(rerun: Rerun | None) -> str:
    if rerun is None:
        return ""
    text = f"reproduced on re-run: {rerun.rate}\n"
    if rerun.smallest is not None:
        text += (f"smallest reproducing configuration: {_smallest_words(rerun)}\n"
                 f"smallest reproducer: {rerun.smallest.get('reproducer', '')}\n")  # fmt: skip
    return text


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rate(stats: SignatureStats | None) -> str:
    if stats is None or stats.rate is None:
        return "-"
    return f"{stats.failed}/{stats.runs} ({100 * stats.rate:.0f}%)"


def summary_md(report: Report) -> str:
    counts = _summary_counts(report)
    verdicts = ", ".join(f"{n} {v}" for v, n in sorted(counts["verdicts"].items()))
    out = [
        f"# jitprobe report{f' — night {report.night}' if report.night else ''}",
        "",
        f"{counts['cells']} cells ({verdicts or 'none'}) in {counts['jobs']} matrix jobs"
        + (f", {counts['jobs_cut_off']} cut off" if counts["jobs_cut_off"] else "")
        + f"; **{counts['failures']} distinct failures, {counts['new_failures']} new**. "
        f"jitprobe {report.commit[:12]}, image lock {report.lock_hash or '-'}.",
        "",
    ]
    if report.failures:
        out += [
            "| | signature | kind | test | rule | where | hits | first seen | last passed | failure rate "
            "| reproduced on re-run | smallest (iterations, threads) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for f in report.failures:
            s, stats = f.signature, f.stats
            where = ", ".join(sorted({_where(c) for c in f.cells}))
            out.append(
                f"| {'**new**' if f.new else ''} | `{s.id}` | {s.kind} | {_md_escape(s.scenario)} | "
                f"{_md_escape(s.rule or '-')} | {_md_escape(where)} | {len(f.cells)} | "
                f"{(stats.first_seen if stats else None) or '-'} | "
                f"{(stats.last_passed if stats else None) or '-'} | "
                f"{_rate(stats)} | {f.rerun.rate if f.rerun else '-'} | "
                + (f"{f.rerun.smallest.get('iterations')}, {f.rerun.smallest.get('threads')} |"
                   if f.rerun and f.rerun.smallest else "- |")
            )  # fmt: skip
        out += ["", "Reproduce (one architecture, locally):", ""]
        for f in report.failures:
            if _reproducer(f.first):
                out.append(f"- `{f.signature.id}`: `{_reproducer(f.first)}`")
            if f.rerun and f.rerun.smallest and f.rerun.smallest.get("reproducer"):
                out.append(f"  - smallest ({_smallest_words(f.rerun)}): `{f.rerun.smallest['reproducer']}`")
    else:
        out.append("No failures.")
    if report.warnings:
        out += ["", f"{len(report.warnings)} warnings (torn or cut-off records); see results.json."]
    return "\n".join(out) + "\n"


# -- HTML -------------------------------------------------------------------------------------

_COLOURS = {
    "pass": "#3a9d4a",
    "fail": "#d0403b",
    "crash": "#8e3ba8",
    "timeout": "#e08a1e",
    "infra": "#777777",
    "not exercised": "#e6c84a",
    "not detected": "#c9a227",
    "known false positive": "#b8b8e0",
}
_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;
vertical-align:top}th{background:#f2f2f2}code,pre{font:12px/1.35 ui-monospace,monospace}
pre{background:#f7f7f7;border:1px solid #ddd;padding:.6em;overflow-x:auto}
details{overflow-x:auto}
.grid td{width:1.6em;height:1.2em;padding:0;border:1px solid #fff}.grid th{font-weight:normal;font-size:11px}
.grid th.rot{writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap}
.legend span{display:inline-block;width:1em;height:1em;margin:0 .3em 0 1em;vertical-align:middle}
.failure{border:1px solid #d8d8d8;border-left:6px solid #d0403b;padding:.2em 1em 1em;margin:1.2em 0}
.new{background:#d0403b;color:#fff;border-radius:3px;padding:0 .4em;font-size:12px}
.mark{background:#ffe08a;font-weight:bold}.muted{color:#777}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _grid(report: Report) -> str:
    """The detection matrix as a coloured grid: a row per test, a column per arch/CPU/vCPUs."""
    columns = sorted({_where(c) for c in report.cells})
    rows = sorted({cell_key(c) for c in report.cells})
    if not rows:
        return "<p class=muted>No cells.</p>"
    verdicts: dict[tuple[str, str], list[str]] = {}
    for c in report.cells:
        verdicts.setdefault((cell_key(c), _where(c)), []).append(_verdict(c))
    order = ("infra", "crash", "timeout", "fail", *NO_VERDICT, "pass")
    head = "".join(f"<th class=rot>{_e(col)}</th>" for col in columns)
    body = []
    for row in rows:
        tds = []
        for col in columns:
            seen = verdicts.get((row, col))
            if not seen:
                tds.append("<td style='background:#fafafa'></td>")
                continue
            worst = min(seen, key=lambda v: order.index(v) if v in order else 0)
            tds.append(
                f"<td style='background:{_COLOURS.get(worst, '#777')}' title='{_e(row)} on {_e(col)}: "
                f"{_e(', '.join(sorted(set(seen))))}'></td>"
            )
        body.append(f"<tr><th>{_e(row)}</th>{''.join(tds)}</tr>")
    legend = "".join(f"<span style='background:{c}'></span>{_e(v)}" for v, c in _COLOURS.items())
    return f"<table class=grid><tr><th></th>{head}</tr>{''.join(body)}</table><p class=legend>{legend}</p>"


def _trend_svg(trend: Sequence[tuple[str, int, int]]) -> str:
    """Failing cells per night as an inline SVG bar chart (oldest left)."""
    if not trend:
        return "<p class=muted>No history (give --history DB).</p>"
    width, height, pad = max(320, 28 * len(trend) + 60), 180, 30
    top = max(1, max(bad for _, bad, _ in trend))
    step = (width - 2 * pad) / len(trend)
    bars = []
    for k, (night, bad, total) in enumerate(trend):
        h = (height - 2 * pad) * bad / top
        x = pad + k * step
        bars.append(
            f"<rect x='{x + 2:.1f}' y='{height - pad - h:.1f}' width='{step - 4:.1f}' height='{h:.1f}' "
            f"fill='#d0403b'><title>{_e(night)}: {bad} of {total} cells failing</title></rect>"
            f"<text x='{x + step / 2:.1f}' y='{height - pad + 14}' font-size='10' text-anchor='middle'>"
            f"{_e(night[-5:])}</text>"
        )
    return (
        f"<svg width='{width}' height='{height}' role='img' "
        f"aria-label='failing cells per night'><line x1='{pad}' y1='{height - pad}' x2='{width - pad}' "
        f"y2='{height - pad}' stroke='#555'/><text x='{pad}' y='14' font-size='11'>failing cells per night "
        f"(max {top})</text>{''.join(bars)}</svg>"
    )


def _histograms(report: Report) -> str:
    parts = []
    for c in report.cells:
        hist = c.get("histogram")
        if not isinstance(hist, dict) or not hist:
            continue
        top = max(hist.values()) or 1
        rows = "".join(
            f"<tr><td><code>{_e(state)}</code></td><td><svg width='260' height='12'><rect width='"
            f"{250 * n / top:.1f}' height='12' fill='#4a78c0'/></svg> {n}</td></tr>"
            for state, n in sorted(hist.items())
        )
        parts.append(f"<h3>{_e(cell_key(c))} on {_e(_where(c))}</h3><table>{rows}</table>")
    return "".join(parts)


def _field(violation: Mapping[str, Any], key: str) -> Any:
    value = violation.get(key)
    return hex(value) if key in ("pc", "writer_pc", "paddr") and isinstance(value, int) else value


def _failure_html(failure: Failure, report: Report) -> str:
    s, first, stats = failure.signature, failure.first, failure.stats
    env = _env(first, report)
    hits = "".join(
        f"<tr><td>{_e(c.get('night') or '-')}</td><td>{_e(c.get('matrix_job') or '-')}</td>"
        f"<td>{_e(_where(c))}</td>"
        f"<td>{_e(c.get('seed'))}</td><td>{_e(_verdict(c))}</td><td><code>{_e(c.get('run_dir'))}</code></td></tr>"
        for c in failure.cells
    )
    history = (
        "<p class=muted>No history given.</p>"
        if stats is None
        else "<p class=muted>Not in the history (only the matrix's jobs are recorded there).</p>"
        if stats.first_seen is None
        else f"<p>First seen <b>{_e(stats.first_seen)}</b>; "
        f"last passed <b>{_e(stats.last_passed or 'never')}</b>; "
        f"failed {_e(_rate(stats))} of the runs of the cells it hit since first seen, "
        f"on {stats.nights} night(s).</p>"
    )
    env_rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in env.items() if v is not None)
    violations = first.get("violations") or []
    parts = [
        f"<section class=failure id='sig-{s.id}'><h3>{'<span class=new>new</span> ' if failure.new else ''}"
        f"<code>{s.id}</code> {_e(s.kind)} — {_e(s.scenario)}</h3>",
        f"<p>Signature: <code>{_e(s.text)}</code><br>Detail: {_e(first.get('detail', ''))}</p>",
        history,
        "<p>Reproducer (this architecture, locally):</p>"
        f"<pre>{_e(_reproducer(first) or '(none recorded)')}</pre>",
        _rerun_html(failure.rerun),
        f"<details open><summary>Environment</summary><table>{env_rows}</table></details>",
        f"<details open><summary>{len(failure.cells)} hit(s)</summary><table><tr><th>night</th><th>job</th>"
        f"<th>where</th><th>seed</th><th>verdict</th><th>run folder</th></tr>{hits}</table></details>",
    ]
    for v in list({(v.get("rule"), v.get("pc")): v for v in violations}.values())[:3]:
        asm = disassemble_around(first, v)
        parts.append(
            f"<h4>{_e(v.get('rule'))} at {_e(hex(v['pc']) if isinstance(v.get('pc'), int) else v.get('pc'))}"
            f" ({_e(v.get('symbol') or 'no symbol')})</h4>"
        )
        if asm is not None:
            lines = "\n".join(
                (
                    f"<span class=mark>=&gt; {line.address:#x}: {_e(line.hex):<10} {_e(line.text)}</span>"
                    if line.marked
                    else f"   {line.address:#x}: {_e(line.hex):<10} {_e(line.text)}"
                )
                for line in asm.lines
            )
            parts.append(f"<p class=muted>{_e(asm.source)}</p><pre>{lines}</pre>")
        parts.append("<ul>" + "".join(f"<li>{_e(e)}</li>" for e in events(v)) + "</ul>")
    if violations:
        head = "".join(f"<th>{k}</th>" for k in _VIOLATION_COLUMNS)
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{_e(_field(v, k))}</td>"
                for k in _VIOLATION_COLUMNS
            )
            + "</tr>"
            for v in violations[:40]
        )
        more = (
            f"<p class=muted>{len(violations) - 40} more in results.json</p>" if len(violations) > 40 else ""
        )
        parts.append(
            f"<details><summary>{len(violations)} violation(s)</summary><table><tr>{head}</tr>{rows}"
            f"</table>{more}</details>"
        )
    console = console_excerpt(first.get("run_dir"))
    if console is not None:
        parts.append(f"<details><summary>Console (last lines)</summary><pre>{_e(console)}</pre></details>")
    parts.append("</section>")
    return "".join(parts)


def _rerun_html(rerun: Rerun | None) -> str:
    if rerun is None:
        return "<p class=muted>Not re-run (matrix run --rerun N re-runs each failure).</p>"
    jobs = ", ".join(rerun.jobs)
    text = (f"<p class=rerun>Re-run on {_e(rerun.night)} (job {_e(jobs)}): reproduced <b>{_e(rerun.rate)}</b>"
            + (f", {rerun.errors} re-run(s) could not run" if rerun.errors else "") + ".")  # fmt: skip
    if rerun.smallest is None:
        return text + " Not shrunk (it did not reproduce, or its suite has no iterations to shrink).</p>"
    return (
        text + f" Smallest reproducing configuration: <b>{_e(_smallest_words(rerun))}</b>:</p>"
        f"<pre class=smallest>{_e(rerun.smallest.get('reproducer', ''))}</pre>"
    )


def index_html(report: Report) -> str:
    counts = _summary_counts(report)
    failures = "".join(_failure_html(f, report) for f in report.failures) or "<p>No failures.</p>"
    toc = "".join(
        f"<li><a href='#sig-{f.signature.id}'><code>{f.signature.id}</code></a> {_e(f.signature.text)} "
        f"({len(f.cells)} hit(s)){' <span class=new>new</span>' if f.new else ''}</li>"
        for f in report.failures
    )
    warnings = "".join(f"<li>{_e(w)}</li>" for w in report.warnings)
    histograms = _histograms(report)
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>jitprobe report"
        f"{' ' + _e(report.night) if report.night else ''}</title><style>{_CSS}</style></head><body>"
        f"<h1>jitprobe report{' — night ' + _e(report.night) if report.night else ''}</h1>"
        f"<p>{counts['cells']} cells in {counts['jobs']} matrix jobs; "
        f"<b>{counts['failures']} distinct failures, "
        f"{counts['new_failures']} new</b>. Verdicts: "
        f"{_e(', '.join(f'{n} {v}' for v, n in sorted(counts['verdicts'].items())))}. jitprobe "
        f"<code>{_e(report.commit)}</code>, image lock <code>{_e(report.lock_hash)}</code>, generated "
        f"{_e(report.generated)}.</p>"
        f"<h2>Detection matrix</h2>{_grid(report)}"
        f"<h2>Failures across nights</h2>{_trend_svg(report.trend)}"
        + (f"<h2>Litmus outcome histograms</h2>{histograms}" if histograms else "")
        + f"<h2>Failures</h2><ul>{toc}</ul>{failures}"
        + (f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else "")
        + "</body></html>\n"
    )


def write_report(report: Report, out: Path) -> list[Path]:
    """Write the four files to ``out`` (created); each is written whole then renamed into place.
    Raises InfraError."""
    files = {
        "results.json": json.dumps(results_json(report), indent=1, sort_keys=True, default=str) + "\n",
        "summary.md": summary_md(report),
        "index.html": index_html(report),
    }
    tree = junit_xml(report)
    written = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            _atomic_write(out / name, text.encode())
            written.append(out / name)
        tmp = out / ".junit.xml.tmp"
        tree.write(tmp, encoding="utf-8", xml_declaration=True)
        tmp.replace(out / "junit.xml")
        written.append(out / "junit.xml")
    except OSError as exc:
        raise InfraError(f"cannot write the report to {out}: {exc}") from exc
    return written


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
