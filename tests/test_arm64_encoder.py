"""The arm64 encoder, form by form, at the boundary values of every field.

Each row is (word our encoder built, the same instruction in GNU assembler syntax). Checks:
GNU binutils assembles the text to the same word (one `as` + `ld` run for the whole table);
capstone decodes the word as exactly one 4-byte instruction whose text, assembled again by
binutils, gives the same word back (same mnemonic and operands, aliases included) and whose
mnemonic is the one objdump prints. Out-of-range operands raise JitError.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import capstone
import pytest
from elftools.elf.elffile import ELFFile

from jit_core.arm64 import encoder as e
from jit_core.errors import JitError

TEXT_ADDR = 0x200000000  # high enough that ADRP can reach 4 GiB below

ROWS: list[tuple[int, str]] = []


def row(word: int, text: str) -> None:
    ROWS.append((word, text))


fn: Callable[..., int]  # the form under test in the loops below

# Move wide and the materializer's single-word forms.
for fn, name in ((e.movz, "movz"), (e.movn, "movn"), (e.movk, "movk")):
    row(fn(0, 0, 0), f"{name} x0, #0")
    row(fn(30, 0xFFFF, 48), f"{name} x30, #0xffff, lsl #48")
    row(fn(2, 0x8001, 16, False), f"{name} w2, #0x8001, lsl #16")
# Add/subtract immediate (register 31 is SP here) and shifted register.
for fn, name in ((e.add_imm, "add"), (e.adds_imm, "adds"), (e.sub_imm, "sub"), (e.subs_imm, "subs")):
    rd = "xzr" if name.endswith("s") else "sp"
    row(fn(31, 31, 0), f"{name} {rd}, sp, #0")
    row(fn(1, 2, 4095, True), f"{name} x1, x2, #4095, lsl #12")
    row(fn(1, 2, 4095, is64=False), f"{name} w1, w2, #4095")
for fn, name in ((e.add_reg, "add"), (e.adds_reg, "adds"), (e.sub_reg, "sub"), (e.subs_reg, "subs"),
                 (e.and_reg, "and"), (e.bic_reg, "bic"), (e.orr_reg, "orr"), (e.eor_reg, "eor"),
                 (e.ands_reg, "ands")):
    row(fn(0, 1, 2), f"{name} x0, x1, x2")
    row(fn(3, 4, 5, e.ASR, 63), f"{name} x3, x4, x5, asr #63")
    row(fn(3, 4, 5, e.LSR, 31, is64=False), f"{name} w3, w4, w5, lsr #31")
for fn, name in ((e.and_reg, "and"), (e.orr_reg, "orr"), (e.eor_reg, "eor")):
    row(fn(1, 2, 3, e.ROR, 7), f"{name} x1, x2, x3, ror #7")
row(e.cmp_reg(1, 2, False), "cmp w1, w2")
row(e.cmp_imm(1, 4095), "cmp x1, #4095")
row(e.cmn_imm(1, 1), "cmn x1, #1")
row(e.tst_reg(1, 2), "tst x1, x2")
row(e.csel(0, 1, 2, e.EQ), "csel x0, x1, x2, eq")
row(e.csel(30, 31, 28, e.LE, False), "csel w30, wzr, w28, le")
for cond, name in enumerate(e.COND_NAMES):
    row(e.csel(7, 7, 8, cond), f"csel x7, x7, x8, {name}")
row(e.mov_reg(7, 0), "mov x7, x0")
row(e.mov_reg(7, 0, False), "mov w7, w0")
# Logical immediates: element sizes 2..64, rotations, both widths.
for value, is64 in ((0x5555555555555555, True), (0xFF, True), (0x8000000000000000, True),
                    (0x7FFFFFFFFFFFFFFF, True), (0xFFFFFFFE, False), (0x00FF00FF, False),
                    (0x0F0F0F0F0F0F0F0F, True), (0xFFFF0000FFFF0000, True), (0x80000001, False)):
    reg = "x" if is64 else "w"
    for fn, name in ((e.and_imm, "and"), (e.orr_imm, "orr"), (e.eor_imm, "eor"), (e.ands_imm, "ands")):
        row(fn(1, 2, value, is64), f"{name} {reg}1, {reg}2, #{value:#x}")
# Multiply, divide, variable shifts.
for fn, name in ((e.madd, "madd"), (e.msub, "msub")):
    row(fn(0, 1, 2, 3), f"{name} x0, x1, x2, x3")
    row(fn(30, 29, 28, 31, False), f"{name} w30, w29, w28, wzr")
for fn, name in ((e.udiv, "udiv"), (e.sdiv, "sdiv"), (e.lslv, "lsl"), (e.lsrv, "lsr"), (e.asrv, "asr")):
    row(fn(0, 1, 2), f"{name} x0, x1, x2")
    row(fn(0, 1, 2, False), f"{name} w0, w1, w2")
# Bitfield moves and aliases.
row(e.ubfm(1, 2, 63, 63), "ubfm x1, x2, #63, #63")
row(e.sbfm(1, 2, 0, 0, False), "sbfm w1, w2, #0, #0")
for amount in (0, 1, 63):
    row(e.lsl_imm(1, 2, amount), f"lsl x1, x2, #{amount}")
    row(e.lsr_imm(1, 2, amount), f"lsr x1, x2, #{amount}")
    row(e.asr_imm(1, 2, amount), f"asr x1, x2, #{amount}")
row(e.lsl_imm(1, 2, 31, False), "lsl w1, w2, #31")
row(e.ubfx(9, 10, 16, 4), "ubfx x9, x10, #16, #4")
row(e.ubfx(9, 10, 0, 64), "ubfx x9, x10, #0, #64")
row(e.uxtb(1, 2), "uxtb w1, w2")
row(e.uxth(1, 2), "uxth w1, w2")
row(e.sxtb(1, 2), "sxtb x1, w2")
row(e.sxth(1, 2, False), "sxth w1, w2")
row(e.sxtw(1, 2), "sxtw x1, w2")
row(e.rev16(1, 2), "rev16 x1, x2")
row(e.rev16(1, 2, False), "rev16 w1, w2")
row(e.rev32(1, 2), "rev32 x1, x2")
row(e.rev(1, 2), "rev x1, x2")
row(e.rev(1, 2, False), "rev w1, w2")
# Loads and stores in the three addressing forms.
MEM_OPS = ((e.STRB, "strb", "w"), (e.LDRB, "ldrb", "w"), (e.LDRSB, "ldrsb", "x"), (e.STRH, "strh", "w"),
           (e.LDRH, "ldrh", "w"), (e.LDRSH, "ldrsh", "x"), (e.STR_W, "str", "w"), (e.LDR_W, "ldr", "w"),
           (e.LDRSW, "ldrsw", "x"), (e.STR_X, "str", "x"), (e.LDR_X, "ldr", "x"))
for op, name, reg in MEM_OPS:
    top = 4095 << op.size
    row(e.ldst_uimm(op, 1, 31, 0), f"{name} {reg}1, [sp]")
    row(e.ldst_uimm(op, 1, 2, top), f"{name} {reg}1, [x2, #{top}]")
    unscaled = name.replace("str", "stur").replace("ldr", "ldur")
    row(e.ldst_unscaled(op, 1, 2, -256), f"{unscaled} {reg}1, [x2, #-256]")
    row(e.ldst_unscaled(op, 1, 2, 255), f"{unscaled} {reg}1, [x2, #255]")
    row(e.ldst_reg(op, 1, 2, 3), f"{name} {reg}1, [x2, x3]")
for fn, name in ((e.ldp, "ldp"), (e.stp, "stp")):
    row(fn(29, 30, 31, -512, e.PAIR_PRE), f"{name} x29, x30, [sp, #-512]!")
    row(fn(29, 30, 31, 504, e.PAIR_POST), f"{name} x29, x30, [sp], #504")
    row(fn(1, 2, 3, 0), f"{name} x1, x2, [x3]")
for size, suffix, reg in ((0, "b", "w"), (1, "h", "w"), (2, "", "w"), (3, "", "x")):
    row(e.ldar(size, 1, 2), f"ldar{suffix} {reg}1, [x2]")
    row(e.stlr(size, 1, 31), f"stlr{suffix} {reg}1, [sp]")
    row(e.ldxr(size, 1, 2), f"ldxr{suffix} {reg}1, [x2]")
    row(e.ldxr(size, 1, 2, acquire=True), f"ldaxr{suffix} {reg}1, [x2]")
    row(e.stxr(size, 3, 1, 2), f"stxr{suffix} w3, {reg}1, [x2]")
    row(e.stxr(size, 3, 1, 2, release=True), f"stlxr{suffix} w3, {reg}1, [x2]")
# Branches and PC-relative addresses, at both ends of their reach.
for off in (-(1 << 27), 0, (1 << 27) - 4):
    row(e.b(off), f"b .{off:+d}")
    row(e.bl(off), f"bl .{off:+d}")
for off in (-(1 << 20), 0, (1 << 20) - 4):
    row(e.b_cond(e.NE, off), f"b.ne .{off:+d}")
    row(e.cbz(1, off), f"cbz x1, .{off:+d}")
    row(e.cbnz(1, off, False), f"cbnz w1, .{off:+d}")
for cond, name in enumerate(e.COND_NAMES):
    row(e.b_cond(cond, 8), f"b.{name} .+8")
for off in (-(1 << 15), (1 << 15) - 4):
    row(e.tbz(9, 0, off), f"tbz w9, #0, .{off:+d}")
    row(e.tbnz(9, 63, off), f"tbnz x9, #63, .{off:+d}")
row(e.br(9), "br x9")
row(e.blr(30), "blr x30")
row(e.ret(), "ret")
row(e.ret(9), "ret x9")
for off in (-(1 << 20), 0, (1 << 20) - 1):
    row(e.adr(1, off), f"adr x1, .{off:+d}")
for off in (-(1 << 32), 0, (1 << 32) - 4096):
    row(e.adrp(1, off), f"adrp x1, .{off:+d}")
# Barriers, cache maintenance, system.
for option in ("sy", "ish", "ishld", "ishst"):
    row(e.dmb(option), f"dmb {option}")
    row(e.dsb(option), f"dsb {option}")
row(e.isb(), "isb")
row(e.dc_cvau(12), "dc cvau, x12")
row(e.ic_ivau(12), "ic ivau, x12")
row(e.mrs(9, "ctr_el0"), "mrs x9, ctr_el0")
row(e.mrs(7, "cntvct_el0"), "mrs x7, cntvct_el0")
row(e.svc(0), "svc #0")
row(e.svc(0xFFFF), "svc #0xffff")
row(e.yield_(), "yield")
row(e.nop(), "nop")

# Condition spellings that differ between capstone and objdump only by name (same encoding).
SYNONYMS = {"b.cs": "b.hs", "b.cc": "b.lo"}
BRANCHES = frozenset({"b", "bl", "cbz", "cbnz", "tbz", "tbnz", "adr", "adrp"})
CS = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)

needs_binutils = pytest.mark.skipif(not shutil.which("aarch64-linux-gnu-as"),
                                    reason="binutils-aarch64-linux-gnu is not installed")


def _decode(word: int, addr: int) -> capstone.CsInsn:
    insns = list(CS.disasm(struct.pack("<I", word), addr))
    assert len(insns) == 1 and insns[0].size == 4, f"{word:#010x} does not decode as one instruction"
    return insns[0]


def _capstone_text(word: int, addr: int) -> str:
    """Capstone's text of ``word`` at ``addr``, in a form GNU as accepts again."""
    insn = _decode(word, addr)
    ops = insn.op_str
    if insn.mnemonic in BRANCHES or insn.mnemonic.startswith("b."):
        head, _, target = ops.rpartition("#")
        base = addr & ~0xFFF if insn.mnemonic == "adrp" else addr
        ops = f"{head}.{int(target, 0) - base:+d}"  # capstone prints the target address
    return f"{insn.mnemonic} {ops}"


