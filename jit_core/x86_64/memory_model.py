"""x86-TSO (Intel SDM vol. 3A section 9.2; herdtools7's x86tso.cat) and the memory semantics of
the x86-64 code jit_core emits.

    ghb = mfence | implied | WW(po) | RM(po) | rfe | fr | co,   acyclic
    implied = [W];po;[R] where either access is locked

A LOCK-prefixed instruction (and XCHG with memory) is a read and a write related by rmw, both
locked; a failing LOCK CMPXCHG is a locked read. SC per location and atomicity are enforced by
the enumeration.
"""

from __future__ import annotations

from typing import Any

import capstone
from capstone import x86 as cs

from litmus import relations as r
from litmus.events import NO_TAINT, Kind, Tag, ThreadBuilder, ThreadSemantics
from litmus.execution import Execution
from litmus.machine import M64, Code, Registers, decode, run_code, signed, unsupported

from .lower import REG

MODEL_NAME = "x86-tso"


class TsoModel:
    """The ``tso`` axiom (acyclic ghb) over an enumerated execution."""

    name = MODEL_NAME

    def violation(self, ex: Execution) -> str | None:
        """``tso`` when ghb has a cycle, else None."""
        po, reads, writes, mem = ex.po, ex.reads, ex.writes, ex.accesses
        locked = ex.tagged(Tag.LOCK)
        implied = r.union(r.restrict(po, writes & locked, reads), r.restrict(po, writes, reads & locked))
        ghb = r.union(
            ex.fence_order,
            implied,
            r.restrict(po, writes, writes),
            r.restrict(po, reads, mem),
            ex.ext(ex.rf),
            ex.fr,
            ex.co,
        )
        return None if r.acyclic(ghb) else "tso"


MODEL = TsoModel()

_MD = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
_MD.detail = True

_NAMES64 = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi"] + [f"r{k}" for k in range(8, 16)]
_LEGACY = {"ax": 0, "cx": 1, "dx": 2, "bx": 3, "sp": 4, "bp": 5, "si": 6, "di": 7}


def _canon(name: str) -> tuple[str, int]:
    """Any general register name -> (64-bit name, width)."""
    if name in _NAMES64:
        return name, 64
    if name.startswith("r") and name[-1] in "dwb":
        return name[:-1], {"d": 32, "w": 16, "b": 8}[name[-1]]
    if name.startswith("e") and name[1:] in _LEGACY:
        return _NAMES64[_LEGACY[name[1:]]], 32
    if name in _LEGACY:
        return _NAMES64[_LEGACY[name]], 16
    low = {"al": "ax", "cl": "cx", "dl": "dx", "bl": "bx", "spl": "sp", "bpl": "bp", "sil": "si", "dil": "di"}
    if name in low:
        return _NAMES64[_LEGACY[low[name]]], 8
    raise KeyError(name)


