"""RVWMO (RISC-V unprivileged ISA, chapter 17 "RVWMO Memory Consistency Model"; herdtools7's
riscv.cat) and the memory semantics of the RV64 code jit_core emits.

Preserved program order, rules 1-13:

    r1  [M];po-loc;[W]                 r2  ([R];po-loc-no-w;[R]) \\ rsw
    r3  [AMO|SC];rfi;[R]               r4  FENCE pr,ps: [pr];po;[F];po;[ps]
    r5  [AQ];po;[M]                    r6  [M];po;[RL]
    r7  [RCsc];po;[RCsc]               r8  rmw
    r9  [M];addr;[M]                   r10 [M];data;[W]
    r11 [M];ctrl;[W]                   r12 [M];(addr|data);[W];rfi;[R]
    r13 [M];addr;[M];po;[W]

and the main axiom ``acyclic co | rfe | fr | ppo``. An AMO is a read and a write related by
rmw, both carrying the instruction's .aq/.rl; LR/SC are exclusive accesses, the SC always
succeeding (a failing one only makes jit_core's loop retry).
"""

from __future__ import annotations

from typing import Any

import capstone
from capstone import riscv as cs

from litmus import relations as r
from litmus.events import NO_TAINT, Kind, Tag, ThreadBuilder, ThreadSemantics
from litmus.execution import Execution
from litmus.machine import M64, Code, Registers, decode, run_code, signed, unsupported

from .lower import REGS

MODEL_NAME = "rvwmo"


class RvwmoModel:
    """RVWMO's Model axiom over an enumerated execution (Coherence and Atomicity are enforced by
    the enumeration)."""

    name = MODEL_NAME

    def violation(self, ex: Execution) -> str | None:
        """``Model`` when co | rfe | fr | ppo has a cycle, else None."""
        po, po_loc, reads, writes, mem = ex.po, ex.po_loc, ex.reads, ex.writes, ex.accesses
        everything = (1 << ex.n) - 1
        rf, rfi = ex.rf, ex.inn(ex.rf)
        excl, amo = ex.tagged(Tag.EXCL), ex.tagged(Tag.AMO)
        acq, rel = ex.tagged(Tag.ACQ), ex.tagged(Tag.REL)
        between_w = r.seq(r.restrict(r.opt(po_loc), everything, writes), po_loc)
        po_loc_no_w = r.diff(po_loc, between_w)
        rsw = r.seq(r.inverse(rf), rf)
        rcsc = (acq | rel) & (excl | amo)
        addr, data, ctrl = ex.dependency("addr"), ex.dependency("data"), ex.dependency("ctrl")
        ppo = r.union(
            r.restrict(po_loc, mem, writes),
            r.diff(r.restrict(po_loc_no_w, reads, reads), rsw),
            r.restrict(rfi, amo | (excl & writes), reads),
            ex.fence_order,
            r.restrict(po, acq, mem),
            r.restrict(po, mem, rel),
            r.restrict(po, rcsc, rcsc),
            ex.rmw,
            r.restrict(addr, mem, mem),
            r.restrict(data, mem, writes),
            r.restrict(ctrl, mem, writes),
            r.seq(r.restrict(r.union(addr, data), mem, writes), r.restrict(rfi, everything, reads)),
            r.restrict(r.seq(r.restrict(addr, mem, mem), po), everything, writes),
        )
        ghb = r.union(ex.co, ex.ext(rf), ex.fr, ppo)
        return None if r.acyclic(ghb) else "Model"


MODEL = RvwmoModel()

_MD = capstone.Cs(capstone.CS_ARCH_RISCV, capstone.CS_MODE_RISCV64 | capstone.CS_MODE_RISCVC)
_MD.detail = True

_LOADS = {
    "lb": (8, True),
    "lbu": (8, False),
    "lh": (16, True),
    "lhu": (16, False),
    "lw": (32, True),
    "lwu": (32, False),
    "ld": (64, False),
}
_STORES = {"sb": 8, "sh": 16, "sw": 32, "sd": 64}
_ALU = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "and": lambda a, b: a & b,
    "or": lambda a, b: a | b,
    "xor": lambda a, b: a ^ b,
    "sll": lambda a, b: a << (b & 63),
    "srl": lambda a, b: a >> (b & 63),
}
_BRANCH = {
    "beq": lambda a, b: a == b,
    "bne": lambda a, b: a != b,
    "bltu": lambda a, b: a < b,
    "bgeu": lambda a, b: a >= b,
    "blt": lambda a, b: signed(a, 64) < signed(b, 64),
    "bge": lambda a, b: signed(a, 64) >= signed(b, 64),
}
_AMO = {
    "add": lambda a, b: a + b,
    "and": lambda a, b: a & b,
    "or": lambda a, b: a | b,
    "xor": lambda a, b: a ^ b,
    "swap": lambda a, b: b,
}
_FENCE_SET = {"r": Kind.R, "w": Kind.W, "rw": Kind.RW}


def _sext(value: int, width: int) -> int:
    return signed(value, width) & M64


