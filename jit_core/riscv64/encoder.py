"""RV64GC instruction encoder: one small checked function per instruction form.

Every function returns one 32-bit instruction word (``li`` returns a list of them). Registers
and immediates are range-checked when the word is built; an out-of-range operand raises
JitError naming the value and the valid range, never a truncated encoding. Only full-size
32-bit forms are produced (no RVC compressed forms): every RV64GC hart executes them, and
fixed 4-byte instructions keep branch relaxation simple.

Field layouts follow the RISC-V unprivileged ISA manual, "RV32I Base Integer Instruction Set"
(R/I/S/B/U/J formats), "M" (multiply/divide), "A" (LR/SC and AMOs with aq/rl), "Zicsr",
"Zifencei" and "Zihintpause" chapters.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum

from ..errors import JitError

__all__ = [
    "AMO_FUNCT5",
    "CSR_TIME",
    "Reg",
    "RegOp",
    "add",
    "addi",
    "addiw",
    "addw",
    "amo",
    "and_",
    "andi",
    "auipc",
    "b_type",
    "beq",
    "bge",
    "bgeu",
    "blt",
    "bltu",
    "bne",
    "check_reg",
    "csrrs",
    "div",
    "divu",
    "divuw",
    "divw",
    "ecall",
    "fence",
    "fence_i",
    "fits_simm12",
    "hi_lo",
    "i_type",
    "j_type",
    "jal",
    "jalr",
    "lb",
    "lbu",
    "ld",
    "lh",
    "lhu",
    "li",
    "lr",
    "lui",
    "lw",
    "lwu",
    "mul",
    "mulw",
    "mv",
    "or_",
    "ori",
    "pause",
    "r_type",
    "rdtime",
    "rem",
    "remu",
    "remuw",
    "remw",
    "s_type",
    "sb",
    "sc",
    "sd",
    "sh",
    "sll",
    "slli",
    "slliw",
    "sllw",
    "slt",
    "slti",
    "sltiu",
    "sltu",
    "sra",
    "srai",
    "sraiw",
    "sraw",
    "srl",
    "srli",
    "srliw",
    "srlw",
    "sub",
    "subw",
    "sw",
    "u_type",
    "xor",
    "xori",
]


class Reg(IntEnum):
    """Integer registers by their psABI names (x0..x31)."""

    ZERO, RA, SP, GP, TP, T0, T1, T2 = range(8)
    S0, S1, A0, A1, A2, A3, A4, A5 = range(8, 16)
    A6, A7, S2, S3, S4, S5, S6, S7 = range(16, 24)
    S8, S9, S10, S11, T3, T4, T5, T6 = range(24, 32)


# CSR numbers (Zicsr / Zicntr); Linux lets user mode read ``time``.
CSR_TIME = 0xC01

_OP_LOAD, _OP_MISC_MEM, _OP_IMM, _OP_AUIPC, _OP_IMM_32 = 0x03, 0x0F, 0x13, 0x17, 0x1B
_OP_STORE, _OP_AMO, _OP, _OP_LUI, _OP_32 = 0x23, 0x2F, 0x33, 0x37, 0x3B
_OP_BRANCH, _OP_JALR, _OP_JAL, _OP_SYSTEM = 0x63, 0x67, 0x6F, 0x73


def check_reg(r: int, what: str = "register") -> int:
    """Return ``r`` if it names x0..x31. Raises JitError otherwise."""
    if not 0 <= r <= 31:
        raise JitError(f"{what} x{r} out of range x0..x31")
    return r


def _reg_fields(rd: int, rs1: int, rs2: int) -> int:
    """rd, rs1 and rs2 in their R-type positions (bits 7, 15, 20). Raises JitError naming a
    register outside x0..x31."""
    if (rd | rs1 | rs2) >> 5:  # one test for all three on the hot path; negatives fail it too
        for r in (rd, rs1, rs2):
            check_reg(r)
    return (rs2 << 20) | (rs1 << 15) | (rd << 7)


def _signed(value: int, bits: int, what: str, align: int = 1) -> int:
    """Check that ``value`` fits a ``bits``-bit two's-complement field and is a multiple of
    ``align``; return it masked to the field width."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - align
    if not lo <= value <= hi or value % align:
        step = f", a multiple of {align}" if align > 1 else ""
        raise JitError(f"{what} {value} out of range {lo}..{hi}{step}")
    return value & ((1 << bits) - 1)