_ALU = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "and": lambda a, b: a & b,
    "or": lambda a, b: a | b,
    "xor": lambda a, b: a ^ b,
}
_JCC = {
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


class _Exec:
    def __init__(self, regs: Registers):
        self.regs = regs

    def read_reg(self, insn: Any, op: Any) -> tuple[int, Any, int]:
        name, width = _canon(insn.reg_name(op.reg))
        value, taint = self.regs.get(name)
        return value & ((1 << width) - 1), taint, width

    def write_reg(self, insn: Any, op: Any, value: int, taint: Any) -> None:
        name, width = _canon(insn.reg_name(op.reg))
        if width >= 32:  # a 32-bit write zero-extends; 8/16-bit writes keep the upper bits
            self.regs.set(name, value & ((1 << width) - 1), taint)
        else:
            old, _ = self.regs.get(name)
            mask = (1 << width) - 1
            self.regs.set(name, (old & ~mask) | (value & mask), taint)

    def address(self, insn: Any, op: Any) -> tuple[int, Any]:
        if op.mem.index or op.mem.segment:
            raise unsupported(insn)
        value, taint = self.regs.get(_canon(insn.reg_name(op.mem.base))[0])
        return (value + op.mem.disp) & M64, taint

    def source(
        self, insn: Any, op: Any, b: ThreadBuilder, text: str, tags: set[Tag]
    ) -> tuple[int, Any, int | None]:
        """Value and taint of a register, immediate or memory operand (and the read's index)."""
        if op.type == cs.X86_OP_REG:
            value, taint, _ = self.read_reg(insn, op)
            return value, taint, None
        if op.type == cs.X86_OP_IMM:
            return op.imm & ((1 << (8 * op.size)) - 1), NO_TAINT, None
        loc, taint = self.address(insn, op)
        value, eid = b.read(loc, addr=taint, tags=tags, insn=text)
        return value & ((1 << (8 * op.size)) - 1), frozenset({eid}), eid

    def step(self, insn: Any, _regs: Registers, b: ThreadBuilder) -> int | None:
        m, ops, text = insn.mnemonic, insn.operands, f"{insn.mnemonic} {insn.op_str}"
        locked = m.startswith("lock ") or (m == "xchg" and any(o.type == cs.X86_OP_MEM for o in ops))
        m = m.removeprefix("lock ")
        if m == "mfence":
            b.fence(Kind.RW, Kind.RW, insn=text)
        elif m in ("mov", "movzx") and ops[0].type == cs.X86_OP_REG:
            value, taint, _ = self.source(insn, ops[1], b, text, set())
            self.write_reg(insn, ops[0], value, taint)
        elif m == "mov":
            value, data, _ = self.source(insn, ops[1], b, text, set())
            loc, taint = self.address(insn, ops[0])
            b.write(loc, value & ((1 << (8 * ops[0].size)) - 1), addr=taint, data=data, insn=text)
        elif m in _ALU and not locked and ops[0].type == cs.X86_OP_REG:
            a, ta, width = self.read_reg(insn, ops[0])
            c, tc, _ = self.source(insn, ops[1], b, text, set())
            self.write_reg(insn, ops[0], _ALU[m](a, c), ta | tc)
        elif m == "cmp" and ops[0].type == cs.X86_OP_REG:
            a, ta, width = self.read_reg(insn, ops[0])
            c, tc, _ = self.source(insn, ops[1], b, text, set())
            self.regs.flags, self.regs.flags_taint = (a, c & ((1 << width) - 1), width), ta | tc
        elif m in _JCC:
            b.branch(self.regs.flags_taint)
            return int(ops[0].imm) if _JCC[m](*self.regs.flags) else None
        elif m == "jmp":
            return int(ops[0].imm)
        elif locked and m in ("xadd", "xchg", "cmpxchg", *_ALU):
            self.locked_rmw(insn, m, b, text)
        else:
            raise unsupported(insn)
        return None

    def locked_rmw(self, insn: Any, m: str, b: ThreadBuilder, text: str) -> None:
        ops = insn.operands
        mem, reg = (ops[0], ops[1]) if ops[0].type == cs.X86_OP_MEM else (ops[1], ops[0])
        width = 8 * mem.size
        mask = (1 << width) - 1
        loc, taint = self.address(insn, mem)
        src, data, _ = self.source(insn, reg, b, text, set())
        old, rd = b.read(loc, addr=taint, tags={Tag.LOCK}, insn=text)
        old &= mask
        if m == "cmpxchg":
            acc, acc_taint = self.regs.get("rax")
            acc &= mask
            self.regs.flags, self.regs.flags_taint = (acc, old, width), frozenset({rd}) | acc_taint
            if old != acc:
                self.regs.set("rax", old, frozenset({rd}))  # a failing 32-bit form zero-extends too
                return
            new = src
        else:
            new = {"xadd": lambda a, c: a + c, "xchg": lambda a, c: c, **_ALU}[m](old, src)
        w = b.write(loc, new & mask, addr=taint, data=data | {rd}, tags={Tag.LOCK}, insn=text)
        b.pair(rd, w)
        if m in ("xadd", "xchg") and reg.type == cs.X86_OP_REG:
            self.write_reg(insn, reg, old, frozenset({rd}))


def decode_code(code: bytes) -> Code:
    """The decoded x86-64 instructions of ``code``. Raises LitmusError on undecodable bytes."""
    return decode(_MD, code)


def thread_semantics(code: Code, bpf_registers: dict[int, int]) -> ThreadSemantics:
    """The memory semantics of ``code`` with eBPF registers (by number) preset in the registers
    jit_core assigns them; the result names registers r0..r10 like the BPF test."""
    results = {f"r{k}": _NAMES64[reg] for k, reg in enumerate(REG)}

    def run(builder: ThreadBuilder) -> dict[str, int]:
        regs = Registers({_NAMES64[REG[k]]: v for k, v in bpf_registers.items()})
        return run_code(code, _Exec(regs).step, regs, builder, results)

    return run
