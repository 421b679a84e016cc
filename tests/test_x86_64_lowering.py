"""x86_64 lowering: compiled programs run natively on this host (mmap RWX + ctypes) and, where a
clean process is needed, as executables from jit_core.elf.

The ALU and jump tests compare with the reference interpreter's own operation functions
(jit_core.interp.alu / condition) for every dst/src register pair, so the x86 register
juggling (count in cl, dividend in rdx:rax, r0 = rax, r3 = rdx, r4 = rcx) is covered, and check
that no other eBPF register changed. A hand-encoded wrapper checks the SysV callee-saved
registers around each call.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import capstone
import pytest

from jit_core import conformance, isa
from jit_core.asm import assemble
from jit_core.backend import Compiled, get_backend
from jit_core.elf import MEM_ADDR, TEXT_ADDR, build_executable
from jit_core.errors import JitError
from jit_core.interp import alu, condition
from jit_core.interp import run as interp_run
from jit_core.intrinsics import ICACHE_MUTATIONS as MUTATIONS
from jit_core.intrinsics import Helper
from jit_core.isa import Insn
from jit_core.verify import verify
from jit_core.x86_64 import BACKEND
from jit_core.x86_64 import encoder as enc
from jit_core.x86_64.encoder import R9, R10, R11, R12, R13, R14, R15, RAX, RBP, RBX, RCX, RDI, RDX, RSI, RSP
from jit_core.x86_64.layout import CodeBuffer
from jit_core.x86_64.lower import SA_RESTORER

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="runs x86_64 code natively")

M64 = (1 << 64) - 1
SUITE = Path(__file__).resolve().parents[2] / "shared" / "bpf_conformance" / "tests"
CALLEE_SAVED = (RBX, RBP, R12, R13, R14, R15)
MAGIC = tuple(0x1111_2222_3333_0000 + 0x0101 * i for i in range(len(CALLEE_SAVED)))
CLOBBERED = 0xDEAD_C0DE_DEAD_C0DE


def _checking_wrapper() -> bytes:
    """native(fn, a1..a5): loads MAGIC into rbx, rbp, r12-r15, calls fn(a1..a5) with a 16-byte
    aligned stack, returns its rax, or CLOBBERED if a callee-saved register or rsp changed."""
    cb = CodeBuffer()
    out = cb.buf
    out += b"".join(enc.push(r) for r in CALLEE_SAVED) + enc.alu_ri("sub", RSP, 8, 8)
    out += enc.store(RSP, 0, RSP, 8) + enc.alu_rr("mov", R11, RDI, 8)
    for dst, src in ((RDI, RSI), (RSI, RDX), (RDX, RCX), (RCX, enc.R8), (enc.R8, R9)):
        out += enc.alu_rr("mov", dst, src, 8)
    out += b"".join(enc.movabs(r, m) for r, m in zip(CALLEE_SAVED, MAGIC, strict=True))
    out += enc.call_reg(R11) + enc.alu_rr("xor", R10, R10, 4)
    for r, m in zip(CALLEE_SAVED, MAGIC, strict=True):
        out += enc.movabs(R11, m) + enc.alu_rr("xor", R11, r, 8) + enc.alu_rr("or", R10, R11, 8)
    out += enc.load(R11, RSP, 0, 8) + enc.alu_rr("xor", R11, RSP, 8) + enc.alu_rr("or", R10, R11, 8)
    ok = cb.new_label()
    out += enc.alu_rr("test", R10, R10, 8)
    cb.jcc(enc.Cond.E, ok)
    out += enc.movabs(RAX, CLOBBERED)
    cb.bind(ok)
    out += enc.alu_ri("add", RSP, 8, 8) + b"".join(enc.pop(r) for r in reversed(CALLEE_SAVED))
    out += enc.FIXED["ret"]
    return cb.finish()[0]


class Native:
    """Machine code in an RWX mapping, called through the checking wrapper."""

    _FN = ctypes.CFUNCTYPE(ctypes.c_uint64, *[ctypes.c_uint64] * 6)

    def __init__(self, code: bytes):
        wrapper = _checking_wrapper()
        self.code_offset = (len(wrapper) + 15) & ~15
        self.map = mmap.mmap(-1, self.code_offset + len(code) + 1,
                             prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        self.map.write(wrapper)
        self.map.seek(self.code_offset)
        self.map.write(code)
        self.base = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        self.wrapper = self._FN(self.base)

    def __call__(self, *args: int, offset: int = 0) -> int:
        padded = [*args, *[0] * (5 - len(args))]
        r0 = self.wrapper(self.base + self.code_offset + offset, *padded)
        assert r0 != CLOBBERED, "a callee-saved register or rsp was not restored"
        return int(r0)


def native(prog: Sequence[Insn], mutation: str = "none") -> Native:
    verify(prog)
    return Native(BACKEND.compile(prog, mutation=mutation).code)


# --- register-state harness: load r0..r9 from a buffer, run a body, dump r0..r9 ----------------

def state_program(body: Sequence[Insn], out_addr: int) -> list[Insn]:
    """r1 points at 10 u64 inputs; r0, r2..r9 and finally r1 are loaded from it, ``body`` runs,
    then all ten registers go to the stack and from there to out_addr."""
    prog = [Insn(isa.LDX | isa.MODE_MEM | isa.SIZE_DW, r, 1, 8 * r) for r in (0, *range(2, 10), 1)]
    prog += body
    prog += [Insn(isa.STX | isa.MODE_MEM | isa.SIZE_DW, 10, r, -8 * (r + 1)) for r in range(10)]
    prog += [Insn(isa.LDDW_OPCODE, 1, imm=isa.s32(out_addr)), Insn(0, imm=isa.s32(out_addr >> 32))]
    for r in range(10):
        prog += [Insn(isa.LDX | isa.MODE_MEM | isa.SIZE_DW, 0, 10, -8 * (r + 1)),
                 Insn(isa.STX | isa.MODE_MEM | isa.SIZE_DW, 1, 0, 8 * r)]
    return [*prog, Insn(isa.EXIT_OPCODE)]


class StateRunner:
    """Runs bodies under state_program and returns the ten registers afterwards."""

    def __init__(self) -> None:
        self.inputs = (ctypes.c_uint64 * 10)()
        self.outputs = (ctypes.c_uint64 * 10)()

    def compile(self, body: Sequence[Insn], mutation: str = "none") -> Callable[[Sequence[int]], list[int]]:
        code = native(state_program(body, ctypes.addressof(self.outputs)), mutation)

        def run(regs: Sequence[int]) -> list[int]:
            for i, v in enumerate(regs):
                self.inputs[i] = v & M64
            code(ctypes.addressof(self.inputs))
            return list(self.outputs)
        return run


REG_VALUES = [0x0123_4567_89AB_CDEF * (i + 3) & M64 for i in range(10)]
EDGE_VALUES = [0, 1, 2, 3, 7, 31, 32, 33, 63, 64, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000,
               0x7FFF_FFFF_FFFF_FFFF, 1 << 63, M64, M64 - 1, 0xFFFF_FFFF_8000_0000, 0x1234_5678_9ABC_DEF0,
               (-7) & M64, 0xFFFF_FFFF_FFFF_FFF9]
PAIRS = [(a, b) for a in EDGE_VALUES for b in EDGE_VALUES[::3]] + [(a, a) for a in EDGE_VALUES]


def _alu_ops() -> list[tuple[int, int]]:
    """(class, operation) of every ALU operation with a source operand (neg and end have none)."""
    return [(cls, code) for cls in (isa.ALU, isa.ALU64) for code in isa.ALU_OPS
            if code not in (isa.NEG, isa.END)]  # fmt: skip


def _register_ops() -> list[tuple[int, int]]:
    """(opcode, off) of every register-source ALU operation."""
    ops = []
    for cls, code in _alu_ops():
        offs = [0]
        if code in (isa.DIV, isa.MOD):
            offs = [0, 1]
        elif code == isa.MOV:
            offs = [0, 8, 16] + ([32] if cls == isa.ALU64 else [])
        ops += [(cls | code | isa.SRC_X, off) for off in offs]
    return ops


TRICKY = [isa.DIV, isa.MOD, isa.LSH, isa.RSH, isa.ARSH]


@pytest.mark.parametrize("opcode,off", _register_ops(), ids=lambda v: hex(v) if v > 32 else str(v))
def test_register_alu_every_register_pair(opcode: int, off: int) -> None:
    runner = StateRunner()
    tricky = opcode & 0xF0 in TRICKY
    regs = range(10) if tricky else (0, 3, 4, 6)
    for dst in regs:
        for src in regs:
            run = runner.compile([Insn(opcode, dst, src, off)])
            for a, b in PAIRS if tricky or (dst, src) == (0, 4) else PAIRS[::7]:
                before = list(REG_VALUES)
                before[src] = b
                before[dst] = a
                expected = list(before)
                expected[dst] = alu(opcode, off, 0, before[dst], before[src])
                assert run(before) == expected, (hex(opcode), off, dst, src, hex(a), hex(b))


IMMEDIATES = [0, 1, -1, 2, 7, 31, 32, 63, 64, 0x7F, 0x80, -0x80, -0x81, 0x7FFF_FFFF, -0x8000_0000,
              0x1234_5678]


def _immediate_ops() -> list[tuple[int, int]]:
    return [(cls | code, off) for cls, code in _alu_ops()
            for off in ((0, 1) if code in (isa.DIV, isa.MOD) else (0,))]  # fmt: skip


@pytest.mark.parametrize("opcode,off", _immediate_ops(), ids=lambda v: hex(v) if v > 32 else str(v))
def test_immediate_alu(opcode: int, off: int) -> None:
    runner = StateRunner()
    for dst in (0, 3, 4):
        for k in IMMEDIATES:
            run = runner.compile([Insn(opcode, dst, 0, off, k)])
            for a in EDGE_VALUES:
                before = list(REG_VALUES)
                before[dst] = a
                expected = list(before)
                expected[dst] = alu(opcode, off, k, a, k & M64)
                assert run(before) == expected, (hex(opcode), off, dst, k, hex(a))


def test_neg_and_byte_swaps() -> None:
    runner = StateRunner()
    forms = [(cls | isa.NEG, 0) for cls in (isa.ALU, isa.ALU64)]
    forms += [(op, width) for op in (isa.ALU | isa.END, isa.ALU | isa.END | isa.SRC_X, isa.ALU64 | isa.END)
              for width in (16, 32, 64)]
    for opcode, width in forms:
        for dst in (0, 1, 4, 9):
            run = runner.compile([Insn(opcode, dst, 0, 0, width)])
            for a in EDGE_VALUES:
                before = list(REG_VALUES)
                before[dst] = a
                expected = list(before)
                expected[dst] = alu(opcode, 0, width, a, 0)
                assert run(before) == expected, (hex(opcode), width, dst, hex(a))


def _jump_ops() -> list[int]:
    return [cls | code | src for cls in (isa.JMP, isa.JMP32) for code in sorted(isa.COND_JUMPS)
            for src in (isa.SRC_K, isa.SRC_X)]


@pytest.mark.parametrize("opcode", _jump_ops(), ids=hex)
def test_conditional_jumps(opcode: int) -> None:
    runner = StateRunner()
    pairs = [(0, 1), (3, 4), (5, 5)] if opcode & isa.SRC_X else [(0, 0), (4, 0)]
    immediates = [0] if opcode & isa.SRC_X else [0, 1, -1, 0x7F, -0x80, 0x8000_0000 - 1, -0x8000_0000]
    for dst, src in pairs:
        for k in immediates:
            # r9 = 1 if the condition holds, else 0 (r9 is never an operand here).
            body = [Insn(isa.ALU64 | isa.MOV, 9, imm=0), Insn(opcode, dst, src, 1, k),
                    Insn(isa.JMP | isa.JA, off=1), Insn(isa.ALU64 | isa.MOV, 9, imm=1)]
            run = runner.compile(body)
            for a, b in PAIRS[::2]:
                before = list(REG_VALUES)
                before[src] = b
                before[dst] = a
                operand = before[src] if opcode & isa.SRC_X else k & M64
                expected = list(before)
                expected[9] = int(condition(opcode, before[dst], operand))
                assert run(before) == expected, (hex(opcode), dst, src, k, hex(a), hex(b))


# --- memory and atomics --------------------------------------------------------------------

class MemoryProgram:
    """Runs a program with r1 = address of a 4-u64 buffer (``addr``) and r2 = an argument."""

    def __init__(self, text: str):
        self.code = native(assemble(text))
        self.buf = (ctypes.c_uint64 * 4)()
        self.addr = ctypes.addressof(self.buf)

    def __call__(self, words: Sequence[int], arg: int) -> tuple[int, list[int]]:
        """(r0, buffer afterwards) with the buffer first set to ``words``."""
        for i, v in enumerate(words):
            self.buf[i] = v
        r0 = self.code(self.addr, arg)
        return r0, list(self.buf)


ATOMIC_OPS = {"add": lambda a, b: a + b, "or": lambda a, b: a | b, "and": lambda a, b: a & b,
              "xor": lambda a, b: a ^ b}
ATOMIC_VALUES = [(0xF0F0_F0F0_0F0F_0F0F, 0x0FF0_0FF0_FF00_FF00), (M64, 1), (0x8000_0000, 0x8000_0000)]


def _operands(dst: int, src: int) -> str:
    """Point dst at the buffer and load the argument into src (if src is dst, the operand is
    the buffer address itself). r8 carries the argument meanwhile, so dst or src may be r1/r2."""
    return f"mov %r{dst}, %r1" if dst == src else f"mov %r8, %r2\nmov %r{dst}, %r1\nmov %r{src}, %r8"


@pytest.mark.parametrize("name", list(ATOMIC_OPS))
@pytest.mark.parametrize("fetch", [False, True])
@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("dst,src", [(1, 2), (0, 2), (1, 0), (6, 3), (4, 4), (0, 0)])
def test_atomic_read_modify_write(name: str, fetch: bool, bits: int, dst: int, src: int) -> None:
    """[dst+8] op= src; with fetch, src gets the old value (zero-extended). r0 must keep its
    value unless it is src (or the base, dst); src and r0 come back through the buffer and r0."""
    mask = (1 << bits) - 1
    suffix = "" if bits == 64 else "32"
    run = MemoryProgram(f"""
        mov %r9, %r1
        mov %r0, 0x5a5a
        {_operands(dst, src)}
        lock {'fetch ' if fetch else ''}{name}{suffix} [%r{dst}+8], %r{src}
        stxdw [%r9+16], %r{src}
        stxdw [%r9+24], %r0
        exit
    """)
    for initial, arg in ATOMIC_VALUES:
        operand = run.addr if dst == src else arg
        r0, buf = run([0, initial, 0, 0], arg)
        assert buf[1] == (initial & ~mask) | (ATOMIC_OPS[name](initial & mask, operand & mask) & mask)
        want_src = initial & mask if fetch else operand
        want_r0 = want_src if src == 0 else run.addr if dst == 0 else 0x5A5A
        assert (buf[2], buf[3], r0) == (want_src, want_r0, want_r0), (name, fetch, bits, dst, src)


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("dst,src", [(1, 2), (0, 2), (1, 3), (6, 4), (2, 0)])
def test_xchg_and_cmpxchg(bits: int, dst: int, src: int) -> None:
    mask = (1 << bits) - 1
    suffix = "" if bits == 64 else "32"
    xchg = MemoryProgram(f"""
        mov %r9, %r1
        mov %r0, 77
        {_operands(dst, src)}
        lock xchg{suffix} [%r{dst}+8], %r{src}
        stxdw [%r9+16], %r{src}
        stxdw [%r9+24], %r0
        exit
    """)
    initial, arg = 0xAAAA_BBBB_CCCC_DDDD, 0x1111_2222_3333_4444
    r0, buf = xchg([0, initial, 0, 0], arg)
    assert buf[1] == (initial & ~mask) | (arg & mask) and buf[2] == initial & mask
    assert buf[3] == r0 == (initial & mask if src == 0 else xchg.addr if dst == 0 else 77)
    # cmpxchg compares r0 (loaded from buf[0]) with [dst+8]; if equal it stores src; either way
    # r0 becomes the old value, zero-extended. dst/src may not be r0 here (r0 is the comparand).
    if 0 in (dst, src):
        return
    cmpxchg = MemoryProgram(f"""
        mov %r9, %r1
        ldxdw %r0, [%r1+0]
        {_operands(dst, src)}
        lock cmpxchg{suffix} [%r{dst}+8], %r{src}
        stxdw [%r9+16], %r0
        exit
    """)
    for r0_in in (initial, initial ^ 1, initial ^ (1 << 40)):
        r0, buf = cmpxchg([r0_in, initial, 0, 0], arg)
        equal = (r0_in & mask) == (initial & mask)
        assert buf[1] == ((initial & ~mask) | (arg & mask) if equal else initial)
        assert r0 == buf[2] == initial & mask


@pytest.mark.parametrize("size,suffix", [(1, "8"), (2, "16"), (4, "32"), (8, "64")])
def test_load_acquire_store_release(size: int, suffix: str) -> None:
    run = MemoryProgram(f"""
        load_acquire{suffix} %r0, [%r1+8]
        store_release{suffix} [%r1+16], %r2
        exit
    """)
    r0, buf = run([0x8877_6655_4433_2211] * 4, 0xFFEE_DDCC_BBAA_9988)
    mask = (1 << (8 * size)) - 1
    assert r0 == 0x8877_6655_4433_2211 & mask
    assert buf[2] == (0x8877_6655_4433_2211 & ~mask) | (0xFFEE_DDCC_BBAA_9988 & mask)


def test_loads_stores_around_rbp_r13_bases() -> None:
    """r10 (rbp) and r7 (r13) as bases need an explicit disp8 of 0 on x86."""
    code = native(assemble("""
        mov %r7, %r1
        stxdw [%r10-8], %r2
        ldxdw %r3, [%r10-8]
        stxdw [%r7+0], %r3
        ldxsb %r4, [%r7+0]
        stb [%r7+8], 0xff
        ldxsh %r5, [%r7+8]
        mov %r0, %r4
        add %r0, %r5
        exit
    """))
    buf = (ctypes.c_uint64 * 2)(0, 0)
    assert code(ctypes.addressof(buf), 0x1_0000_0080) == ((-0x80) + 0xFF) & M64
    assert buf[0] == 0x1_0000_0080


# --- calls, frames, function addresses ------------------------------------------------------

FACTORIAL = """
    call local fact
    exit
