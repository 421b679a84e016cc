"""The main job (`make run`): every architecture booted, a program run in it, the JIT checked natively.

Per architecture, one guest boot carries the first steps: readiness time, a shell command, and the
bpf_conformance suite compiled by jit_core and run natively in the guest. A second guest, booted
with the coherency sanitizer, runs jit_core's code installer once per icache_sync mutation and
checks that the sanitizer reports exactly the mutations that are bugs there, with their rules, and
nothing else (the boot included). Each step's result is appended to <run folder>/results.jsonl as
soon as it is known, so an interrupted job loses nothing. Ends with a table and the paths of the
logs. Exit status 0 only if every step passed.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from base.contract import Verdict
from base.errors import EXIT_FAIL, EXIT_PASS, EXIT_USAGE, GuestError, JitprobeError
from base.profiles import available_arches, expand_arch, load_profile
from base.progress import status
from harness.guest import Guest, install_signal_handlers
from harness.icache import (
    expected_cross_mutation_rules,
    expected_mutation_rules,
    install_program,
    install_program_cross,
    judge_mutations,
)
from harness.jit_commands import native_conformance
from harness.runs import append_result, new_run_dir, runs_root
from harness.sanitizer import plugin_spec, read_violations, save_kernel_symbols
from jit_core import conformance
from jit_core.errors import JitError
from jit_core.intrinsics import ICACHE_MUTATIONS as MUTATIONS

__all__ = ["CONFORMANCE_DIR", "INSTALLS", "Step", "main"]

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
    for install, step in (("same-thread", "sanitizer"), ("cross-thread", "sanitizer-cross")):
        sanitizer_dir = new_run_dir(f"main-{step}", arch)
        record(step, *_sanitizer_step(arch, sanitizer_dir, install), where=sanitizer_dir)
    return steps


# Per kind of install: the program builder and the rules each mutation must be reported with.
INSTALLS = {
    "same-thread": (install_program, expected_mutation_rules),
    "cross-thread": (install_program_cross, expected_cross_mutation_rules),
}


def _sanitizer_step(arch: str, run_dir: Path, install: str) -> tuple[Verdict, str]:
    """(verdict, detail) of every MUTATIONS install program of kind ``install`` run once in one
    sanitized guest.

    The guest runs the profile's default CPU model; what must be reported comes from
    harness.icache (expected_mutation_rules or expected_cross_mutation_rules) for that
    model's CTR_EL0. Cross-thread programs show the bugs that only another CPU can hit (each
    profile's ``code_modification.writer_only_mutation``).
    """
    build, expect = INSTALLS[install]
    try:
        profile = load_profile(arch)
        model = profile.cpu_model(None)
        expected = expect(arch, bool(model.idc), bool(model.dic))
        programs = {name: build(arch, name, index) for index, name in enumerate(MUTATIONS)}
        spec = plugin_spec(arch, model.name, run_dir)
        exit_codes: dict[str, int] = {}
        with status(f"{arch}: {len(programs)} code installs under the sanitizer"), \
                Guest(profile, run_dir=run_dir, cpu=model.name, plugin=spec) as guest:
            for name, program in programs.items():
                result = guest.run(guest.copy(program, f"jit-{name}"))
                if result.exit_code is None:  # timeout or crash: the guest is gone
                    crash = f": {result.crash.line}" if result.crash else ""
                    return result.verdict, f"jit-{name} did not finish ({result.verdict}{crash})"
                exit_codes[name] = result.exit_code
            kallsyms = save_kernel_symbols(guest)
        violations = read_violations(run_dir, arch, system_map=kallsyms)
    except JitprobeError as exc:
        return (exc.verdict if isinstance(exc, GuestError) else "infra"), str(exc)
    except JitError as exc:  # the install programs are the project's own: a refusal is its fault
        return "infra", f"jit_core refused an install program: {exc}"
    return judge_mutations(arch, model.name, expected, exit_codes, violations, install)


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
    results = runs_root() / time.strftime("main-%Y%m%d-%H%M%S")
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
