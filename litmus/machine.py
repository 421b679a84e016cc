"""Running decoded machine code against a ThreadBuilder: the part every architecture shares.

An architecture supplies a decoder (capstone) and a ``step`` function giving one instruction's
effect on registers and memory events; this module walks the code from its first instruction
to ``end`` (the offset where the thread's exit would be), following branches.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import capstone

from .errors import LitmusError
from .events import NO_TAINT, LoopBound, Taint, ThreadBuilder

MAX_STEPS = 400
M64 = (1 << 64) - 1


@dataclass
class Registers:
    """Register values (unsigned 64-bit) and taints, by canonical name; ``zero`` reads as 0."""

    values: dict[str, int]
    taints: dict[str, Taint] = field(default_factory=dict)
    picks: dict[str, Taint] = field(default_factory=dict)  # dependencies through a selection's condition
    zero: frozenset[str] = frozenset()
    flags: tuple[int, int, int] = (0, 0, 64)  # (a, b, width) of the last compare
    flags_taint: Taint = NO_TAINT

    def get(self, name: str) -> tuple[int, Taint]:
        if name in self.zero:
            return 0, NO_TAINT
        return self.values.get(name, 0), self.taints.get(name, NO_TAINT)

    def pick(self, name: str) -> Taint:
        return NO_TAINT if name in self.zero else self.picks.get(name, NO_TAINT)

    def set(self, name: str, value: int, taint: Taint, pick: Taint = NO_TAINT) -> None:
        if name not in self.zero:
            self.values[name] = value & M64
            self.taints[name] = taint
            self.picks[name] = pick


class OperandKind(enum.Enum):
    REG = "register"
    IMM = "immediate"
    MEM = "memory"
    TARGET = "branch target"


@dataclass(frozen=True)
class Operand:
    """An instruction operand, decoder-neutral: register ``reg``; immediate or branch target
    ``value``; memory at ``base`` + ``disp`` (+ ``index``, sign-extended from 32 bits when
    ``extend`` is ``sxtw``, or times ``value`` when an architecture scales it; a litmus
    location's address is a ``disp`` without base)."""

    kind: OperandKind
    reg: str = ""
    value: int = 0
    base: str = ""
    disp: int = 0
    index: str = ""
    extend: str = ""
    size: int = 0  # bytes accessed or written, when the instruction encodes it


@dataclass(frozen=True)
class Instr:
    """One instruction as an architecture's semantics reads it, whichever decoder produced it
    (capstone for compiled code, a litmus dialect parser for test files)."""

    address: int
    size: int
    mnemonic: str
    operands: tuple[Operand, ...]
    text: str
    cond: str = ""


Step = Callable[[Any, Registers, ThreadBuilder], int | None]
"""One instruction's effect; returns the next address when it branches, else None."""


@dataclass(frozen=True)
class Code:
    """A thread's machine code as decoded instructions. ``end`` is where the thread stops."""

    insns: list[Any]
    end: int

    def listing(self) -> list[str]:
        return [f"{i.address:#06x}: {_text(i)}" for i in self.insns]


def _text(insn: Any) -> str:
    return insn.text if isinstance(insn, Instr) else f"{insn.mnemonic} {insn.op_str}".rstrip()


def decode(md: capstone.Cs, code: bytes) -> Code:
    """Every instruction of ``code`` (address 0 at its start). Raises LitmusError on bytes the
    decoder does not know."""
    insns = list(md.disasm(code, 0))
    decoded = sum(i.size for i in insns)
    if decoded != len(code):
        raise LitmusError(f"capstone stops decoding at offset {decoded:#x} of {len(code)} bytes")
    return Code(insns, len(code))


def run_code(
    code: Code, step: Step, regs: Registers, builder: ThreadBuilder, results: Mapping[str, str]
) -> dict[str, int]:
    """Execute ``code`` from its start to ``code.end``; returns ``{name: regs[reg]}`` for each
    ``results`` entry. Raises LoopBound after MAX_STEPS, LitmusError for a jump to no
    instruction boundary or an instruction ``step`` does not model."""
    by_addr = {i.address: i for i in code.insns}
    pc = code.insns[0].address if code.insns else code.end
    for _ in range(MAX_STEPS):
        if pc == code.end:
            return {name: regs.get(reg)[0] for name, reg in results.items()}
        insn = by_addr.get(pc)
        if insn is None:
            raise LitmusError(f"a branch goes to {pc:#x}, which is no instruction of the thread")
        target = step(insn, regs, builder)
        pc = insn.address + insn.size if target is None else target
    raise LoopBound(f"thread {builder.thread}: more than {MAX_STEPS} instructions")


def unsupported(insn: Any) -> LitmusError:
    return LitmusError(f"no memory-model semantics for '{insn.mnemonic} {insn.op_str}'")


def signed(value: int, width: int) -> int:
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value
