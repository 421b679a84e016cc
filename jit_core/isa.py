"""The eBPF instruction set (RFC 9669) as jitprobe's architecture-neutral IR.

An instruction is 8 bytes: opcode, a register byte (dst in the low nibble, src in the high
nibble, little-endian byte order), a signed 16-bit offset and a signed 32-bit immediate.
``lddw`` takes two slots; the second carries the upper 32 bits of the immediate and has
opcode 0. Load-acquire and store-release are the later Linux extension of the atomic mode
(imm 0x100 / 0x110); the RFC itself stops at cmpxchg.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import JitError

__all__ = [
    "ADD",
    "ALU",
    "ALU64",
    "ALU_OPS",
    "AND",
    "ARSH",
    "ATOMIC_ADD",
    "ATOMIC_AND",
    "ATOMIC_CMPXCHG",
    "ATOMIC_FETCH",
    "ATOMIC_LOAD_ACQ",
    "ATOMIC_OPS",
    "ATOMIC_OR",
    "ATOMIC_STORE_REL",
    "ATOMIC_XCHG",
    "ATOMIC_XOR",
    "CALL",
    "CALL_HELPER",
    "CALL_LOCAL",
    "COND_JUMPS",
    "DIV",
    "END",
    "EXIT",
    "EXIT_OPCODE",
    "FRAME_REG",
    "INSN_SIZE",
    "JA",
    "JEQ",
    "JGE",
    "JGT",
    "JLE",
    "JLT",
    "JMP",
    "JMP32",
    "JMP_OPS",
    "JNE",
    "JSET",
    "JSGE",
    "JSGT",
    "JSLE",
    "JSLT",
    "LD",
    "LDDW_OPCODE",
    "LDX",
    "LSH",
    "MOD",
    "MODE_ABS",
    "MODE_ATOMIC",
    "MODE_IMM",
    "MODE_IND",
    "MODE_MEM",
    "MODE_MEMSX",
    "MOV",
    "MUL",
    "NEG",
    "NUM_REGS",
    "OR",
    "RSH",
    "SIZE_B",
    "SIZE_BYTES",
    "SIZE_DW",
    "SIZE_H",
    "SIZE_W",
    "SRC_K",
    "SRC_X",
    "ST",
    "STACK_SIZE",
    "STX",
    "SUB",
    "XOR",
    "Insn",
    "decode_program",
    "encode_program",
    "insn_class",
    "is_alu",
    "is_jump",
    "lddw_imm",
    "s16",
    "s32",
]

INSN_SIZE = 8
STACK_SIZE = 512
NUM_REGS = 11  # r0..r10
FRAME_REG = 10

# Instruction classes (low 3 bits of the opcode).
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = range(8)

# Source bit for ALU/JMP classes.
SRC_K = 0x00
SRC_X = 0x08

# ALU operations (high 4 bits).
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR, MOV, ARSH, END = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0,
)
ALU_OPS = {ADD: "add", SUB: "sub", MUL: "mul", DIV: "div", OR: "or", AND: "and", LSH: "lsh", RSH: "rsh",
           NEG: "neg", MOD: "mod", XOR: "xor", MOV: "mov", ARSH: "arsh", END: "end"}

# Jump operations (high 4 bits).
JA, JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE, CALL, EXIT, JLT, JLE, JSLT, JSLE = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0,
)
JMP_OPS = {JA: "ja", JEQ: "jeq", JGT: "jgt", JGE: "jge", JSET: "jset", JNE: "jne", JSGT: "jsgt",
           JSGE: "jsge", CALL: "call", EXIT: "exit", JLT: "jlt", JLE: "jle", JSLT: "jslt", JSLE: "jsle"}
COND_JUMPS = frozenset(JMP_OPS) - {JA, CALL, EXIT}

# Load/store modes (high 3 bits) and sizes (bits 3-4).
MODE_IMM, MODE_ABS, MODE_IND, MODE_MEM, MODE_MEMSX, MODE_ATOMIC = 0x00, 0x20, 0x40, 0x60, 0x80, 0xC0
SIZE_W, SIZE_H, SIZE_B, SIZE_DW = 0x00, 0x08, 0x10, 0x18
SIZE_BYTES = {SIZE_B: 1, SIZE_H: 2, SIZE_W: 4, SIZE_DW: 8}

# Atomic operations, in the immediate of an ATOMIC-mode STX.
ATOMIC_FETCH = 0x01
ATOMIC_ADD, ATOMIC_OR, ATOMIC_AND, ATOMIC_XOR = 0x00, 0x40, 0x50, 0xA0
ATOMIC_XCHG = 0xE0 | ATOMIC_FETCH
ATOMIC_CMPXCHG = 0xF0 | ATOMIC_FETCH
ATOMIC_LOAD_ACQ = 0x100
ATOMIC_STORE_REL = 0x110
ATOMIC_OPS = frozenset({
    ATOMIC_ADD, ATOMIC_OR, ATOMIC_AND, ATOMIC_XOR,
    ATOMIC_ADD | ATOMIC_FETCH, ATOMIC_OR | ATOMIC_FETCH, ATOMIC_AND | ATOMIC_FETCH, ATOMIC_XOR | ATOMIC_FETCH,
    ATOMIC_XCHG, ATOMIC_CMPXCHG, ATOMIC_LOAD_ACQ, ATOMIC_STORE_REL,
})

# CALL source field: 0 calls a helper by id (jitprobe's intrinsics), 1 a program-local function.
CALL_HELPER = 0
CALL_LOCAL = 1

LDDW_OPCODE = LD | MODE_IMM | SIZE_DW  # 0x18
EXIT_OPCODE = JMP | EXIT  # 0x95


def insn_class(opcode: int) -> int:
    return opcode & 0x07


def is_alu(opcode: int) -> bool:
    return insn_class(opcode) in (ALU, ALU64)


def is_jump(opcode: int) -> bool:
    return insn_class(opcode) in (JMP, JMP32)


def s16(v: int) -> int:
    v &= 0xFFFF
    return v - 0x10000 if v & 0x8000 else v


def s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - 0x100000000 if v & 0x80000000 else v


@dataclass(frozen=True, slots=True)
class Insn:
    """One 8-byte eBPF slot. ``off`` and ``imm`` are stored signed."""

    opcode: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.opcode <= 0xFF:
            raise JitError(f"opcode {self.opcode:#x} out of range 0..0xff")
        if not 0 <= self.dst <= 0xF or not 0 <= self.src <= 0xF:
            raise JitError(f"register field out of range 0..15 (dst={self.dst}, src={self.src})")
        if not -0x8000 <= self.off <= 0x7FFF:
            raise JitError(f"offset {self.off} out of range -32768..32767")
        if not -0x80000000 <= self.imm <= 0x7FFFFFFF:
            raise JitError(f"immediate {self.imm} out of range -2^31..2^31-1")

    @property
    def cls(self) -> int:
        return self.opcode & 0x07

    def encode(self) -> bytes:
        return struct.pack("<BBhi", self.opcode, (self.src << 4) | self.dst, self.off, self.imm)

    @classmethod
    def decode(cls, raw: bytes) -> Insn:
        if len(raw) != INSN_SIZE:
            raise JitError(f"an instruction is {INSN_SIZE} bytes, got {len(raw)}")
        opcode, regs, off, imm = struct.unpack("<BBhi", raw)
        return cls(opcode, regs & 0xF, regs >> 4, off, imm)


def decode_program(raw: bytes) -> list[Insn]:
    """Split raw bytes into slots. Raises JitError if the length is not a multiple of 8."""
    if len(raw) % INSN_SIZE:
        raise JitError(f"program length {len(raw)} is not a multiple of {INSN_SIZE}")
    return [Insn.decode(raw[i:i + INSN_SIZE]) for i in range(0, len(raw), INSN_SIZE)]


def encode_program(insns: list[Insn]) -> bytes:
    return b"".join(i.encode() for i in insns)


def lddw_imm(first: Insn, second: Insn) -> int:
    """The 64-bit immediate (unsigned) of an lddw pair."""
    return (first.imm & 0xFFFFFFFF) | ((second.imm & 0xFFFFFFFF) << 32)
