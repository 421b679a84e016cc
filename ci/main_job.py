"""The main job (`make run`): every architecture booted, a program run in it, the JIT checked natively.

Per architecture, one guest boot carries every step: readiness time, a shell command, and the
bpf_conformance suite compiled by jit_core and run natively in the guest. Each step's result is
appended to <run folder>/results.jsonl as soon as it is known, so an interrupted job loses
nothing. Ends with a table and the paths of the logs. Exit status 0 only if every step passed.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.errors import EXIT_FAIL, EXIT_PASS, JitprobeError
from harness.guest import Guest, install_signal_handlers
from harness.jit_commands import native_conformance
from harness.profiles import expand_arch, load_profile
from harness.progress import status
from harness.runs import append_result, new_run_dir, runs_root
from jit_core import conformance

CONFORMANCE_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "bpf_conformance" / "tests"


@dataclass
class Step:
    arch: str
    name: str
    verdict: str
    detail: str
    log: Path


def _arch_steps(arch: str, tests: list[conformance.ConformanceTest], results: Path) -> list[Step]:
    run_dir = new_run_dir("main", arch)
    steps: list[Step] = []

    def record(name: str, verdict: str, detail: str) -> None:
        step = Step(arch, name, verdict, detail, run_dir / "console.log")
        steps.append(step)
        append_result(results, {"job": "main", "arch": arch, "step": name, "verdict": verdict,
                                "detail": detail, "run_dir": str(run_dir)})

    try:
        with status(f"{arch}: booting"), Guest(load_profile(arch), run_dir=run_dir) as guest:
            record("boot", "pass", f"ready in {guest.ready_s:.2f} s ({guest.cpu}, {guest.smp} vCPUs)")
            uname = guest.run("uname -srm")
            record("exec", uname.verdict, uname.stdout.decode(errors="replace").strip() or uname.console_tail)
            if tests:
                with status(f"{arch}: conformance suite natively"):
                    report = native_conformance(guest, tests)
                failed = [f["test"] for f in report["failed"]]
                record("conformance", "fail" if failed else "pass",
                       f"{report['passed']} passed, {len(failed)} failed, {len(report['skipped'])} skipped"
                       + (f": {', '.join(failed[:5])}" if failed else ""))
    except JitprobeError as exc:
        record("guest", getattr(exc, "verdict", "infra"), str(exc))
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="all", help="x86_64, arm64, riscv64 or all (default)")
    parser.add_argument("--conformance", default=str(CONFORMANCE_DIR), help="bpf_conformance tests folder")
    args = parser.parse_args(argv)
    install_signal_handlers()
    out = Console()
    arches = expand_arch(args.arch)
    results = runs_root() / time.strftime("main-%Y%m%d-%H%M%S")
    conf_dir = Path(args.conformance)
    tests = conformance.load_suite(conf_dir) if conf_dir.is_dir() else []
    if not tests:
        out.print(f"[yellow]no conformance suite at {conf_dir}: that step is not exercised[/yellow]")
    steps: list[Step] = []
    for arch in arches:
        steps += _arch_steps(arch, tests, results)

    table = Table(title="jitprobe main job")
    for column in ("arch", "step", "verdict", "detail"):
        table.add_column(column)
    for step in steps:
        colour = "green" if step.verdict == "pass" else "red"
        table.add_row(step.arch, step.name, f"[{colour}]{step.verdict}[/{colour}]", step.detail)
    out.print(table)
    out.print(f"results: {results / 'results.jsonl'}")
    for arch in arches:
        logs = sorted({str(s.log) for s in steps if s.arch == arch})
        out.print(f"{arch} console log: {', '.join(logs)}")
    return EXIT_PASS if steps and all(s.verdict == "pass" for s in steps) else EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