fact:
    stxdw [%r10-8], %r1
    mov %r6, 1000
    jgt %r1, 1, recurse
    mov %r0, 1
    exit
recurse:
    sub %r1, 1
    call local fact
    ldxdw %r1, [%r10-8]
    mul %r0, %r1
    exit
"""


def test_recursion_has_one_frame_per_call() -> None:
    code = native(assemble(FACTORIAL))
    assert [code(n) for n in (0, 1, 5, 10, 20)] == [1, 1, 120, 3628800, 2432902008176640000]


def test_callee_keeps_r6_to_r9_and_callx_reaches_function_address() -> None:
    prog = assemble("""
        mov %r6, 6
        mov %r7, 7
        mov %r8, 8
        mov %r9, 9
        lddw %r2, func clobber
        call %r2
        mov %r0, %r6
        add %r0, %r7
        add %r0, %r8
        add %r0, %r9
        exit
    clobber:
        mov %r6, 100
        mov %r7, 100
        mov %r8, 100
        mov %r9, 100
        exit
    """)
    compiled = BACKEND.compile(prog)
    assert sorted(compiled.functions) == [0, 12]  # lddw takes two slots
    assert Native(compiled.code)() == 30


def test_every_argument_register_arrives() -> None:
    code = native(assemble("""
        mov %r0, %r1
        lsh %r5, 4
        add %r0, %r5
        mul %r4, 1000
        add %r0, %r4
        sub %r0, %r3
        xor %r0, %r2
        exit
    """))
    assert code(1, 2, 3, 4, 5) == ((1 + (5 << 4) + 4000 - 3) ^ 2)


# --- branch relaxation ----------------------------------------------------------------------

def _jump_sizes(code: bytes) -> list[tuple[str, int]]:
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    return [(i.mnemonic, i.size) for i in md.disasm(code, 0) if i.mnemonic.startswith("j")]


@pytest.mark.parametrize("filler", [1, 10, 11, 12, 40, 5000])
def test_branches_relax_from_rel8_to_rel32(filler: int) -> None:
    """A forward jcc and a backward loop branch over ``filler`` add instructions (4 bytes each)."""
    body = "\n".join("add %r0, 1" for _ in range(filler))
    prog = assemble(f"""
        mov %r0, 0
        mov %r2, 3
    loop:
        jeq %r1, 0, skip
        {body}
    skip:
        sub %r2, 1
        jne %r2, 0, loop
        exit
    """)
    compiled = BACKEND.compile(prog)
    sizes = _jump_sizes(compiled.code)
    forward, backward = sizes[0][1], sizes[-1][1]
    span = 4 * filler
    assert forward == (2 if span <= 0x7F else 6)
    assert backward == (2 if span + 4 + 2 + 4 + 2 <= 0x80 else 6)
    code = Native(compiled.code)
    assert code(0) == 0 and code(1) == 3 * filler


def test_huge_program_relaxes_and_offsets_are_consistent() -> None:
    n = 30_000
    prog = [Insn(isa.ALU64 | isa.MOV, 0, imm=0), Insn(isa.JMP | isa.JEQ, 1, 0, n, 0)]
    prog += [Insn(isa.ALU64 | isa.ADD, 0, imm=1)] * n + [Insn(isa.EXIT_OPCODE)]
    verify(prog)
    compiled = BACKEND.compile(prog)
    assert compiled.insn_offsets == sorted(compiled.insn_offsets)
    assert len(compiled.insn_offsets) == len(prog)
    code = Native(compiled.code)
    assert code(0) == 0 and code(1) == n


def test_gotol_reaches_far_back() -> None:
    n = 3000
    prog = assemble("mov %r0, 0\nmov %r2, 0\nja +" + str(n) + "\n" + "add %r0, 1\n" * n
                    + f"add %r2, 1\njeq %r2, 1, +1\nexit\nja32 -{n + 4}\n")
    # The first pass skips the adds; the gotol then jumps back to the first add: r0 = n.
    assert native(prog)() == n == interp_run(prog).r0


def test_lddw_second_slot_shares_the_offset() -> None:
    prog = assemble("lddw %r0, 0x1122334455667788\nexit")
    compiled = BACKEND.compile(prog)
    assert compiled.insn_offsets[0] == compiled.insn_offsets[1]
    assert Native(compiled.code)() == 0x1122334455667788


# --- intrinsics and mutations ---------------------------------------------------------------

@pytest.mark.parametrize("helper", [Helper.FENCE_FULL, Helper.FENCE_ACQUIRE, Helper.FENCE_RELEASE,
                                    Helper.FENCE_STORE_STORE, Helper.FENCE_LOAD_LOAD,
                                    Helper.ICACHE_SYNC, Helper.CONTEXT_SYNC, Helper.SPIN_HINT])
def test_void_intrinsics_keep_every_register(helper: Helper) -> None:
    """Beyond the eBPF rule (r1-r5 may be clobbered), these keep all registers, as the
    interpreter does; CPUID's eax/ebx/ecx/edx are restored."""
    run = StateRunner().compile([Insn(isa.JMP | isa.CALL, imm=int(helper))])
    assert run(REG_VALUES) == REG_VALUES


