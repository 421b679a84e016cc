"""``jitprobe litmus check``, ``litmus jit`` (see CONTRACT.md, "jitprobe litmus") and ``litmus run``
(tests run natively in guests; not in the CONTRACT yet)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from base.errors import EXIT_FAIL, EXIT_PASS, InputError
from base.profiles import expand_arch
from jit_core.errors import JitError
from jit_core.intrinsics import MUTATIONS

from .check import CheckResult, check, format_state
from .errors import LitmusError
from .guest_runs import run_in_guest
from .jit import JitResult, JitVerdict, SourceCache, check_jit
from .native import NativeResult, RunVerdict
from .registry import ModelName, get_model, program_for
from .syntax import read_test


def check_file(path: Path, model: ModelName | None) -> CheckResult:
    """``path`` checked under ``model`` (default: its own architecture's).

    Raises LitmusError (including syntax errors) for a test that cannot be checked."""
    test = read_test(path)
    program, own = program_for(test)
    return check(program, get_model(model or own))


def _print_check(result: CheckResult) -> None:
    print(f"Test {result.test} {result.verdict.value} (model {result.model})")
    print(f"States {len(result.states)}")
    for state in result.states:
        mark = "*" if state in result.satisfying else " "
        print(f" {mark} {format_state(state)}")
    print(f"Observation {result.test} {result.observation.value} {result.positive} {result.negative}")


def _print_jit(result: JitResult) -> None:
    print(
        f"{result.verdict.value.upper():4} {result.test} on {result.arch} (mutation {result.mutation}): "
        f"source {result.source.verdict.value}, compiled {result.compiled.verdict.value}"
    )
    if result.verdict is JitVerdict.PASS or result.witness is None:
        return
    print("  outcomes the BPF model forbids:")
    for state in result.extra_states:
        print(f"    {state}")
    print(f"  witness of {result.witness['state']}:")
    for line in result.witness["events"]:
        print(f"    {line}")
    for rel in ("rf", "co", "fr", "rmw", "addr", "data", "ctrl"):
        if result.witness[rel]:
            print(f"    {rel}: " + ", ".join(f"{a}->{b}" for a, b in result.witness[rel]))
    if result.witness["initial_reads"]:
        print("    reads of initial values: " + ", ".join(result.witness["initial_reads"]))
    for thread, listing in result.disassembly.items():
        print(f"  {thread}:")
        for line in listing:
            print(f"    {line}")


def _input_error(path: str, exc: Exception) -> InputError:
    return InputError("litmus test", path, hint=str(exc))


def cmd_check(args: argparse.Namespace) -> int:
    model = ModelName(args.model) if args.model else None
    results: list[dict[str, Any]] = []
    for name in args.files:
        try:
            result = check_file(Path(name), model)
        except LitmusError as exc:
            raise _input_error(name, exc) from exc
        if args.json:
            results.append(result.to_json())
        else:
            _print_check(result)
    if args.json:
        sys.stdout.write(json.dumps({"results": results}) + "\n")
    return EXIT_PASS


def cmd_jit(args: argparse.Namespace) -> int:
    arches = expand_arch(args.arch)
    cache = SourceCache()
    results: list[JitResult] = []
    for name in args.files:
        for arch in arches:
            try:
                result = check_jit(Path(name), arch, args.mutation, cache)
            except (LitmusError, JitError) as exc:
                raise _input_error(name, exc) from exc
            results.append(result)
            if not args.json:
                _print_jit(result)
    if args.json:
        sys.stdout.write(json.dumps({"results": [r.to_json() for r in results]}) + "\n")
    else:
        failed = sum(r.verdict is JitVerdict.FAIL for r in results)
        print(f"{len(results)} checks, {failed} with outcomes the BPF model forbids")
    return EXIT_FAIL if any(r.verdict is JitVerdict.FAIL for r in results) else EXIT_PASS


def _print_run(result: NativeResult) -> None:
    print(f"{result.verdict.value.upper():4} {result.test} on {result.arch}: {result.iterations} iterations")
    for state, count in sorted(result.histogram.items(), key=lambda item: -item[1]):
        mark = "FORBIDDEN " if state in result.forbidden_observed else ""
        print(f"    {count:9} {mark}{state}")
    for state in result.not_exercised:
        print(f"    not exercised on this host: {state}")


def cmd_run(args: argparse.Namespace) -> int:
    if args.iterations < 1:
        raise InputError("--iterations", args.iterations, hint="at least 1")
    cache = SourceCache()
    paths = [Path(name) for name in args.files]
    for path in paths:
        try:
            cache.get(path)
        except LitmusError as exc:
            raise _input_error(str(path), exc) from exc
    results: list[NativeResult] = []
    for arch in expand_arch(args.arch):
        try:
            batch = run_in_guest(paths, arch, args.iterations, cache)
        except (LitmusError, JitError) as exc:
            raise InputError("litmus test", arch, hint=str(exc)) from exc
        results += batch
        if not args.json:
            for result in batch:
                _print_run(result)
    if args.json:
        sys.stdout.write(json.dumps({"results": [r.to_json() for r in results]}) + "\n")
    return EXIT_FAIL if any(r.verdict is RunVerdict.FAIL for r in results) else EXIT_PASS


def add_litmus_parser(subparsers: Any) -> None:
    """Register ``jitprobe litmus check`` and ``jitprobe litmus jit``."""
    litmus = subparsers.add_parser("litmus", help="memory-ordering litmus tests and models")
    sub = litmus.add_subparsers(dest="litmus_command", required=True)
    chk = sub.add_parser("check", help="final states and verdict of litmus tests under a memory model")
    chk.add_argument("files", nargs="+", metavar="FILE", help="herdtools7 litmus tests")
    chk.add_argument(
        "--model",
        choices=[m.value for m in ModelName],
        help="memory model (default: the test's own architecture's)",
    )
    chk.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    chk.set_defaults(func=cmd_check)
    jit = sub.add_parser(
        "jit", help="BPF litmus tests compiled by jit_core, checked under each architecture's model"
    )
    jit.add_argument("files", nargs="+", metavar="FILE", help="BPF litmus tests")
    jit.add_argument("--arch", required=True, help="an architecture or all")
    jit.add_argument(
        "--mutation", default="none", choices=list(MUTATIONS), help="a deliberately broken lowering"
    )
    jit.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    jit.set_defaults(func=cmd_jit)
    run = sub.add_parser(
        "run",
        help="BPF litmus tests compiled by jit_core, run natively in guests: "
        "histograms of final states against the BPF model",
    )
    run.add_argument("files", nargs="+", metavar="FILE", help="BPF litmus tests")
    run.add_argument("--arch", required=True, help="an architecture or all")
    run.add_argument("--iterations", type=int, default=100_000, help="runs of each test (default 100000)")
    run.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    run.set_defaults(func=cmd_run)