def _unsigned(value: int, bits: int, what: str) -> int:
    if not 0 <= value < (1 << bits):
        raise JitError(f"{what} {value} out of range 0..{(1 << bits) - 1}")
    return value


def fits_simm12(value: int) -> bool:
    """True if ``value`` fits an I/S-type 12-bit signed immediate."""
    return -2048 <= value <= 2047


# ---- the six base formats ------------------------------------------------------------------

def r_type(opcode: int, funct3: int, funct7: int, rd: int, rs1: int, rs2: int) -> int:
    return (funct7 << 25) | _reg_fields(rd, rs1, rs2) | (funct3 << 12) | opcode


def i_type(opcode: int, funct3: int, rd: int, rs1: int, imm: int) -> int:
    return (_signed(imm, 12, "12-bit immediate") << 20) | _reg_fields(rd, rs1, 0) | (funct3 << 12) | opcode


def s_type(funct3: int, rs1: int, rs2: int, imm: int) -> int:
    u = _signed(imm, 12, "store offset")
    return ((u >> 5) << 25) | _reg_fields(0, rs1, rs2) | (funct3 << 12) | ((u & 0x1F) << 7) | _OP_STORE


def b_type(funct3: int, rs1: int, rs2: int, offset: int) -> int:
    u = _signed(offset, 13, "branch offset", 2)
    return (((u >> 12) & 1) << 31) | (((u >> 5) & 0x3F) << 25) | _reg_fields(0, rs1, rs2) | (funct3 << 12) \
        | (((u >> 1) & 0xF) << 8) | (((u >> 11) & 1) << 7) | _OP_BRANCH


def u_type(opcode: int, rd: int, imm20: int) -> int:
    """``imm20`` is the 20-bit field as assembler syntax writes it (0..0xfffff)."""
    return (_unsigned(imm20, 20, "20-bit upper immediate") << 12) | (check_reg(rd) << 7) | opcode


def j_type(rd: int, offset: int) -> int:
    u = _signed(offset, 21, "jal offset", 2)
    return (((u >> 20) & 1) << 31) | (((u >> 1) & 0x3FF) << 21) | (((u >> 11) & 1) << 20) \
        | (((u >> 12) & 0xFF) << 12) | (check_reg(rd) << 7) | _OP_JAL


# ---- named instructions, built from tables --------------------------------------------------

RegOp = Callable[[int, int, int], int]


def _r(opcode: int, funct3: int, funct7: int) -> RegOp:
    def enc(rd: int, rs1: int, rs2: int) -> int:
        return r_type(opcode, funct3, funct7, rd, rs1, rs2)
    return enc


def _i(opcode: int, funct3: int) -> RegOp:
    def enc(rd: int, rs1: int, imm: int) -> int:
        return i_type(opcode, funct3, rd, rs1, imm)
    return enc


def _shift(opcode: int, funct3: int, funct6: int, shamt_bits: int) -> RegOp:
    def enc(rd: int, rs1: int, shamt: int) -> int:
        sh = _unsigned(shamt, shamt_bits, "shift amount")
        return (funct6 << 26) | (sh << 20) | _reg_fields(rd, rs1, 0) | (funct3 << 12) | opcode
    return enc


def _s(funct3: int) -> RegOp:
    def enc(rs2: int, rs1: int, offset: int) -> int:
        return s_type(funct3, rs1, rs2, offset)
    return enc


def _b(funct3: int) -> RegOp:
    def enc(rs1: int, rs2: int, offset: int) -> int:
        return b_type(funct3, rs1, rs2, offset)
    return enc