def test_context_sync_is_cpuid_and_only_no_serialize_changes_code() -> None:
    prog = assemble("call icache_sync\ncall context_sync\nexit")
    codes = {m.value: BACKEND.compile(prog, mutation=m).code for m in MUTATIONS}
    assert enc.FIXED["cpuid"] in codes["none"]
    assert enc.FIXED["cpuid"] not in codes["no_serialize"]
    for mutation, code in codes.items():
        if mutation != "no_serialize":
            assert code == codes["none"], mutation
    with pytest.raises(JitError, match="unknown mutation 'bogus'; valid choices: none"):
        BACKEND.compile(prog, mutation="bogus")


def test_fence_full_is_mfence_and_others_emit_nothing() -> None:
    base = BACKEND.compile(assemble("exit")).code
    full = BACKEND.compile(assemble("call fence_full\nexit")).code
    assert full.replace(enc.FIXED["mfence"], b"", 1) == base
    for name in ("fence_acquire", "fence_release", "fence_store_store", "fence_load_load", "icache_sync"):
        assert BACKEND.compile(assemble(f"call {name}\nexit")).code == base


def test_syscall_and_syscall6() -> None:
    assert native(assemble("mov %r1, 39\ncall syscall\nexit"))() == os.getpid()
    read_fd, write_fd = os.pipe()
    try:
        data = ctypes.create_string_buffer(b"jitprobe")
        args = (ctypes.c_uint64 * 6)(write_fd, ctypes.addressof(data), 8, 0, 0, 0)
        code = native(assemble("mov %r6, 5\nmov %r1, 1\ncall syscall6\nadd %r0, %r6\nexit"))
        assert code(0, ctypes.addressof(args)) == 8 + 5
        assert os.read(read_fd, 8) == b"jitprobe"
        four = native(assemble("mov %r5, %r4\nmov %r4, %r3\nmov %r3, %r2\nmov %r2, %r1\n"
                               "mov %r1, 1\ncall syscall\nexit"))
        assert four(write_fd, ctypes.addressof(data), 3) == 3
        assert os.read(read_fd, 3) == b"jit"
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_cycle_counter_advances() -> None:
    code = native(assemble("""
        call cycle_counter
        mov %r6, %r0
        call spin_hint
        call cycle_counter
        jeq %r6, 0, +2
        sub %r0, %r6
        exit
        mov %r0, 0
        sub %r0, 1
        exit
    """))
    assert 0 < code() < 1 << 40


