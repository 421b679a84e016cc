"""Memory semantics of RV64 instructions (decoder-neutral litmus.machine.Instr), shared by
jit_core's compiled code (decoded by capstone) and RISC-V litmus tests (litmus_dialect).

Registers go by ABI name (``x10`` is written ``a0``). An AMO is a read and a write related by
rmw, both carrying the instruction's .aq/.rl. A store-conditional either succeeds (a write
paired with the open LR) or fails (no write, rd = 1); in compiled code it always succeeds,
since a failure only makes jit_core's loop retry and the retried iteration is a run the
enumeration covers anyway.
"""

from __future__ import annotations

from collections.abc import Callable

from litmus.events import NO_TAINT, Kind, Tag, Taint, ThreadBuilder
from litmus.machine import M64, Instr, Operand, OperandKind, Registers, signed, unsupported

__all__ = ["ABI_NAMES", "BRANCHES", "LOADS", "RiscvThread", "STORES", "canon", "fence_sets"]

ABI_NAMES = (
    "zero",
    "ra",
    "sp",
    "gp",
    "tp",
    "t0",
    "t1",
    "t2",
    "s0",
    "s1",
    "a0",
    "a1",
    "a2",
    "a3",
    "a4",
    "a5",
    "a6",
    "a7",
    "s2",
    "s3",
    "s4",
    "s5",
    "s6",
    "s7",
    "s8",
    "s9",
    "s10",
    "s11",
    "t3",
    "t4",
    "t5",
    "t6",
)
LOADS = {
    "lb": (8, True),
    "lbu": (8, False),
    "lh": (16, True),
    "lhu": (16, False),
    "lw": (32, True),
    "lwu": (32, False),
    "ld": (64, False),
}
STORES = {"sb": 8, "sh": 16, "sw": 32, "sd": 64}
_ALU: dict[str, Callable[[int, int], int]] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "and": lambda a, b: a & b,
    "or": lambda a, b: a | b,
    "xor": lambda a, b: a ^ b,
    "sll": lambda a, b: a << (b & 63),
    "srl": lambda a, b: (a & M64) >> (b & 63),
}
BRANCHES: dict[str, Callable[[int, int], bool]] = {
    "beq": lambda a, b: a == b,
    "bne": lambda a, b: a != b,
    "bltu": lambda a, b: a < b,
    "bgeu": lambda a, b: a >= b,
    "blt": lambda a, b: signed(a, 64) < signed(b, 64),
    "bge": lambda a, b: signed(a, 64) >= signed(b, 64),
}
_AMO: dict[str, Callable[[int, int], int]] = {
    "add": lambda a, b: a + b,
    "and": lambda a, b: a & b,
    "or": lambda a, b: a | b,
    "xor": lambda a, b: a ^ b,
    "swap": lambda a, b: b,
}
_FENCE_SET = {"r": Kind.R, "w": Kind.W, "rw": Kind.RW}


def canon(name: str) -> str:
    """A register's ABI name (``x10``, ``a0`` -> ``a0``; ``fp`` -> ``s0``)."""
    name = name.lower()
    if name.startswith("x") and name[1:].isdigit() and int(name[1:]) < 32:
        return ABI_NAMES[int(name[1:])]
    return "s0" if name == "fp" else name


def fence_sets(text: str) -> tuple[Kind, Kind]:
    """``pred,succ`` of a FENCE as access kinds; device bits (i, o) do not order memory here."""
    pred, _, succ = text.partition(",")
    return (
        _FENCE_SET.get(pred.strip().replace("i", "").replace("o", ""), Kind(0)),
        _FENCE_SET.get(succ.strip().replace("i", "").replace("o", ""), Kind(0)),
    )


def _sext(value: int, width: int) -> int:
    return signed(value, width) & M64


