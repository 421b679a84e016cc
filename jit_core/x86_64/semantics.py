"""Memory semantics of x86-64 instructions (decoder-neutral litmus.machine.Instr, operands in
Intel order: destination first), shared by jit_core's compiled code (decoded by capstone) and
X86/X86_64 litmus tests (litmus_dialect).

Registers are canonical 64-bit names; a 32-bit write zero-extends, 8/16-bit writes keep the
upper bits. A LOCK-prefixed instruction (and XCHG with memory) is a locked read and a locked
write related by rmw; a failing LOCK CMPXCHG is a locked read. ``ret`` ends the thread.
"""

from __future__ import annotations

from collections.abc import Callable

from litmus.events import NO_TAINT, Kind, Tag, Taint, ThreadBuilder
from litmus.machine import M64, Instr, Operand, OperandKind, Registers, signed, unsupported

__all__ = ["ALU", "JCC", "NAMES64", "NOPS", "X86Thread", "canon"]

NAMES64 = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", *(f"r{k}" for k in range(8, 16)))
_LEGACY = {"ax": 0, "cx": 1, "dx": 2, "bx": 3, "sp": 4, "bp": 5, "si": 6, "di": 7}
_LOW = {"al": "ax", "cl": "cx", "dl": "dx", "bl": "bx", "spl": "sp", "bpl": "bp", "sil": "si", "dil": "di"}
ALU: dict[str, Callable[[int, int], int]] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "and": lambda a, b: a & b,
    "or": lambda a, b: a | b,
    "xor": lambda a, b: a ^ b,
    "shl": lambda a, b: a << (b & 63),
    "shr": lambda a, b: a >> (b & 63),
}
JCC: dict[str, Callable[[int, int, int], bool]] = {
    "je": lambda a, b, w: a == b,
    "jne": lambda a, b, w: a != b,
    "jae": lambda a, b, w: a >= b,
    "jb": lambda a, b, w: a < b,
    "ja": lambda a, b, w: a > b,
    "jbe": lambda a, b, w: a <= b,
    "jge": lambda a, b, w: signed(a, w) >= signed(b, w),
    "jl": lambda a, b, w: signed(a, w) < signed(b, w),
    "jg": lambda a, b, w: signed(a, w) > signed(b, w),
    "jle": lambda a, b, w: signed(a, w) <= signed(b, w),
}
NOPS = frozenset({"nop", "nopl", "nopw", "endbr64"})
_RMW: dict[str, Callable[[int, int], int]] = {"xadd": lambda a, c: a + c, "xchg": lambda a, c: c, **ALU}


def canon(name: str) -> tuple[str, int]:
    """A general register name as (64-bit name, width); other names (rip, cs) as (name, 64)."""
    name = name.lower().lstrip("%")
    if name in NAMES64:
        return name, 64
    if name.startswith("r") and name[:-1] in NAMES64 and name[-1] in "dwb":
        return name[:-1], {"d": 32, "w": 16, "b": 8}[name[-1]]
    if name.startswith("e") and name[1:] in _LEGACY:
        return NAMES64[_LEGACY[name[1:]]], 32
    if name in _LEGACY:
        return NAMES64[_LEGACY[name]], 16
    if name in _LOW:
        return NAMES64[_LEGACY[_LOW[name]]], 8
    return name, 64