class _Exec:
    def __init__(self, regs: Registers):
        self.regs = regs
        self.last_exclusive: int | None = None

    def reg(self, insn: Any, op: Any) -> tuple[int, Any]:
        if op.type == cs.RISCV_OP_REG:
            return self.regs.get(insn.reg_name(op.reg))
        if op.type == cs.RISCV_OP_IMM:
            return op.imm & M64, NO_TAINT
        raise unsupported(insn)

    def address(self, insn: Any, op: Any) -> tuple[int, Any]:
        if op.type == cs.RISCV_OP_MEM:
            value, taint = self.regs.get(insn.reg_name(op.mem.base))
            return (value + op.mem.disp) & M64, taint
        return self.reg(insn, op)

    def set(self, insn: Any, op: Any, value: int, taint: Any) -> None:
        self.regs.set(insn.reg_name(op.reg), value, taint)

    def step(self, insn: Any, _regs: Registers, b: ThreadBuilder) -> int | None:
        m, ops, text = insn.mnemonic, insn.operands, f"{insn.mnemonic} {insn.op_str}"
        base, _, suffix = m.partition(".")
        if m == "fence":
            pred, succ = (part.strip() for part in insn.op_str.split(","))
            b.fence(_FENCE_SET[pred], _FENCE_SET[succ], insn=text)
        elif m == "nop":
            pass
        elif m in ("mv", "li"):
            value, taint = self.reg(insn, ops[1])
            self.set(insn, ops[0], value, taint)
        elif m in ("sext.w", "addiw", "addw", "subw"):
            a, ta = self.reg(insn, ops[1])
            c, tc = self.reg(insn, ops[2]) if len(ops) > 2 else (0, NO_TAINT)
            self.set(insn, ops[0], _sext(a - c if m == "subw" else a + c, 32), ta | tc)
        elif m.rstrip("i") in _ALU:
            (a, ta), (c, tc) = self.reg(insn, ops[1]), self.reg(insn, ops[2])
            self.set(insn, ops[0], _ALU[m.rstrip("i")](a, c), ta | tc)
        elif m == "lui":
            self.set(insn, ops[0], _sext(ops[1].imm << 12, 32), NO_TAINT)
        elif m in _LOADS:
            width, sign = _LOADS[m]
            loc, taint = self.address(insn, ops[1])
            value, eid = b.read(loc, addr=taint, insn=text)
            value &= (1 << width) - 1
            self.set(insn, ops[0], _sext(value, width) if sign else value, frozenset({eid}))
        elif m in _STORES:
            value, data = self.reg(insn, ops[0])
            loc, taint = self.address(insn, ops[1])
            b.write(loc, value & ((1 << _STORES[m]) - 1), addr=taint, data=data, insn=text)
        elif base in ("lr", "sc") or base.startswith("amo"):
            self.atomic(insn, base, suffix, b, text)
        elif m in _BRANCH or m in ("beqz", "bnez"):
            (a, ta) = self.reg(insn, ops[0])
            (c, tc) = self.reg(insn, ops[1]) if m in _BRANCH else (0, NO_TAINT)
            b.branch(ta | tc)
            taken = _BRANCH[m](a, c) if m in _BRANCH else (a == 0) == (m == "beqz")
            return insn.address + ops[-1].imm if taken else None
        elif m == "j":
            return int(insn.address + ops[0].imm)
        else:
            raise unsupported(insn)
        return None

    def atomic(self, insn: Any, base: str, suffix: str, b: ThreadBuilder, text: str) -> None:
        ops = insn.operands
        width, _, order = suffix.partition(".")
        bits = 32 if width == "w" else 64
        tags = ({Tag.ACQ} if "aq" in order else set()) | ({Tag.REL} if "rl" in order else set())
        if base == "lr":
            loc, taint = self.address(insn, ops[1])
            value, eid = b.read(loc, addr=taint, tags=tags | {Tag.EXCL}, insn=text)
            self.set(insn, ops[0], _sext(value, bits), frozenset({eid}))
            self.last_exclusive = eid
            return
        if base == "sc":
            value, data = self.reg(insn, ops[1])
            loc, taint = self.address(insn, ops[2])
            w = b.write(
                loc, value & ((1 << bits) - 1), addr=taint, data=data, tags=tags | {Tag.EXCL}, insn=text
            )
            if self.last_exclusive is None:
                raise unsupported(insn)
            b.pair(self.last_exclusive, w)
            self.last_exclusive = None
            self.set(insn, ops[0], 0, NO_TAINT)
            return
        op = _AMO.get(base[3:])
        if op is None:
            raise unsupported(insn)
        src, data = self.reg(insn, ops[1])
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
        self.set(insn, ops[0], _sext(old, bits), frozenset({rd}))


def decode_code(code: bytes) -> Code:
    """The decoded RV64GC instructions of ``code``. Raises LitmusError on undecodable bytes."""
    return decode(_MD, code)


def thread_semantics(code: Code, bpf_registers: dict[int, int]) -> ThreadSemantics:
    """The memory semantics of ``code`` with eBPF registers (by number) preset in the registers
    jit_core assigns them; the result names registers r0..r10 like the BPF test."""
    names = [reg.name.lower() for reg in REGS]
    results = {f"r{k}": name for k, name in enumerate(names)}

    def run(builder: ThreadBuilder) -> dict[str, int]:
        regs = Registers({names[k]: v for k, v in bpf_registers.items()}, zero=frozenset({"zero"}))
        return run_code(code, _Exec(regs).step, regs, builder, results)

    return run
