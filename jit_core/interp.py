"""The reference interpreter: RFC 9669 semantics, exactly, in Python.

Memory is the same flat picture an executable from jit_core.elf sees: the data segment at
elf.DATA_ADDR (results buffer, then ``mem`` at elf.MEM_ADDR, then the blobs) and a stack of
MAX_FRAMES frames of 512 bytes, each program-local call getting its own frame (r10 = its top).
main starts with r1 = address of ``mem``, r2 = its length, like elf's ``_start``; when it exits,
r0 is stored in the first 8 bytes of the results buffer, as ``_start`` does.

Every access is bounds-checked (InterpError naming the address and the regions). A function
address (``lddw rX, func label``) is FUNC_ADDR_BASE + 8 * slot, not dereferenceable; callx takes
only such an address. Intrinsics: fences, icache_sync, context_sync and spin_hint do nothing here
(one thread, no caches); cycle_counter returns the number of instructions executed so far
(monotonic); syscall, syscall6 and clone_thread raise InterpError (they need a real process).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from . import elf, isa
from .errors import JitError
from .intrinsics import Helper
from .isa import Insn
from .verify import CALLX_OPCODE, LDDW_FUNC, verify

__all__ = [
    "DEFAULT_MAX_STEPS",
    "FUNC_ADDR_BASE",
    "M32",
    "M64",
    "MAX_FRAMES",
    "STACK_BOTTOM",
    "STACK_TOP",
    "InterpError",
    "Machine",
    "RunResult",
    "alu",
    "condition",
    "run",
]

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
MAX_FRAMES = 8
STACK_TOP = 0x7FFF_0000_0000
STACK_BOTTOM = STACK_TOP - MAX_FRAMES * isa.STACK_SIZE
FUNC_ADDR_BASE = 0x7E00_0000_0000
DEFAULT_MAX_STEPS = 2_000_000
_NOP_HELPERS = frozenset({Helper.FENCE_FULL, Helper.FENCE_ACQUIRE, Helper.FENCE_RELEASE,
                          Helper.FENCE_STORE_STORE, Helper.FENCE_LOAD_LOAD, Helper.ICACHE_SYNC,
                          Helper.CONTEXT_SYNC, Helper.SPIN_HINT})


class InterpError(JitError):
    """A run-time fault of the interpreted program (bad address, call depth, step budget, ...)."""


@dataclass(frozen=True)
class RunResult:
    """``r0`` as unsigned 64-bit; ``results`` the first results_size bytes of the results buffer
    (what the executable writes to stdout); ``steps`` the instructions executed."""

    r0: int
    results: bytes
    steps: int


def _sx(value: int, bits: int) -> int:
    """Sign-extend the low ``bits`` of value to 64 bits, returned unsigned."""
    value &= (1 << bits) - 1
    return (value - (1 << bits) if value >> (bits - 1) else value) & M64


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _bswap(value: int, bits: int) -> int:
    return int.from_bytes((value & ((1 << bits) - 1)).to_bytes(bits // 8, "little"), "big")


def _div_trunc(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def alu(opcode: int, off: int, imm: int, a: int, b: int) -> int:
    """One ALU/ALU64 operation on unsigned 64-bit ``a`` (dst) and ``b`` (source operand, already
    sign-extended to 64 bits when an immediate). Returns the new dst, unsigned 64-bit."""
    code, is64 = opcode & 0xF0, (opcode & 0x07) == isa.ALU64
    if code == isa.END:  # the width is in imm, whatever the class
        if is64 or opcode & isa.SRC_X:  # bswap, or be on this little-endian machine
            return _bswap(a, imm)
        return a & ((1 << imm) - 1)
    bits, mask = (64, M64) if is64 else (32, M32)
    a &= mask
    b &= mask
    if code == isa.ADD:
        r = a + b
    elif code == isa.SUB:
        r = a - b
    elif code == isa.MUL:
        r = a * b
    elif code == isa.DIV:
        r = 0 if b == 0 else (_div_trunc(_signed(a, bits), _signed(b, bits)) if off else a // b)
    elif code == isa.MOD:
        if b == 0:
            r = a
        elif off:
            sa, sb = _signed(a, bits), _signed(b, bits)
            r = sa - sb * _div_trunc(sa, sb)
        else:
            r = a % b
    elif code == isa.OR:
        r = a | b
    elif code == isa.AND:
        r = a & b
    elif code == isa.XOR:
        r = a ^ b
    elif code == isa.LSH:
        r = a << (b & (bits - 1))
    elif code == isa.RSH:
        r = a >> (b & (bits - 1))
    elif code == isa.ARSH:
        r = _signed(a, bits) >> (b & (bits - 1))
    elif code == isa.NEG:
        r = -a
    elif code == isa.MOV:
        r = _sx(b, off) if off and opcode & isa.SRC_X else b
    else:
        raise InterpError(f"unknown ALU opcode {opcode:#04x}")
    return r & mask


def condition(opcode: int, a: int, b: int) -> bool:
    """Whether conditional jump ``opcode`` is taken for unsigned 64-bit ``a`` and ``b``."""
    code = opcode & 0xF0
    if (opcode & 0x07) == isa.JMP32:
        a, b, bits = a & M32, b & M32, 32
    else:
        a, b, bits = a & M64, b & M64, 64
    if code in (isa.JSGT, isa.JSGE, isa.JSLT, isa.JSLE):
        a, b = _signed(a, bits), _signed(b, bits)
    if code == isa.JEQ:
        return a == b
    if code == isa.JNE:
        return a != b
    if code == isa.JSET:
        return a & b != 0
    if code in (isa.JGT, isa.JSGT):
        return a > b
    if code in (isa.JGE, isa.JSGE):
        return a >= b
    if code in (isa.JLT, isa.JSLT):
        return a < b
    return a <= b  # JLE, JSLE


class Machine:
    """Registers and memory of one run; ``run`` executes a verified program."""

    def __init__(self, mem: bytes = b"", blobs: Mapping[str, bytes] | None = None, results_size: int = 8):
        self.layout = elf.data_layout(mem, blobs, results_size)
        data = bytearray(self.layout.end - elf.DATA_ADDR)
        data[elf.MEM_ADDR - elf.DATA_ADDR:elf.MEM_ADDR - elf.DATA_ADDR + len(mem)] = mem
        for name, blob in (blobs or {}).items():
            start = self.layout.blobs[name] - elf.DATA_ADDR
            data[start:start + len(blob)] = blob
        self.data = data
        self.stack = bytearray(MAX_FRAMES * isa.STACK_SIZE)

    def _locate(self, addr: int, size: int) -> tuple[bytearray, int]:
        off = addr - elf.DATA_ADDR
        if off >= 0 and off + size <= len(self.data):
            return self.data, off
        off = addr - STACK_BOTTOM
        if off >= 0 and off + size <= len(self.stack):
            return self.stack, off
        raise InterpError(
            f"{size}-byte access at {addr:#x} is outside memory; valid: data "
            f"{elf.DATA_ADDR:#x}..{elf.DATA_ADDR + len(self.data):#x}, "
            f"stack {STACK_BOTTOM:#x}..{STACK_TOP:#x}")

    def load(self, addr: int, size: int) -> int:
        """Unsigned little-endian load. Raises InterpError out of bounds."""
        buf, off = self._locate(addr, size)
        return int.from_bytes(buf[off:off + size], "little")

    def store(self, addr: int, size: int, value: int) -> None:
        """Little-endian store of the low ``size`` bytes. Raises InterpError out of bounds."""
        buf, off = self._locate(addr, size)
        buf[off:off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")

    def results(self) -> bytes:
        start = self.layout.results_addr - elf.DATA_ADDR
        return bytes(self.data[start:start + self.layout.results_size])


def run(prog: Sequence[Insn], mem: bytes = b"", *, blobs: Mapping[str, bytes] | None = None,
        results_size: int = 8, max_steps: int = DEFAULT_MAX_STEPS) -> RunResult:
    """Verify and interpret ``prog`` (see the module docstring for the machine it runs on).

    Raises JitError if the verifier refuses the program, InterpError on a run-time fault.
    """
    info = verify(prog)
    machine = Machine(mem, blobs, results_size)
    code = [(i.opcode, i.dst, i.src, i.off, i.imm) for i in prog]
    regs = [0] * isa.NUM_REGS
    regs[1], regs[2], regs[10] = machine.layout.mem_addr, len(mem), STACK_TOP
    frames: list[tuple[int, list[int]]] = []
    pc = steps = 0

    def enter(target: int, return_pc: int) -> int:
        if len(frames) + 1 >= MAX_FRAMES:
            raise InterpError(f"call depth exceeds {MAX_FRAMES} frames", return_pc - 1)
        frames.append((return_pc, regs[6:11]))
        regs[10] -= isa.STACK_SIZE
        return target

    while True:
        steps += 1
        if steps > max_steps:
            raise InterpError(f"step budget of {max_steps} instructions exhausted (endless loop?)", pc)
        op, dst, src, off, imm = code[pc]
        cls = op & 0x07
        pc += 1
        if cls == isa.ALU or cls == isa.ALU64:
            b = regs[src] if op & isa.SRC_X else imm & M64
            regs[dst] = alu(op, off, imm, regs[dst], b)
        elif cls == isa.JMP or cls == isa.JMP32:
            jop = op & 0xF0
            if jop == isa.JA:
                pc += off if cls == isa.JMP else imm
            elif op == isa.EXIT_OPCODE:
                if not frames:
                    machine.store(machine.layout.results_addr, 8, regs[0])
                    return RunResult(regs[0], machine.results(), steps)
                pc, saved = frames.pop()
                regs[6:11] = saved
            elif op == CALLX_OPCODE:
                slot, rem = divmod(regs[dst] - FUNC_ADDR_BASE, isa.INSN_SIZE)
                if rem or slot not in info.functions:
                    raise InterpError(f"callx to {regs[dst]:#x}, which is no function address", pc - 1)
                pc = enter(slot, pc)
            elif jop == isa.CALL:
                if src == isa.CALL_LOCAL:
                    pc = enter(pc + imm, pc)
                else:
                    regs[0] = _helper(imm, regs[0], steps, pc - 1)
            else:
                b = regs[src] if op & isa.SRC_X else imm & M64
                if condition(op, regs[dst], b):
                    pc += off
        elif op == isa.LDDW_OPCODE:
            if src == LDDW_FUNC:
                regs[dst] = FUNC_ADDR_BASE + isa.INSN_SIZE * (pc + imm)
            else:
                regs[dst] = (imm & M32) | ((code[pc][4] & M32) << 32)
            pc += 1
        else:
            _memory(machine, regs, op, dst, src, off, imm, pc - 1)


def _helper(helper_id: int, r0: int, steps: int, index: int) -> int:
    if helper_id in _NOP_HELPERS:
        return r0
    if helper_id == Helper.CYCLE_COUNTER:
        return steps
    raise InterpError(f"helper {Helper(helper_id).name.lower()} is not supported in the interpreter "
                      "(it needs a real process); run the program natively", index)


def _memory(machine: Machine, regs: list[int], op: int, dst: int, src: int, off: int, imm: int,
            index: int) -> None:
    cls, mode = op & 0x07, op & 0xE0
    size = isa.SIZE_BYTES[op & 0x18]
    try:
        if cls == isa.LDX:
            value = machine.load((regs[src] + off) & M64, size)
            regs[dst] = _sx(value, 8 * size) if mode == isa.MODE_MEMSX else value
        elif cls == isa.ST:
            machine.store((regs[dst] + off) & M64, size, imm)
        elif mode == isa.MODE_MEM:
            machine.store((regs[dst] + off) & M64, size, regs[src])
        elif imm == isa.ATOMIC_LOAD_ACQ:
            regs[dst] = machine.load((regs[src] + off) & M64, size)
        else:
            _atomic(machine, regs, (regs[dst] + off) & M64, size, src, imm)
    except InterpError as exc:
        raise InterpError(str(exc), index) from None


def _atomic(machine: Machine, regs: list[int], addr: int, size: int, src: int, op: int) -> None:
    mask = (1 << (8 * size)) - 1
    if op == isa.ATOMIC_STORE_REL:
        machine.store(addr, size, regs[src])
        return
    old = machine.load(addr, size)
    if op == isa.ATOMIC_CMPXCHG:
        if (regs[0] & mask) == old:
            machine.store(addr, size, regs[src])
        regs[0] = old
        return
    if op == isa.ATOMIC_XCHG:
        machine.store(addr, size, regs[src])
        regs[src] = old
        return
    base = op & ~isa.ATOMIC_FETCH
    value = regs[src]
    new = {isa.ATOMIC_ADD: old + value, isa.ATOMIC_OR: old | value,
           isa.ATOMIC_AND: old & value, isa.ATOMIC_XOR: old ^ value}[base]
    machine.store(addr, size, new)
    if op & isa.ATOMIC_FETCH:
        regs[src] = old
