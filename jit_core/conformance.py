"""The bpf_conformance ``.data`` format: parsing, judging results, interpreter runs, native ELFs.

A file has sections opened by ``-- name`` lines: ``asm`` (assembler text), ``raw`` (instructions as
``0x``-prefixed 64-bit words or as 8 hex bytes per line), ``mem`` (hex bytes), ``result`` (the
expected r0, hex) and ``error`` (the program is expected to be refused or to fault). Other
sections (``c``, ``no register offset``, ...) are ignored, as are ``#`` comment lines outside
``asm``. When both ``asm`` and ``raw`` are present the ``asm`` text is used.

Results follow ../shared/CONTRACT.md: R = {"passed": n, "failed": [{"test", "expected", "got"}],
"skipped": [{"test", "reason"}]}. Tests that call a helper function (``call N``, ``call %rN``)
are skipped: the suite's helper ids belong to its own runtime, while jitprobe's ids are its
intrinsics (jit_core.intrinsics).

Natively, every runnable test becomes one ELF (build_elves) whose stdout is r0 as 8 little-endian
bytes and whose exit status is r0 & 0xff (see jit_core.elf); judge_native turns the runs back into
outcomes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from base.contract import ConformanceReport

from . import isa
from .asm import assemble
from .elf import build_executable
from .errors import JitError
from .interp import InterpError, run
from .isa import Insn
from .target import target_profile
from .verify import CALLX_OPCODE, verify

__all__ = [
    "FAILED",
    "PASSED",
    "SKIPPED",
    "ConformanceTest",
    "Outcome",
    "build_elves",
    "decode_result",
    "interp_report",
    "judge",
    "judge_native",
    "load_suite",
    "load_test",
    "native_report",
    "parse_test",
    "rejection",
    "report",
    "run_interp",
    "skip_reason",
]

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@dataclass(frozen=True)
class ConformanceTest:
    """One ``.data`` file. ``problem`` says why the file itself is unusable (then ``prog`` is
    empty); ``result`` is None when the file expects an error."""

    name: str
    prog: list[Insn]
    mem: bytes
    result: int | None
    expects_error: bool
    problem: str | None = None


@dataclass(frozen=True)
class Outcome:
    test: str
    status: str
    expected: str = ""
    got: str = ""
    reason: str = ""


def _sections(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("-- "):
            current = sections.setdefault(line[3:].strip(), [])
        elif current is not None:
            current.append(line)
    return sections


def _hex_bytes(lines: Iterable[str]) -> bytes:
    words = [w for line in lines if not line.lstrip().startswith("#") for w in line.split()]
    try:
        return bytes(int(w, 16) for w in words)
    except ValueError as exc:
        raise JitError(f"bad hex byte in {' '.join(words)!r}: {exc}") from None


def _raw_program(lines: Iterable[str]) -> list[Insn]:
    raw = bytearray()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line.lower().startswith("0x"):
            raw += int(line, 16).to_bytes(8, "little")
        elif line:
            raw += _hex_bytes([line])
    return isa.decode_program(bytes(raw))


def parse_test(name: str, text: str) -> ConformanceTest:
    """Parse the text of one ``.data`` file. Never raises: an unusable file gets ``problem``."""
    sections = _sections(text)
    expects_error = "error" in sections
    result = None  # kept when a later section is unusable, so the report says what was expected
    try:
        result_words = [w for line in sections.get("result", []) for w in line.split()
                        if not w.startswith("#")]
        result = int(result_words[0], 16) if result_words else None
        if result is None and not expects_error:
            raise JitError("no '-- result' or '-- error' section")
        mem = _hex_bytes(sections.get("mem", []))
        if "asm" in sections:
            prog = assemble("\n".join(sections["asm"]))
        elif "raw" in sections:
            prog = _raw_program(sections["raw"])
        else:
            raise JitError("no '-- asm' or '-- raw' section")
        if not prog:
            raise JitError("the program has no instructions")
    except (JitError, ValueError) as exc:
        return ConformanceTest(name, [], b"", result, expects_error, str(exc))
    return ConformanceTest(name, prog, mem, result, expects_error)


def load_test(path: Path) -> ConformanceTest:
    """Read and parse one ``.data`` file (see parse_test). Raises JitError for a file that cannot
    be read or is not UTF-8 text."""
    try:
        return parse_test(path.stem, path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start]
        raise JitError(f"{path}: not UTF-8 text (byte {bad:#04x} at offset {exc.start})") from exc
    except OSError as exc:
        raise JitError(f"{path}: cannot be read: {exc.strerror}") from exc


def load_suite(directory: Path) -> list[ConformanceTest]:
    """Every ``*.data`` file of ``directory``, sorted by name. Raises JitError if there is none."""
    paths = sorted(directory.glob("*.data"))
    if not paths:
        raise JitError(f"no *.data files in {directory}")
    return [load_test(p) for p in paths]


def skip_reason(test: ConformanceTest) -> str | None:
    """Why ``test`` cannot mean anything here (it calls the suite runtime's helpers), or None."""
    for insn in test.prog:
        if insn.opcode == CALLX_OPCODE:
            return "calls a helper function through a register (callx); needs the suite runtime's helpers"
        if insn.opcode == isa.JMP | isa.CALL and insn.src == isa.CALL_HELPER:
            return (f"calls helper {insn.imm} of the bpf_conformance runtime; jitprobe's helper ids "
                    "are its own intrinsics")
    return None


def _expected_text(test: ConformanceTest) -> str:
    return "error" if test.result is None else f"{test.result:#x}"


def judge(test: ConformanceTest, r0: int | None, error: str | None) -> Outcome:
    """The outcome of ``test`` given either the r0 a run produced or the error that stopped it."""
    expected = _expected_text(test)
    if error is not None:
        if test.expects_error:
            return Outcome(test.name, PASSED, expected, f"error: {error}")
        return Outcome(test.name, FAILED, expected, f"error: {error}")
    assert r0 is not None
    if test.result is not None and r0 == test.result:
        return Outcome(test.name, PASSED, expected, f"{r0:#x}")
    return Outcome(test.name, FAILED, expected, f"{r0:#x}")


def _decided(test: ConformanceTest) -> Outcome | None:
    """The outcome that needs no run: unusable file, refused by the verifier, or skipped."""
    if test.problem is not None:
        return Outcome(test.name, FAILED, _expected_text(test), f"error: {test.problem}")
    try:
        verify(test.prog)
    except JitError as exc:
        return judge(test, None, str(exc))
    reason = skip_reason(test)
    if reason is not None:
        return Outcome(test.name, SKIPPED, reason=reason)
    return None


def run_interp(test: ConformanceTest) -> Outcome:
    """Run one test through the reference interpreter."""
    decided = _decided(test)
    if decided is not None:
        return decided
    try:
        result = run(test.prog, test.mem)
    except InterpError as exc:
        return judge(test, None, str(exc))
    return judge(test, result.r0, None)


def report(outcomes: Iterable[Outcome]) -> ConformanceReport:
    """The CONTRACT's R object."""
    outcomes = list(outcomes)
    return {
        "passed": sum(o.status == PASSED for o in outcomes),
        "failed": [{"test": o.test, "expected": o.expected, "got": o.got}
                   for o in outcomes if o.status == FAILED],
        "skipped": [{"test": o.test, "reason": o.reason} for o in outcomes if o.status == SKIPPED],
    }


def interp_report(tests: Iterable[ConformanceTest]) -> ConformanceReport:
    """R for the reference interpreter over ``tests``."""
    return report(run_interp(t) for t in tests)


def rejection(test: ConformanceTest) -> str | None:
    """Why ``test`` does not run cleanly to its expected result on the interpreter (unusable file,
    refused program, run-time fault, wrong or unexpected result), or None if it does. Every file
    of the suite's ``negative`` folder must have a reason."""
    if test.problem is not None:
        return test.problem
    try:
        r0 = run(test.prog, test.mem).r0
    except JitError as exc:
        return str(exc)
    if test.result is None:
        return f"expected an error, the program ran to r0 = {r0:#x}"
    return None if r0 == test.result else f"expected {test.result:#x}, got {r0:#x}"


def build_elves(arch: str, tests: Iterable[ConformanceTest]) -> tuple[dict[str, bytes], list[Outcome]]:
    """One executable per runnable test, by test name, plus the outcomes decided without running
    (unusable, skipped, refused by the verifier or the backend). Raises JitError for an unknown
    architecture."""
    target_profile(arch)
    elves: dict[str, bytes] = {}
    decided: list[Outcome] = []
    for test in tests:
        outcome = _decided(test)
        if outcome is None:
            try:
                elves[test.name] = build_executable(arch, test.prog, test.mem)
                continue
            except JitError as exc:
                outcome = judge(test, None, f"refused by the {arch} backend: {exc}")
        decided.append(outcome)
    return elves, decided


def decode_result(stdout: bytes) -> int:
    """r0 from an executable's stdout (8 bytes, little-endian). Raises JitError if too short."""
    if len(stdout) < 8:
        raise JitError(f"expected at least 8 bytes of results on stdout, got {len(stdout)}: {stdout!r}")
    return int.from_bytes(stdout[:8], "little")


def judge_native(test: ConformanceTest, stdout: bytes, exit_code: int) -> Outcome:
    """The outcome of one native run: stdout must carry r0 and the exit status must be r0 & 0xff."""
    try:
        r0 = decode_result(stdout)
    except JitError as exc:
        return judge(test, None, f"{exc} (exit status {exit_code})")
    if exit_code != r0 & 0xFF:
        return judge(test, None, f"exit status {exit_code} but r0 & 0xff = {r0 & 0xFF} (crash?)")
    return judge(test, r0, None)


def native_report(tests: Iterable[ConformanceTest], decided: Iterable[Outcome],
                  runs: Mapping[str, tuple[bytes, int]]) -> ConformanceReport:
    """R for a backend: ``decided`` from build_elves, ``runs`` maps each built test's name to
    (stdout, exit status); a built test missing from ``runs`` is failed as 'not run'."""
    by_name = {o.test: o for o in decided}
    outcomes = []
    for test in tests:
        if test.name in by_name:
            outcomes.append(by_name[test.name])
        elif test.name in runs:
            outcomes.append(judge_native(test, *runs[test.name]))
        else:  # failed even where an error is expected: a run that never happened proves nothing
            outcomes.append(Outcome(test.name, FAILED, _expected_text(test), "not run"))
    return report(outcomes)
