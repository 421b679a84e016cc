"""The verifier: every negative conformance file is rejected, every positive one accepted, and
each rule names the instruction index and text."""

from __future__ import annotations

from pathlib import Path

import pytest

from jit_core import isa
from jit_core.asm import assemble
from jit_core.compile import compile_program
from jit_core.conformance import load_suite, rejection
from jit_core.errors import JitError
from jit_core.isa import Insn
from jit_core.verify import verify

SHARED = Path(__file__).resolve().parents[2] / "shared" / "bpf_conformance"
NEGATIVE = load_suite(SHARED / "negative")
POSITIVE = load_suite(SHARED / "tests")


@pytest.mark.skipif(not NEGATIVE, reason="../shared/bpf_conformance is missing")
@pytest.mark.parametrize("test", NEGATIVE, ids=[t.name for t in NEGATIVE])
def test_negative_file_is_rejected(test) -> None:
    assert rejection(test) is not None


@pytest.mark.skipif(not NEGATIVE, reason="../shared/bpf_conformance is missing")
@pytest.mark.parametrize("test", [t for t in NEGATIVE if t.name.startswith("unused-")],
                         ids=lambda t: t.name)
def test_unused_fields_are_refused_by_the_verifier(test) -> None:
    with pytest.raises(JitError, match=r"instruction 0 \(.+\): (unused field|offset 1 invalid)"):
        verify(test.prog)


@pytest.mark.skipif(not POSITIVE, reason="../shared/bpf_conformance is missing")
def test_every_positive_program_verifies() -> None:
    for test in POSITIVE:
        verify(test.prog)


def _refused(text_or_prog: str | list[Insn], message: str, index: int) -> None:
    prog = assemble(text_or_prog) if isinstance(text_or_prog, str) else text_or_prog
    with pytest.raises(JitError, match=message) as info:
        verify(prog)
    assert info.value.index == index and info.value.text


@pytest.mark.parametrize(("prog", "message", "index"), [
    ("mov %r10, 1\nexit", "r10 is the read-only frame pointer", 0),
    ("ldxdw %r10, [%r1+0]\nexit", "r10 is the read-only", 0),
    ("lock fetch add [%r1+0], %r10\nexit", "cannot receive the fetched value", 0),
    ("mov %r0, 0", "falls through past the end of the program", 0),
    ("ja +5\nexit", "target slot 6 is outside the program", 0),
    ("ja -2\nexit", "target slot -1 is outside", 0),
    ("ja +1\nlddw %r0, 1\nexit", "second half of an lddw", 0),
    ("call 99\nexit", "unknown helper id 99; valid ids: 1, 2", 0),
    ("call local f\nexit\nf:\nja +1\nexit\nexit", None, -1),
    ("call local f\nexit\nf:\njeq %r1, 0, -3\nexit", "leaves the function", 2),
    ("call local f\nmov %r0, 1\nf:\nexit", "falls through past the end of the function starting at slot 0",
     1),
    ("lddw %r0, 1", "falls through", 1),
])
def test_control_flow_and_register_rules(prog: str, message: str | None, index: int) -> None:
    if message is None:
        verify(assemble(prog))
    else:
        _refused(prog, message, index)


@pytest.mark.parametrize(("insn", "message"), [
    (Insn(0xF5), "unknown jump operation"),
    (Insn(0x20), "of the LD class only lddw"),
    (Insn(0xB7, 11), "bad register r11 in dst; valid registers are r0..r10"),
    (Insn(0x0F, 0, 12), "bad register r12 in src"),
    (Insn(0xDB, 1, 2, 0, 0x02), "unknown atomic operation 0x2"),
    (Insn(0xD3, 1, 2, 0, 0x00), "needs a 32- or 64-bit size"),
    (Insn(0xD4, 0, 0, 0, 24), "byte swap width 24 invalid"),
    (Insn(0xDF, 0, 0, 0, 16), "no big-endian form"),
    (Insn(0x3F, 1, 2, 2), "offset 2 invalid here; valid: 0, 1"),
    (Insn(0xBC, 1, 2, 32), "offset 32 invalid here; valid: 0, 8, 16"),
    (Insn(0x8C, 1), "neg takes no source"),
    (Insn(0x85, 0, 2, 0, 1), "call source 2 invalid"),
    (Insn(0x86, imm=1), "exists only in the JMP class"),
    (Insn(0x99, 1, 1), "unknown opcode 0x99"),
])
def test_encoding_rules(insn: Insn, message: str) -> None:
    _refused([Insn(0xB7), insn, Insn(isa.EXIT_OPCODE)], message, 1)


def test_lddw_rules() -> None:
    _refused([Insn(0x18, 0, 1, 0, 1), Insn(0), Insn(0x95)], "lddw source 1 invalid; valid: 0", 0)
    _refused([Insn(0x18, 0, 0, 0, 1), Insn(0x07), Insn(0x95)], "second slot of lddw", 0)
    _refused([Insn(0x95), Insn(0x18, 0, 0, 0, 1)], "needs two slots", 1)


def test_function_layout() -> None:
    info = verify(assemble("""
        lddw %r2, func g
        call local f
        exit
        f:
        mov %r0, 1
        exit
        g:
        jeq %r1, 0, +1
        exit
        exit
    """))
    assert info.functions == (0, 4, 6)
    assert info.function_of(5) == 4 and info.function_end(4) == 6 and info.function_end(6) == 9
    assert info.jump_targets == {4, 6, 8}


def test_empty_program() -> None:
    with pytest.raises(JitError, match="empty"):
        verify([])


def test_compile_program_checks_mutation_first() -> None:
    with pytest.raises(JitError, match="unknown mutation 'bogus'; valid choices: none, no_dc_clean"):
        compile_program("x86_64", assemble("exit"), mutation="bogus")
    with pytest.raises(JitError, match="unknown architecture 'sparc'; valid choices"):
        compile_program("sparc", assemble("exit"))