# Register-register (OP / OP-32, including the M extension with funct7 = 1).
add, sub, sll, slt, sltu = _r(_OP, 0, 0), _r(_OP, 0, 0x20), _r(_OP, 1, 0), _r(_OP, 2, 0), _r(_OP, 3, 0)
xor, srl, sra, or_, and_ = _r(_OP, 4, 0), _r(_OP, 5, 0), _r(_OP, 5, 0x20), _r(_OP, 6, 0), _r(_OP, 7, 0)
mul, div, divu, rem, remu = _r(_OP, 0, 1), _r(_OP, 4, 1), _r(_OP, 5, 1), _r(_OP, 6, 1), _r(_OP, 7, 1)
addw, subw, sllw = _r(_OP_32, 0, 0), _r(_OP_32, 0, 0x20), _r(_OP_32, 1, 0)
srlw, sraw = _r(_OP_32, 5, 0), _r(_OP_32, 5, 0x20)
mulw, divw, divuw, remw, remuw = (_r(_OP_32, 0, 1), _r(_OP_32, 4, 1), _r(_OP_32, 5, 1),
                                  _r(_OP_32, 6, 1), _r(_OP_32, 7, 1))

# Register-immediate (OP-IMM / OP-IMM-32): (rd, rs1, imm12).
addi, slti, sltiu = _i(_OP_IMM, 0), _i(_OP_IMM, 2), _i(_OP_IMM, 3)
xori, ori, andi = _i(_OP_IMM, 4), _i(_OP_IMM, 6), _i(_OP_IMM, 7)
addiw = _i(_OP_IMM_32, 0)

# Shifts by immediate: 6-bit shamt on RV64, 5-bit for the W forms.
slli, srli, srai = _shift(_OP_IMM, 1, 0, 6), _shift(_OP_IMM, 5, 0, 6), _shift(_OP_IMM, 5, 0x10, 6)
slliw, srliw, sraiw = (_shift(_OP_IMM_32, 1, 0, 5), _shift(_OP_IMM_32, 5, 0, 5),
                       _shift(_OP_IMM_32, 5, 0x10, 5))

# Loads (rd, rs1, offset) and stores (rs2, rs1, offset).
lb, lh, lw, ld = _i(_OP_LOAD, 0), _i(_OP_LOAD, 1), _i(_OP_LOAD, 2), _i(_OP_LOAD, 3)
lbu, lhu, lwu = _i(_OP_LOAD, 4), _i(_OP_LOAD, 5), _i(_OP_LOAD, 6)
sb, sh, sw, sd = _s(0), _s(1), _s(2), _s(3)

# Conditional branches (rs1, rs2, byte offset from this instruction).
beq, bne, blt, bge, bltu, bgeu = _b(0), _b(1), _b(4), _b(5), _b(6), _b(7)

jalr = _i(_OP_JALR, 0)  # (rd, rs1, offset)


def lui(rd: int, imm20: int) -> int:
    return u_type(_OP_LUI, rd, imm20)


def auipc(rd: int, imm20: int) -> int:
    return u_type(_OP_AUIPC, rd, imm20)


def jal(rd: int, offset: int) -> int:
    return j_type(rd, offset)


# ---- A extension -----------------------------------------------------------------------------

_WIDTH_FUNCT3 = {4: 2, 8: 3}
AMO_FUNCT5 = {"add": 0x00, "swap": 0x01, "xor": 0x04, "or": 0x08, "and": 0x0C}
_LR, _SC = 0x02, 0x03


def _width(size: int) -> int:
    try:
        return _WIDTH_FUNCT3[size]
    except KeyError:
        raise JitError(f"atomic access size {size} not supported; valid choices: 4, 8") from None


def _amo_word(funct5: int, size: int, rd: int, rs1: int, rs2: int, aq: bool, rl: bool) -> int:
    return (funct5 << 27) | (int(aq) << 26) | (int(rl) << 25) | r_type(_OP_AMO, _width(size), 0, rd, rs1, rs2)


def amo(op: str, size: int, rd: int, rs2: int, rs1: int, *, aq: bool = False, rl: bool = False) -> int:
    """``amo<op>.<w|d>[.aq][.rl] rd, rs2, (rs1)``. Raises JitError for an unknown op or size."""
    try:
        funct5 = AMO_FUNCT5[op]
    except KeyError:
        raise JitError(f"unknown AMO {op!r}; valid choices: {', '.join(AMO_FUNCT5)}") from None
    return _amo_word(funct5, size, rd, rs1, rs2, aq, rl)


def lr(size: int, rd: int, rs1: int, *, aq: bool = False, rl: bool = False) -> int:
    """``lr.<w|d> rd, (rs1)``; lr.w sign-extends the loaded word."""
    return _amo_word(_LR, size, rd, rs1, 0, aq, rl)


