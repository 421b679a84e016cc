"""AArch64 (A64) instruction encoder: one small checked function per instruction form.

Every function returns one 32-bit instruction word (``mov_imm`` returns a list). Registers are
numbers 0..31; 31 is SP or XZR depending on the form, as in the Arm ARM. ``is64`` selects the
X (sf=1) or W (sf=0) form. Every register and immediate is checked when the word is built: an
operand out of range raises JitError naming the value and its range, never truncates. Byte
offsets of branches and ADR are relative to the instruction itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..errors import JitError

__all__ = [
    "ASR",
    "BARRIER_OPTIONS",
    "COND_NAMES",
    "EQ",
    "GE",
    "GT",
    "HI",
    "HS",
    "LDRB",
    "LDRH",
    "LDRSB",
    "LDRSH",
    "LDRSW",
    "LDR_W",
    "LDR_X",
    "LE",
    "LO",
    "LOADS",
    "LR",
    "LS",
    "LSL",
    "LSR",
    "LT",
    "MI",
    "NE",
    "PAIR_OFFSET",
    "PAIR_POST",
    "PAIR_PRE",
    "PL",
    "ROR",
    "SIGNED_LOADS",
    "SP",
    "STORES",
    "STRB",
    "STRH",
    "STR_W",
    "STR_X",
    "SYSREGS",
    "VC",
    "VS",
    "XZR",
    "MemOp",
    "add_imm",
    "add_reg",
    "adds_imm",
    "adds_reg",
    "adr",
    "adrp",
    "and_imm",
    "and_reg",
    "ands_imm",
    "ands_reg",
    "asr_imm",
    "asrv",
    "b",
    "b_cond",
    "bic_reg",
    "bl",
    "blr",
    "br",
    "cbnz",
    "cbz",
    "cmn_imm",
    "cmp_imm",
    "cmp_reg",
    "csel",
    "dc_cvau",
    "dmb",
    "dsb",
    "encode_bitmask",
    "eor_imm",
    "eor_reg",
    "ic_ivau",
    "isb",
    "ldar",
    "ldp",
    "ldst_reg",
    "ldst_uimm",
    "ldst_unscaled",
    "ldxr",
    "lsl_imm",
    "lslv",
    "lsr_imm",
    "lsrv",
    "madd",
    "mov_imm",
    "mov_reg",
    "movk",
    "movn",
    "movz",
    "mrs",
    "msub",
    "nop",
    "orr_imm",
    "orr_reg",
    "ret",
    "rev",
    "rev16",
    "rev32",
    "sbfm",
    "sdiv",
    "stlr",
    "stp",
    "stxr",
    "sub_imm",
    "sub_reg",
    "subs_imm",
    "subs_reg",
    "svc",
    "sxtb",
    "sxth",
    "sxtw",
    "tbnz",
    "tbz",
    "tst_reg",
    "ubfm",
    "ubfx",
    "udiv",
    "uxtb",
    "uxth",
    "yield_",
]

SP = 31
XZR = 31
LR = 30

# Condition codes (Arm ARM C1.2.4); inverting a condition flips bit 0.
EQ, NE, HS, LO, MI, PL, VS, VC, HI, LS, GE, LT, GT, LE = range(14)
COND_NAMES = ("eq", "ne", "hs", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le")

# Shift types of the shifted-register forms; ROR only exists for the logical ones.
LSL, LSR, ASR, ROR = range(4)

# DMB/DSB options (CRm field).
BARRIER_OPTIONS = {"sy": 15, "ish": 11, "ishld": 9, "ishst": 10, "ld": 13, "st": 14,
                   "osh": 3, "oshld": 1, "oshst": 2, "nsh": 7, "nshld": 5, "nshst": 6}

# System registers readable with MRS: (op0, op1, CRn, CRm, op2).
SYSREGS = {"ctr_el0": (3, 3, 0, 0, 1), "cntvct_el0": (3, 3, 14, 0, 2)}


def _reg(r: int, name: str = "register") -> int:
    if type(r) is not int or not 0 <= r <= 31:
        raise JitError(f"{name} {r!r} out of range 0..31")
    return r


def _uimm(value: int, bits: int, name: str) -> int:
    if type(value) is not int or not 0 <= value < (1 << bits):
        raise JitError(f"{name} {value!r} out of range 0..{(1 << bits) - 1}")
    return value


def _simm(value: int, bits: int, name: str) -> int:
    """Checks a signed field and returns its two's-complement bit pattern."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if type(value) is not int or not lo <= value <= hi:
        raise JitError(f"{name} {value!r} out of range {lo}..{hi}")
    return value & ((1 << bits) - 1)


