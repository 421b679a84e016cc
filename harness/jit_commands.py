"""``jitprobe jit ...``: the JIT core driven from the command line and run natively in guests.

``jit conformance DIR`` runs a bpf_conformance suite through the reference interpreter and, per
architecture, through the native backend inside one guest boot (every test a separate static
executable, all run by one shell loop: see harness.batch).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from base.contract import ConformanceReport
from base.errors import EXIT_FAIL, EXIT_INFRA, EXIT_PASS, GuestError, InfraError, InputError
from base.profiles import available_arches, expand_arch, load_profile
from base.progress import print_json, status
from jit_core import conformance
from jit_core.asm import assemble
from jit_core.elf import build_executable
from jit_core.intrinsics import MUTATIONS

from .batch import run_batch
from .guest import Guest
from .runs import new_run_dir

__all__ = ["add_jit_parser", "cmd_build", "cmd_conformance", "native_conformance", "run_conformance"]


def native_conformance(guest: Guest, tests: list[conformance.ConformanceTest]) -> ConformanceReport:
    """R for the backend of ``guest``'s architecture, every test run natively in that guest.

    Raises InfraError if the guest cannot run the batch."""
    elves, decided = conformance.build_elves(guest.profile.arch, tests)
    runs = run_batch(guest, elves)
    return conformance.native_report(
        tests, decided, {name: (run.stdout, run.exit_code) for name, run in runs.items()})


def run_conformance(
    directory: Path, arches: list[str]
) -> tuple[dict[str, ConformanceReport], list[GuestError | InfraError]]:
    """The CONTRACT's ``{"interp": R, <arch>: R, ...}`` for the ``*.data`` files of ``directory``,
    and the errors of architectures whose guest failed (their R then fails every runnable test
    as not run, so the other architectures' results are kept).

    Raises JitError if the folder holds no test."""
    tests = conformance.load_suite(directory)
    result = {"interp": conformance.interp_report(tests)}
    errors: list[GuestError | InfraError] = []
    for arch in arches:
        try:
            with status(f"{arch}: running the conformance programs in a guest"), \
                    Guest(load_profile(arch), run_dir=new_run_dir("conformance", arch)) as guest:
                result[arch] = native_conformance(guest, tests)
        except (GuestError, InfraError) as exc:
            print(f"jitprobe: {arch}: {exc}", file=sys.stderr)
            errors.append(exc)
            _, decided = conformance.build_elves(arch, tests)
            result[arch] = conformance.native_report(tests, decided, {})
    return result, errors


def _failed(result: dict[str, ConformanceReport]) -> bool:
    return any(report["failed"] for report in result.values())


def _print_conformance(result: dict[str, ConformanceReport]) -> None:
    for part, report in result.items():
        print(f"{part:8} passed {report['passed']:4}  failed {len(report['failed']):3}  "
              f"skipped {len(report['skipped']):3}")
        for failure in report["failed"]:
            print(f"    FAIL {failure['test']}: expected {failure['expected']}, got {failure['got']}")


def cmd_conformance(args: argparse.Namespace) -> int:
    directory = Path(args.directory)
    if not directory.is_dir():
        raise InputError("conformance folder", args.directory, hint="not a directory")
    result, errors = run_conformance(directory, expand_arch(args.arch))
    if args.json:
        print_json(result)
    else:
        _print_conformance(result)
    if any(isinstance(e, InfraError) for e in errors):
        return EXIT_INFRA
    return EXIT_FAIL if _failed(result) else EXIT_PASS


def cmd_build(args: argparse.Namespace) -> int:
    source = Path(args.source)
    try:
        text = source.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start]
        raise InputError("assembler file", args.source, hint=f"expected UTF-8 text; byte {bad:#04x} at "
                         f"offset {exc.start} is not") from exc  # fmt: skip
    except OSError as exc:
        raise InputError("assembler file", args.source, hint=str(exc.strerror)) from exc
    try:
        mem = Path(args.mem).read_bytes() if args.mem else b""
    except OSError as exc:
        raise InputError("--mem file", args.mem, hint=str(exc.strerror)) from exc
    elf = build_executable(args.arch, assemble(text), mem, mutation=args.mutation)
    try:
        Path(args.output).write_bytes(elf)
        Path(args.output).chmod(0o755)
    except OSError as exc:
        raise InputError("--output", args.output, hint=str(exc.strerror)) from exc
    return EXIT_PASS


def add_jit_parser(subparsers: Any) -> None:
    """Register ``jitprobe jit conformance`` and ``jitprobe jit build``."""
    jit = subparsers.add_parser("jit", help="the JIT core: conformance runs and executables")
    sub = jit.add_subparsers(dest="jit_command", required=True)
    conf = sub.add_parser("conformance", help="run a bpf_conformance suite on the interpreter and in guests")
    conf.add_argument("directory", help="folder of *.data files")
    conf.add_argument("--arch", default="all", help=f"{', '.join(available_arches())} or all (default)")
    conf.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    conf.set_defaults(func=cmd_conformance)
    build = sub.add_parser("build", help="assemble an eBPF program into a static executable")
    build.add_argument("source", help="assembler text in the bpf_conformance syntax")
    build.add_argument("--arch", required=True, help=", ".join(available_arches()))
    build.add_argument("--mem", help="file whose bytes become the program's memory (r1, r2)")
    build.add_argument("--mutation", default="none", choices=list(MUTATIONS),
                       help="a deliberately broken cache-synchronization protocol")
    build.add_argument("-o", "--output", required=True, help="where to write the executable")
    build.set_defaults(func=cmd_build)
