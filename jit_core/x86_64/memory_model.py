"""x86-TSO (Intel SDM vol. 3A section 9.2; herdtools7's x86tso.cat) and the memory semantics of
the x86-64 code jit_core emits.

    ghb = mfence | implied | WW(po) | RM(po) | rfe | fr | co,   acyclic
    implied = [W];po;[R] where either access is locked

SC per location and atomicity are enforced by the enumeration. The instructions' events are
jit_core.x86_64.semantics'; here capstone's decoding is turned into its neutral form.
"""

from __future__ import annotations

from typing import Any, Literal

import capstone
from capstone import x86 as cs

from litmus import relations as r
from litmus.events import Tag, ThreadBuilder, ThreadSemantics
from litmus.execution import Execution
from litmus.machine import Code, Instr, Operand, OperandKind, Registers, decode, run_code

from .lower import REG
from .semantics import JCC, NAMES64, X86Thread

__all__ = [
    "MODEL", "MODEL_NAME", "TsoAxiom", "TsoModel",
    "decode_code", "machine_semantics", "thread_semantics",
]

MODEL_NAME = "x86-tso"


TsoAxiom = Literal["tso"]

class TsoModel:
    """The ``tso`` axiom (acyclic ghb) over an enumerated execution."""

    name = MODEL_NAME

    def violation(self, ex: Execution) -> TsoAxiom | None:
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


def _operand(insn: Any, op: Any) -> Operand:
    if op.type == cs.X86_OP_REG:
        return Operand(OperandKind.REG, reg=insn.reg_name(op.reg), size=op.size)
    if op.type == cs.X86_OP_IMM:
        kind = OperandKind.TARGET if insn.mnemonic in JCC or insn.mnemonic == "jmp" else OperandKind.IMM
        return Operand(kind, value=op.imm, size=op.size)
    mem = op.mem
    return Operand(
        OperandKind.MEM,
        base=insn.reg_name(mem.base) if mem.base else "",
        disp=mem.disp,
        index=insn.reg_name(mem.index) if mem.index else "",
        value=mem.scale,
        size=op.size,
        extend="segment" if mem.segment else "",
    )


def _instr(insn: Any) -> Instr:
    return Instr(
        insn.address,
        insn.size,
        insn.mnemonic,
        tuple(_operand(insn, op) for op in insn.operands),
        f"{insn.mnemonic} {insn.op_str}".rstrip(),
    )


def decode_code(code: bytes) -> Code:
    """The decoded x86-64 instructions of ``code``. Raises LitmusError on undecodable bytes."""
    raw = decode(_MD, code)
    return Code([_instr(i) for i in raw.insns], raw.end)


def thread_semantics(code: Code, bpf_registers: dict[int, int]) -> ThreadSemantics:
    """The memory semantics of ``code`` with eBPF registers (by number) preset in the registers
    jit_core assigns them; the result names registers r0..r10 like the BPF test."""
    return machine_semantics(
        code,
        {NAMES64[REG[k]]: v for k, v in bpf_registers.items()},
        {f"r{k}": NAMES64[reg] for k, reg in enumerate(REG)},
    )


def machine_semantics(code: Code, registers: dict[str, int], results: dict[str, str]) -> ThreadSemantics:
    """The semantics of ``code`` from ``registers`` (64-bit names), returning ``results``' registers."""

    def run(builder: ThreadBuilder) -> dict[str, int]:
        regs = Registers(dict(registers))
        return run_code(code, X86Thread(regs, code.end).step, regs, builder, results)

    return run