def _assemble(lines: list[str], tmp: Path) -> bytes:
    src, obj, exe = tmp / "forms.s", tmp / "forms.o", tmp / "forms"
    src.write_text(".text\n.globl _start\n_start:\n" + "".join(f"  {line}\n" for line in lines))
    for cmd in (["aarch64-linux-gnu-as", "-o", str(obj), str(src)],
                ["aarch64-linux-gnu-ld", f"-Ttext={TEXT_ADDR:#x}", "-o", str(exe), str(obj)]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, f"{cmd[0]} failed:\n{done.stderr}"
    with exe.open("rb") as f:
        text = ELFFile(f).get_section_by_name(".text")
        assert text is not None
        return text.data()


@pytest.fixture(scope="module")
def binutils(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[str]]:
    """One `as`+`ld` run for the table's texts followed by capstone's texts of our words, and
    objdump's mnemonics of our words."""
    tmp = tmp_path_factory.mktemp("arm64")
    n = len(ROWS)
    lines = [text for _, text in ROWS]
    lines += [_capstone_text(word, TEXT_ADDR + 4 * (n + i)) for i, (word, _) in enumerate(ROWS)]
    image = _assemble(lines, tmp)
    raw = tmp / "words.bin"
    raw.write_bytes(b"".join(struct.pack("<I", w) for w, _ in ROWS))
    dump = subprocess.run(["aarch64-linux-gnu-objdump", "-D", "-b", "binary", "-m", "aarch64", str(raw)],
                          check=True, capture_output=True, text=True).stdout
    mnemonics = [line.split("\t")[2].split()[0] for line in dump.splitlines()
                 if line.count("\t") >= 2 and line.split(":")[0].strip().isalnum()]
    return image, mnemonics


@needs_binutils
@pytest.mark.parametrize("index", range(len(ROWS)), ids=[text for _, text in ROWS])
def test_form_matches_binutils_and_capstone(index: int, binutils: tuple[bytes, list[str]]) -> None:
    image, mnemonics = binutils
    word, text = ROWS[index]
    n = len(ROWS)
    (as_word,) = struct.unpack_from("<I", image, 4 * index)
    assert word == as_word, f"{text}: ours {word:#010x}, GNU as {as_word:#010x}"
    (round_trip,) = struct.unpack_from("<I", image, 4 * (n + index))
    cs_text = _capstone_text(word, TEXT_ADDR + 4 * (n + index))
    assert round_trip == word, f"{text}: capstone reads {cs_text!r}, which assembles to {round_trip:#010x}"
    assert len(mnemonics) == n
    objdump = SYNONYMS.get(mnemonics[index], mnemonics[index])
    assert _decode(word, 0).mnemonic == objdump, f"{text}: capstone vs objdump mnemonic"


BAD: list[tuple[Callable[[], object], str]] = [
    (lambda: e.movz(0, 0x10000), "imm16 above max"),
    (lambda: e.movz(0, -1), "imm16 below min"),
    (lambda: e.movk(0, 1, 8), "shift not a multiple of 16"),
    (lambda: e.movn(0, 1, 32, False), "shift 32 on a W register"),
    (lambda: e.movz(32, 0), "register 32"),
    (lambda: e.movz(-1, 0), "register -1"),
    (lambda: e.add_imm(0, 1, 4096), "imm12 above max"),
    (lambda: e.sub_imm(0, 1, -1), "imm12 below min"),
    (lambda: e.add_reg(0, 1, 2, e.LSL, 64), "shift 64"),
    (lambda: e.add_reg(0, 1, 2, e.LSL, 32, is64=False), "shift 32 on W"),
    (lambda: e.add_reg(0, 1, 2, e.ROR, 1), "ROR on add"),
    (lambda: e.orr_reg(0, 1, 2, 4, 1), "shift type 4"),
    (lambda: e.and_imm(0, 1, 0), "bitmask 0"),
    (lambda: e.and_imm(0, 1, (1 << 64) - 1), "bitmask all ones"),
    (lambda: e.orr_imm(0, 1, 0xFFFFFFFF, False), "W bitmask all ones"),
    (lambda: e.eor_imm(0, 1, 0x12345), "not a bitmask"),
    (lambda: e.and_imm(0, 1, 1 << 32, False), "bitmask wider than W"),
    (lambda: e.ubfm(0, 1, 64, 0), "immr 64"),
    (lambda: e.sbfm(0, 1, 0, 32, False), "imms 32 on W"),
    (lambda: e.lsl_imm(0, 1, 64), "shift 64"),
    (lambda: e.lsr_imm(0, 1, -1), "shift -1"),
    (lambda: e.asr_imm(0, 1, 32, False), "shift 32 on W"),
    (lambda: e.ubfx(0, 1, 60, 5), "field past bit 63"),
    (lambda: e.ldst_uimm(e.LDR_X, 0, 1, 4096 * 8), "scaled offset above max"),
    (lambda: e.ldst_uimm(e.LDR_X, 0, 1, -8), "negative scaled offset"),
    (lambda: e.ldst_uimm(e.LDRH, 0, 1, 3), "misaligned scaled offset"),
    (lambda: e.ldst_unscaled(e.LDRB, 0, 1, 256), "imm9 above max"),
    (lambda: e.ldst_unscaled(e.STRB, 0, 1, -257), "imm9 below min"),
    (lambda: e.ldp(0, 1, 31, 512), "pair offset above max"),
    (lambda: e.stp(0, 1, 31, -520), "pair offset below min"),
    (lambda: e.stp(0, 1, 31, 4), "pair offset misaligned"),
    (lambda: e.stp(0, 1, 31, 0, 0), "pair mode 0"),
    (lambda: e.ldar(4, 0, 1), "size 4"),
    (lambda: e.stxr(3, 1, 1, 2), "status register equals rt"),
    (lambda: e.stxr(3, 2, 1, 2), "status register equals rn"),
    (lambda: e.b(1 << 27), "B above max"),
    (lambda: e.bl(-(1 << 27) - 4), "BL below min"),
    (lambda: e.b(2), "B misaligned"),
    (lambda: e.b_cond(e.EQ, 1 << 20), "B.cond above max"),
    (lambda: e.b_cond(e.EQ, -(1 << 20) - 4), "B.cond below min"),
    (lambda: e.b_cond(14, 0), "condition AL is not a B.cond here"),
    (lambda: e.csel(32, 1, 2, e.EQ), "CSEL rd 32"),
    (lambda: e.csel(0, -1, 2, e.EQ), "CSEL rn -1"),
    (lambda: e.csel(0, 1, 32, e.EQ), "CSEL rm 32"),
    (lambda: e.csel(0, 1, 2, 14), "condition AL is not a CSEL here"),
    (lambda: e.csel(0, 1, 2, -1), "CSEL condition -1"),
    (lambda: e.cbz(0, 1 << 20), "CBZ above max"),
    (lambda: e.cbnz(0, -(1 << 20) - 4), "CBNZ below min"),
    (lambda: e.tbz(0, 64, 0), "bit 64"),
    (lambda: e.tbnz(0, 0, 1 << 15), "TBNZ above max"),
    (lambda: e.adr(0, 1 << 20), "ADR above max"),
    (lambda: e.adr(0, -(1 << 20) - 1), "ADR below min"),
    (lambda: e.adrp(0, 1 << 32), "ADRP above max"),
    (lambda: e.adrp(0, 100), "ADRP not page-aligned"),
    (lambda: e.dmb("ishh"), "unknown barrier option"),
    (lambda: e.mrs(0, "midr_el1"), "unknown system register"),
    (lambda: e.svc(0x10000), "SVC above max"),
    (lambda: e.mov_imm(0, 1 << 64), "value wider than X"),
    (lambda: e.mov_imm(0, -(1 << 31) - 1, False), "value wider than W"),
    (lambda: e.mov_imm(31, 5), "mov_imm into register 31"),
]


@pytest.mark.parametrize("build", [b for b, _ in BAD], ids=[why for _, why in BAD])
def test_out_of_range_operand_raises(build: Callable[[], object]) -> None:
    with pytest.raises(JitError):
        build()


@pytest.mark.parametrize(("build", "message"), [
    (lambda: e.csel(0, 1, 32, e.EQ), "rm 32 out of range 0..31"),
    (lambda: e.csel(0, -1, 2, e.EQ), "rn -1 out of range 0..31"),
    (lambda: e.csel(0, 1, 2, 14), r"condition 14 invalid; valid: 0..13 \(eq, ne,"),
])
def test_csel_error_names_the_operand(build: Callable[[], object], message: str) -> None:
    with pytest.raises(JitError, match=message):
        build()


def _run_mov_sequence(words: list[int], is64: bool) -> int:
    """The register value a MOVZ/MOVN/MOVK/ORR-immediate sequence leaves, from capstone's operands."""
    width_mask = (1 << (64 if is64 else 32)) - 1
    value = 0
    CS.detail = True
    try:
        for word in words:
            insn = _decode(word, 0)
            imm = insn.operands[-1]
            if insn.mnemonic == "movk":
                shift = imm.shift.value
                value = (value & ~(0xFFFF << shift)) | (imm.imm << shift)
            else:
                assert insn.mnemonic in ("mov", "orr"), insn.mnemonic
                value = imm.imm
            value &= width_mask
    finally:
        CS.detail = False
    return value


@pytest.mark.parametrize("is64", [True, False])
def test_mov_imm_materializes_every_value(is64: bool) -> None:
    rng = random.Random(1)
    width = 64 if is64 else 32
    edge = [0, 1, -1, 0xFFFF, 0x10000, (1 << width) - 1, 1 << (width - 1), (1 << (width - 1)) - 1,
            -(1 << (width - 1)), 0x5555555555555555 & ((1 << width) - 1)]
    halves = [0, 0xFFFF, 0x1234, 0x8000]
    mixed = [sum(rng.choice(halves) << (16 * i) for i in range(width // 16)) for _ in range(200)]
    for value in edge + mixed + [rng.getrandbits(width) for _ in range(200)]:
        words = e.mov_imm(5, value, is64)
        assert 1 <= len(words) <= width // 16
        assert _run_mov_sequence(words, is64) == value & ((1 << width) - 1), hex(value)


def test_bitmask_encoder_agrees_with_capstone_on_every_valid_immediate() -> None:
    """Exhaustive over element size, run length and rotation: 5334 valid 64-bit immediates."""
    count = 0
    CS.detail = True
    try:
        for size in (2, 4, 8, 16, 32, 64):
            for ones in range(1, size):
                for rot in range(size):
                    elem = ((1 << ones) - 1)
                    elem = ((elem >> rot) | (elem << (size - rot))) & ((1 << size) - 1)
                    value = sum(elem << (size * k) for k in range(64 // size))
                    insn = _decode(e.and_imm(1, 2, value), 0)
                    assert insn.operands[-1].imm & ((1 << 64) - 1) == value
                    count += 1
    finally:
        CS.detail = False
    assert count == 5334
    assert e.encode_bitmask(0x12345) is None
