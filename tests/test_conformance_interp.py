"""The bpf_conformance suite: the interpreter passes it, and so does each backend's executable run
natively (x86_64) or under qemu-user (arm64, riscv64) when the backend exists."""

from __future__ import annotations

from pathlib import Path

import pytest
from user_mode import require_runner, run_batch

from jit_core.conformance import (
    build_elves,
    decode_result,
    interp_report,
    judge_native,
    load_suite,
    native_report,
    parse_test,
)
from jit_core.errors import JitError

SUITE = Path(__file__).resolve().parents[2] / "shared" / "bpf_conformance" / "tests"
SKIPPED = {"call_unwind_fail", "callx"}


def test_interpreter_passes_the_suite() -> None:
    tests = load_suite(SUITE)
    report = interp_report(tests)
    assert report["failed"] == []
    assert {s["test"] for s in report["skipped"]} == SKIPPED
    assert report["passed"] == len(tests) - len(SKIPPED)


@pytest.mark.parametrize("arch", ["x86_64", "arm64", "riscv64"])
def test_backend_passes_the_suite_in_user_mode(arch: str) -> None:
    require_runner(arch)
    tests = load_suite(SUITE)
    elves, decided = build_elves(arch, tests)
    names = list(elves)
    runs = run_batch(arch, [elves[n] for n in names])
    report = native_report(tests, decided, dict(zip(names, runs, strict=True)))
    assert report["failed"] == []
    assert report["passed"] == len(tests) - len(SKIPPED)


def test_parser_sections_raw_and_errors() -> None:
    test = parse_test("t", "# c\n-- raw\n0x00000001000000b7\n95 00 00 00 00 00 00 00\n-- mem\n01 02\n"
                           "-- no register offset\nanything\n-- result\n0x1\n")
    assert test.problem is None and len(test.prog) == 2 and test.mem == b"\x01\x02" and test.result == 1
    assert parse_test("t", "-- asm\nexit\n").problem == "no '-- result' or '-- error' section"
    assert "unknown mnemonic" in (parse_test("t", "-- asm\nfoo\n-- result\n0x0").problem or "")
    assert parse_test("t", "-- asm\nexit\n-- error\n").expects_error


def test_native_judging() -> None:
    test = parse_test("t", "-- asm\nmov %r0, 0x101\nexit\n-- result\n0x101")
    assert judge_native(test, (0x101).to_bytes(8, "little"), 1).status == "passed"
    assert judge_native(test, (0x101).to_bytes(8, "little"), 139).status == "failed"
    assert judge_native(test, b"", 0).got.startswith("error: expected at least 8 bytes")
    with pytest.raises(JitError, match="got 3"):
        decode_result(b"abc")
    with pytest.raises(JitError, match="valid choices"):
        build_elves("vax", [test])


def test_a_test_that_never_ran_fails_even_when_an_error_is_expected() -> None:
    test = parse_test("faults", "-- asm\nldxdw %r0, [%r1+30000]\nexit\n-- error\n")
    assert test.expects_error
    report = native_report([test], [], {})
    assert report["passed"] == 0
    assert [(f["test"], f["got"]) for f in report["failed"]] == [("faults", "not run")]
