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

and the main axiom ``acyclic co | rfe | fr | ppo``. The instructions' events are
jit_core.riscv64.semantics'; here capstone's decoding is turned into its neutral form.
"""

from __future__ import annotations

from typing import Any, Literal

import capstone
from capstone import riscv as cs

from litmus import relations as r
from litmus.events import Tag, ThreadBuilder, ThreadSemantics
from litmus.execution import Execution
from litmus.machine import Code, Instr, Operand, OperandKind, Registers, decode, run_code

from .lower import REGS
from .semantics import BRANCHES, RiscvThread

__all__ = [
    "MODEL", "MODEL_NAME", "RvwmoAxiom", "RvwmoModel",
    "decode_code", "machine_semantics", "thread_semantics",
]

MODEL_NAME = "rvwmo"


RvwmoAxiom = Literal["Model"]

class RvwmoModel:
    """RVWMO's Model axiom over an enumerated execution (Coherence and Atomicity are enforced by
    the enumeration)."""

    name = MODEL_NAME

    def violation(self, ex: Execution) -> RvwmoAxiom | None:
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
_JUMPS = (*BRANCHES, "beqz", "bnez", "j")


def _operand(insn: Any, op: Any) -> Operand:
    if op.type == cs.RISCV_OP_REG:
        return Operand(OperandKind.REG, reg=insn.reg_name(op.reg))
    if op.type == cs.RISCV_OP_IMM:
        if insn.mnemonic in _JUMPS:  # capstone gives branch offsets relative to the branch
            return Operand(OperandKind.TARGET, value=insn.address + op.imm)
        return Operand(OperandKind.IMM, value=op.imm)
    return Operand(OperandKind.MEM, base=insn.reg_name(op.mem.base), disp=op.mem.disp)


def _instr(insn: Any) -> Instr:
    return Instr(
        insn.address,
        insn.size,
        insn.mnemonic,
        tuple(_operand(insn, op) for op in insn.operands),
        f"{insn.mnemonic} {insn.op_str}".rstrip(),
        insn.op_str if insn.mnemonic == "fence" else "",
    )


def decode_code(code: bytes) -> Code:
    """The decoded RV64GC instructions of ``code``. Raises LitmusError on undecodable bytes."""
    raw = decode(_MD, code)
    return Code([_instr(i) for i in raw.insns], raw.end)


def thread_semantics(code: Code, bpf_registers: dict[int, int]) -> ThreadSemantics:
    """The memory semantics of ``code`` with eBPF registers (by number) preset in the registers
    jit_core assigns them; the result names registers r0..r10 like the BPF test."""
    names = [reg.name.lower() for reg in REGS]
    return machine_semantics(
        code,
        {names[k]: v for k, v in bpf_registers.items()},
        {f"r{k}": name for k, name in enumerate(names)},
        sc_may_fail=False,
    )


def machine_semantics(
    code: Code, registers: dict[str, int], results: dict[str, str], *, sc_may_fail: bool
) -> ThreadSemantics:
    """The semantics of ``code`` from ``registers`` (ABI names), returning ``results``' registers."""

    def run(builder: ThreadBuilder) -> dict[str, int]:
        regs = Registers(dict(registers), zero=frozenset({"zero"}))
        return run_code(code, RiscvThread(regs, sc_may_fail).step, regs, builder, results)

    return run
