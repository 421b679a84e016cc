"""The ``jitprobe`` command: harness.cli's commands plus ``matrix`` and ``report`` (ci is the top
layer, so this module is the composition root the console script points at).

``jitprobe matrix list|run [--shard I/N] [--results DIR] [--resume] [--jobs N]`` and ``jitprobe
report RESULTS... --out DIR`` follow ../shared/CONTRACT.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from base import progress
from base.errors import EXIT_FAIL, EXIT_INFRA, EXIT_PASS, InfraError, InputError
from harness import cli as harness_cli
from harness.guest import install_signal_handlers
from harness.runs import new_results_dir
from harness.stress.runner import default_workers
from harness.stress.scenarios import STRESS_DIR

from .history import History, default_history_path
from .kcidb import kcidb_json
from .matrix import MATRIX_FILE, MatrixJob, estimate_s, load_matrix, parse_shard, run_matrix, shard
from .report import build_report, write_report
from .rerun import DEFAULT_SHRINK_ATTEMPTS, rerun_failures

__all__ = ["add_matrix_parser", "add_report_parser", "build_parser", "cmd_matrix", "cmd_report", "main"]


def _say(text: str) -> None:
    """Progress on stderr, only when it is a terminal."""
    if progress.enabled():
        progress.STDERR.print(text, markup=False, highlight=False)


def _history(args: argparse.Namespace, results_dir: Path | None) -> History | None:
    if args.no_history:
        return None
    if args.history:
        return History(Path(args.history))
    if results_dir is None:
        return None
    return History(default_history_path(results_dir))


def _selected(args: argparse.Namespace, durations: dict[str, float]) -> list[MatrixJob]:
    directory = Path(args.scenario_dir) if args.scenario_dir else STRESS_DIR
    if not directory.is_dir():
        raise InputError("--scenario-dir", str(directory), hint="not a folder")
    jobs = list(load_matrix(Path(args.file), directory).jobs)
    if args.shard:
        index, count = parse_shard(args.shard)
        jobs = shard(jobs, index, count, durations)
    return jobs


def cmd_matrix(args: argparse.Namespace) -> int:
    """List or run the matrix's jobs (one shard of them with --shard)."""
    results_dir = Path(args.results) if args.results else None
    if args.action == "list":
        history_path = Path(args.history) if args.history else None
        if history_path is None and results_dir is not None:
            history_path = default_history_path(results_dir)
        durations = (
            History(history_path).durations()
            if history_path is not None and history_path.exists() and not args.no_history
            else {}
        )
        jobs = _selected(args, durations)
        rows = [
            {
                "id": j.id,
                **j.axes(),
                "duration_s": round(durations.get(j.id) or estimate_s(j), 1),
                "measured": j.id in durations,
            }
            for j in jobs
        ]
        if args.json:
            progress.print_json({"jobs": rows, "total_s": round(sum(r["duration_s"] for r in rows), 1)})
        else:
            for r in rows:
                seed = "-" if r["seed"] is None else r["seed"]
                print(
                    f"{r['id']}  {r['arch']:<8} {r['cpu']:<12} smp{r['smp']:<3} "
                    f"{r['suite']}/{r['scenario']:<22} "
                    f"sanitize={'on' if r['sanitize'] else 'off'} seed={seed} "
                    f"{'~' if not r['measured'] else ''}{r['duration_s']} s"
                )
            print(
                f"{len(rows)} jobs, about {sum(r['duration_s'] for r in rows):.0f} s of guest time",
                file=sys.stderr,
            )
        return EXIT_PASS
    night = args.night or time.strftime("%Y-%m-%d", time.gmtime())
    results_dir = results_dir or new_results_dir("matrix")
    if args.jobs is not None and args.jobs < 1:
        raise InputError("--jobs", args.jobs, hint="at least 1")
    if args.rerun < 0:
        raise InputError("--rerun", args.rerun, hint="0 (no re-runs) or more")
    if args.rerun_limit < 0:
        raise InputError("--rerun-limit", args.rerun_limit, hint="0 or more")
    if args.shrink_attempts < 0:
        raise InputError("--shrink-attempts", args.shrink_attempts, hint="0 (no shrinking) or more")
    history = _history(args, results_dir)
    jobs = _selected(args, history.durations() if history is not None else {})
    install_signal_handlers()

    def finished(end: dict[str, Any], cells: list[dict[str, Any]]) -> None:
        if history is not None:
            history.record_job(end, cells)
        _say(f"[{end['matrix_job']}] {end['axes']['suite']}/{end['axes']['scenario']} {end['axes']['arch']} "
             f"{end['axes']['cpu']}: {end['verdict']} ({end['cells']} cells, {end['duration_s']} s)")

    started = time.monotonic()
    ends = run_matrix(
        jobs,
        results_dir,
        night=night,
        workers=args.jobs or default_workers([job.harness_job() for job in jobs]),
        resume=args.resume,
        on_finished=finished,
    )

    def reran(record: dict[str, Any]) -> None:
        small = record["smallest"]
        shrunk = f"; smallest: iterations {small['iterations']}, threads {small['threads']}" if small else ""
        _say(f"re-run {record['signature']} ({record['signature_text']}): "
             f"reproduced {record['reproduced']}/{record['runs']}{shrunk}")

    rerun_started = time.monotonic()
    reruns = rerun_failures(
        results_dir, jobs, night, args.rerun, args.shrink_attempts, on_rerun=reran, limit=args.rerun_limit
    )
    rerun_s = time.monotonic() - rerun_started
    summary = {
        "results_dir": str(results_dir),
        "history": str(history.path) if history is not None else None,
        "night": night,
        "jobs": len(jobs),
        "run": len(ends),
        "skipped": len(jobs) - len(ends),
        "verdicts": {
            v: sum(1 for e in ends if e["verdict"] == v) for v in sorted({e["verdict"] for e in ends})
        },
        "reruns": [
            {k: r[k] for k in ("signature", "signature_text", "runs", "reproduced", "smallest")}
            for r in reruns
        ],
        "rerun_s": round(rerun_s, 1),
        "wall_s": round(time.monotonic() - started, 1),
    }
    if args.json:
        progress.print_json(summary)
    else:
        print(
            f"{summary['run']} jobs run ({summary['skipped']} already finished) in {summary['wall_s']} s: "
            f"{summary['verdicts']}; results {results_dir}"
        )
        for r in reruns:
            print(f"  {r['signature']} {r['signature_text']}: reproduced {r['reproduced']}/{r['runs']}"
                  + (f"; smallest: {r['smallest']['reproducer']}" if r["smallest"] else ""))  # fmt: skip
    if any(e["verdict"] == "infra" for e in ends):
        return EXIT_INFRA
    return EXIT_FAIL if any(e["verdict"] != "pass" for e in ends) else EXIT_PASS


