"""x86_64 encoder: every form at the boundary values of its fields, checked two ways.

1. capstone decodes exactly one instruction using all the bytes, with the expected mnemonic
   and operands (registers, immediates masked to the operand size, base + displacement).
2. GNU as assembles the same instructions (one batched ``as`` run, each case behind its own
   label) to the same bytes.
Out-of-range operands (min-1, max+1, bad registers, sizes and names) raise JitError.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import capstone
import pytest
from capstone import x86 as csx86
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from jit_core.errors import JitError
from jit_core.x86_64 import encoder as enc
from jit_core.x86_64.encoder import (
    R8,
    R9,
    R11,
    R12,
    R13,
    R15,
    RAX,
    RBP,
    RBX,
    RCX,
    RDI,
    RDX,
    RSI,
    RSP,
    Cond,
)

NAMES = {
    8: enc.REG_NAMES,
    4: ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", *(f"r{i}d" for i in range(8, 16))),
    2: ("ax", "cx", "dx", "bx", "sp", "bp", "si", "di", *(f"r{i}w" for i in range(8, 16))),
    1: ("al", "cl", "dl", "bl", "spl", "bpl", "sil", "dil", *(f"r{i}b" for i in range(8, 16))),
}
PTR = {1: "byte", 2: "word", 4: "dword", 8: "qword"}
S32_MIN, S32_MAX = -(1 << 31), (1 << 31) - 1

Operand = tuple[Any, ...]


def reg(n: int, size: int = 8) -> Operand:
    return ("reg", NAMES[size][n])


def imm(value: int) -> Operand:
    return ("imm", value)


def mem(base: int | str, disp: int, size: int | None) -> Operand:
    return ("mem", base if isinstance(base, str) else NAMES[8][base], disp, size)


class Case:
    """One encoded instruction and what it must mean. ``gas`` overrides the assembler text
    (branches are written relative to '.', with a {disp8}/{disp32} pseudo-prefix)."""

    def __init__(self, code: bytes, mnemonic: str, *operands: Operand, gas: str | None = None):
        self.code, self.mnemonic, self.operands, self.gas = code, mnemonic, operands, gas

    def text(self) -> str:
        if self.gas is not None:
            return self.gas
        return f"{self.mnemonic} {', '.join(_format(op) for op in self.operands)}".strip()

    def __repr__(self) -> str:
        return f"{self.text()} [{self.code.hex()}]"


def _format(op: Operand) -> str:
    if op[0] == "reg":
        return str(op[1])
    if op[0] == "imm":
        return hex(op[1])
    _, base, disp, size = op
    sign = "-" if disp < 0 else "+"
    where = f"[{base} {sign} {abs(disp):#x}]" if disp else f"[{base}]"
    return f"{PTR[size]} ptr {where}" if size else where


def _gpr_pairs() -> list[tuple[int, int]]:
    return [(RAX, RCX), (RDI, RSI), (R8, RAX), (RBX, R15), (R12, R13), (RSP, RBP)]


DISPS = [0, 1, -1, 0x7F, -0x80, 0x80, -0x81, S32_MAX, S32_MIN]
BASES = [RAX, RSP, RBP, R12, R13, R15, RDI]


def _alu_cases() -> list[Case]:
    cases = []
    for size in (4, 8):
        for op in enc.ALU_RM_REG:
            for d, s in _gpr_pairs():
                cases.append(Case(enc.alu_rr(op, d, s, size), op, reg(d, size), reg(s, size)))
        for op in enc.ALU_IMM:
            for d in (RAX, RCX, R12):
                for v in (S32_MIN, -0x81, -0x80, 0, 0x7F, 0x80, S32_MAX):
                    cases.append(Case(enc.alu_ri(op, d, v, size), op, reg(d, size), imm(v)))
        for d in (RAX, RDX, R9):
            for v in (S32_MIN, -1, 0, S32_MAX):
                cases.append(Case(enc.test_ri(d, v, size), "test", reg(d, size), imm(v)))
        for d, s in _gpr_pairs():
            cases.append(Case(enc.imul_rr(d, s, size), "imul", reg(d, size), reg(s, size)))
            for v in (S32_MIN, -0x81, -0x80, 0x7F, 0x80, S32_MAX):
                cases.append(Case(enc.imul_rri(d, s, v, size), "imul", reg(d, size), reg(s, size), imm(v)))
        for d in (RAX, RCX, R11, R15):
            for op in enc.SHIFTS:
                cases.append(Case(enc.shift_cl(op, d, size), op, reg(d, size), ("reg", "cl")))
                for count in (0, 1, 2, size * 8 - 1):
                    cases.append(Case(enc.shift_ri(op, d, count, size), op, reg(d, size), imm(count)))
            for op in enc.UNARY:
                cases.append(Case(enc.unary(op, d, size), op, reg(d, size)))
            cases.append(Case(enc.bswap(d, size), "bswap", reg(d, size)))
    for d in (RAX, R13):
        for count in (0, 8, 15):
            cases.append(Case(enc.shift_ri("rol", d, count, 2), "rol", reg(d, 2), imm(count)))
    return cases


def _mov_cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append
    for d in (RAX, RBX, RSP, R8, R15):
        for v in (0, 1, 0x7FFFFFFF, 0xFFFFFFFF):
            cases.append(Case(enc.mov_r32_imm32(d, v), "mov", reg(d, 4), imm(v)))
        cases.append(Case(enc.mov_r32_imm32(d, S32_MIN), "mov", reg(d, 4), imm(0x80000000)))
        for v in (S32_MIN, -1, 0, S32_MAX):
            cases.append(Case(enc.mov_r64_simm32(d, v), "mov", reg(d), imm(v)))
        for v in (-(1 << 63), -1, 0, 1 << 32, (1 << 64) - 1):
            cases.append(Case(enc.movabs(d, v), "movabs", reg(d), imm(v)))
    for d, s in [*_gpr_pairs(), (RAX, RSI), (RSI, RDI), (R9, RBP), (RDI, RSP)]:
        for src_size in (1, 2):
            cases.append(Case(enc.movzx_rr(d, s, src_size), "movzx", reg(d, 4), reg(s, src_size)))
            for size in (4, 8):
                add(Case(enc.movsx_rr(d, s, src_size, size), "movsx", reg(d, size), reg(s, src_size)))
        cases.append(Case(enc.movsx_rr(d, s, 4, 8), "movsxd", reg(d), reg(s, 4)))
    return cases


def _memory_cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append
    for base in BASES:
        for disp in DISPS:
            for r in (RAX, RSI, R9):
                for size in (1, 2, 4, 8):
                    if size <= 2:
                        kind = "movzx"
                        ops = (reg(r, 4), mem(base, disp, size))
                    else:
                        kind = "mov"
                        ops = (reg(r, size), mem(base, disp, size))
                    cases.append(Case(enc.load(r, base, disp, size), kind, *ops))
                    add(Case(enc.store(base, disp, r, size), "mov", mem(base, disp, size), reg(r, size)))
                    if size < 8:
                        mnem = "movsxd" if size == 4 else "movsx"
                        add(Case(enc.load_sx(r, base, disp, size), mnem, reg(r), mem(base, disp, size)))
                for size in (4, 8):
                    for op in enc.LOCK_RMW:
                        cases.append(Case(enc.lock_rmw(op, base, disp, r, size), f"lock {op}",
                                          mem(base, disp, size), reg(r, size)))
                    add(Case(enc.xchg_mr(base, disp, r, size), "xchg", mem(base, disp, size), reg(r, size)))
                cases.append(Case(enc.lea(r, base, disp), "lea", reg(r), mem(base, disp, None)))
            bounds = {1: (-0x80, 0xFF), 2: (-0x8000, 0xFFFF), 4: (S32_MIN, 0xFFFFFFFF), 8: (S32_MIN, S32_MAX)}
            for size, (lo, hi) in bounds.items():
                for v in (lo, 0, hi):
                    add(Case(enc.store_imm(base, disp, v, size), "mov", mem(base, disp, size), imm(v)))
    for r in (RAX, R12):
        for disp in (S32_MIN, -1, 0, S32_MAX):
            cases.append(Case(enc.lea_rip(r, disp), "lea", reg(r), mem("rip", disp, None)))
    return cases


def _branch(code: bytes, mnemonic: str, disp: int, width: str) -> Case:
    """A relative branch: capstone shows the target (decoded at address 0); as gets '.+n'."""
    target = len(code) + disp
    where = f".+{target:#x}" if target >= 0 else f".-{-target:#x}"
    prefix = "" if mnemonic == "call" else "{" + width + "} "
    return Case(code, mnemonic, imm(target), gas=f"{prefix}{mnemonic} {where}")


def _control_cases() -> list[Case]:
    cases = []
    for disp in (-0x80, -2, 0, 0x7F):
        cases.append(_branch(enc.jmp_rel8(disp), "jmp", disp, "disp8"))
        for cc in Cond:
            cases.append(_branch(enc.jcc_rel8(cc, disp), "j" + _CC_NAMES[cc], disp, "disp8"))
    for disp in (S32_MIN, -0x81, 0, 0x80, S32_MAX - 6):
        cases.append(_branch(enc.jmp_rel32(disp), "jmp", disp, "disp32"))
        cases.append(_branch(enc.call_rel32(disp), "call", disp, "disp32"))
        for cc in Cond:
            cases.append(_branch(enc.jcc_rel32(cc, disp), "j" + _CC_NAMES[cc], disp, "disp32"))
    for r in range(16):
        cases.append(Case(enc.call_reg(r), "call", reg(r)))
        cases.append(Case(enc.push(r), "push", reg(r)))
        cases.append(Case(enc.pop(r), "pop", reg(r)))
    for name, code in enc.FIXED.items():
        cases.append(Case(code, name))
    return cases


_CC_NAMES = {Cond.O: "o", Cond.NO: "no", Cond.B: "b", Cond.AE: "ae", Cond.E: "e", Cond.NE: "ne",
             Cond.BE: "be", Cond.A: "a", Cond.S: "s", Cond.NS: "ns", Cond.P: "p", Cond.NP: "np",
             Cond.L: "l", Cond.GE: "ge", Cond.LE: "le", Cond.G: "g"}

CASES = _alu_cases() + _mov_cases() + _memory_cases() + _control_cases()


def _disassembler() -> capstone.Cs:
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.detail = True
    return md


def _decoded_operands(md: capstone.Cs, insn: Any) -> list[Operand]:
    ops: list[Operand] = []
    for op in insn.operands:
        if op.type == csx86.X86_OP_REG:
            ops.append(("reg", md.reg_name(op.reg)))
        elif op.type == csx86.X86_OP_IMM:
            ops.append(("imm", op.imm & ((1 << (8 * op.size)) - 1), op.size))
        else:
            assert op.mem.index == 0 and op.mem.segment == 0, insn
            ops.append(("mem", md.reg_name(op.mem.base), op.mem.disp, op.size))
    return ops


def _matches(expected: Operand, got: Operand) -> bool:
    if expected[0] != got[0]:
        return False
    if expected[0] == "imm":
        mask = (1 << (8 * got[2])) - 1
        return bool(expected[1] & mask == got[1])
    if expected[0] == "mem" and expected[3] is None:
        return expected[1:3] == got[1:3]
    return expected == got


def test_case_count_covers_every_form() -> None:
    mnemonics = {c.mnemonic for c in CASES}
    for name in [*enc.ALU_RM_REG, *enc.ALU_IMM, *enc.SHIFTS, *enc.UNARY, *enc.FIXED,
                 "movabs", "movzx", "movsx", "movsxd", "bswap", "xchg", "lea", "push", "pop", "call",
                 "jmp", *(f"lock {op}" for op in enc.LOCK_RMW)]:
        assert name in mnemonics, name
    assert len(CASES) > 2000


def test_capstone_round_trip() -> None:
    md = _disassembler()
    bad = []
    for case in CASES:
        insns = list(md.disasm(case.code, 0))
        if len(insns) != 1 or insns[0].size != len(case.code):
            bad.append(f"{case!r}: decoded as {[(i.mnemonic, i.op_str) for i in insns]}")
            continue
        insn = insns[0]
        got = _decoded_operands(md, insn)
        if insn.mnemonic != case.mnemonic or len(got) != len(case.operands) or \
                not all(_matches(e, g) for e, g in zip(case.operands, got, strict=True)):
            bad.append(f"{case!r}: capstone says {insn.mnemonic} {insn.op_str}")
    assert not bad, "\n".join(bad[:20])


@pytest.mark.skipif(shutil.which("as") is None, reason="GNU as is not installed")
def test_gnu_as_agrees(tmp_path: Path) -> None:
    source = [".intel_syntax noprefix", ".text"]
    for i, case in enumerate(CASES):
        source += [f"case_{i}:", case.text()]
    source.append(f"case_{len(CASES)}:")
    (tmp_path / "forms.s").write_text("\n".join(source) + "\n")
    subprocess.run(["as", "--64", "-o", str(tmp_path / "forms.o"), str(tmp_path / "forms.s")],
                   check=True, capture_output=True, text=True)
    with open(tmp_path / "forms.o", "rb") as f:
        elf = ELFFile(f)
        text_section, symtab = elf.get_section_by_name(".text"), elf.get_section_by_name(".symtab")
        assert text_section is not None and isinstance(symtab, SymbolTableSection)
        text = text_section.data()
        symbols = {s.name: s["st_value"] for s in symtab.iter_symbols()}
    bad = []
    for i, case in enumerate(CASES):
        gas = text[symbols[f"case_{i}"]:symbols[f"case_{i + 1}"]]
        if gas != case.code:
            bad.append(f"{case!r}: as gives {gas.hex()}")
    assert not bad, "\n".join(bad[:20])


OUT_OF_RANGE: list[tuple[str, Callable[[], bytes]]] = [
    ("alu imm min-1", lambda: enc.alu_ri("add", RAX, S32_MIN - 1, 8)),
    ("alu imm max+1", lambda: enc.alu_ri("add", RAX, S32_MAX + 1, 8)),
    ("test imm max+1", lambda: enc.test_ri(RCX, S32_MAX + 1, 4)),
    ("imul imm min-1", lambda: enc.imul_rri(RAX, RCX, S32_MIN - 1, 8)),
    ("mov32 imm min-1", lambda: enc.mov_r32_imm32(RAX, S32_MIN - 1)),
    ("mov32 imm max+1", lambda: enc.mov_r32_imm32(RAX, 1 << 32)),
    ("mov64 simm32 max+1", lambda: enc.mov_r64_simm32(RAX, S32_MAX + 1)),
    ("movabs min-1", lambda: enc.movabs(RAX, -(1 << 63) - 1)),
    ("movabs max+1", lambda: enc.movabs(RAX, 1 << 64)),
    ("shift count -1", lambda: enc.shift_ri("shl", RAX, -1, 8)),
    ("shift64 count 64", lambda: enc.shift_ri("shl", RAX, 64, 8)),
    ("shift32 count 32", lambda: enc.shift_ri("shr", RAX, 32, 4)),
    ("shift16 count 16", lambda: enc.shift_ri("rol", RAX, 16, 2)),
    ("disp min-1", lambda: enc.load(RAX, RBX, S32_MIN - 1, 8)),
    ("disp max+1", lambda: enc.store(RBX, S32_MAX + 1, RAX, 8)),
    ("store imm8 min-1", lambda: enc.store_imm(RAX, 0, -0x81, 1)),
    ("store imm8 max+1", lambda: enc.store_imm(RAX, 0, 0x100, 1)),
    ("store imm16 max+1", lambda: enc.store_imm(RAX, 0, 0x10000, 2)),
    ("store imm32 max+1", lambda: enc.store_imm(RAX, 0, 1 << 32, 4)),
    ("store imm64 max+1", lambda: enc.store_imm(RAX, 0, S32_MAX + 1, 8)),
    ("lea rip max+1", lambda: enc.lea_rip(RAX, S32_MAX + 1)),
    ("jcc rel8 min-1", lambda: enc.jcc_rel8(Cond.E, -0x81)),
    ("jcc rel8 max+1", lambda: enc.jcc_rel8(Cond.E, 0x80)),
    ("jcc rel32 max+1", lambda: enc.jcc_rel32(Cond.E, S32_MAX + 1)),
    ("jmp rel8 max+1", lambda: enc.jmp_rel8(0x80)),
    ("jmp rel32 min-1", lambda: enc.jmp_rel32(S32_MIN - 1)),
    ("call rel32 max+1", lambda: enc.call_rel32(S32_MAX + 1)),
    ("condition 16", lambda: enc.jcc_rel8(16, 0)),
    ("register 16", lambda: enc.alu_rr("add", 16, RAX, 8)),
    ("register -1", lambda: enc.push(-1)),
    ("base register 16", lambda: enc.load(RAX, 16, 0, 8)),
    ("size 3", lambda: enc.load(RAX, RBX, 0, 3)),
    ("alu size 2", lambda: enc.alu_rr("add", RAX, RBX, 2)),
    ("movsxd to 32 bits", lambda: enc.movsx_rr(RAX, RBX, 4, 4)),
    ("unknown alu op", lambda: enc.alu_rr("adc", RAX, RBX, 8)),
    ("unknown shift", lambda: enc.shift_cl("rcl", RAX, 8)),
    ("unknown locked op", lambda: enc.lock_rmw("sub", RAX, 0, RBX, 8)),
    ("16-bit lock", lambda: enc.lock_rmw("add", RAX, 0, RBX, 2)),
]


@pytest.mark.parametrize("build", [b for _, b in OUT_OF_RANGE], ids=[n for n, _ in OUT_OF_RANGE])
def test_out_of_range_operand_raises(build: Callable[[], bytes]) -> None:
    with pytest.raises(JitError):
        build()


def test_error_names_value_and_choices() -> None:
    with pytest.raises(JitError, match=r"immediate 2147483648 out of range -2147483648\.\.2147483647"):
        enc.alu_ri("add", RAX, S32_MAX + 1, 8)
    with pytest.raises(JitError, match=r"register 16 out of range; valid: 0\.\.15 \(rax, rcx"):
        enc.pop(16)
    with pytest.raises(JitError, match=r"unknown shift 'rcl'; valid: rol, ror, shl, shr, sar"):
        enc.shift_cl("rcl", RAX, 8)
