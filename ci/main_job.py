"""The main job (`make run`): every architecture booted, a program run in it, the JIT checked natively.

Per architecture, one guest boot carries the first steps: readiness time, a shell command, and the
bpf_conformance suite compiled by jit_core and run natively in the guest. Then the stress suites
run (``jitprobe run --suite all``: sanitized guests in parallel, one per architecture and CPU
model for the icache scenarios, one per kernel workload), and every cell of the detection matrix
must be what the architectures' rules say. Each result is appended to <run folder>/results.jsonl
as soon as it is known, so an interrupted job loses nothing. Ends with the steps' table and the
observed detection matrix. Exit status 0 only if every step passed and every cell held.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from base.contract import StressResult, Verdict
from base.errors import EXIT_FAIL, EXIT_PASS, EXIT_USAGE, GuestError, JitprobeError
from base.profiles import available_arches, expand_arch, load_profile
from base.progress import status
from harness.guest import Guest, install_signal_handlers
from harness.jit_commands import native_conformance
from harness.runs import append_result, new_results_dir, new_run_dir
from harness.stress.cli import observed_table
from harness.stress.runner import Selection, plan, run_jobs
from harness.stress.scenarios import SUITES, load_suite
from jit_core import conformance
from jit_core.errors import JitError

__all__ = ["CONFORMANCE_DIR", "Step", "main"]

CONFORMANCE_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "bpf_conformance" / "tests"


@dataclass
class Step:
    arch: str
    name: str
    verdict: Verdict
    detail: str
    log: Path


def _arch_steps(arch: str, tests: list[conformance.ConformanceTest], results: Path) -> list[Step]:
    run_dir = new_run_dir("main", arch)
    steps: list[Step] = []

    def record(name: str, verdict: Verdict, detail: str, where: Path = run_dir) -> None:
        step = Step(arch, name, verdict, detail, where / "console.log")
        steps.append(step)
        append_result(results, {"job": "main", "arch": arch, "step": name, "verdict": verdict,
                                "detail": detail, "run_dir": str(where)})

    try:
        with status(f"{arch}: booting"), Guest(load_profile(arch), run_dir=run_dir) as guest:
            record("boot", "pass", f"ready in {guest.ready_s:.2f} s ({guest.cpu}, {guest.smp} vCPUs)")
            uname = guest.run("uname -srm")
            record("exec", uname.verdict, uname.stdout.decode(errors="replace").strip() or uname.console_tail)
            with status(f"{arch}: conformance suite natively"):
                report = native_conformance(guest, tests)
            failed = [f["test"] for f in report["failed"]]
            record("conformance", "fail" if failed else "pass",
                   f"{report['passed']} passed, {len(failed)} failed, {len(report['skipped'])} skipped"
                   + (f": {', '.join(failed[:5])}" if failed else ""))
    except JitprobeError as exc:
        record("guest", exc.verdict if isinstance(exc, GuestError) else "infra", str(exc))
    return steps


def _stress_steps(arches: list[str], results: Path) -> tuple[list[Step], list[StressResult]]:
    """Run every stress suite on ``arches``; one step per architecture and suite."""
    suites = {suite: load_suite(suite) for suite in SUITES}
    jobs = plan(suites, arches, None)
    with status(f"stress suites: {len(jobs)} sanitized guests"):
        cells = run_jobs(jobs, Selection(), results)
    steps = []
    for arch in arches:
        for suite in SUITES:
            mine = [c for c in cells if c["arch"] == arch and c["suite"] == suite]
            if not mine:
                continue
            differing = [c for c in mine if c["verdict"] not in ("pass", None)]
            worst = [f"{c['cpu']} {c['scenario']} {c['mutation']}: {c['detail']}" for c in differing[:3]]
            detail = "; ".join([f"{len(mine)} cells, {len(mine) - len(differing)} as expected", *worst])
            log = Path(differing[0]["run_dir"] if differing else mine[0]["run_dir"]) / "console.log"
            steps.append(Step(arch, f"stress-{suite}", "fail" if differing else "pass", detail, log))
    return steps, cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="all", help=f"{', '.join(available_arches())} or all (default)")
    parser.add_argument("--conformance", default=str(CONFORMANCE_DIR), help="bpf_conformance tests folder")
    args = parser.parse_args(argv)
    install_signal_handlers()
    out = Console()
    try:
        arches = expand_arch(args.arch)
        tests = conformance.load_suite(Path(args.conformance))
    except (JitprobeError, JitError) as exc:
        print(f"main job: {exc}", file=sys.stderr)
        return EXIT_USAGE
    results = new_results_dir("main")
    steps: list[Step] = []
    for arch in arches:
        steps += _arch_steps(arch, tests, results)
    stress_steps, cells = _stress_steps(arches, results)
    steps += stress_steps

    table = Table(title="jitprobe main job")
    for column in ("arch", "step", "verdict", "detail"):
        table.add_column(column)
    for step in steps:
        colour = "green" if step.verdict == "pass" else "red"
        table.add_row(step.arch, step.name, f"[{colour}]{step.verdict}[/{colour}]", step.detail)
    out.print(table)
    out.print(observed_table(cells))
    out.print(f"results: {results / 'results.jsonl'}")
    for arch in arches:
        logs = sorted({str(s.log) for s in steps if s.arch == arch})
        out.print(f"{arch} console log: {', '.join(logs)}")
    return EXIT_PASS if steps and all(s.verdict == "pass" for s in steps) else EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
