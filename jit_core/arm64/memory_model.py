"""The Armv8 memory model and the memory semantics of the AArch64 code jit_core emits.

Model (Arm ARM B2.3, "Definition of the Armv8 memory model"; herdtools7's aarch64.cat for the
application-level part): other-multi-copy-atomic, one axiom ``acyclic ob`` with

    ob  = obs | lmws | dob | aob | bob                (closed transitively)
    obs = rfe | coe | fre
    lmws = [M];po-loc;[W]                              (local memory write successor)
    dob = addr | data | ctrl;[W] | (ctrl | addr;po);[ISB];po;[R] | addr;po;[W] | (addr|data);rfi
    aob = rmw | [range(rmw)];rfi;[A|Q]
    bob = [M];po;[DMB full];po;[M] | [R];po;[DMB LD];po;[M] | [W];po;[DMB ST];po;[W]
          | [L];po;[A] | [A|Q];po | po;[L] | [range([A];amo;[L])];po
    pob = pick-addr;[W] | pick-data;[W] | pick-addr;po;[W]  (dependencies through CSEL)

SC per location (internal) and atomicity are enforced by the enumeration. The instructions'
events are jit_core.arm64.semantics'; here capstone's decoding is turned into its neutral form.
"""

from __future__ import annotations

from typing import Any, Literal

import capstone
from capstone import arm64 as cs

from litmus import relations as r
from litmus.events import Kind, Tag, ThreadBuilder, ThreadSemantics
from litmus.execution import Execution
from litmus.machine import M64, Code, Instr, Operand, OperandKind, Registers, decode, run_code

from .layout import REGS
from .semantics import CONDS, Arm64Thread

__all__ = [
    "Armv8Axiom", "Armv8Model", "MODEL", "MODEL_NAME",
    "decode_code", "machine_semantics", "thread_semantics",
]

MODEL_NAME = "armv8"


Armv8Axiom = Literal["external"]

class Armv8Model:
    """The Armv8 ``external`` axiom (acyclic ob) over an enumerated execution."""

    name = MODEL_NAME

    def violation(self, ex: Execution) -> Armv8Axiom | None:
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
        # DMB LD orders only reads that return a value ([R \ NoRet];po;[dmb.ld])
        fenced = ex.fence_order_without(lambda f, e: f.pred == Kind.R and Tag.NORET in e.tags)
        bob = r.union(
            fenced,
            r.restrict(po, release, acq_sc),
            r.restrict(po, acquire, everything),
            r.restrict(po, everything, release),
        )
        # [range([R & A]; amo; [W & L])]; po: an acquire-release atomic orders what follows it
        al_writes = r.range_of(r.restrict(ex.rmw, acq_sc & ex.tagged(Tag.AMO), release & ex.tagged(Tag.AMO)))
        bob = r.union(bob, r.restrict(po, al_writes, everything))
        pick_addr, pick_data = ex.dependency("pick_addr"), ex.dependency("pick_data")
        pob = r.union(
            r.restrict(r.union(pick_addr, pick_data), everything, writes),
            r.restrict(r.seq(pick_addr, po), everything, writes),
        )
        lmws = r.restrict(ex.po_loc, mem, writes)
        ob = r.union(obs, lmws, r.restrict(r.union(dob, pob), reads, mem), aob, bob)
        return None if r.acyclic(ob) else "external"


MODEL = Armv8Model()

_MD = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
_MD.detail = True
_CC = {
    getattr(cs, f"ARM64_CC_{name.upper()}"): name for name in CONDS if hasattr(cs, f"ARM64_CC_{name.upper()}")
}


def _operand(insn: Any, op: Any) -> Operand:
    if op.type == cs.ARM64_OP_REG:
        return Operand(OperandKind.REG, reg=insn.reg_name(op.reg))
    if op.type == cs.ARM64_OP_IMM:
        shift = op.shift.value if op.shift.type == cs.ARM64_SFT_LSL else 0
        if insn.mnemonic in ("b", "cbz", "cbnz") or insn.mnemonic.startswith("b."):
            return Operand(OperandKind.TARGET, value=op.imm)
        return Operand(OperandKind.IMM, value=(op.imm << shift) & M64, disp=shift)  # disp: movk's shift
    if op.type == cs.ARM64_OP_MEM:
        index = insn.reg_name(op.mem.index) if op.mem.index else ""
        extend = "sxtw" if op.ext == cs.ARM64_EXT_SXTW else ""
        return Operand(
            OperandKind.MEM, base=insn.reg_name(op.mem.base), disp=op.mem.disp, index=index, extend=extend
        )
    return Operand(OperandKind.IMM)  # barrier options, read from ``cond``


def _instr(insn: Any) -> Instr:
    cond = insn.op_str.strip() if insn.mnemonic == "dmb" else _CC.get(insn.cc, "")
    return Instr(
        insn.address,
        insn.size,
        insn.mnemonic,
        tuple(_operand(insn, op) for op in insn.operands),
        f"{insn.mnemonic} {insn.op_str}".rstrip(),
        cond,
    )


def decode_code(code: bytes) -> Code:
    """The decoded AArch64 instructions of ``code``. Raises LitmusError on undecodable bytes."""
    raw = decode(_MD, code)
    return Code([_instr(i) for i in raw.insns], raw.end)


def thread_semantics(code: Code, bpf_registers: dict[int, int]) -> ThreadSemantics:
    """The memory semantics of ``code`` with eBPF registers (by number) preset in the registers
    jit_core assigns them; the result names registers r0..r10 like the BPF test."""
    results = {f"r{k}": f"x{reg}" for k, reg in enumerate(REGS)}
    return machine_semantics(code, {f"x{REGS[k]}": v for k, v in bpf_registers.items()}, results)


def machine_semantics(code: Code, registers: dict[str, int], results: dict[str, str]) -> ThreadSemantics:
    """The semantics of ``code`` from ``registers`` (x names), returning ``results``' registers."""

    def run(builder: ThreadBuilder) -> dict[str, int]:
        regs = Registers(dict(registers), zero=frozenset({"xzr"}))
        return run_code(code, Arm64Thread(regs).step, regs, builder, results)

    return run
