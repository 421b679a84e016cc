"""The verifier: structural checks every program passes before any backend or the interpreter sees it.

It checks what RFC 9669 fixes for each instruction (known opcode, registers r0-r10, unused fields
zero, lddw pairs, atomic operations), that r10 is never written, and control flow: jumps stay
inside their function and never land on the second slot of an lddw, the last slot of each function
is ``exit`` or ``ja`` (no fall-through past the end), helper ids are jitprobe intrinsics.

Functions are found here once, for every backend: function 0 starts at slot 0, and every target
of ``call local`` or of a function-address ``lddw`` (src 4, like Linux's BPF_PSEUDO_FUNC) starts
another. A function runs up to the next function's entry. It does no data-flow analysis:
uninitialized reads and memory bounds are the program author's business.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from . import isa
from .errors import JitError
from .intrinsics import HELPER_IDS
from .isa import Insn

__all__ = [
    "CALLX_OPCODE",
    "LDDW_FUNC",
    "LDDW_IMM64",
    "LDDW_SOURCES",
    "ProgramInfo",
    "branch_target",
    "verify",
]

LDDW_IMM64 = 0  # lddw src: a plain 64-bit constant
LDDW_FUNC = 4  # lddw src: address of the program-local function at slot index + imm + 1
LDDW_SOURCES = {LDDW_IMM64: "64-bit constant", LDDW_FUNC: "program-local function address"}

CALLX_OPCODE = isa.JMP | isa.CALL | isa.SRC_X  # 0x8d: call the function whose address is in dst

_MOVSX_OFFSETS = {isa.ALU: (0, 8, 16), isa.ALU64: (0, 8, 16, 32)}
_ENDIAN_SIZES = (16, 32, 64)
_ATOMIC_SIZES = (isa.SIZE_W, isa.SIZE_DW)
_FETCHING = frozenset(op for op in isa.ATOMIC_OPS if op & isa.ATOMIC_FETCH)


@dataclass(frozen=True)
class ProgramInfo:
    """What the verifier learned about a program.

    ``functions``: sorted entry slots of the program-local functions (0 first).
    ``jump_targets``: every slot some jump, call or function-address lddw lands on.
    """

    length: int
    functions: tuple[int, ...]
    jump_targets: frozenset[int]

    def function_of(self, index: int) -> int:
        """The entry slot of the function holding slot ``index``."""
        return self.functions[bisect_right(self.functions, index) - 1]

    def function_end(self, entry: int) -> int:
        """One past the last slot of the function starting at ``entry``."""
        pos = self.functions.index(entry)
        return self.functions[pos + 1] if pos + 1 < len(self.functions) else self.length


def branch_target(prog: Sequence[Insn], index: int) -> int | None:
    """The slot that instruction ``index`` can transfer control (or a function address) to, if any."""
    insn = prog[index]
    op, cls = insn.opcode, insn.cls
    if op == isa.LDDW_OPCODE:
        return index + insn.imm + 1 if insn.src == LDDW_FUNC else None
    if cls not in (isa.JMP, isa.JMP32):
        return None
    code = op & 0xF0
    if code == isa.EXIT or op == CALLX_OPCODE:
        return None
    if code == isa.CALL:
        return index + insn.imm + 1 if insn.src == isa.CALL_LOCAL else None
    if code == isa.JA and cls == isa.JMP32:
        return index + insn.imm + 1
    return index + insn.off + 1


def verify(prog: Sequence[Insn]) -> ProgramInfo:
    """Check ``prog`` and return its function layout.

    Raises JitError naming the first bad instruction's index and disassembled text.
    """
    if not prog:
        raise JitError("the program is empty; it needs at least an exit")
    n = len(prog)
    second_slots: set[int] = set()
    for i, insn in enumerate(prog):
        if i in second_slots:
            continue
        problem = _field_problem(insn)
        if problem is None and insn.opcode == isa.LDDW_OPCODE:
            problem = _lddw_problem(prog, i)
            second_slots.add(i + 1)
        if problem is not None:
            raise _error(prog, i, problem)

    entries = {0}
    targets: set[int] = set()
    jumps: list[tuple[int, int]] = []  # (slot, target) of jumps within a function
    for i in range(n):
        if i in second_slots:
            continue
        target = branch_target(prog, i)
        if target is None:
            continue
        if not 0 <= target < n:
            raise _error(prog, i, f"target slot {target} is outside the program (slots 0..{n - 1})")
        if target in second_slots:
            raise _error(prog, i, f"target slot {target} is the second half of an lddw")
        targets.add(target)
        if _is_function_reference(prog[i]):
            entries.add(target)
        else:
            jumps.append((i, target))

    info = ProgramInfo(n, tuple(sorted(entries)), frozenset(targets))
    if len(info.functions) > 1:
        for i, target in jumps:
            if info.function_of(target) != info.function_of(i):
                raise _error(prog, i, f"jump to slot {target} leaves the function starting at slot "
                                      f"{info.function_of(i)}")
    for entry in info.functions:
        last = info.function_end(entry) - 1
        if last in second_slots or not _ends_flow(prog[last]):
            where = "the program" if last == n - 1 else f"the function starting at slot {entry}"
            raise _error(prog, last, f"control falls through past the end of {where}; "
                                     "the last instruction must be exit or ja")
    return info


def _is_function_reference(insn: Insn) -> bool:
    return insn.opcode == isa.LDDW_OPCODE or (insn.opcode & 0xF0) == isa.CALL


def _ends_flow(insn: Insn) -> bool:
    return insn.opcode in (isa.EXIT_OPCODE, isa.JMP | isa.JA, isa.JMP32 | isa.JA)


def _error(prog: Sequence[Insn], index: int, message: str) -> JitError:
    from .asm import format_insn  # the assembler imports this module's constants

    nxt = prog[index + 1] if index + 1 < len(prog) else None
    return JitError(message, index, format_insn(prog[index], nxt))


def _nonzero(insn: Insn, *fields: str) -> str | None:
    for name in fields:
        value = getattr(insn, name)
        if value:
            return f"unused field {name} must be 0, is {value}"
    return None


def _register_problem(insn: Insn, writes_dst: bool) -> str | None:
    for name in ("dst", "src"):
        reg = getattr(insn, name)
        if reg >= isa.NUM_REGS:
            return f"bad register r{reg} in {name}; valid registers are r0..r10"
    if writes_dst and insn.dst == isa.FRAME_REG:
        return "r10 is the read-only frame pointer and cannot be written"
    return None


@lru_cache(maxsize=4096)  # programs repeat instructions a lot; Insn is frozen and hashable
def _field_problem(insn: Insn) -> str | None:
    """What is wrong with one slot considered alone (lddw's pair is checked by _lddw_problem)."""
    cls = insn.cls
    if cls in (isa.ALU, isa.ALU64):
        return _alu_problem(insn)
    if cls in (isa.JMP, isa.JMP32):
        return _jump_problem(insn)
    return _memory_problem(insn)


def _alu_problem(insn: Insn) -> str | None:
    cls, code, by_reg = insn.cls, insn.opcode & 0xF0, insn.opcode & isa.SRC_X
    if code not in isa.ALU_OPS:
        return f"unknown ALU operation {code >> 4:#x} in opcode {insn.opcode:#04x}"
    if code == isa.END:
        if cls == isa.ALU64 and by_reg:
            return f"unknown opcode {insn.opcode:#04x} (64-bit byte swap has no big-endian form)"
        if insn.imm not in _ENDIAN_SIZES:
            return f"byte swap width {insn.imm} invalid; valid widths: 16, 32, 64"
        return _nonzero(insn, "src", "off") or _register_problem(insn, True)
    if code == isa.NEG:
        if by_reg:
            return f"unknown opcode {insn.opcode:#04x} (neg takes no source)"
        return _nonzero(insn, "src", "off", "imm") or _register_problem(insn, True)
    valid_offsets: tuple[int, ...] = (0,)
    if code in (isa.DIV, isa.MOD):
        valid_offsets = (0, 1)
    elif code == isa.MOV and by_reg:
        valid_offsets = _MOVSX_OFFSETS[cls]
    if insn.off not in valid_offsets:
        if valid_offsets == (0,):
            return _nonzero(insn, "off")
        return f"offset {insn.off} invalid here; valid: {', '.join(map(str, valid_offsets))}"
    unused = _nonzero(insn, "imm") if by_reg else _nonzero(insn, "src")
    return unused or _register_problem(insn, True)


def _jump_problem(insn: Insn) -> str | None:
    cls, code, by_reg = insn.cls, insn.opcode & 0xF0, insn.opcode & isa.SRC_X
    if code not in isa.JMP_OPS:
        return f"unknown jump operation {code >> 4:#x} in opcode {insn.opcode:#04x}"
    if code in (isa.CALL, isa.EXIT) and cls == isa.JMP32:
        return f"unknown opcode {insn.opcode:#04x} ({isa.JMP_OPS[code]} exists only in the JMP class)"
    if code == isa.JA:
        if by_reg:
            return f"unknown opcode {insn.opcode:#04x} (ja takes no register)"
        return _nonzero(insn, "dst", "src", "imm" if cls == isa.JMP else "off")
    if code == isa.EXIT:
        if by_reg:
            return f"unknown opcode {insn.opcode:#04x}"
        return _nonzero(insn, "dst", "src", "off", "imm")
    if code == isa.CALL:
        if by_reg:
            return _nonzero(insn, "src", "off", "imm") or _register_problem(insn, False)
        problem = _nonzero(insn, "dst", "off")
        if problem:
            return problem
        if insn.src == isa.CALL_HELPER:
            if insn.imm not in HELPER_IDS:
                return (f"unknown helper id {insn.imm}; valid ids: "
                        f"{', '.join(map(str, sorted(HELPER_IDS)))} (see jit_core.intrinsics)")
            return None
        if insn.src != isa.CALL_LOCAL:
            return f"call source {insn.src} invalid; valid: 0 (helper), 1 (program-local function)"
        return None
    unused = _nonzero(insn, "imm") if by_reg else _nonzero(insn, "src")
    return unused or _register_problem(insn, False)


def _memory_problem(insn: Insn) -> str | None:
    cls, mode, size = insn.cls, insn.opcode & 0xE0, insn.opcode & 0x18
    if cls == isa.LD:
        if insn.opcode != isa.LDDW_OPCODE:
            return f"unknown opcode {insn.opcode:#04x} (of the LD class only lddw, 0x18, exists)"
        return _register_problem(insn, True)
    if cls == isa.LDX:
        if mode not in (isa.MODE_MEM, isa.MODE_MEMSX) or (mode == isa.MODE_MEMSX and size == isa.SIZE_DW):
            return f"unknown opcode {insn.opcode:#04x}"
        return _nonzero(insn, "imm") or _register_problem(insn, True)
    if cls == isa.ST:
        if mode != isa.MODE_MEM:
            return f"unknown opcode {insn.opcode:#04x}"
        return _nonzero(insn, "src") or _register_problem(insn, False)
    if mode == isa.MODE_MEM:
        return _nonzero(insn, "imm") or _register_problem(insn, False)
    if mode != isa.MODE_ATOMIC:
        return f"unknown opcode {insn.opcode:#04x}"
    op = insn.imm
    if op not in isa.ATOMIC_OPS:
        return (f"unknown atomic operation {op:#x}; valid: "
                f"{', '.join(hex(v) for v in sorted(isa.ATOMIC_OPS))}")
    if op not in (isa.ATOMIC_LOAD_ACQ, isa.ATOMIC_STORE_REL) and size not in _ATOMIC_SIZES:
        return f"atomic operation {op:#x} needs a 32- or 64-bit size"
    problem = _register_problem(insn, op == isa.ATOMIC_LOAD_ACQ)
    if problem is None and op in _FETCHING and op != isa.ATOMIC_CMPXCHG and insn.src == isa.FRAME_REG:
        problem = "r10 is the read-only frame pointer and cannot receive the fetched value"
    return problem


def _lddw_problem(prog: Sequence[Insn], i: int) -> str | None:
    first = prog[i]
    if i + 1 >= len(prog):
        return "lddw needs two slots but is the last instruction"
    if first.src not in LDDW_SOURCES:
        choices = ", ".join(f"{k} ({v})" for k, v in LDDW_SOURCES.items())
        return f"lddw source {first.src} invalid; valid: {choices}"
    problem = _nonzero(first, "off")
    if problem:
        return problem
    second = prog[i + 1]
    if second.opcode or second.dst or second.src or second.off:
        return "the second slot of lddw must have opcode, registers and offset 0"
    if first.src == LDDW_FUNC and second.imm:
        return "the second slot of a function-address lddw must have imm 0"
    return None
