"""Random valid eBPF programs for differential testing (hypothesis strategies).

A generated program is fully deterministic on every backend: it first gives r0-r9 known values
and zeroes its stack window (the native stack holds garbage), then runs a body of ALU and ALU64
operations (register and immediate forms, with edge-case immediates so that division by zero,
INT_MIN / -1 and oversized shift counts come up), sign-extending moves, byte swaps, lddw, stack
loads and stores of every size, load-acquire and store-release, atomics on the stack, forward
conditional jumps and calls to a program-local function, and finally
copies r0-r9 and the stack window into the results buffer (see jit_core.elf). Comparing
``interp.run(...).results`` with the executable's stdout therefore compares the whole machine
state, not only r0.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from . import elf, isa
from .isa import Insn

__all__ = [
    "IMM32",
    "IMM64",
    "RESULTS_SIZE",
    "SAVED_REGS",
    "STACK_WINDOW",
    "epilogue",
    "lddw",
    "programs",
    "prologue",
    "sample",
]

STACK_WINDOW = 64  # bytes below r10 the body may touch
SAVED_REGS = 10  # r0..r9
RESULTS_SIZE = 8 * (SAVED_REGS + STACK_WINDOW // 8)  # r0..r9, then the stack window
_WORK_REGS = st.integers(0, 9)
_EDGE_IMMS = [0, 1, -1, 2, 31, 32, 63, 64, 0x7FFFFFFF, -0x80000000, 0xFF, 0xFFFF, -0x8000]
IMM32 = st.one_of(st.sampled_from(_EDGE_IMMS), st.integers(-0x80000000, 0x7FFFFFFF))
IMM64 = st.one_of(st.sampled_from([0, 1, (1 << 64) - 1, 1 << 63, (1 << 63) - 1, 0xFFFFFFFF, 1 << 32]),
                  st.integers(0, (1 << 64) - 1))
_ALU_CODES = [isa.ADD, isa.SUB, isa.MUL, isa.DIV, isa.OR, isa.AND, isa.LSH, isa.RSH, isa.MOD,
              isa.XOR, isa.MOV, isa.ARSH]
_END_OPCODES = [isa.ALU | isa.END, isa.ALU | isa.END | isa.SRC_X, isa.ALU64 | isa.END]  # le, be, bswap
_ATOMICS = sorted(isa.ATOMIC_OPS - {isa.ATOMIC_LOAD_ACQ, isa.ATOMIC_STORE_REL})


def lddw(dst: int, value: int, src: int = 0) -> list[Insn]:
    """The two slots loading 64-bit ``value`` (any sign) into ``dst``."""
    value &= (1 << 64) - 1
    return [Insn(isa.LDDW_OPCODE, dst, src, 0, isa.s32(value)), Insn(0, imm=isa.s32(value >> 32))]


@st.composite
def _alu(draw: st.DrawFn) -> list[Insn]:
    cls = draw(st.sampled_from([isa.ALU, isa.ALU64]))
    dst = draw(_WORK_REGS)
    kind = draw(st.sampled_from(["op", "op", "op", "neg", "movsx", "end"]))
    if kind == "neg":
        return [Insn(cls | isa.NEG, dst)]
    if kind == "movsx":
        widths = [8, 16] if cls == isa.ALU else [8, 16, 32]
        return [Insn(cls | isa.MOV | isa.SRC_X, dst, draw(_WORK_REGS), draw(st.sampled_from(widths)))]
    if kind == "end":
        opcode = draw(st.sampled_from(_END_OPCODES))
        return [Insn(opcode, dst, imm=draw(st.sampled_from([16, 32, 64])))]
    code = draw(st.sampled_from(_ALU_CODES))
    off = draw(st.sampled_from([0, 1])) if code in (isa.DIV, isa.MOD) else 0
    if draw(st.booleans()):
        return [Insn(cls | code | isa.SRC_X, dst, draw(_WORK_REGS), off)]
    return [Insn(cls | code, dst, off=off, imm=draw(IMM32))]


def _stack_offset(draw: st.DrawFn, size: int) -> int:
    return -size * draw(st.integers(1, STACK_WINDOW // size))


@st.composite
def _memory(draw: st.DrawFn) -> list[Insn]:
    size_code = draw(st.sampled_from(list(isa.SIZE_BYTES)))
    size = isa.SIZE_BYTES[size_code]
    off = _stack_offset(draw, size)
    kind = draw(st.sampled_from(["ldx", "ldxs", "st", "stx", "acquire", "release"]))
    if kind == "acquire":
        return [Insn(isa.STX | isa.MODE_ATOMIC | size_code, draw(_WORK_REGS), isa.FRAME_REG, off,
                     isa.ATOMIC_LOAD_ACQ)]
    if kind == "release":
        return [Insn(isa.STX | isa.MODE_ATOMIC | size_code, isa.FRAME_REG, draw(_WORK_REGS), off,
                     isa.ATOMIC_STORE_REL)]
    if kind == "ldxs" and size != 8:
        return [Insn(isa.LDX | isa.MODE_MEMSX | size_code, draw(_WORK_REGS), isa.FRAME_REG, off)]
    if kind in ("ldx", "ldxs"):
        return [Insn(isa.LDX | isa.MODE_MEM | size_code, draw(_WORK_REGS), isa.FRAME_REG, off)]
    if kind == "st":
        return [Insn(isa.ST | isa.MODE_MEM | size_code, isa.FRAME_REG, off=off, imm=draw(IMM32))]
    return [Insn(isa.STX | isa.MODE_MEM | size_code, isa.FRAME_REG, draw(_WORK_REGS), off)]


@st.composite
def _atomic(draw: st.DrawFn) -> list[Insn]:
    size_code = draw(st.sampled_from([isa.SIZE_W, isa.SIZE_DW]))
    off = _stack_offset(draw, isa.SIZE_BYTES[size_code])
    return [Insn(isa.STX | isa.MODE_ATOMIC | size_code, isa.FRAME_REG, draw(_WORK_REGS), off,
                 draw(st.sampled_from(_ATOMICS)))]


_JUMP = Insn(isa.JMP | isa.JA)  # placeholder items, resolved by programs()
_CALL = Insn(isa.JMP | isa.CALL, src=isa.CALL_LOCAL)
_STRAIGHT = st.one_of(_alu(), _alu(), _memory(), _atomic(), st.builds(lddw, _WORK_REGS, IMM64))
_ITEMS = st.one_of(_STRAIGHT, st.just([_JUMP]), st.just([_CALL]))


@st.composite
def _jump(draw: st.DrawFn, skip: int) -> Insn:
    cls = draw(st.sampled_from([isa.JMP, isa.JMP32]))
    code = draw(st.sampled_from(sorted(isa.COND_JUMPS)))
    if draw(st.booleans()):
        return Insn(cls | code | isa.SRC_X, draw(_WORK_REGS), draw(_WORK_REGS), skip)
    return Insn(cls | code, draw(_WORK_REGS), off=skip, imm=draw(IMM32))


def _zero_window() -> list[Insn]:
    return [Insn(isa.ST | isa.MODE_MEM | isa.SIZE_DW, isa.FRAME_REG, off=-off)
            for off in range(8, STACK_WINDOW + 1, 8)]


def prologue(values: list[int]) -> list[Insn]:
    """Give r0..r9 the ``values`` and zero the stack window."""
    return [*(slot for reg, value in enumerate(values) for slot in lddw(reg, value)), *_zero_window()]


def epilogue() -> list[Insn]:
    """Copy r1..r9 and the stack window to the results buffer after r0 (which _start stores)."""
    spill = [Insn(isa.STX | isa.MODE_MEM | isa.SIZE_DW, isa.FRAME_REG, reg, -STACK_WINDOW - 8 * reg)
             for reg in range(1, SAVED_REGS)]
    code = [*spill, *lddw(1, elf.RESULTS_ADDR)]
    sources = [-STACK_WINDOW - 8 * reg for reg in range(1, SAVED_REGS)] + \
        [-off for off in range(8, STACK_WINDOW + 1, 8)]
    for slot, source in enumerate(sources, start=1):
        code += [Insn(isa.LDX | isa.MODE_MEM | isa.SIZE_DW, 2, isa.FRAME_REG, source),
                 Insn(isa.STX | isa.MODE_MEM | isa.SIZE_DW, 1, 2, 8 * slot)]
    return [*code, Insn(isa.EXIT_OPCODE)]


# After a call r1-r5 are unspecified (natively the callee's scratch registers), so calls reset them.
_AFTER_CALL = [Insn(isa.ALU64 | isa.MOV, reg) for reg in range(1, 6)]


@st.composite
def programs(draw: st.DrawFn, max_items: int = 30) -> list[Insn]:
    """A random valid program whose results buffer (RESULTS_SIZE bytes) holds its final state.

    Calls go to one program-local function after main: it zeroes its own stack window, runs
    straight-line items (which may overwrite r6-r9: the call must preserve them) and returns r0.
    """
    values = draw(st.lists(IMM64, min_size=SAVED_REGS, max_size=SAVED_REGS))
    drawn = draw(st.lists(_ITEMS, max_size=max_items))
    items = [[_CALL, *_AFTER_CALL] if item == [_CALL] else item for item in drawn]
    main = prologue(values)
    calls = []
    for pos, item in enumerate(items):
        if item == [_JUMP]:
            skip_items = draw(st.integers(0, len(items) - pos - 1))
            skip = sum(len(later) for later in items[pos + 1:pos + 1 + skip_items])
            main.append(draw(_jump(skip)))
            continue
        if item[0] == _CALL:
            calls.append(len(main))
        main.extend(item)
    main += epilogue()
    if not calls:
        return main
    callee = [*_zero_window(), *(i for item in draw(st.lists(_STRAIGHT, max_size=8)) for i in item)]
    for slot in calls:
        main[slot] = Insn(isa.JMP | isa.CALL, src=isa.CALL_LOCAL, imm=len(main) - slot - 1)
    return [*main, *callee, Insn(isa.EXIT_OPCODE)]


def sample(count: int, max_items: int = 30) -> list[list[Insn]]:
    """``count`` programs drawn deterministically (the same list on every run), for batches that
    are not driven by a hypothesis test: benchmarks and guest runs."""
    drawn: list[list[Insn]] = []

    @settings(max_examples=count, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(programs(max_items=max_items))
    def collect(prog: list[Insn]) -> None:
        drawn.append(prog)

    collect()
    return drawn