def cmd_report(args: argparse.Namespace) -> int:
    """Write the triage report of RESULTS to --out."""
    paths = [Path(p) for p in args.results]
    history = History(Path(args.history)) if args.history else None
    report = build_report(paths, history)
    out = Path(args.out)
    files = write_report(report, out)
    if args.kcidb:
        import json

        try:
            Path(args.kcidb).write_text(json.dumps(kcidb_json(report), indent=1) + "\n")
        except OSError as exc:
            raise InfraError(f"cannot write {args.kcidb}: {exc}") from exc
    new = sum(1 for f in report.failures if f.new)
    if args.json:
        progress.print_json(
            {
                "out": str(out),
                "files": [str(f) for f in files],
                "cells": len(report.cells),
                "failures": len(report.failures),
                "new_failures": new,
                "warnings": report.warnings,
            }
        )
    else:
        print(
            f"{len(report.cells)} cells, {len(report.failures)} distinct failures ({new} new): "
            f"{out}/index.html"
        )
    if args.fail_on == "new" and new or args.fail_on == "any" and report.failures:
        return EXIT_FAIL
    return EXIT_PASS


def add_matrix_parser(subparsers: Any) -> None:
    """Register ``jitprobe matrix``."""
    p = subparsers.add_parser("matrix", help="list or run the nightly matrix (ci/matrix.yaml)")
    p.add_argument("action", choices=("list", "run"), help="list the jobs, or run them")
    p.add_argument("--file", default=str(MATRIX_FILE), help="matrix file (default: ci/matrix.yaml)")
    p.add_argument("--shard", metavar="I/N", help="only shard I of N (balanced by measured durations)")
    p.add_argument(
        "--results", metavar="DIR", help="results folder (default: a new one under the runs folder)"
    )
    p.add_argument("--resume", action="store_true", help="skip the jobs DIR holds as finished")
    p.add_argument("--jobs", type=int, help="guests at once (default: host cores / vCPUs per guest)")
    p.add_argument("--history", metavar="DB", help="history database (default: history.sqlite beside DIR)")
    p.add_argument("--no-history", action="store_true", help="neither read nor write a history database")
    p.add_argument("--night", help="the night's id shared by every shard (default: today's UTC date)")
    p.add_argument("--scenario-dir", metavar="DIR",
                   help="folder of <suite>/*.yaml scenario files (default: the project's tests/stress)")
    p.add_argument("--rerun", type=int, default=0, metavar="N",
                   help="after the jobs, run each distinct failure's job again N times (its scenario and "
                   "mutation only) for its reproduction rate, then shrink its iterations and threads")
    p.add_argument("--rerun-limit", type=int, default=10, metavar="K",
                   help="with --rerun: re-run at most K distinct failures, the first in the matrix's order "
                   "(default 10)")
    p.add_argument("--shrink-attempts", type=int, default=DEFAULT_SHRINK_ATTEMPTS, metavar="M",
                   help=f"with --rerun: at most M guest runs to shrink each failure "
                   f"(default {DEFAULT_SHRINK_ATTEMPTS}; 0: do not shrink)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_matrix)


def add_report_parser(subparsers: Any) -> None:
    """Register ``jitprobe report``."""
    p = subparsers.add_parser("report", help="triage report (HTML, Markdown, JUnit, JSON) of results folders")
    p.add_argument("results", nargs="+", metavar="RESULTS",
                   help="results folders, or results files (results.jsonl, results.<writer>.jsonl) "
                   "each standing for its folder")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for index.html, summary.md, ...")
    p.add_argument(
        "--history",
        metavar="DB",
        help="history database: the matrix jobs are recorded there "
        "and each failure gets first seen, last passed and its failure rate",
    )
    p.add_argument("--kcidb", metavar="FILE", help="also write the results as KCIDB JSON (schema v5.3)")
    p.add_argument(
        "--fail-on",
        choices=("never", "new", "any"),
        default="never",
        help="exit 1 when there is a new failure (first seen this night), or any (default never)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_report)


def build_parser() -> argparse.ArgumentParser:
    """harness.cli's parser with ``matrix`` and ``report``."""
    return harness_cli.build_parser((add_matrix_parser, add_report_parser))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jitprobe`` console script."""
    return harness_cli.main(argv, build_parser)


if __name__ == "__main__":
    sys.exit(main())
