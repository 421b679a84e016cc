"""The report's files for programs: results.json (schema REPORT_SCHEMA) and junit.xml (a testsuite
per ``<arch>.<suite>``, a testcase per cell, failures with their signature and reproducer)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from typing import Any

from ..signature import NO_VERDICT, signature_of
from .model import (
    Failure,
    Report,
    Rerun,
    environment,
    reproducer_of,
    smallest_words,
    summary_counts,
    verdict_of,
    where,
)

__all__ = ["REPORT_SCHEMA", "junit_xml", "results_json"]

REPORT_SCHEMA = 1


def _failure_json(failure: Failure, report: Report) -> dict[str, Any]:
    first = failure.first
    stats = failure.stats
    return {
        "signature": failure.signature.as_dict(),
        "new": failure.new,
        "count": len(failure.cells),
        "hits": [
            {
                **environment(c, report),
                "verdict": verdict_of(c),
                "run_dir": c.get("run_dir"),
                "reproducer": reproducer_of(c),
            }
            for c in failure.cells
        ],
        "environment": environment(first, report),
        "reproducer": reproducer_of(first),
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


def results_json(report: Report) -> dict[str, Any]:
    return {
        "schema": REPORT_SCHEMA,
        "generated": report.generated,
        "commit": report.commit,
        "night": report.night,
        "image_lock": report.lock_hash,
        "summary": summary_counts(report),
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


def _rerun_text(rerun: Rerun | None) -> str:
    if rerun is None:
        return ""
    text = f"reproduced on re-run: {rerun.rate}\n"
    if rerun.smallest is not None:
        text += (f"smallest reproducing configuration: {smallest_words(rerun)}\n"
                 f"smallest reproducer: {rerun.smallest.get('reproducer', '')}\n")  # fmt: skip
    return text


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
        name = f"{cell.get('scenario')}/{cell.get('mutation', 'none')} [{where(cell)}" + (
            f" job {cell['matrix_job']}]" if cell.get("matrix_job") else "]"
        )
        case = ET.SubElement(suite, "testcase", classname=classname, name=name)
        verdict = verdict_of(cell)
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
            f"reproducer: {reproducer_of(cell) or '(none recorded)'}\nrun folder: {cell.get('run_dir', '')}\n"
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
