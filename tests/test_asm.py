"""Assembler and disassembler: every conformance program round-trips, forms and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from jit_core import isa
from jit_core.asm import FORMS, assemble, disassemble, parse_int
from jit_core.conformance import load_suite
from jit_core.errors import JitError
from jit_core.isa import Insn

SUITE = Path(__file__).resolve().parents[2] / "shared" / "bpf_conformance" / "tests"
TESTS = load_suite(SUITE)  # ../shared is beside every checkout, CI's included


@pytest.mark.skipif(not TESTS, reason="../shared/bpf_conformance is missing")
@pytest.mark.parametrize("test", TESTS, ids=[t.name for t in TESTS])
def test_conformance_program_round_trips(test) -> None:
    assert test.problem is None
    assert assemble("\n".join(disassemble(test.prog))) == test.prog


def test_every_mnemonic_round_trips() -> None:
    lines = []
    for name, form in FORMS.items():
        lines.append({
            "alu": f"{name} %r1, %r2", "unary": f"{name} %r3", "movsx": f"{name} %r0, %r9",
            "load": f"{name} %r1, [%r2-8]", "store_imm": f"{name} [%r10-16], -7",
            "store": f"{name} [%r10+0], %r4", "jcond": f"{name} %r1, 0x7fffffff, -1",
            "ja": f"{name} +0", "ja32": f"{name} -3", "exit": "exit", "call": "call 8",
            "lddw": f"{name} %r5, 0xffffffff00000001", "lock": "lock fetch xor32 [%r1+4], %r2",
        }[form.kind])
    prog = assemble("\n".join(lines))
    assert assemble("\n".join(disassemble(prog))) == prog
    assert disassemble(prog)[lines.index("exit")] == "exit"


@pytest.mark.parametrize(("text", "expected"), [
    ("mov32 %r0, -1", Insn(0xB4, 0, 0, 0, -1)),
    ("mov32 %r0, 0xffffffff", Insn(0xB4, 0, 0, 0, -1)),
    ("sdiv32 %r1, %r2", Insn(0x3C, 1, 2, 1, 0)),
    ("smod %r1, 3", Insn(0x97, 1, 0, 1, 3)),
    ("ldxsh %r0, [%r10-2]", Insn(0x89, 0, 10, -2, 0)),
    ("stxdw [%r10-8], %r0", Insn(0x7B, 10, 0, -8, 0)),
    ("be16 %r0", Insn(0xDC, 0, 0, 0, 16)),
    ("swap64 %r0", Insn(0xD7, 0, 0, 0, 64)),
    ("movsx1632 %r4, %r3", Insn(0xBC, 4, 3, 16, 0)),
    ("lock fetch add [%r10-8], %r1", Insn(0xDB, 10, 1, -8, 0x01)),
    ("lock cmpxchg32 [%r10-8], %r1", Insn(0xC3, 10, 1, -8, 0xF1)),
    ("load_acquire16 %r0, [%r1+2]", Insn(0xCB, 0, 1, 2, 0x100)),
    ("store_release64 [%r1+0], %r2", Insn(0xDB, 1, 2, 0, 0x110)),
    ("call %r2", Insn(0x8D, 2)),
    ("call syscall", Insn(0x85, 0, 0, 0, 8)),
    ("ja32 +70000", Insn(0x06, 0, 0, 0, 70000)),
])
def test_single_forms(text: str, expected: Insn) -> None:
    assert assemble(text) == [expected]


def test_labels_calls_and_function_addresses() -> None:
    prog = assemble("""
        lddw %r1, func helper   # slots 0-1
        call local helper       # slot 2
        jeq %r0, 1, done        # slot 3
        done: exit              # slot 4
        helper:                 # slot 5
        mov %r0, 1
        exit
    """)
    assert prog[0] == Insn(isa.LDDW_OPCODE, 1, 4, 0, 4)
    assert prog[2].imm == 2 and prog[2].src == isa.CALL_LOCAL
    assert prog[3].off == 0
    assert disassemble(prog)[0] == "lddw %r1, func +4"


def test_implicit_exit_label_is_the_first_exit() -> None:
    prog = assemble("jeq %r1, 0, exit\nmov %r0, 1\nexit\nmov %r0, 2\nexit")
    assert prog[0].off == 1


def test_lddw_splits_the_immediate() -> None:
    first, second = assemble("lddw %r0, 0x8000000000000001")
    assert isa.lddw_imm(first, second) == 0x8000000000000001


@pytest.mark.parametrize(("text", "message"), [
    ("ldxq %r0, %r1", r"line 1: 'ldxq %r0, %r1': unknown mnemonic 'ldxq'; valid choices: add, "),
    ("mov %r11, 1", r"invalid register '%r11'; valid registers: %r0..%r10"),
    ("mov32 %r0, 2147483648", "out of the 32-bit range"),
    ("ldxb %r0, [%r1+0x10000]", "out of the 16-bit range"),
    ("lddw %r0", "lddw takes 2 operands"),
    ("exit %r0", "exit takes 0 operands"),
    ("ja nowhere", "unknown label 'nowhere'"),
    ("a:\na:\nexit", "duplicate label 'a'"),
    ("lock or [%r10-8]", "lock takes 2 operands"),
    ("lock nand [%r10-8], %r1", "unknown atomic operation 'nand'; valid choices: add"),
    ("lock fetch xchg [%r10-8], %r1", "xchg always fetches"),
    ("call bogus", "unknown helper 'bogus'; valid names: fence_full"),
    ("mov %r0, 1\n  stw [%r1], x", "line 2: 'stw \\[%r1\\], x': immediate 'x' is not a number"),
])
def test_errors_name_line_and_choices(text: str, message: str) -> None:
    with pytest.raises(JitError, match=message):
        assemble(text)


def test_parse_int_ranges() -> None:
    assert parse_int("0xffff", 16, "x") == -1
    assert parse_int("-32768", 16, "x") == -32768
    with pytest.raises(JitError, match="decimal"):
        parse_int("32768", 16, "x")


def test_disassembler_shows_invalid_encodings_as_bytes() -> None:
    assert disassemble([Insn(0xFF)]) == ["<invalid ff 00 00 00 00 00 00 00>"]
