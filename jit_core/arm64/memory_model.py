"""The Armv8 memory model and the memory semantics of the AArch64 code jit_core emits.

Model (Arm ARM B2.3, "Definition of the Armv8 memory model"; herdtools7's aarch64.cat for the
application-level part): other-multi-copy-atomic, one axiom ``acyclic ob`` with

    ob  = obs | lmws | dob | aob | bob                (closed transitively)
    obs = rfe | coe | fre
    lmws = [M];po-loc;[W]                              (local memory write successor)
    dob = addr | data | ctrl;[W] | (ctrl | addr;po);[ISB];po;[R] | addr;po;[W] | (addr|data);rfi
    aob = rmw | [range(rmw)];rfi;[A|Q]
    bob = [M];po;[DMB full];po;[M] | [R];po;[DMB LD];po;[M] | [W];po;[DMB ST];po;[W]
          | [L];po;[A] | [A|Q];po | po;[L]

SC per location (internal) and atomicity of exclusives are enforced by the enumeration.
A store-exclusive always succeeds here (status 0): a failing one only makes the loop retry, and
the retried iteration is a run that is enumerated anyway.
"""

from __future__ import annotations

from typing import Any

import capstone
from capstone import arm64 as cs

from litmus import relations as r
from litmus.events import NO_TAINT, Kind, Tag, ThreadBuilder, ThreadSemantics
from litmus.execution import Execution
from litmus.machine import M64, Code, Registers, decode, run_code, signed, unsupported

from .emit import REGS

MODEL_NAME = "armv8"


class Armv8Model:
    """The Armv8 ``external`` axiom (acyclic ob) over an enumerated execution."""

    name = MODEL_NAME

    def violation(self, ex: Execution) -> str | None:
        """``external`` when ob has a cycle, else None."""
        po, reads, writes, mem = ex.po, ex.reads, ex.writes, ex.accesses
        everything = (1 << ex.n) - 1
        rf = ex.rf
        rfi = ex.inn(rf)
        obs = r.union(ex.ext(rf), ex.ext(ex.co), ex.ext(ex.fr))
        addr, data, ctrl = ex.dependency("addr"), ex.dependency("data"), ex.dependency("ctrl")
        isb = ex.tagged(Tag.ISB)
        dob = r.union(
            addr,
            data,
            r.restrict(ctrl, everything, writes),
            r.restrict(
                r.seq(r.restrict(r.union(ctrl, r.seq(addr, po)), everything, isb), po), everything, reads
            ),
            r.restrict(r.seq(addr, po), everything, writes),
            r.seq(r.union(addr, data), rfi),
        )
        acquire = ex.tagged(Tag.ACQ) | ex.tagged(Tag.ACQ_PC)
        aob = r.union(ex.rmw, r.restrict(rfi, r.range_of(ex.rmw), acquire))
        release, acq_sc = ex.tagged(Tag.REL), ex.tagged(Tag.ACQ)
        bob = r.union(
            ex.fence_order,
            r.restrict(po, release, acq_sc),
            r.restrict(po, acquire, everything),
            r.restrict(po, everything, release),
        )
        lmws = r.restrict(ex.po_loc, mem, writes)
        ob = r.union(obs, lmws, r.restrict(dob, reads, mem), aob, bob)
        return None if r.acyclic(ob) else "external"


MODEL = Armv8Model()

_MD = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
_MD.detail = True

# DMB options (Arm ARM C6.2.81): which earlier and later accesses each orders.
_DMB = {
    "ish": (Kind.RW, Kind.RW),
    "sy": (Kind.RW, Kind.RW),
    "ishld": (Kind.R, Kind.RW),
    "ld": (Kind.R, Kind.RW),
    "ishst": (Kind.W, Kind.W),
    "st": (Kind.W, Kind.W),
}
_SIZE = {"b": 8, "h": 16}
_CONDS = {
    cs.ARM64_CC_EQ: lambda a, b, w: a == b,
    cs.ARM64_CC_NE: lambda a, b, w: a != b,
    cs.ARM64_CC_HS: lambda a, b, w: a >= b,
    cs.ARM64_CC_LO: lambda a, b, w: a < b,
    cs.ARM64_CC_HI: lambda a, b, w: a > b,
    cs.ARM64_CC_LS: lambda a, b, w: a <= b,
    cs.ARM64_CC_GE: lambda a, b, w: signed(a, w) >= signed(b, w),
    cs.ARM64_CC_LT: lambda a, b, w: signed(a, w) < signed(b, w),
    cs.ARM64_CC_GT: lambda a, b, w: signed(a, w) > signed(b, w),
    cs.ARM64_CC_LE: lambda a, b, w: signed(a, w) <= signed(b, w),
}
_ALU = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "and": lambda a, b: a & b,
    "orr": lambda a, b: a | b,
    "eor": lambda a, b: a ^ b,
}


def _canon(name: str) -> tuple[str, int]:
    """x/w register name -> (x name, width)."""
    if name in ("wzr", "xzr"):
        return "xzr", 32 if name[0] == "w" else 64
    if name[0] == "w":
        return "x" + name[1:], 32
    return name, 64


