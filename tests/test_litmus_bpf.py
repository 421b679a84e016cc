"""The BPF memory model against herd7's verdicts (bpf/kinds.txt), and the BPF dialect."""

from __future__ import annotations

import pytest
from litmus_corpus import corpus, kinds

from jit_core import isa
from litmus.bpf import bpf_program, translate
from litmus.bpf_model import BpfModel
from litmus.check import Verdict, check, format_state
from litmus.errors import LitmusSyntaxError
from litmus.syntax import Line, parse_test, read_test

KINDS = kinds("bpf")
JUDGED = sorted(name for name, kind in KINDS.items() if kind != "?")


def test_kinds_cover_the_corpus() -> None:
    assert len(KINDS) == 120 and len(JUDGED) == 114
    assert {p.stem for p in corpus("bpf").glob("*.litmus")} == set(KINDS)


@pytest.mark.parametrize("name", JUDGED)
def test_verdict_agrees_with_herd7(name: str) -> None:
    program, _ = bpf_program(read_test(corpus("bpf", f"{name}.litmus")))
    assert check(program, BpfModel()).verdict is Verdict(KINDS[name])


def _states(text: str) -> set[str]:
    program, _ = bpf_program(parse_test(text))
    return {format_state(s) for s in check(program, BpfModel()).states}


def test_message_passing_states() -> None:
    mp = """BPF MP
{ 0:r1=x; 0:r2=y; 1:r1=x; 1:r2=y; }
 P0                                 | P1                                 ;
 r3 = 1                             | r4 = load_acquire((u32 *)(r2 + 0)) ;
 *(u32 *)(r1 + 0) = r3              | r5 = *(u32 *)(r1 + 0)              ;
 store_release((u32 *)(r2 + 0), r3) |                                    ;
exists (1:r4=1 /\\ 1:r5=0)
"""
    assert _states(mp) == {"1:r4=0; 1:r5=0;", "1:r4=0; 1:r5=1;", "1:r4=1; 1:r5=1;"}
    plain = mp.replace("load_acquire((u32 *)(r2 + 0))", "*(u32 *)(r2 + 0)")
    assert "1:r4=1; 1:r5=0;" in _states(
        plain.replace("store_release((u32 *)(r2 + 0), r3)", "*(u32 *)(r2 + 0) = r3")
    )


def test_atomic_increments_never_lose_an_update() -> None:
    result = check(bpf_program(read_test(corpus("bpf", "LockTwice.litmus")))[0], BpfModel())
    assert [format_state(s) for s in result.states] == ["[x]=3;"] and result.verdict is Verdict.REQUIRED


def test_dialect_lines_become_ir() -> None:
    lines = [
        Line(t, k)
        for k, t in enumerate(
            [
                "r2 = *(u32 *)(r1 + 4)",
                "store_release((u64 *)(r1 + 0), r2)",
                "r3 = atomic_fetch_add((u32 *)(r1 + 0), r4)",
                "if r3 == 1 goto L",
                "r0 = cmpxchg_64(r1 + 0, r0, r2)",
                "L:",
            ],
            start=1,
        )
    ]
    prog = translate(lines, "t").prog
    assert prog[0] == isa.Insn(isa.LDX | isa.MODE_MEM | isa.SIZE_W, 2, 1, 4)
    assert prog[1] == isa.Insn(isa.STX | isa.MODE_ATOMIC | isa.SIZE_DW, 1, 2, 0, isa.ATOMIC_STORE_REL)
    # rD = atomic_fetch_add(mem, rS) with rD != rS: a copy, then the IR's in-place fetch form
    assert prog[2] == isa.Insn(isa.ALU64 | isa.MOV | isa.SRC_X, 3, 4)
    assert prog[3] == isa.Insn(
        isa.STX | isa.MODE_ATOMIC | isa.SIZE_W, 1, 3, 0, isa.ATOMIC_ADD | isa.ATOMIC_FETCH
    )
    assert prog[4] == isa.Insn(isa.JMP | isa.JEQ, 3, off=1, imm=1)
    assert prog[5].imm == isa.ATOMIC_CMPXCHG and prog[6].opcode == isa.EXIT_OPCODE


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("r1 = foo(r2)", "expected a BPF instruction"),
        ("r11 = 1", "r0..r10"),
        ("goto NOWHERE", "label"),
        ("r1 = cmpxchg_64(r2 + 0, r0, r3)", "r0"),
    ],
)
def test_dialect_errors_name_the_line(line: str, expected: str) -> None:
    with pytest.raises(LitmusSyntaxError, match=expected) as err:
        translate([Line(line, 7)], "t.litmus")
    assert err.value.lineno == 7


def test_a_bad_initial_register_names_the_initial_state_line() -> None:
    test = parse_test("BPF T\n\n{\n0:r12=x;\n}\n P0 ;\n r0 = 1 ;\nexists (0:r0=1)\n", "t.litmus")
    with pytest.raises(LitmusSyntaxError, match="r0..r10") as err:
        bpf_program(test)
    assert err.value.lineno == 3