def sc(size: int, rd: int, rs2: int, rs1: int, *, aq: bool = False, rl: bool = False) -> int:
    """``sc.<w|d> rd, rs2, (rs1)``: rd = 0 on success."""
    return _amo_word(_SC, size, rd, rs1, rs2, aq, rl)


# ---- fences, system ----------------------------------------------------------------------------

_FENCE_BITS = {"i": 8, "o": 4, "r": 2, "w": 1}


def _fence_set(spec: str, what: str) -> int:
    bits = 0
    for ch in spec:
        if ch not in _FENCE_BITS:
            raise JitError(f"fence {what} set {spec!r} has {ch!r}; valid letters: i, o, r, w")
        bits |= _FENCE_BITS[ch]
    return bits


def fence(pred: str, succ: str) -> int:
    """``fence pred, succ`` with sets written as in assembler (``"rw"``, ``"r"``, ``"iorw"``)."""
    return (_fence_set(pred, "predecessor") << 24) | (_fence_set(succ, "successor") << 20) | _OP_MISC_MEM


def fence_i() -> int:
    """Zifencei FENCE.I: orders this hart's earlier stores before its later instruction fetches."""
    return (1 << 12) | _OP_MISC_MEM


def pause() -> int:
    """Zihintpause PAUSE, a FENCE hint with pred = W and an empty successor set (0x0100000F)."""
    return fence("w", "")


def ecall() -> int:
    return _OP_SYSTEM


def csrrs(rd: int, csr: int, rs1: int) -> int:
    return (_unsigned(csr, 12, "CSR number") << 20) | (check_reg(rs1) << 15) | (2 << 12) \
        | (check_reg(rd) << 7) | _OP_SYSTEM


def rdtime(rd: int) -> int:
    """``csrr rd, time`` (CSRRS rd, time, x0)."""
    return csrrs(rd, CSR_TIME, Reg.ZERO)


# ---- pseudo-instructions -------------------------------------------------------------------------

def mv(rd: int, rs: int) -> int:
    return addi(rd, rs, 0)


def hi_lo(offset: int) -> tuple[int, int]:
    """Split a PC-relative offset for AUIPC + a 12-bit signed immediate (ADDI, JALR, loads):
    returns the AUIPC field (0..0xfffff) and the low part, with ``sext(hi << 12) + lo == offset``.

    Raises JitError if the pair cannot reach ``offset`` (outside -2^31-2048..2^31-2049).
    """
    lo = ((offset & 0xFFF) ^ 0x800) - 0x800
    hi = (offset - lo) >> 12
    if not -(1 << 19) <= hi < (1 << 19):
        raise JitError(f"offset {offset} out of the AUIPC range {-(1 << 31) - 2048}..{(1 << 31) - 2049}")
    return hi & 0xFFFFF, lo


def li(rd: int, value: int) -> list[int]:
    """Load a 64-bit constant (signed -2^63..2^63-1 or unsigned up to 2^64-1) into ``rd``.

    Signed 32-bit values take LUI+ADDIW (or one of them); wider values build the upper part
    recursively, then shift it into place and add the sign-extended low 12 bits. At most 8
    instructions. Raises JitError if ``value`` does not fit 64 bits.
    """
    if not -(1 << 63) <= value < (1 << 64):
        raise JitError(f"constant {value} does not fit 64 bits")
    if value >= 1 << 63:
        value -= 1 << 64
    return _li(check_reg(rd), value)


def _li(rd: int, value: int) -> list[int]:
    if fits_simm12(value):
        return [addi(rd, Reg.ZERO, value)]
    lo = ((value & 0xFFF) ^ 0x800) - 0x800
    if -(1 << 31) <= value < (1 << 31):
        # LUI's field may wrap to 0x80000 here: ADDIW's 32-bit sum sign-extends it back.
        return [lui(rd, ((value - lo) >> 12) & 0xFFFFF)] + ([addiw(rd, rd, lo)] if lo else [])
    upper = (value - lo) >> 12
    shift = 12
    while not upper & 1:
        upper >>= 1
        shift += 1
    words = _li(rd, upper)
    words.append(slli(rd, rd, shift))
    if lo:
        words.append(addi(rd, rd, lo))
    return words