def _scaled(offset: int, scale: int, bits: int, name: str, signed: bool) -> int:
    if offset % scale:
        raise JitError(f"{name} {offset} is not a multiple of {scale}")
    if signed:
        lo, hi = -(1 << (bits - 1)) * scale, ((1 << (bits - 1)) - 1) * scale
    else:
        lo, hi = 0, ((1 << bits) - 1) * scale
    if not lo <= offset <= hi:
        raise JitError(f"{name} {offset} out of range {lo}..{hi} (multiple of {scale})")
    return (offset // scale) & ((1 << bits) - 1)


def _cond(cond: int) -> int:
    # AL and NV (14, 15) are left out: an unconditional form is never what a caller means.
    if type(cond) is not int or cond not in range(14):
        raise JitError(f"condition {cond!r} invalid; valid: 0..13 ({', '.join(COND_NAMES)})")
    return cond


def _sf(is64: bool) -> int:
    return 0x80000000 if is64 else 0


# --- Move wide -----------------------------------------------------------------------------

def _move_wide(base: int, rd: int, imm16: int, shift: int, is64: bool) -> int:
    if shift not in ((0, 16, 32, 48) if is64 else (0, 16)):
        raise JitError(f"move-wide shift {shift!r} invalid; valid: {'0, 16, 32, 48' if is64 else '0, 16'}")
    return base | _sf(is64) | (shift // 16) << 21 | _uimm(imm16, 16, "imm16") << 5 | _reg(rd)


def movz(rd: int, imm16: int, shift: int = 0, is64: bool = True) -> int:
    """MOVZ rd, #imm16, LSL #shift. Raises JitError on a bad register, immediate or shift."""
    return _move_wide(0x52800000, rd, imm16, shift, is64)


def movn(rd: int, imm16: int, shift: int = 0, is64: bool = True) -> int:
    """MOVN rd, #imm16, LSL #shift. Raises JitError on a bad register, immediate or shift."""
    return _move_wide(0x12800000, rd, imm16, shift, is64)


def movk(rd: int, imm16: int, shift: int = 0, is64: bool = True) -> int:
    """MOVK rd, #imm16, LSL #shift. Raises JitError on a bad register, immediate or shift."""
    return _move_wide(0x72800000, rd, imm16, shift, is64)


@lru_cache(maxsize=4096)
def _mov_imm_words(rd: int, value: int, is64: bool) -> tuple[int, ...]:
    width = 64 if is64 else 32
    halves = [(value >> s) & 0xFFFF for s in range(0, width, 16)]
    bitmask = encode_bitmask(value, is64)
    if bitmask is not None and halves.count(0) < len(halves) - 1 and halves.count(0xFFFF) < len(halves) - 1:
        return (orr_imm(rd, XZR, value, is64),)
    inverted = halves.count(0xFFFF) > halves.count(0)
    filler = 0xFFFF if inverted else 0
    words: list[int] = []
    for i, half in enumerate(halves):
        if half == filler:
            continue
        if not words:
            words.append(movn(rd, half ^ 0xFFFF, 16 * i, is64) if inverted else movz(rd, half, 16 * i, is64))
        else:
            words.append(movk(rd, half, 16 * i, is64))
    if not words:  # every half is the filler: 0 or all-ones
        words.append(movn(rd, 0, 0, is64) if inverted else movz(rd, 0, 0, is64))
    return tuple(words)


def mov_imm(rd: int, value: int, is64: bool = True) -> list[int]:
    """The shortest MOVZ/MOVN+MOVK (or ORR bitmask) sequence setting rd to ``value``.

    ``value`` may be given signed or unsigned; it must fit the register width.
    Raises JitError if it does not, or on a bad register.
    """
    width = 64 if is64 else 32
    if type(value) is not int or not -(1 << (width - 1)) <= value < (1 << width):
        raise JitError(f"immediate {value!r} does not fit {width} bits")
    if rd == SP:
        raise JitError("mov_imm cannot target register 31 (it would be XZR)")
    return list(_mov_imm_words(_reg(rd), value & ((1 << width) - 1), is64))


# --- Arithmetic ------------------------------------------------------------------------------

def _addsub_imm(base: int, rd: int, rn: int, imm12: int, lsl12: bool, is64: bool) -> int:
    return (base | _sf(is64) | (0x400000 if lsl12 else 0) | _uimm(imm12, 12, "imm12") << 10
            | _reg(rn) << 5 | _reg(rd))


def add_imm(rd: int, rn: int, imm12: int, lsl12: bool = False, is64: bool = True) -> int:
    """ADD rd|SP, rn|SP, #imm12{, LSL #12}. Raises JitError on a bad operand."""
    return _addsub_imm(0x11000000, rd, rn, imm12, lsl12, is64)


def adds_imm(rd: int, rn: int, imm12: int, lsl12: bool = False, is64: bool = True) -> int:
    """ADDS rd|ZR, rn|SP, #imm12{, LSL #12}; CMN is ADDS with rd = XZR. Raises JitError."""
    return _addsub_imm(0x31000000, rd, rn, imm12, lsl12, is64)


def sub_imm(rd: int, rn: int, imm12: int, lsl12: bool = False, is64: bool = True) -> int:
    """SUB rd|SP, rn|SP, #imm12{, LSL #12}. Raises JitError on a bad operand."""
    return _addsub_imm(0x51000000, rd, rn, imm12, lsl12, is64)


def subs_imm(rd: int, rn: int, imm12: int, lsl12: bool = False, is64: bool = True) -> int:
    """SUBS rd|ZR, rn|SP, #imm12{, LSL #12}; CMP is SUBS with rd = XZR. Raises JitError."""
    return _addsub_imm(0x71000000, rd, rn, imm12, lsl12, is64)


def _shifted(base: int, rd: int, rn: int, rm: int, shift: int, amount: int, is64: bool,
             shifts: tuple[int, ...]) -> int:
    if shift not in shifts:
        raise JitError(f"shift type {shift!r} invalid here; valid: {shifts}")
    amount = _uimm(amount, 6 if is64 else 5, "shift amount")
    return base | _sf(is64) | shift << 22 | _reg(rm) << 16 | amount << 10 | _reg(rn) << 5 | _reg(rd)


_ARITH_SHIFTS = (LSL, LSR, ASR)
_LOGIC_SHIFTS = (LSL, LSR, ASR, ROR)


def add_reg(rd: int, rn: int, rm: int, shift: int = LSL, amount: int = 0, is64: bool = True) -> int:
    """ADD rd, rn, rm{, shift #amount} (register 31 is XZR). Raises JitError."""
    return _shifted(0x0B000000, rd, rn, rm, shift, amount, is64, _ARITH_SHIFTS)


def adds_reg(rd: int, rn: int, rm: int, shift: int = LSL, amount: int = 0, is64: bool = True) -> int:
    """ADDS rd, rn, rm{, shift #amount}. Raises JitError."""
    return _shifted(0x2B000000, rd, rn, rm, shift, amount, is64, _ARITH_SHIFTS)


def sub_reg(rd: int, rn: int, rm: int, shift: int = LSL, amount: int = 0, is64: bool = True) -> int:
    """SUB rd, rn, rm{, shift #amount}; NEG is SUB rd, XZR, rm. Raises JitError."""
    return _shifted(0x4B000000, rd, rn, rm, shift, amount, is64, _ARITH_SHIFTS)


def subs_reg(rd: int, rn: int, rm: int, shift: int = LSL, amount: int = 0, is64: bool = True) -> int:
    """SUBS rd, rn, rm{, shift #amount}; CMP is SUBS XZR, rn, rm. Raises JitError."""
    return _shifted(0x6B000000, rd, rn, rm, shift, amount, is64, _ARITH_SHIFTS)


def cmp_reg(rn: int, rm: int, is64: bool = True) -> int:
    """CMP rn, rm. Raises JitError."""
    return subs_reg(XZR, rn, rm, is64=is64)


def cmp_imm(rn: int, imm12: int, is64: bool = True) -> int:
    """CMP rn, #imm12. Raises JitError."""
    return subs_imm(XZR, rn, imm12, is64=is64)


def cmn_imm(rn: int, imm12: int, is64: bool = True) -> int:
    """CMN rn, #imm12 (compares with -imm12). Raises JitError."""
    return adds_imm(XZR, rn, imm12, is64=is64)


def madd(rd: int, rn: int, rm: int, ra: int, is64: bool = True) -> int:
    """MADD rd, rn, rm, ra (rd = ra + rn*rm); MUL is ra = XZR. Raises JitError."""
    return 0x1B000000 | _sf(is64) | _reg(rm) << 16 | _reg(ra) << 10 | _reg(rn) << 5 | _reg(rd)


def msub(rd: int, rn: int, rm: int, ra: int, is64: bool = True) -> int:
    """MSUB rd, rn, rm, ra (rd = ra - rn*rm). Raises JitError."""
    return 0x1B008000 | _sf(is64) | _reg(rm) << 16 | _reg(ra) << 10 | _reg(rn) << 5 | _reg(rd)


def _dp2(op: int, rd: int, rn: int, rm: int, is64: bool) -> int:
    return 0x1AC00000 | _sf(is64) | _reg(rm) << 16 | op << 10 | _reg(rn) << 5 | _reg(rd)


def udiv(rd: int, rn: int, rm: int, is64: bool = True) -> int:
    """UDIV rd, rn, rm (division by zero gives 0). Raises JitError."""
    return _dp2(0b000010, rd, rn, rm, is64)


def sdiv(rd: int, rn: int, rm: int, is64: bool = True) -> int:
    """SDIV rd, rn, rm (x/0 gives 0, INT_MIN/-1 gives INT_MIN). Raises JitError."""
    return _dp2(0b000011, rd, rn, rm, is64)


def lslv(rd: int, rn: int, rm: int, is64: bool = True) -> int:
    """LSLV rd, rn, rm (count taken modulo the width). Raises JitError."""
    return _dp2(0b001000, rd, rn, rm, is64)


def lsrv(rd: int, rn: int, rm: int, is64: bool = True) -> int:
    """LSRV rd, rn, rm. Raises JitError."""
    return _dp2(0b001001, rd, rn, rm, is64)


def asrv(rd: int, rn: int, rm: int, is64: bool = True) -> int:
    """ASRV rd, rn, rm. Raises JitError."""
    return _dp2(0b001010, rd, rn, rm, is64)


# --- Logical -------------------------------------------------------------------------------

def and_reg(rd: int, rn: int, rm: int, shift: int = LSL, amount: int = 0, is64: bool = True) -> int:
    """AND rd, rn, rm{, shift #amount}. Raises JitError."""
    return _shifted(0x0A000000, rd, rn, rm, shift, amount, is64, _LOGIC_SHIFTS)


def bic_reg(rd: int, rn: int, rm: int, shift: int = LSL, amount: int = 0, is64: bool = True) -> int:
    """BIC rd, rn, rm{, shift #amount} (rn AND NOT rm). Raises JitError."""
    return _shifted(0x0A200000, rd, rn, rm, shift, amount, is64, _LOGIC_SHIFTS)


def orr_reg(rd: int, rn: int, rm: int, shift: int = LSL, amount: int = 0, is64: bool = True) -> int:
    """ORR rd, rn, rm{, shift #amount}. Raises JitError."""
    return _shifted(0x2A000000, rd, rn, rm, shift, amount, is64, _LOGIC_SHIFTS)


def eor_reg(rd: int, rn: int, rm: int, shift: int = LSL, amount: int = 0, is64: bool = True) -> int:
    """EOR rd, rn, rm{, shift #amount}. Raises JitError."""
    return _shifted(0x4A000000, rd, rn, rm, shift, amount, is64, _LOGIC_SHIFTS)


def ands_reg(rd: int, rn: int, rm: int, shift: int = LSL, amount: int = 0, is64: bool = True) -> int:
    """ANDS rd, rn, rm{, shift #amount}; TST is ANDS XZR, rn, rm. Raises JitError."""
    return _shifted(0x6A000000, rd, rn, rm, shift, amount, is64, _LOGIC_SHIFTS)


def mov_reg(rd: int, rm: int, is64: bool = True) -> int:
    """MOV rd, rm (ORR rd, XZR, rm); the W form zero-extends. Raises JitError."""
    return orr_reg(rd, XZR, rm, is64=is64)


def tst_reg(rn: int, rm: int, is64: bool = True) -> int:
    """TST rn, rm. Raises JitError."""
    return ands_reg(XZR, rn, rm, is64=is64)


def csel(rd: int, rn: int, rm: int, cond: int, is64: bool = True) -> int:
    """CSEL rd, rn, rm, cond (rd = cond ? rn : rm; register 31 is XZR). Raises JitError on a bad
    register or condition."""
    return (0x1A800000 | _sf(is64) | _reg(rm, "rm") << 16 | _cond(cond) << 12 | _reg(rn, "rn") << 5
            | _reg(rd, "rd"))


@lru_cache(maxsize=4096)
def encode_bitmask(value: int, is64: bool = True) -> tuple[int, int, int] | None:
    """The (N, immr, imms) fields of a logical immediate, or None if ``value`` has none.

    A valid value is a 2/4/8/16/32/64-bit element, replicated, holding one rotated run of
    ones that is neither empty nor full (Arm ARM, DecodeBitMasks). Raises JitError if
    ``value`` does not fit the register width.
    """
    width = 64 if is64 else 32
    if not 0 <= value < (1 << width):
        raise JitError(f"logical immediate {value:#x} does not fit {width} bits")
    if value == 0 or value == (1 << width) - 1:
        return None
    if not is64:
        value |= value << 32
    size = 64
    while size > 2:
        half = size // 2
        if (value ^ (value >> half)) & ((1 << half) - 1):
            break
        size = half
    mask = (1 << size) - 1
    elem = value & mask
    ones = elem.bit_count()
    run = (1 << ones) - 1
    for r in range(size):
        if ((elem >> r) | (elem << (size - r))) & mask == run:
            imms = (~(2 * size - 1) & 0x3F) | (ones - 1)
            return (1 if size == 64 else 0, (size - r) % size, imms)
    return None


def _logical_imm(base: int, rd: int, rn: int, value: int, is64: bool) -> int:
    fields = encode_bitmask(value, is64)
    if fields is None:
        raise JitError(f"{value:#x} is not a valid {'64' if is64 else '32'}-bit logical (bitmask) immediate")
    n, immr, imms = fields
    return base | _sf(is64) | n << 22 | immr << 16 | imms << 10 | _reg(rn) << 5 | _reg(rd)


def and_imm(rd: int, rn: int, value: int, is64: bool = True) -> int:
    """AND rd|SP, rn, #bitmask. Raises JitError if value is no bitmask immediate."""
    return _logical_imm(0x12000000, rd, rn, value, is64)


def orr_imm(rd: int, rn: int, value: int, is64: bool = True) -> int:
    """ORR rd|SP, rn, #bitmask. Raises JitError if value is no bitmask immediate."""
    return _logical_imm(0x32000000, rd, rn, value, is64)


def eor_imm(rd: int, rn: int, value: int, is64: bool = True) -> int:
    """EOR rd|SP, rn, #bitmask. Raises JitError if value is no bitmask immediate."""
    return _logical_imm(0x52000000, rd, rn, value, is64)


def ands_imm(rd: int, rn: int, value: int, is64: bool = True) -> int:
    """ANDS rd, rn, #bitmask; TST is rd = XZR. Raises JitError if value is no bitmask immediate."""
    return _logical_imm(0x72000000, rd, rn, value, is64)


# --- Bitfield moves and their shift / extend aliases ------------------------------------------

def _bitfield(base: int, rd: int, rn: int, immr: int, imms: int, is64: bool) -> int:
    bits = 6 if is64 else 5
    return (base | _sf(is64) | (0x400000 if is64 else 0) | _uimm(immr, bits, "immr") << 16
            | _uimm(imms, bits, "imms") << 10 | _reg(rn) << 5 | _reg(rd))


def ubfm(rd: int, rn: int, immr: int, imms: int, is64: bool = True) -> int:
    """UBFM rd, rn, #immr, #imms. Raises JitError."""
    return _bitfield(0x53000000, rd, rn, immr, imms, is64)


def sbfm(rd: int, rn: int, immr: int, imms: int, is64: bool = True) -> int:
    """SBFM rd, rn, #immr, #imms. Raises JitError."""
    return _bitfield(0x13000000, rd, rn, immr, imms, is64)


def _shift_amount(amount: int, is64: bool) -> int:
    return _uimm(amount, 6 if is64 else 5, "shift amount")


def lsl_imm(rd: int, rn: int, amount: int, is64: bool = True) -> int:
    """LSL rd, rn, #amount (UBFM alias). Raises JitError."""
    width = 64 if is64 else 32
    amount = _shift_amount(amount, is64)
    return ubfm(rd, rn, (width - amount) % width, width - 1 - amount, is64)


def lsr_imm(rd: int, rn: int, amount: int, is64: bool = True) -> int:
    """LSR rd, rn, #amount (UBFM alias). Raises JitError."""
    return ubfm(rd, rn, _shift_amount(amount, is64), 63 if is64 else 31, is64)


def asr_imm(rd: int, rn: int, amount: int, is64: bool = True) -> int:
    """ASR rd, rn, #amount (SBFM alias). Raises JitError."""
    return sbfm(rd, rn, _shift_amount(amount, is64), 63 if is64 else 31, is64)


def ubfx(rd: int, rn: int, lsb: int, width: int, is64: bool = True) -> int:
    """UBFX rd, rn, #lsb, #width. Raises JitError if the field leaves the register."""
    size = 64 if is64 else 32
    if not (0 <= lsb < size and 1 <= width <= size - lsb):
        raise JitError(f"bitfield lsb={lsb!r} width={width!r} outside a {size}-bit register")
    return ubfm(rd, rn, lsb, lsb + width - 1, is64)


def uxtb(rd: int, rn: int) -> int:
    """UXTB wd, wn. Raises JitError."""
    return ubfm(rd, rn, 0, 7, is64=False)


def uxth(rd: int, rn: int) -> int:
    """UXTH wd, wn. Raises JitError."""
    return ubfm(rd, rn, 0, 15, is64=False)


def sxtb(rd: int, rn: int, is64: bool = True) -> int:
    """SXTB rd, wn. Raises JitError."""
    return sbfm(rd, rn, 0, 7, is64)


def sxth(rd: int, rn: int, is64: bool = True) -> int:
    """SXTH rd, wn. Raises JitError."""
    return sbfm(rd, rn, 0, 15, is64)


def sxtw(rd: int, rn: int) -> int:
    """SXTW xd, wn. Raises JitError."""
    return sbfm(rd, rn, 0, 31, is64=True)


def rev16(rd: int, rn: int, is64: bool = True) -> int:
    """REV16 (byte swap in each halfword). Raises JitError."""
    return 0x5AC00400 | _sf(is64) | _reg(rn) << 5 | _reg(rd)


def rev32(rd: int, rn: int) -> int:
    """REV32 xd, xn (byte swap in each word). Raises JitError."""
    return 0xDAC00800 | _reg(rn) << 5 | _reg(rd)


def rev(rd: int, rn: int, is64: bool = True) -> int:
    """REV (byte swap of the whole W or X register). Raises JitError."""
    return (0xDAC00C00 if is64 else 0x5AC00800) | _reg(rn) << 5 | _reg(rd)


# --- Loads and stores ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MemOp:
    """One load/store kind: access size (log2 bytes) and the opc field (Arm ARM C4.1.66)."""

    name: str
    size: int
    opc: int


STRB, LDRB, LDRSB = MemOp("strb", 0, 0), MemOp("ldrb", 0, 1), MemOp("ldrsb", 0, 2)
STRH, LDRH, LDRSH = MemOp("strh", 1, 0), MemOp("ldrh", 1, 1), MemOp("ldrsh", 1, 2)
STR_W, LDR_W, LDRSW = MemOp("str", 2, 0), MemOp("ldr", 2, 1), MemOp("ldrsw", 2, 2)
STR_X, LDR_X = MemOp("str", 3, 0), MemOp("ldr", 3, 1)
# Indexed by log2(size): zero-extending load, sign-extending load (to X), store.
LOADS = (LDRB, LDRH, LDR_W, LDR_X)
SIGNED_LOADS = (LDRSB, LDRSH, LDRSW)
STORES = (STRB, STRH, STR_W, STR_X)


def ldst_uimm(op: MemOp, rt: int, rn: int, offset: int) -> int:
    """LDR/STR rt, [rn|SP, #offset]: unsigned offset scaled by the access size (imm12).

    Raises JitError if offset is negative, misaligned or too large, or on a bad register.
    """
    imm12 = _scaled(offset, 1 << op.size, 12, "offset", signed=False)
    return 0x39000000 | op.size << 30 | op.opc << 22 | imm12 << 10 | _reg(rn) << 5 | _reg(rt)


def ldst_unscaled(op: MemOp, rt: int, rn: int, offset: int) -> int:
    """LDUR/STUR rt, [rn|SP, #offset], offset -256..255. Raises JitError."""
    return (0x38000000 | op.size << 30 | op.opc << 22 | _simm(offset, 9, "offset") << 12
            | _reg(rn) << 5 | _reg(rt))


def ldst_reg(op: MemOp, rt: int, rn: int, rm: int) -> int:
    """LDR/STR rt, [rn|SP, xm] (register offset, no shift). Raises JitError."""
    return 0x38206800 | op.size << 30 | op.opc << 22 | _reg(rm) << 16 | _reg(rn) << 5 | _reg(rt)


# LDP/STP of X registers: post-index, signed offset, pre-index (bits 23-25).
PAIR_POST, PAIR_OFFSET, PAIR_PRE = 1, 2, 3


def ldp(rt: int, rt2: int, rn: int, offset: int, mode: int = PAIR_OFFSET) -> int:
    """LDP xt, xt2, [rn|SP] with offset -512..504 (multiple of 8) and mode PAIR_*. Raises JitError."""
    return _pair(0x400000, rt, rt2, rn, offset, mode)


def stp(rt: int, rt2: int, rn: int, offset: int, mode: int = PAIR_OFFSET) -> int:
    """STP xt, xt2, [rn|SP] with offset -512..504 (multiple of 8) and mode PAIR_*. Raises JitError."""
    return _pair(0, rt, rt2, rn, offset, mode)


def _pair(load: int, rt: int, rt2: int, rn: int, offset: int, mode: int) -> int:
    if mode not in (PAIR_POST, PAIR_OFFSET, PAIR_PRE):
        raise JitError(f"pair addressing mode {mode!r} invalid; valid: PAIR_POST, PAIR_OFFSET, PAIR_PRE")
    imm7 = _scaled(offset, 8, 7, "pair offset", signed=True)
    return 0xA8000000 | mode << 23 | load | imm7 << 15 | _reg(rt2) << 10 | _reg(rn) << 5 | _reg(rt)


def _size_bits(size: int) -> int:
    if size not in (0, 1, 2, 3):
        raise JitError(f"access size log2 {size!r} invalid; valid: 0 (b), 1 (h), 2 (w), 3 (x)")
    return size << 30


def ldar(size: int, rt: int, rn: int) -> int:
    """LDAR{B,H} rt, [rn|SP]: load-acquire of 1 << size bytes. Raises JitError."""
    return 0x08DFFC00 | _size_bits(size) | _reg(rn) << 5 | _reg(rt)


def stlr(size: int, rt: int, rn: int) -> int:
    """STLR{B,H} rt, [rn|SP]: store-release of 1 << size bytes. Raises JitError."""
    return 0x089FFC00 | _size_bits(size) | _reg(rn) << 5 | _reg(rt)


def ldxr(size: int, rt: int, rn: int, acquire: bool = False) -> int:
    """LDXR/LDAXR{B,H} rt, [rn|SP]: load-exclusive. Raises JitError."""
    return (0x085FFC00 if acquire else 0x085F7C00) | _size_bits(size) | _reg(rn) << 5 | _reg(rt)


def stxr(size: int, rs: int, rt: int, rn: int, release: bool = False) -> int:
    """STXR/STLXR{B,H} ws, rt, [rn|SP]: store-exclusive, status (0 = done) in ws.

    Raises JitError on a bad register, or if rs equals rt or rn (CONSTRAINED UNPREDICTABLE).
    """
    if rs in (rt, rn):
        raise JitError(f"store-exclusive status register {rs} must differ from rt {rt} and rn {rn}")
    return ((0x0800FC00 if release else 0x08007C00) | _size_bits(size) | _reg(rs) << 16
            | _reg(rn) << 5 | _reg(rt))


# --- Branches and PC-relative addresses ------------------------------------------------------

def b(offset: int) -> int:
    """B to pc + offset (+-128 MiB, multiple of 4). Raises JitError."""
    return 0x14000000 | _scaled(offset, 4, 26, "branch offset", signed=True)


def bl(offset: int) -> int:
    """BL to pc + offset (+-128 MiB, multiple of 4). Raises JitError."""
    return 0x94000000 | _scaled(offset, 4, 26, "branch offset", signed=True)


def b_cond(cond: int, offset: int) -> int:
    """B.cond to pc + offset (+-1 MiB). Raises JitError on a bad condition or offset."""
    return 0x54000000 | _scaled(offset, 4, 19, "branch offset", signed=True) << 5 | _cond(cond)


def cbz(rt: int, offset: int, is64: bool = True) -> int:
    """CBZ rt, pc + offset (+-1 MiB). Raises JitError."""
    return 0x34000000 | _sf(is64) | _scaled(offset, 4, 19, "branch offset", signed=True) << 5 | _reg(rt)


def cbnz(rt: int, offset: int, is64: bool = True) -> int:
    """CBNZ rt, pc + offset (+-1 MiB). Raises JitError."""
    return 0x35000000 | _sf(is64) | _scaled(offset, 4, 19, "branch offset", signed=True) << 5 | _reg(rt)


def _test_branch(base: int, rt: int, bit: int, offset: int) -> int:
    bit = _uimm(bit, 6, "bit number")
    imm14 = _scaled(offset, 4, 14, "branch offset", signed=True)
    return base | (bit >> 5) << 31 | (bit & 31) << 19 | imm14 << 5 | _reg(rt)


def tbz(rt: int, bit: int, offset: int) -> int:
    """TBZ rt, #bit, pc + offset (+-32 KiB). Raises JitError."""
    return _test_branch(0x36000000, rt, bit, offset)


def tbnz(rt: int, bit: int, offset: int) -> int:
    """TBNZ rt, #bit, pc + offset (+-32 KiB). Raises JitError."""
    return _test_branch(0x37000000, rt, bit, offset)


def br(rn: int) -> int:
    """BR xn. Raises JitError."""
    return 0xD61F0000 | _reg(rn) << 5


def blr(rn: int) -> int:
    """BLR xn. Raises JitError."""
    return 0xD63F0000 | _reg(rn) << 5


def ret(rn: int = LR) -> int:
    """RET {xn}. Raises JitError."""
    return 0xD65F0000 | _reg(rn) << 5


def adr(rd: int, offset: int) -> int:
    """ADR xd, pc + offset (+-1 MiB, any byte). Raises JitError."""
    imm = _simm(offset, 21, "ADR offset")
    return 0x10000000 | (imm & 3) << 29 | (imm >> 2) << 5 | _reg(rd)


def adrp(rd: int, offset: int) -> int:
    """ADRP xd, (pc & ~0xfff) + offset, offset a multiple of 4096 within +-4 GiB. Raises JitError."""
    imm = _scaled(offset, 4096, 21, "ADRP offset", signed=True)
    return 0x90000000 | (imm & 3) << 29 | (imm >> 2) << 5 | _reg(rd)


# --- Barriers, cache maintenance, system ------------------------------------------------------

def _barrier_option(option: str) -> int:
    if option not in BARRIER_OPTIONS:
        raise JitError(f"barrier option {option!r} invalid; valid: {', '.join(BARRIER_OPTIONS)}")
    return BARRIER_OPTIONS[option] << 8


def dmb(option: str) -> int:
    """DMB <option> (ish, ishld, ishst, sy, ...). Raises JitError on an unknown option."""
    return 0xD50330BF | _barrier_option(option)


def dsb(option: str) -> int:
    """DSB <option>. Raises JitError on an unknown option."""
    return 0xD503309F | _barrier_option(option)


def isb() -> int:
    """ISB (SY)."""
    return 0xD5033FDF


def dc_cvau(rt: int) -> int:
    """DC CVAU, xt: clean the data cache line holding xt to the Point of Unification. Raises JitError."""
    return 0xD50B7B20 | _reg(rt)


def ic_ivau(rt: int) -> int:
    """IC IVAU, xt: invalidate the instruction cache line holding xt to the PoU. Raises JitError."""
    return 0xD50B7520 | _reg(rt)


def mrs(rt: int, sysreg: str) -> int:
    """MRS xt, <sysreg> for the registers in SYSREGS. Raises JitError on an unknown name."""
    if sysreg not in SYSREGS:
        raise JitError(f"system register {sysreg!r} unknown; valid: {', '.join(SYSREGS)}")
    op0, op1, crn, crm, op2 = SYSREGS[sysreg]
    return (0xD5300000 | (op0 & 1) << 19 | op1 << 16 | crn << 12 | crm << 8 | op2 << 5) | _reg(rt)


def svc(imm16: int = 0) -> int:
    """SVC #imm16. Raises JitError."""
    return 0xD4000001 | _uimm(imm16, 16, "SVC immediate") << 5


def yield_() -> int:
    """YIELD (spin-wait hint)."""
    return 0xD503203F


def nop() -> int:
    """NOP."""
    return 0xD503201F