def test_clone_thread_runs_function_and_joins() -> None:
    """In a fresh process: the child writes arg*2 through its own frame, the parent futex-waits
    on the tid word (set nonzero first so an early check cannot see 0) and returns the value."""
    futex, futex_wait = 202, 0
    prog = assemble(f"""
        mov %r6, %r1
        stw [%r6+0], -1
        mov %r3, %r6
        add %r3, 8
        lddw %r1, func child
        mov %r2, %r6
        add %r2, 65536
        mov %r4, %r6
        call clone_thread
        jsgt %r0, 0, wait
        exit
    wait:
        ldxw %r4, [%r6+0]
        jeq %r4, 0, done
        mov %r1, {futex}
        mov %r2, %r6
        mov %r3, {futex_wait}
        mov %r5, 0
        call syscall
        ja wait
    done:
        ldxdw %r0, [%r6+16]
        exit
    child:
        stxdw [%r10-8], %r1
        ldxdw %r2, [%r10-8]
        mov %r3, 21
        mul %r3, 2
        stxdw [%r2+8], %r3
        exit
    """)
    elf = build_executable("x86_64", prog, bytes(65536 + 16))
    runs = _run_executables([elf])
    assert runs == [((42).to_bytes(8, "little"), 42)]


def test_sigaction_handler_runs_and_returns_through_its_restorer() -> None:
    """A freestanding program installs a SIGTRAP handler with the sigaction helper (SA_SIGINFO;
    the helper adds SA_RESTORER and its rt_sigreturn stub) and sends itself SIGTRAP: the handler
    gets the signal number and a ucontext whose saved RIP is in the program's text, and the
    program continues after kill with its registers restored (r6, r7 survive the signal)."""
    getpid, kill, sigtrap, sa_siginfo, uc_rip = 39, 62, 5, 4, 168
    prog = assemble(f"""
        mov %r6, %r1
        lddw %r2, func handler
        stxdw [%r6+0], %r2
        mov %r1, {sigtrap}
        mov %r2, %r6
        call sigaction
        jne %r0, 0, failed
        mov %r7, 100
        mov %r1, {getpid}
        call syscall
        mov %r2, %r0
        mov %r1, {kill}
        mov %r3, {sigtrap}
        call syscall
        jne %r0, 0, failed
        ldxdw %r0, [%r6+8]
        jne %r0, {sa_siginfo | SA_RESTORER}, failed
        ldxdw %r0, [%r6+32]
        add %r0, %r7
        exit
    failed:
        mov %r0, 1
        exit
    handler:
        lddw %r4, {MEM_ADDR}
        ldxdw %r5, [%r3+{uc_rip}]
        lddw %r0, {TEXT_ADDR}
        jlt %r5, %r0, +2
        add %r1, 20
        stxdw [%r4+32], %r1
        mov %r6, 0
        mov %r7, 0
        exit
    """)
    mem = struct.pack("<QQQQQ", 0, sa_siginfo, 0, 0, 0)
    ((_, status),) = _run_executables([build_executable("x86_64", prog, mem)])
    assert status == 100 + sigtrap + 20


