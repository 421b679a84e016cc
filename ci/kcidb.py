"""Results in KernelCI's KCIDB I/O format, schema v5.3 (kcidb-io's latest; the tests validate
with it), so kernel CI systems can ingest them.

One checkout (the jitprobe commit), one build per matrix job (the guest image and CPU model it
booted; cells outside the matrix share a build per architecture and CPU), one test per cell. The
schema forbids null values, properties it does not name and NUL characters outside ``misc``;
extra data goes under ``misc``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .report.model import Report
from .signature import signature_of

__all__ = ["ORIGIN", "STATUS", "VERSION", "kcidb_json"]

ORIGIN = "jitprobe"
VERSION = {"major": 5, "minor": 3}
# KCIDB v5 statuses: FAIL (the tested code is faulty), ERROR (the test is), MISS (the harness
# failed: the test did not run), PASS, DONE, SKIP
STATUS = {"pass": "PASS", "fail": "FAIL", "crash": "FAIL", "timeout": "ERROR", "infra": "MISS"}
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_LOG_EXCERPT_MAX = 16384


def _id(*parts: Any) -> str:
    return f"{ORIGIN}:" + ":".join(str(p) for p in parts)


def _path_part(text: Any) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", str(text))


def _text(text: str) -> str:
    # console output and guest symbols may hold NULs, which the schema refuses outside misc
    return text.replace("\0", "\\0")


def _no_nulls(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v is not None and v != {}}


def kcidb_json(report: Report) -> dict[str, Any]:
    """The report's cells as a KCIDB v5.3 document."""
    commit = report.commit.removesuffix("-dirty")
    checkout_id = _id("checkout", report.commit)
    checkout = _no_nulls(
        {
            "id": checkout_id,
            "origin": ORIGIN,
            "git_commit_hash": commit if _COMMIT.match(commit) else None,
            "comment": f"jitprobe {report.commit}",
            "valid": True,
            "misc": _no_nulls({"image_lock": report.lock_hash, "night": report.night}),
        }
    )
    builds: dict[str, dict[str, Any]] = {}
    tests = []
    for number, cell in enumerate(report.cells):
        job = cell.get("matrix_job")
        build_key = (
            f"{cell.get('night')}:{job}"
            if job
            else f"{cell.get('arch')}:{cell.get('cpu')}:{cell.get('run_dir')}"
        )
        build_id = _id("build", build_key)
        if build_id not in builds:
            builds[build_id] = _no_nulls(
                {
                    "id": build_id,
                    "origin": ORIGIN,
                    "checkout_id": checkout_id,
                    "architecture": _path_part(cell.get("arch", "")).lower(),
                    "config_name": f"{cell.get('cpu') or 'default'}-smp{cell.get('smp') or 'default'}",
                    "status": "PASS",  # the guest was built and booted: its cells are its tests
                    "misc": _no_nulls(
                        {
                            "kernel": cell.get("kernel"),
                            "qemu_version": cell.get("qemu_version"),
                            "image": cell.get("image"),
                            "matrix_job": job,
                        }
                    ),
                }
            )
        verdict = cell.get("verdict")
        sig = signature_of(cell)
        excerpt = str(cell.get("detail") or "")
        if cell.get("violations"):
            excerpt += "\n" + "\n".join(
                f"{v.get('rule')} pc={v.get('pc')} {v.get('disasm')}" for v in cell["violations"][:50]
            )
        tests.append(
            _no_nulls(
                {
                    "id": _id("test", build_key, number, cell.get("scenario"), cell.get("mutation")),
                    "origin": ORIGIN,
                    "build_id": build_id,
                    "path": ".".join(  # the schema's path has no empty component
                        _path_part(p)
                        for p in ("jitprobe", cell.get("suite"), cell.get("scenario"), cell.get("mutation"))
                        if p not in (None, "")
                    ),
                    "status": STATUS.get(str(verdict), "SKIP") if verdict is not None else "SKIP",
                    "comment": _text(sig.text if sig else str(cell.get("observed") or verdict or "")),
                    "log_excerpt": _text(excerpt)[:_LOG_EXCERPT_MAX] or None,
                    "environment": {
                        "comment": f"QEMU {cell.get('qemu_version') or '?'} {cell.get('arch')} "
                        f"{cell.get('cpu') or ''}".strip()
                    },
                    "misc": _no_nulls(
                        {
                            "reproducer": cell.get("reproducer") or None,
                            "signature": sig.id if sig else None,
                            "seed": cell.get("seed"),
                            "verdict": verdict,
                        }
                    ),
                }
            )
        )
    return {
        "version": dict(VERSION),
        "checkouts": [checkout],
        "builds": list(builds.values()),
        "tests": tests,
    }