class X86Thread:
    """One CPU's execution state; ``step`` is a litmus.machine.Step."""

    def __init__(self, regs: Registers, end: int):
        self.regs = regs
        self.end = end

    def reg(self, op: Operand) -> tuple[int, Taint, int]:
        name, width = canon(op.reg)
        value, taint = self.regs.get(name)
        return value & ((1 << width) - 1), taint, width

    def put(self, op: Operand, value: int, taint: Taint) -> None:
        name, width = canon(op.reg)
        mask = (1 << width) - 1
        if width < 32:
            value = (self.regs.get(name)[0] & ~mask) | (value & mask)
        self.regs.set(name, value & (M64 if width < 32 else mask), taint)

    def address(self, insn: Instr, op: Operand) -> tuple[int, Taint]:
        if op.kind is not OperandKind.MEM or op.extend:
            raise unsupported(insn)
        value, taint = self.regs.get(canon(op.base)[0]) if op.base else (0, NO_TAINT)
        if op.index:
            index, itaint = self.regs.get(canon(op.index)[0])
            value, taint = value + index * op.value, taint | itaint
        return (value + op.disp) & M64, taint

    def width(self, ops: tuple[Operand, ...]) -> int:
        """Bits of the operation: a register operand's width, else the memory operand's size."""
        for op in ops:
            if op.kind is OperandKind.REG:
                return canon(op.reg)[1]
        return 8 * (next((op.size for op in ops if op.size), 4))

    def source(self, insn: Instr, op: Operand, b: ThreadBuilder, bits: int) -> tuple[int, Taint]:
        if op.kind is OperandKind.REG:
            value, taint, _ = self.reg(op)
            return value, taint
        if op.kind is OperandKind.IMM:
            return op.value & ((1 << bits) - 1), NO_TAINT
        loc, taint = self.address(insn, op)
        value, eid = b.read(loc, addr=taint, insn=insn.text)
        return value & ((1 << bits) - 1), frozenset({eid})

    def store(self, insn: Instr, op: Operand, value: int, data: Taint, bits: int, b: ThreadBuilder) -> None:
        loc, taint = self.address(insn, op)
        b.write(loc, value & ((1 << bits) - 1), addr=taint, data=data, insn=insn.text)

    def step(self, insn: Instr, _regs: Registers, b: ThreadBuilder) -> int | None:
        ops, text = insn.operands, insn.text
        locked = insn.mnemonic.startswith("lock ") or (
            insn.mnemonic == "xchg" and any(o.kind is OperandKind.MEM for o in ops)
        )
        m = insn.mnemonic.removeprefix("lock ")
        bits = self.width(ops)
        if m == "mfence":
            b.fence(Kind.RW, Kind.RW, insn=text)
        elif m in NOPS:
            pass
        elif m == "ret":
            return self.end
        elif locked and m in ("cmpxchg", *_RMW):
            self.locked_rmw(insn, m, b)
        elif m in ("mov", "movzx"):
            if ops[0].kind is OperandKind.REG:
                value, taint = self.source(insn, ops[1], b, 64 if m == "mov" else 8 * (ops[1].size or 1))
                self.put(ops[0], value, taint)
            else:
                self.store(insn, ops[0], *self.source(insn, ops[1], b, bits), bits, b)
        elif m in ALU and ops[0].kind is OperandKind.REG:
            a, ta, width = self.reg(ops[0])
            c, tc = self.source(insn, ops[1], b, width)
            self.put(ops[0], ALU[m](a, c), ta | tc)
        elif m == "cmp" and ops[0].kind is OperandKind.REG:
            a, ta, width = self.reg(ops[0])
            c, tc = self.source(insn, ops[1], b, width)
            self.regs.flags, self.regs.flags_taint = (a, c, width), ta | tc
        elif m in JCC:
            b.branch(self.regs.flags_taint)
            return ops[0].value if JCC[m](*self.regs.flags) else None
        elif m == "jmp":
            return ops[0].value
        else:
            raise unsupported(insn)
        return None

    def locked_rmw(self, insn: Instr, m: str, b: ThreadBuilder) -> None:
        ops = insn.operands
        mem, other = (ops[0], ops[1]) if ops[0].kind is OperandKind.MEM else (ops[1], ops[0])
        bits = self.width(ops)
        mask = (1 << bits) - 1
        loc, taint = self.address(insn, mem)
        src, data = self.source(insn, other, b, bits)
        old, rd = b.read(loc, addr=taint, tags={Tag.LOCK}, insn=insn.text)
        old &= mask
        if m == "cmpxchg":
            acc, acc_taint = self.regs.get("rax")
            acc &= mask
            self.regs.flags, self.regs.flags_taint = (acc, old, bits), frozenset({rd}) | acc_taint
            if old != acc:
                self.regs.set("rax", old, frozenset({rd}))  # a failing 32-bit form zero-extends too
                return
            new = src
        else:
            new = _RMW[m](old, src)
        w = b.write(loc, new & mask, addr=taint, data=data | {rd}, tags={Tag.LOCK}, insn=insn.text)
        b.pair(rd, w)
        if m in ("xadd", "xchg") and other.kind is OperandKind.REG:
            self.put(other, old, frozenset({rd}))