class RiscvThread:
    """One hart's execution state; ``step`` is a litmus.machine.Step."""

    def __init__(self, regs: Registers, sc_may_fail: bool):
        self.regs = regs
        self.sc_may_fail = sc_may_fail
        self.last_exclusive: int | None = None

    def value(self, insn: Instr, op: Operand) -> tuple[int, Taint]:
        if op.kind is OperandKind.REG:
            return self.regs.get(canon(op.reg))
        if op.kind is OperandKind.IMM:
            return op.value & M64, NO_TAINT
        raise unsupported(insn)

    def address(self, insn: Instr, op: Operand) -> tuple[int, Taint]:
        if op.kind is OperandKind.MEM:
            value, taint = self.regs.get(canon(op.base))
            return (value + op.disp) & M64, taint
        return self.value(insn, op)

    def put(self, op: Operand, value: int, taint: Taint) -> None:
        self.regs.set(canon(op.reg), value, taint)

    def step(self, insn: Instr, _regs: Registers, b: ThreadBuilder) -> int | None:
        m, ops, text = insn.mnemonic, insn.operands, insn.text
        base, _, suffix = m.partition(".")
        if m == "fence":
            b.fence(*fence_sets(insn.cond), insn=text)
        elif m == "nop":
            pass
        elif m in ("mv", "li"):
            self.put(ops[0], *self.value(insn, ops[1]))
        elif m in ("sext.w", "addiw", "addw", "subw"):
            a, ta = self.value(insn, ops[1])
            c, tc = self.value(insn, ops[2]) if len(ops) > 2 else (0, NO_TAINT)
            self.put(ops[0], _sext(a - c if m == "subw" else a + c, 32), ta | tc)
        elif m.rstrip("i") in _ALU:
            (a, ta), (c, tc) = self.value(insn, ops[1]), self.value(insn, ops[2])
            self.put(ops[0], _ALU[m.rstrip("i")](a, c), ta | tc)
        elif m == "lui":
            self.put(ops[0], _sext(ops[1].value << 12, 32), NO_TAINT)
        elif base in LOADS and (suffix in ("", "aq", "aqrl")):
            width, sign = LOADS[base]
            loc, taint = self.address(insn, ops[1])
            tags = {Tag.ACQ} if "aq" in suffix else set()
            value, eid = b.read(loc, addr=taint, tags=tags, insn=text)
            value &= (1 << width) - 1
            self.put(ops[0], _sext(value, width) if sign else value, frozenset({eid}))
        elif base in STORES and (suffix in ("", "rl", "aqrl")):
            value, data = self.value(insn, ops[0])
            loc, taint = self.address(insn, ops[1])
            tags = {Tag.REL} if "rl" in suffix else set()
            b.write(loc, value & ((1 << STORES[base]) - 1), addr=taint, data=data, tags=tags, insn=text)
        elif base in ("lr", "sc") or base.startswith("amo"):
            self.atomic(insn, base, suffix, b)
        elif m in BRANCHES or m in ("beqz", "bnez"):
            a, ta = self.value(insn, ops[0])
            c, tc = self.value(insn, ops[1]) if m in BRANCHES else (0, NO_TAINT)
            b.branch(ta | tc)
            taken = BRANCHES[m](a, c) if m in BRANCHES else (a == 0) == (m == "beqz")
            return ops[-1].value if taken else None
        elif m == "j":
            return ops[0].value
        else:
            raise unsupported(insn)
        return None

    def atomic(self, insn: Instr, base: str, suffix: str, b: ThreadBuilder) -> None:
        ops, text = insn.operands, insn.text
        width, _, order = suffix.partition(".")
        bits = 32 if width == "w" else 64
        tags = ({Tag.ACQ} if "aq" in order else set()) | ({Tag.REL} if "rl" in order else set())
        if base == "lr":
            loc, taint = self.address(insn, ops[1])
            value, eid = b.read(loc, addr=taint, tags=tags | {Tag.EXCL}, insn=text)
            self.put(ops[0], _sext(value, bits), frozenset({eid}))
            self.last_exclusive = eid
            return
        if base == "sc":
            value, data = self.value(insn, ops[1])
            loc, taint = self.address(insn, ops[2])
            if self.last_exclusive is None or (self.sc_may_fail and b.choose(2)):
                self.put(ops[0], 1, NO_TAINT)  # failed: no write
                self.last_exclusive = None
                return
            w = b.write(
                loc, value & ((1 << bits) - 1), addr=taint, data=data, tags=tags | {Tag.EXCL}, insn=text
            )
            b.pair(self.last_exclusive, w)
            self.last_exclusive = None
            self.put(ops[0], 0, NO_TAINT)
            return
        op = _AMO.get(base[3:])
        if op is None:
            raise unsupported(insn)
        src, data = self.value(insn, ops[1])
        loc, taint = self.address(insn, ops[2])
        old, rd = b.read(loc, addr=taint, tags=tags | {Tag.AMO}, insn=text)
        w = b.write(
            loc,
            op(old, src) & ((1 << bits) - 1),
            addr=taint,
            data=data | {rd},
            tags=tags | {Tag.AMO},
            insn=text,
        )
        b.pair(rd, w)
        self.put(ops[0], _sext(old, bits), frozenset({rd}))