def test_sigaction_is_refused_where_it_is_not_lowered() -> None:
    for arch in ("arm64", "riscv64"):
        assert get_backend(arch).ucontext_pc is None  # programs there take no signals
        with pytest.raises(JitError, match=f"sigaction is not lowered on {arch}"):
            get_backend(arch).compile(assemble("call sigaction\nexit"))
    assert get_backend("x86_64").ucontext_pc == 168 and get_backend("x86_64").breakpoint == b"\xcc"


def _run_executables(elves: list[bytes]) -> list[tuple[bytes, int]]:
    from user_mode import run_batch  # tests/ helper shared with the ELF tests
    return run_batch("x86_64", elves)


# --- whole suite and errors -----------------------------------------------------------------

def test_conformance_suite_natively() -> None:
    tests = conformance.load_suite(SUITE)
    elves, decided = conformance.build_elves("x86_64", tests)
    names = list(elves)
    runs = dict(zip(names, _run_executables([elves[n] for n in names]), strict=True))
    report = conformance.native_report(tests, decided, runs)
    assert report["failed"] == []
    assert report["passed"] == len(tests) - len(report["skipped"])  # type: ignore[arg-type]


def test_backend_is_registered() -> None:
    assert get_backend("x86_64") is BACKEND and BACKEND.arch == "x86_64"


def test_refused_input_names_the_instruction() -> None:
    with pytest.raises(JitError, match=r"instruction 1 .*lddw source 1 invalid"):
        BACKEND.compile([Insn(isa.ALU64 | isa.MOV, 0), Insn(isa.LDDW_OPCODE, 0, 1), Insn(0),
                         Insn(isa.EXIT_OPCODE)])
    with pytest.raises(JitError, match=r"instruction 0 .*target slot 5 is outside"):
        BACKEND.compile([Insn(isa.JMP | isa.JA, off=4), Insn(isa.EXIT_OPCODE)])


def test_compiled_is_position_independent() -> None:
    compiled: Compiled = BACKEND.compile(assemble(FACTORIAL))
    first, second = Native(compiled.code), Native(b"\x90" * 64 + compiled.code)
    assert first(6) == second(6, offset=64) == 720

