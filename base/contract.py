"""The JSON objects of the CLI contract (../shared/CONTRACT.md) as types mypy checks.

Results are built as these TypedDicts and serialized with ``json.dumps`` where they are printed
or kept (harness.cli, harness.runs), so a key the contract does not name, or a verdict it does
not list, is a type error rather than a silent difference.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict, get_args

__all__ = [
    "VERDICTS",
    "BootResult",
    "ConformanceReport",
    "ExecResult",
    "FailedTest",
    "SkippedTest",
    "StressResult",
    "Space",
    "Verdict",
    "Violation",
]

Verdict = Literal["pass", "fail", "crash", "timeout", "infra"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
Space = Literal["user", "kernel"]


class Violation(TypedDict):
    """A sanitizer violation V of ``jitprobe exec --sanitize``."""

    rule: str
    pc: int
    vcpu: int
    paddr: int
    insn: str
    disasm: str
    symbol: str | None
    writer_pc: int
    writer_vcpu: int
    count: int
    space: Space
    # Beyond the contract's fields: what the sanitizer's judgement rested on, as its report gives
    # it (harness/sanitizer/README.md), for triage; absent in older reports.
    events: NotRequired[dict[str, Any]]


class BootResult(TypedDict):
    """The object ``jitprobe boot --json`` prints."""

    arch: str
    cpu: str
    smp: int
    qemu_version: str | None
    kernel: str | None
    ready_s: float | None
    verdict: Verdict


class ExecResult(TypedDict):
    """The object ``jitprobe exec --json`` prints."""

    arch: str
    cpu: str
    smp: int
    verdict: Verdict
    exit_code: int | None
    stdout: str
    console_tail: str
    wall_s: float | None
    violations: list[Violation]
    # beyond the contract's fields: the program's stderr, and how much of each stream it wrote
    # (the strings hold at most --output-limit bytes)
    stderr: str
    stdout_bytes: int
    stderr_bytes: int
    stdout_truncated: bool
    stderr_truncated: bool


class StressResult(TypedDict):
    """One entry of ``jitprobe run --json``'s results: a cell of the detection matrix.

    ``verdict`` is None for a cell the run could not exercise, a bug the sanitizer has no rule
    for, or a known open false positive of the sanitizer (``observed`` then says which)."""

    arch: str
    cpu: str
    suite: str
    scenario: str
    mutation: str
    expected: Literal["clean", "caught"]
    observed: Literal["clean", "caught", "not exercised", "not detected", "known false positive"]
    caught_by: list[str]  # sanitizer, result (a call returned stale code's value), crash; litmus: model, run
    verdict: Verdict | None
    violations: list[Violation]
    histogram: dict[str, int] | None  # litmus entries of the correct code: final state -> runs ending in it
    reproducer: str
    # beyond the contract's fields
    expected_rules: list[str]
    forbidden: list[str]  # litmus entries: final states the BPF model forbids that a run produced
    tolerated_rules: list[str]  # may also be reported (a concurrent executor between the writer's steps)
    observed_rules: list[str]
    exit_code: int | None
    detail: str
    run_dir: str


class FailedTest(TypedDict):
    test: str
    expected: str
    got: str


class SkippedTest(TypedDict):
    test: str
    reason: str


class ConformanceReport(TypedDict):
    """The R object of ``jitprobe jit conformance --json`` (one per interpreter or architecture)."""

    passed: int
    failed: list[FailedTest]
    skipped: list[SkippedTest]