class _Exec:
    """One thread's register state; ``last_exclusive`` is the event of the open LDXR."""

    def __init__(self, regs: Registers):
        self.regs = regs
        self.last_exclusive: int | None = None

    def operand(self, insn: Any, op: Any) -> tuple[int, Any]:
        if op.type == cs.ARM64_OP_REG:
            name, _ = _canon(insn.reg_name(op.reg))
            return self.regs.get(name)
        if op.type == cs.ARM64_OP_IMM:
            shift = op.shift.value if op.shift.type == cs.ARM64_SFT_LSL else 0
            return (op.imm << shift) & M64, NO_TAINT
        raise unsupported(insn)

    def write_reg(self, insn: Any, op: Any, value: int, taint: Any) -> None:
        name, width = _canon(insn.reg_name(op.reg))
        self.regs.set(name, value & ((1 << width) - 1), taint)

    def address(self, insn: Any, op: Any) -> tuple[int, Any]:
        base, _ = _canon(insn.reg_name(op.mem.base))
        value, taint = self.regs.get(base)
        return (value + op.mem.disp) & M64, taint

    def step(self, insn: Any, _regs: Registers, b: ThreadBuilder) -> int | None:
        m, ops, text = insn.mnemonic, insn.operands, f"{insn.mnemonic} {insn.op_str}"
        if m == "dmb":
            pred, succ = _DMB[insn.op_str.strip()]
            b.fence(pred, succ, insn=text)
        elif m == "isb":
            b.fence(Kind(0), Kind(0), tags={Tag.ISB}, insn=text)
        elif m in ("mov", "movz"):
            value, taint = self.operand(insn, ops[1])
            self.write_reg(insn, ops[0], value, taint)
        elif m == "movk":
            old, taint = self.operand(insn, ops[0])
            shift = ops[1].shift.value
            self.write_reg(insn, ops[0], (old & ~(0xFFFF << shift)) | (ops[1].imm << shift), taint)
        elif m in _ALU or m == "cmp":
            args = ops[1:] if m in _ALU else ops
            (a, ta), (c, tc) = self.operand(insn, args[0]), self.operand(insn, args[1])
            _, width = _canon(insn.reg_name(ops[0].reg))
            mask = (1 << width) - 1
            if m == "cmp":
                self.regs.flags, self.regs.flags_taint = (a & mask, c & mask, width), ta | tc
            else:
                self.write_reg(insn, ops[0], _ALU[m](a, c), ta | tc)
        elif m in ("ldr", "ldrb", "ldrh", "ldar", "ldapr", "ldxr", "ldaxr"):
            loc, taint = self.address(insn, ops[1])
            tags = {
                "ldar": {Tag.ACQ},
                "ldapr": {Tag.ACQ_PC},
                "ldxr": {Tag.EXCL},
                "ldaxr": {Tag.EXCL, Tag.ACQ},
            }.get(m, set())
            value, eid = b.read(loc, addr=taint, tags=tags, insn=text)
            width = _SIZE.get(m[-1], _canon(insn.reg_name(ops[0].reg))[1])
            self.write_reg(insn, ops[0], value & ((1 << width) - 1), frozenset({eid}))
            if Tag.EXCL in tags:
                self.last_exclusive = eid
        elif m in ("str", "strb", "strh", "stlr"):
            value, data = self.operand(insn, ops[0])
            loc, taint = self.address(insn, ops[1])
            width = _SIZE.get(m[-1], _canon(insn.reg_name(ops[0].reg))[1])
            b.write(
                loc,
                value & ((1 << width) - 1),
                addr=taint,
                data=data,
                tags={Tag.REL} if m == "stlr" else (),
                insn=text,
            )
        elif m in ("stxr", "stlxr"):
            value, data = self.operand(insn, ops[1])
            loc, taint = self.address(insn, ops[2])
            width = _canon(insn.reg_name(ops[1].reg))[1]
            tags = {Tag.EXCL, Tag.REL} if m == "stlxr" else {Tag.EXCL}
            w = b.write(loc, value & ((1 << width) - 1), addr=taint, data=data, tags=tags, insn=text)
            if self.last_exclusive is None:
                raise unsupported(insn)
            b.pair(self.last_exclusive, w)
            self.last_exclusive = None
            self.write_reg(insn, ops[0], 0, NO_TAINT)
        elif m in ("cbz", "cbnz"):
            value, taint = self.operand(insn, ops[0])
            b.branch(taint)
            if (value == 0) == (m == "cbz"):
                return int(ops[1].imm)
        elif m.startswith("b.") and insn.cc in _CONDS:
            b.branch(self.regs.flags_taint)
            if _CONDS[insn.cc](*self.regs.flags):
                return int(ops[0].imm)
        elif m == "b":
            return int(ops[0].imm)
        else:
            raise unsupported(insn)
        return None


def decode_code(code: bytes) -> Code:
    """The decoded AArch64 instructions of ``code``. Raises LitmusError on undecodable bytes."""
    return decode(_MD, code)


def thread_semantics(code: Code, bpf_registers: dict[int, int]) -> ThreadSemantics:
    """The memory semantics of ``code`` with eBPF registers (by number) preset in the registers
    jit_core assigns them; the result names registers r0..r10 like the BPF test."""
    results = {f"r{k}": f"x{reg}" for k, reg in enumerate(REGS)}

    def run(builder: ThreadBuilder) -> dict[str, int]:
        values = {f"x{REGS[k]}": v for k, v in bpf_registers.items()}
        regs = Registers(values, zero=frozenset({"xzr"}))
        return run_code(code, _Exec(regs).step, regs, builder, results)

    return run
