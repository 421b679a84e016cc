"""``jitprobe report RESULTS... --out DIR``: triage reports from results files.

Reads every record of the results folders (or results.jsonl files) given: the matrix's jobs and
cells (only the attempt of a job that finished; a job never finished is reported as cut off),
``jitprobe run`` cells, ``jitprobe exec``/``boot`` results and the main job's steps. Each is a
test case; each that did not pass has a signature (ci.signature), and failures with the same
signature are one entry listing every job they hit. Writes index.html (self-contained: inline
CSS and SVG, no script, nothing fetched), summary.md, junit.xml and results.json.

Imports go one way: ``model`` (the report's content) <- ``pictures`` (matplotlib) <- ``page``
(index.html); ``markdown`` and ``json_junit`` use ``model`` alone; this module writes the files.
"""

from __future__ import annotations

import json
from pathlib import Path

from base.errors import InfraError

from .json_junit import junit_xml, results_json
from .markdown import summary_md
from .model import LOCK_FILE, Failure, Job, Report, Rerun, build_report, load_cells
from .page import index_html

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
