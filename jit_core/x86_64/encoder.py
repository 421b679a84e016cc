"""x86_64 instruction encoder: one small checked function per instruction form.

Every register, size, displacement and immediate is range-checked before a byte is produced;
an operand that does not fit raises JitError at once instead of being truncated. Where the
architecture has a shorter equivalent form (imm8 instead of imm32, the accumulator forms of
the ALU group, a shift by one) the encoder picks it, the same choice GNU as makes, so the
bytes can be compared with ``as`` directly. Memory operands are always ``[base + disp]``:
rsp/r12 as base need a SIB byte, rbp/r13 with no displacement need an explicit disp8 of 0.

Register numbers are the hardware encodings 0..15 (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi,
r8..r15). Operand sizes are in bytes. Forms whose operands are only registers are memoized
(a small, bounded domain), which keeps the JIT's hot path cheap; errors are never cached.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from functools import cache

from ..errors import JitError

__all__ = [
    "ALU_IMM",
    "ALU_RM_REG",
    "CALL_REL32_SIZE",
    "FIXED",
    "JCC_REL32_SIZE",
    "JCC_REL8_SIZE",
    "JMP_REL32_SIZE",
    "JMP_REL8_SIZE",
    "LEA_RIP_SIZE",
    "LOCK_RMW",
    "R10",
    "R11",
    "R12",
    "R13",
    "R14",
    "R15",
    "R8",
    "R9",
    "RAX",
    "RBP",
    "RBX",
    "RCX",
    "RDI",
    "RDX",
    "REG_NAMES",
    "RSI",
    "RSP",
    "SHIFTS",
    "UNARY",
    "Cond",
    "alu_ri",
    "alu_rr",
    "bswap",
    "call_reg",
    "call_rel32",
    "imul_rr",
    "imul_rri",
    "jcc_rel32",
    "jcc_rel8",
    "jmp_rel32",
    "jmp_rel8",
    "lea",
    "lea_rip",
    "load",
    "load_sx",
    "lock_rmw",
    "mov_r32_imm32",
    "mov_r64_simm32",
    "movabs",
    "movsx_rr",
    "movzx_rr",
    "pop",
    "push",
    "shift_cl",
    "shift_ri",
    "store",
    "store_imm",
    "test_ri",
    "unary",
    "xchg_mr",
]

RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15 = range(16)
REG_NAMES = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")


class Cond(IntEnum):
    """Condition codes, the low nibble of Jcc/SETcc/CMOVcc."""

    O = 0x0  # noqa: E741 (the manual's name)
    NO = 0x1
    B = 0x2
    AE = 0x3
    E = 0x4
    NE = 0x5
    BE = 0x6
    A = 0x7
    S = 0x8
    NS = 0x9
    P = 0xA
    NP = 0xB
    L = 0xC
    GE = 0xD
    LE = 0xE
    G = 0xF


# Instructions without operands, as data.
FIXED: dict[str, bytes] = {
    "ret": b"\xc3",
    "cdq": b"\x99",
    "cqo": b"\x48\x99",
    "mfence": b"\x0f\xae\xf0",
    "lfence": b"\x0f\xae\xe8",
    "sfence": b"\x0f\xae\xf8",
    "cpuid": b"\x0f\xa2",
    "pause": b"\xf3\x90",
    "rdtsc": b"\x0f\x31",
    "syscall": b"\x0f\x05",
    "int3": b"\xcc",
}

# "op r/m, reg" opcodes (ModRM.reg is the source).
ALU_RM_REG: dict[str, int] = {
    "add": 0x01, "or": 0x09, "and": 0x21, "sub": 0x29, "xor": 0x31, "cmp": 0x39, "test": 0x85, "mov": 0x89,
}
# Group 1 (0x81/0x83 /n) extensions; /n << 3 | 5 is also the accumulator imm32 form.
ALU_IMM: dict[str, int] = {"add": 0, "or": 1, "and": 4, "sub": 5, "xor": 6, "cmp": 7}
# Group 2 (0xC1/0xD1/0xD3 /n) extensions.
SHIFTS: dict[str, int] = {"rol": 0, "ror": 1, "shl": 4, "shr": 5, "sar": 7}
# Group 3 (0xF7 /n) extensions.
UNARY: dict[str, int] = {"not": 2, "neg": 3, "mul": 4, "imul": 5, "div": 6, "idiv": 7}
# Lockable read-modify-write forms "lock op [mem], reg".
LOCK_RMW: dict[str, bytes] = {
    "add": b"\x01", "or": b"\x09", "and": b"\x21", "xor": b"\x31",
    "xadd": b"\x0f\xc1", "cmpxchg": b"\x0f\xb1",
}

_LOCK = b"\xf0"
_OPSIZE16 = b"\x66"
_S8 = struct.Struct("<b")
_S32 = struct.Struct("<i")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def _reg(r: int, what: str = "register") -> int:
    if not isinstance(r, int) or not 0 <= r <= 15:
        raise JitError(f"{what} {r!r} out of range; valid: 0..15 ({', '.join(REG_NAMES)})")
    return r


def _size(size: int, valid: tuple[int, ...]) -> int:
    if size not in valid:
        raise JitError(f"operand size {size!r} invalid here; valid sizes in bytes: {valid}")
    return size


def _imm(value: int, lo: int, hi: int, what: str) -> int:
    if not lo <= value <= hi:
        raise JitError(f"{what} {value} out of range {lo}..{hi}")
    return value


def _lookup(table: dict[str, int], name: str, what: str) -> int:
    try:
        return table[name]
    except KeyError:
        raise JitError(f"unknown {what} {name!r}; valid: {', '.join(table)}") from None


def _rex(w: bool, reg: int, rm: int, force: bool = False) -> bytes:
    rex = 0x40 | (8 if w else 0) | ((reg >> 3) << 2) | (rm >> 3)
    return bytes((rex,)) if rex != 0x40 or force else b""


def _modrm_mem(reg: int, base: int, disp: int) -> bytes:
    low = base & 7
    if disp == 0 and low != RBP:
        mod, tail = 0x00, b""
    elif -0x80 <= disp <= 0x7F:
        mod, tail = 0x40, _S8.pack(disp)
    else:
        mod, tail = 0x80, _S32.pack(_imm(disp, -0x80000000, 0x7FFFFFFF, "displacement"))
    modrm = bytes((mod | (reg & 7) << 3 | low,))
    return modrm + b"\x24" + tail if low == RSP else modrm + tail


def _rr(opcode: bytes, reg: int, rm: int, size: int, byte_rm: bool = False) -> bytes:
    """A register-direct ModRM form. ``byte_rm``: rm is an 8-bit register, and 4..7 need a
    REX prefix to mean spl/bpl/sil/dil rather than ah/ch/dh/bh."""
    force = byte_rm and 4 <= rm <= 7
    prefix = _OPSIZE16 if size == 2 else b""
    return prefix + _rex(size == 8, reg, rm, force) + opcode + bytes((0xC0 | (reg & 7) << 3 | (rm & 7),))


def _rm(opcode: bytes, reg: int, base: int, disp: int, size: int, byte_reg: bool = False,
        prefix: bytes = b"") -> bytes:
    """A ``[base + disp]`` ModRM form; ``byte_reg`` as in _rr for the ModRM.reg register."""
    prefix += _OPSIZE16 if size == 2 else b""
    rex = _rex(size == 8, reg, base, byte_reg and 4 <= reg <= 7)
    return prefix + rex + opcode + _modrm_mem(reg, base, disp)


# --- register-register and register-immediate ALU ---------------------------------------

@cache
def alu_rr(op: str, dst: int, src: int, size: int) -> bytes:
    """``op dst, src`` for op in ALU_RM_REG (add/or/and/sub/xor/cmp/test/mov), size 4 or 8."""
    return _rr(bytes((_lookup(ALU_RM_REG, op, "ALU operation"),)), _reg(src), _reg(dst), _size(size, (4, 8)))


def alu_ri(op: str, dst: int, imm: int, size: int) -> bytes:
    """``op dst, imm`` for op in ALU_IMM; imm is a signed 32-bit value (sign-extended for size 8)."""
    ext = _lookup(ALU_IMM, op, "ALU operation")
    _reg(dst)
    _size(size, (4, 8))
    _imm(imm, -0x80000000, 0x7FFFFFFF, "immediate")
    if -0x80 <= imm <= 0x7F:
        return _rr(b"\x83", ext, dst, size) + _S8.pack(imm)
    if dst == RAX:
        return _rex(size == 8, 0, 0) + bytes((ext << 3 | 5,)) + _S32.pack(imm)
    return _rr(b"\x81", ext, dst, size) + _S32.pack(imm)


def test_ri(dst: int, imm: int, size: int) -> bytes:
    """``test dst, imm32`` (sign-extended for size 8)."""
    _reg(dst)
    _size(size, (4, 8))
    _imm(imm, -0x80000000, 0x7FFFFFFF, "immediate")
    if dst == RAX:
        return _rex(size == 8, 0, 0) + b"\xa9" + _S32.pack(imm)
    return _rr(b"\xf7", 0, dst, size) + _S32.pack(imm)


def mov_r32_imm32(dst: int, imm: int) -> bytes:
    """``mov r32, imm32`` (B8+r): zero-extends to 64 bits. imm in -2^31..2^32-1 (32-bit pattern)."""
    _reg(dst)
    _imm(imm, -0x80000000, 0xFFFFFFFF, "immediate")
    return _rex(False, 0, dst) + bytes((0xB8 | (dst & 7),)) + _U32.pack(imm & 0xFFFFFFFF)


def mov_r64_simm32(dst: int, imm: int) -> bytes:
    """``mov r64, imm32`` (REX.W C7 /0): sign-extends a 32-bit immediate."""
    _reg(dst)
    _imm(imm, -0x80000000, 0x7FFFFFFF, "immediate")
    return _rr(b"\xc7", 0, dst, 8) + _S32.pack(imm)


def movabs(dst: int, imm: int) -> bytes:
    """``movabs r64, imm64`` (REX.W B8+r). imm in -2^63..2^64-1 (64-bit pattern)."""
    _reg(dst)
    _imm(imm, -(1 << 63), (1 << 64) - 1, "immediate")
    return _rex(True, 0, dst) + bytes((0xB8 | (dst & 7),)) + _U64.pack(imm & 0xFFFFFFFFFFFFFFFF)


@cache
def imul_rr(dst: int, src: int, size: int) -> bytes:
    """``imul dst, src`` (0F AF), the low half of the product."""
    return _rr(b"\x0f\xaf", _reg(dst), _reg(src), _size(size, (4, 8)))


def imul_rri(dst: int, src: int, imm: int, size: int) -> bytes:
    """``imul dst, src, imm`` (6B ib / 69 id), imm signed 32-bit."""
    _reg(dst)
    _reg(src)
    _size(size, (4, 8))
    _imm(imm, -0x80000000, 0x7FFFFFFF, "immediate")
    if -0x80 <= imm <= 0x7F:
        return _rr(b"\x6b", dst, src, size) + _S8.pack(imm)
    return _rr(b"\x69", dst, src, size) + _S32.pack(imm)


@cache
def shift_cl(op: str, dst: int, size: int) -> bytes:
    """``op dst, cl`` for op in SHIFTS (the CPU masks the count to 5 or 6 bits)."""
    return _rr(b"\xd3", _lookup(SHIFTS, op, "shift"), _reg(dst), _size(size, (4, 8)))


def shift_ri(op: str, dst: int, count: int, size: int) -> bytes:
    """``op dst, count`` for op in SHIFTS; size 2, 4 or 8; count 0..8*size-1."""
    ext = _lookup(SHIFTS, op, "shift")
    _reg(dst)
    _size(size, (2, 4, 8))
    _imm(count, 0, size * 8 - 1, "shift count")
    if count == 1:
        return _rr(b"\xd1", ext, dst, size)
    return _rr(b"\xc1", ext, dst, size) + bytes((count,))


@cache
def unary(op: str, dst: int, size: int) -> bytes:
    """Group 3 ``op dst`` for op in UNARY (not/neg/mul/imul/div/idiv)."""
    return _rr(b"\xf7", _lookup(UNARY, op, "unary operation"), _reg(dst), _size(size, (4, 8)))


@cache
def movzx_rr(dst: int, src: int, src_size: int) -> bytes:
    """``movzx dst32, src8/src16``: zero-extends into all 64 bits."""
    opcode = b"\x0f\xb6" if _size(src_size, (1, 2)) == 1 else b"\x0f\xb7"
    return _rr(opcode, _reg(dst), _reg(src), 4, byte_rm=src_size == 1)


@cache
def movsx_rr(dst: int, src: int, src_size: int, size: int) -> bytes:
    """``movsx dst, src8/src16`` or (src_size 4, size 8) ``movsxd dst64, src32``."""
    _reg(dst)
    _reg(src)
    _size(size, (4, 8))
    if _size(src_size, (1, 2, 4)) == 4:
        _size(size, (8,))
        return _rr(b"\x63", dst, src, 8)
    opcode = b"\x0f\xbe" if src_size == 1 else b"\x0f\xbf"
    return _rr(opcode, dst, src, size, byte_rm=src_size == 1)


@cache
def bswap(reg: int, size: int) -> bytes:
    """``bswap r32/r64`` (0F C8+r); the 32-bit form zero-extends."""
    _reg(reg)
    return _rex(_size(size, (4, 8)) == 8, 0, reg) + bytes((0x0F, 0xC8 | (reg & 7)))


# --- memory ------------------------------------------------------------------------------

def load(dst: int, base: int, disp: int, size: int) -> bytes:
    """Zero-extending load of 1/2/4/8 bytes from ``[base + disp]`` into the whole of dst."""
    _reg(dst)
    _reg(base, "base register")
    if _size(size, (1, 2, 4, 8)) == 1:
        return _rm(b"\x0f\xb6", dst, base, disp, 4)
    if size == 2:
        return _rm(b"\x0f\xb7", dst, base, disp, 4)
    return _rm(b"\x8b", dst, base, disp, size)


def load_sx(dst: int, base: int, disp: int, size: int) -> bytes:
    """Sign-extending load of 1/2/4 bytes from ``[base + disp]`` to 64 bits (movsx/movsxd)."""
    _reg(dst)
    _reg(base, "base register")
    opcode = {1: b"\x0f\xbe", 2: b"\x0f\xbf", 4: b"\x63"}[_size(size, (1, 2, 4))]
    return _rm(opcode, dst, base, disp, 8)


def store(base: int, disp: int, src: int, size: int) -> bytes:
    """``mov [base + disp], src`` of 1/2/4/8 bytes."""
    _reg(src)
    _reg(base, "base register")
    if _size(size, (1, 2, 4, 8)) == 1:
        return _rm(b"\x88", src, base, disp, 1, byte_reg=True)
    return _rm(b"\x89", src, base, disp, size)


_STORE_IMM_RANGE = {1: (-0x80, 0xFF), 2: (-0x8000, 0xFFFF), 4: (-0x80000000, 0xFFFFFFFF),
                    8: (-0x80000000, 0x7FFFFFFF)}


def store_imm(base: int, disp: int, imm: int, size: int) -> bytes:
    """``mov size ptr [base + disp], imm``; for size 8 the 32-bit imm is sign-extended."""
    _reg(base, "base register")
    lo, hi = _STORE_IMM_RANGE[_size(size, (1, 2, 4, 8))]
    _imm(imm, lo, hi, f"{size}-byte store immediate")
    if size == 1:
        return _rm(b"\xc6", 0, base, disp, 1) + bytes((imm & 0xFF,))
    if size == 2:
        return _rm(b"\xc7", 0, base, disp, 2) + _U16.pack(imm & 0xFFFF)
    return _rm(b"\xc7", 0, base, disp, size) + _U32.pack(imm & 0xFFFFFFFF)


def lock_rmw(op: str, base: int, disp: int, src: int, size: int) -> bytes:
    """``lock op [base + disp], src`` for op in LOCK_RMW (add/or/and/xor/xadd/cmpxchg), size 4/8."""
    if op not in LOCK_RMW:
        raise JitError(f"unknown locked operation {op!r}; valid: {', '.join(LOCK_RMW)}")
    _reg(src)
    _reg(base, "base register")
    return _rm(LOCK_RMW[op], src, base, disp, _size(size, (4, 8)), prefix=_LOCK)


def xchg_mr(base: int, disp: int, src: int, size: int) -> bytes:
    """``xchg [base + disp], src`` (implicitly locked), size 4/8."""
    _reg(src)
    _reg(base, "base register")
    return _rm(b"\x87", src, base, disp, _size(size, (4, 8)))


def lea(dst: int, base: int, disp: int) -> bytes:
    """``lea dst64, [base + disp]``."""
    return _rm(b"\x8d", _reg(dst), _reg(base, "base register"), disp, 8)


def lea_rip(dst: int, disp: int) -> bytes:
    """``lea dst64, [rip + disp32]``; disp counts from the end of this 7-byte instruction."""
    _reg(dst)
    _imm(disp, -0x80000000, 0x7FFFFFFF, "RIP-relative displacement")
    return _rex(True, dst, 0) + b"\x8d" + bytes((0x05 | (dst & 7) << 3,)) + _S32.pack(disp)


# --- control flow ------------------------------------------------------------------------

JMP_REL8_SIZE, JMP_REL32_SIZE, JCC_REL8_SIZE, JCC_REL32_SIZE, CALL_REL32_SIZE, LEA_RIP_SIZE = 2, 5, 2, 6, 5, 7


def _cond(cc: int) -> int:
    if not 0 <= cc <= 15:
        raise JitError(f"condition code {cc!r} out of range; valid: {', '.join(c.name for c in Cond)}")
    return cc


def jcc_rel8(cc: int, disp: int) -> bytes:
    """``jcc rel8``; disp counts from the end of the 2-byte instruction."""
    return bytes((0x70 | _cond(cc),)) + _S8.pack(_imm(disp, -0x80, 0x7F, "rel8 displacement"))


def jcc_rel32(cc: int, disp: int) -> bytes:
    """``jcc rel32``; disp counts from the end of the 6-byte instruction."""
    rel = _S32.pack(_imm(disp, -0x80000000, 0x7FFFFFFF, "rel32 displacement"))
    return bytes((0x0F, 0x80 | _cond(cc))) + rel


def jmp_rel8(disp: int) -> bytes:
    """``jmp rel8``."""
    return b"\xeb" + _S8.pack(_imm(disp, -0x80, 0x7F, "rel8 displacement"))


def jmp_rel32(disp: int) -> bytes:
    """``jmp rel32``."""
    return b"\xe9" + _S32.pack(_imm(disp, -0x80000000, 0x7FFFFFFF, "rel32 displacement"))


def call_rel32(disp: int) -> bytes:
    """``call rel32``."""
    return b"\xe8" + _S32.pack(_imm(disp, -0x80000000, 0x7FFFFFFF, "rel32 displacement"))


@cache
def call_reg(reg: int) -> bytes:
    """``call r64`` (FF /2)."""
    return _rr(b"\xff", 2, _reg(reg), 4)


@cache
def push(reg: int) -> bytes:
    """``push r64``."""
    return _rex(False, 0, _reg(reg)) + bytes((0x50 | (reg & 7),))


@cache
def pop(reg: int) -> bytes:
    """``pop r64``."""
    return _rex(False, 0, _reg(reg)) + bytes((0x58 | (reg & 7),))
