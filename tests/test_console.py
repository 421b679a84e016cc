"""Crash detection on real guest console logs (tests/fixtures/console/, from capture.py there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.console import (
    CRASH_PATTERNS,
    crash_kind,
    find_crashes,
    first_crash,
    signal_crash,
    tail,
    tail_with_crash,
)
from harness.guest import done_pattern

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "console"
ARCHES = ("x86_64", "arm64", "riscv64")


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.mark.parametrize("arch", ARCHES)
def test_sysrq_panic_is_a_panic_with_its_trace(arch: str) -> None:
    crash = first_crash(_fixture(f"{arch}-panic.log"))
    assert crash is not None
    assert crash.kind == "panic"
    assert crash.line == "Kernel panic - not syncing: sysrq triggered crash"
    assert "sysrq: Trigger a crash" in crash.excerpt  # the lines before the match
    assert "Call trace:" in crash.excerpt or "Call Trace:" in crash.excerpt


@pytest.mark.parametrize(
    ("arch", "kinds", "needle"),
    [
        ("x86_64", ["segfault", "trap"], "trap invalid opcode"),
        ("arm64", ["unhandled_signal", "unhandled_signal"], "unhandled exception: undefined instruction"),
        ("riscv64", ["unhandled_signal", "unhandled_signal"], "unhandled signal 4 code"),
    ],
)
def test_user_segfault_and_illegal_instruction_reports(arch: str, kinds: list[str], needle: str) -> None:
    crashes = find_crashes(_fixture(f"{arch}-user-faults.log"))
    assert [c.kind for c in crashes] == kinds
    assert needle in crashes[1].line
    assert crashes[0].line.startswith("fault[")  # the timestamp prefix is gone


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("kind", ["boot", "boot-dmesg"])
def test_clean_boot_logs_have_no_crash(arch: str, kind: str) -> None:
    text = _fixture(f"{arch}-{kind}.log")
    assert len(text) > 200
    assert find_crashes(text) == []


# Kernel message formats that no Debian 6.12 guest here can be made to print on purpose (no lkdtm
# module): one line each, copied from the printk formats of the kernel sources they name.
@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (
            "[   12.5] Internal error: Oops: 0000000096000005 [#1] SMP",
            "oops",
        ),  # arch/arm64/kernel/traps.c die()
        (
            "Oops: general protection fault, probably for non-canonical address",
            "oops",
        ),  # arch/x86/kernel/traps.c
        ("[    3.1] Oops [#1]", "oops"),  # arch/riscv/kernel/traps.c die()
        ("BUG: kernel NULL pointer dereference, address: 0000000000000000", "bug"),  # arch/x86/mm/fault.c
        ("[   22.0] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [spin:99]", "bug"),  # kernel/watchdog.c
        ("kernel BUG at mm/slub.c:123!", "bug"),  # include/asm-generic/bug.h
        ("WARNING: CPU: 1 PID: 42 at kernel/smp.c:815 smp_call_function_many_cond+0x1/0x2", "warning"),
        (
            "Unable to handle kernel NULL pointer dereference at virtual address 0000000000000000",
            "kernel_fault",
        ),
        ("Unable to handle kernel paging request at virtual address ffff800080000000", "kernel_fault"),
    ],
)
def test_kernel_report_formats(line: str, kind: str) -> None:
    assert crash_kind(line) == kind


@pytest.mark.parametrize(
    "line",
    [
        "JP-DONE-3-0",
        "hello WARNING: this is program output",
        "Oopsie",
        "[    1.0] Run /init as init process",
        "debug: BUGS found: 0",
    ],
)
def test_ordinary_lines_are_not_crashes(line: str) -> None:
    assert crash_kind(line) is None


def test_every_pattern_has_a_unique_kind() -> None:
    kinds = [k for k, _ in CRASH_PATTERNS]
    assert len(kinds) == len(set(kinds))


def test_fatal_signal_exit_statuses() -> None:
    report = signal_crash(139)
    assert report is not None and report.kind == "fatal_signal" and "SIGSEGV" in report.line
    assert signal_crash(132) is not None and "SIGILL" in signal_crash(132).line  # type: ignore[union-attr]
    assert signal_crash(1) is None and signal_crash(130) is None  # SIGINT is not a crash


def test_tail_strips_carriage_returns_and_escapes() -> None:
    assert tail("a\r\r\nb\x1b[6n\r\nc\n", 2) == "b\nc"


def test_a_crash_that_scrolled_out_of_the_tail_is_put_back_in_front() -> None:
    text = _fixture("x86_64-panic.log")
    crash = first_crash(text)
    assert crash is not None
    short = tail(text, 5)
    assert crash.line not in short
    combined = tail_with_crash(short, crash)
    assert combined.startswith(crash.excerpt) and combined.endswith(short)
    assert tail_with_crash(text, crash) == text
    assert tail_with_crash(short, None) == short


def test_a_done_marker_interrupted_by_the_kernel_still_ends_its_command() -> None:
    """A real console: the kernel printed between the status and its line end, and the command's
    end was missed until its time limit (the run then hung for minutes)."""
    text = _fixture("arm64-done-marker-interrupted.log").encode()
    match = done_pattern("JP-DONE-3424840f1dee87d96e863c2f").search(text)
    assert match is not None and match.group(1) == b"0"


def test_a_status_split_across_reads_is_not_matched_half() -> None:
    pattern = done_pattern("JP-DONE-ab")
    assert pattern.search(b"~ # JP-DONE-ab-1") is None
    match = pattern.search(b"~ # JP-DONE-ab-127\r\n")
    assert match is not None and match.group(1) == b"127"
