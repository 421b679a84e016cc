"""The RV64GC encoder: every form at the boundaries of its fields, checked two ways.

1. Round trip through capstone (one instruction, all 4 bytes, same mnemonic and operands once
   capstone's aliases such as ``mv``/``j``/``bnez``/``rdtime`` are mapped back to the base form).
   Capstone 5 decodes every form used here, including FENCE.I, PAUSE (shown as ``fence w,
   unknown``, its empty successor set) and the AMO/LR/SC aq/rl bits.
2. Differentially against GNU binutils: all cases go into one ``riscv64-linux-gnu-as`` run
   (``.option norvc`` so nothing is compressed) and the bytes must match.

Out-of-range operands must raise JitError at construction (min-1 / max+1 of every field).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import capstone
import pytest

from jit_core.errors import JitError
from jit_core.riscv64 import encoder as E
from jit_core.riscv64.encoder import Reg

Case = tuple[int, str, tuple[str, ...]]  # (word, mnemonic, operands in canonical text)

NAMES = {int(r): r.name.lower() for r in Reg}
REG_TRIPLES = [(Reg.A0, Reg.A1, Reg.A2), (Reg.T6, Reg.T6, Reg.T6), (Reg.ZERO, Reg.ZERO, Reg.ZERO),
               (Reg.RA, Reg.ZERO, Reg.SP), (Reg.S11, Reg.SP, Reg.ZERO)]
BRANCHES = {"beq": E.beq, "bne": E.bne, "blt": E.blt, "bge": E.bge, "bltu": E.bltu, "bgeu": E.bgeu}
JUMP_MNEMONICS = frozenset(BRANCHES) | {"jal"}
R_OPS = ("add", "sub", "sll", "slt", "sltu", "xor", "srl", "sra", "or", "and", "mul", "div", "divu", "rem",
         "remu", "addw", "subw", "sllw", "srlw", "sraw", "mulw", "divw", "divuw", "remw", "remuw")
I_OPS = ("addi", "slti", "sltiu", "xori", "ori", "andi", "addiw")
SHIFTS = {"slli": 63, "srli": 63, "srai": 63, "slliw": 31, "srliw": 31, "sraiw": 31}
LOADS = ("lb", "lh", "lw", "ld", "lbu", "lhu", "lwu")
STORES = ("sb", "sh", "sw", "sd")
AMOS = ("add", "swap", "xor", "or", "and")
FENCES = [("rw", "rw"), ("r", "rw"), ("rw", "w"), ("w", "w"), ("r", "r"), ("i", "o"), ("iorw", "iorw")]


def _fn(name: str) -> Callable[..., int]:
    fn: Callable[..., int] = getattr(E, name + "_" if name in ("or", "and") else name)
    return fn


def _suffix(aq: bool, rl: bool) -> str:
    return "." + ("aq" if aq else "") + ("rl" if rl else "") if aq or rl else ""


def build_cases() -> list[Case]:
    n = NAMES
    cases: list[Case] = []
    for name in R_OPS:
        for rd, rs1, rs2 in REG_TRIPLES:
            cases.append((_fn(name)(rd, rs1, rs2), name, (n[rd], n[rs1], n[rs2])))
    for name in I_OPS:
        for imm in (-2048, 2047, 0, 1, -1):
            cases.append((_fn(name)(Reg.A0, Reg.T6, imm), name, ("a0", "t6", str(imm))))
    for name, top in SHIFTS.items():
        for sh in (0, 1, top):
            cases.append((_fn(name)(Reg.T6, Reg.A1, sh), name, ("t6", "a1", str(sh))))
    for name in LOADS:
        for off in (-2048, 2047, 0):
            cases.append((_fn(name)(Reg.A0, Reg.SP, off), name, ("a0", f"{off}(sp)")))
    for name in STORES:
        for off in (-2048, 2047, 0):
            cases.append((_fn(name)(Reg.T6, Reg.A1, off), name, ("t6", f"{off}(a1)")))
    for name, fn in BRANCHES.items():
        for off in (-4096, 4094, 0, 8):
            cases.append((fn(Reg.A0, Reg.T6, off), name, ("a0", "t6", str(off))))
        cases.append((fn(Reg.ZERO, Reg.A0, 16), name, ("zero", "a0", "16")))
        cases.append((fn(Reg.A0, Reg.ZERO, -16), name, ("a0", "zero", "-16")))
    for rd in (Reg.ZERO, Reg.RA, Reg.T6):
        for off in (-(1 << 20), (1 << 20) - 2, 0):
            cases.append((E.jal(rd, off), "jal", (n[rd], str(off))))
        for off in (-2048, 2047, 0):
            cases.append((E.jalr(rd, Reg.A5, off), "jalr", (n[rd], f"{off}(a5)")))
    cases.append((E.jalr(Reg.ZERO, Reg.RA, 0), "jalr", ("zero", "0(ra)")))
    for name in ("lui", "auipc"):
        for imm in (0, 0xFFFFF, 0x80000):
            cases.append((_fn(name)(Reg.T6, imm), name, ("t6", str(imm))))
    for size, width in ((4, "w"), (8, "d")):
        for aq in (False, True):
            for rl in (False, True):
                sfx = _suffix(aq, rl)
                for op in AMOS:
                    word = E.amo(op, size, Reg.A0, Reg.A1, Reg.T6, aq=aq, rl=rl)
                    cases.append((word, f"amo{op}.{width}{sfx}", ("a0", "a1", "(t6)")))
                cases.append((E.lr(size, Reg.T2, Reg.T0, aq=aq, rl=rl), f"lr.{width}{sfx}", ("t2", "(t0)")))
                cases.append((E.sc(size, Reg.T3, Reg.A1, Reg.T0, aq=aq, rl=rl), f"sc.{width}{sfx}",
                              ("t3", "a1", "(t0)")))
    for pred, succ in FENCES:
        cases.append((E.fence(pred, succ), "fence", (pred, succ)))
    cases += [(E.fence_i(), "fence.i", ()), (E.pause(), "pause", ()), (E.ecall(), "ecall", ())]
    for csr in (0, 0xFFF, E.CSR_TIME):
        cases.append((E.csrrs(Reg.A5, csr, Reg.ZERO), "csrrs", ("a5", str(csr), "zero")))
    cases.append((E.csrrs(Reg.RA, 0, Reg.SP), "csrrs", ("ra", "0", "sp")))
    cases.append((E.rdtime(Reg.T6), "csrrs", ("t6", str(E.CSR_TIME), "zero")))
    return cases


CASES = build_cases()


# ---- capstone ----------------------------------------------------------------------------------

CS = capstone.Cs(capstone.CS_ARCH_RISCV, capstone.CS_MODE_RISCV64 | capstone.CS_MODE_RISCVC)
CS_CSR_NAMES = {"ustatus": "0", "time": str(E.CSR_TIME)}
CS_COUNTERS = {"rdtime": E.CSR_TIME, "rdcycle": 0xC00, "rdinstret": 0xC02}
# capstone alias -> the base form (mnemonic, operand order using the alias's operands o).
CS_ALIASES: dict[str, Callable[[list[str]], tuple[str, list[str]]]] = {
    "mv": lambda o: ("addi", [o[0], o[1], "0"]),
    "nop": lambda o: ("addi", ["zero", "zero", "0"]),
    "li": lambda o: ("addi", [o[0], "zero", o[1]]),
    "neg": lambda o: ("sub", [o[0], "zero", o[1]]),
    "negw": lambda o: ("subw", [o[0], "zero", o[1]]),
    "not": lambda o: ("xori", [o[0], o[1], "-1"]),
    "sext.w": lambda o: ("addiw", [o[0], o[1], "0"]),
    "seqz": lambda o: ("sltiu", [o[0], o[1], "1"]),
    "snez": lambda o: ("sltu", [o[0], "zero", o[1]]),
    "sltz": lambda o: ("slt", [o[0], o[1], "zero"]),
    "sgtz": lambda o: ("slt", [o[0], "zero", o[1]]),
    "beqz": lambda o: ("beq", [o[0], "zero", o[1]]),
    "bnez": lambda o: ("bne", [o[0], "zero", o[1]]),
    "blez": lambda o: ("bge", ["zero", o[0], o[1]]),
    "bgez": lambda o: ("bge", [o[0], "zero", o[1]]),
    "bltz": lambda o: ("blt", [o[0], "zero", o[1]]),
    "bgtz": lambda o: ("blt", ["zero", o[0], o[1]]),
    "j": lambda o: ("jal", ["zero", o[0]]),
    "jr": lambda o: ("jalr", ["zero", f"0({o[0]})"]),
    "ret": lambda o: ("jalr", ["zero", "0(ra)"]),
    "csrr": lambda o: ("csrrs", [o[0], o[1], "zero"]),
}


def _number(text: str) -> str:
    """Capstone's hex numbers (also a memory displacement) as decimal."""
    m = re.fullmatch(r"(-?)(0x[0-9a-f]+|\d+)(\(.*\))?", text)
    if not m:
        return text
    return f"{int(m[1] + m[2], 0)}{m[3] or ''}"


def capstone_canonical(word: int) -> tuple[str, tuple[str, ...]]:
    insns = list(CS.disasm(word.to_bytes(4, "little"), 0))
    assert len(insns) == 1 and insns[0].size == 4, f"{word:#010x} did not decode to one 4-byte insn"
    mnemonic = insns[0].mnemonic
    ops = [_number(CS_CSR_NAMES.get(o, o)) for o in insns[0].op_str.split(", ") if o]
    if mnemonic in CS_ALIASES:
        mnemonic, ops = CS_ALIASES[mnemonic](ops)
    elif mnemonic in CS_COUNTERS:
        mnemonic, ops = "csrrs", [ops[0], str(CS_COUNTERS[mnemonic]), "zero"]
    elif mnemonic == "jal" and len(ops) == 1:
        ops = ["ra", ops[0]]
    elif mnemonic == "jalr" and len(ops) == 1:
        ops = ["ra", f"0({ops[0]})"]
    elif mnemonic == "jalr" and len(ops) == 3:
        ops = [ops[0], f"{ops[2]}({ops[1]})"]
    elif mnemonic == "fence" and ops == ["w", "unknown"]:
        mnemonic, ops = "pause", []
    elif mnemonic == "fence" and not ops:
        ops = ["iorw", "iorw"]
    return mnemonic, tuple(ops)


@pytest.mark.parametrize("word,mnemonic,ops", CASES, ids=[f"{m} {','.join(o)}" for _, m, o in CASES])
def test_capstone_round_trip(word: int, mnemonic: str, ops: tuple[str, ...]) -> None:
    assert capstone_canonical(word) == (mnemonic, ops)


# ---- GNU binutils ------------------------------------------------------------------------------

def _gnu_text(mnemonic: str, ops: tuple[str, ...]) -> str:
    if mnemonic in JUMP_MNEMONICS:  # PC-relative: '.' is this instruction's address
        off = int(ops[-1])
        ops = (*ops[:-1], f".{'+' if off >= 0 else '-'}{abs(off)}")
    return f"{mnemonic} {', '.join(ops)}".strip()


@pytest.mark.skipif(shutil.which("riscv64-linux-gnu-as") is None, reason="binutils-riscv64-linux-gnu missing")
def test_matches_gnu_as(tmp_path: Path) -> None:
    source = tmp_path / "cases.s"
    source.write_text(".option norvc\n" + "".join(_gnu_text(m, o) + "\n" for _, m, o in CASES))
    obj, binary = tmp_path / "cases.o", tmp_path / "cases.bin"
    subprocess.run(["riscv64-linux-gnu-as", "-march=rv64gc_zifencei_zihintpause", "-o", str(obj),
                    str(source)], check=True, capture_output=True)
    subprocess.run(["riscv64-linux-gnu-objcopy", "-O", "binary", "-j", ".text", str(obj), str(binary)],
                   check=True, capture_output=True)
    data = binary.read_bytes()
    assert len(data) == 4 * len(CASES)
    mismatches = [(_gnu_text(m, o), f"{w:#010x}", data[4 * k:4 * k + 4][::-1].hex())
                  for k, (w, m, o) in enumerate(CASES) if data[4 * k:4 * k + 4] != w.to_bytes(4, "little")]
    assert not mismatches


# ---- range checks ---------------------------------------------------------------------------------

OUT_OF_RANGE: list[tuple[str, Callable[[], object]]] = [
    ("reg -1", lambda: E.add(-1, 0, 0)), ("reg 32", lambda: E.add(0, 32, 0)),
    ("rs2 32", lambda: E.sub(0, 0, 32)), ("store rs2 32", lambda: E.sd(32, 0, 0)),
    ("addi -2049", lambda: E.addi(1, 1, -2049)), ("addi 2048", lambda: E.addi(1, 1, 2048)),
    ("addiw 2048", lambda: E.addiw(1, 1, 2048)), ("andi -2049", lambda: E.andi(1, 1, -2049)),
    ("ld -2049", lambda: E.ld(1, 2, -2049)), ("lbu 2048", lambda: E.lbu(1, 2, 2048)),
    ("sd -2049", lambda: E.sd(1, 2, -2049)), ("sb 2048", lambda: E.sb(1, 2, 2048)),
    ("jalr 2048", lambda: E.jalr(1, 2, 2048)),
    ("slli -1", lambda: E.slli(1, 1, -1)), ("slli 64", lambda: E.slli(1, 1, 64)),
    ("srai 64", lambda: E.srai(1, 1, 64)), ("slliw 32", lambda: E.slliw(1, 1, 32)),
    ("sraiw -1", lambda: E.sraiw(1, 1, -1)),
    ("beq -4098", lambda: E.beq(1, 2, -4098)), ("bne 4096", lambda: E.bne(1, 2, 4096)),
    ("bltu odd", lambda: E.bltu(1, 2, 3)),
    ("jal -1048578", lambda: E.jal(0, -(1 << 20) - 2)), ("jal 1048576", lambda: E.jal(0, 1 << 20)),
    ("jal odd", lambda: E.jal(0, 5)),
    ("lui -1", lambda: E.lui(1, -1)), ("auipc 0x100000", lambda: E.auipc(1, 0x100000)),
    ("csr 0x1000", lambda: E.csrrs(1, 0x1000, 0)), ("csr -1", lambda: E.csrrs(1, -1, 0)),
    ("amo size 2", lambda: E.amo("add", 2, 1, 2, 3)), ("amo op", lambda: E.amo("min", 4, 1, 2, 3)),
    ("lr size 1", lambda: E.lr(1, 1, 2)), ("sc reg 32", lambda: E.sc(8, 1, 32, 2)),
    ("fence x", lambda: E.fence("rx", "w")), ("fence succ", lambda: E.fence("rw", "rwz")),
    ("li 2^64", lambda: E.li(1, 1 << 64)), ("li -2^63-1", lambda: E.li(1, -(1 << 63) - 1)),
    ("li reg 32", lambda: E.li(32, 0)),
    ("hi_lo 2^31-2048", lambda: E.hi_lo((1 << 31) - 2048)),
    ("hi_lo -2^31-2049", lambda: E.hi_lo(-(1 << 31) - 2049)),
]


@pytest.mark.parametrize("name,build", OUT_OF_RANGE, ids=[n for n, _ in OUT_OF_RANGE])
def test_out_of_range_raises(name: str, build: Callable[[], object]) -> None:
    with pytest.raises(JitError):
        build()


def test_error_names_value_and_range() -> None:
    with pytest.raises(JitError, match=r"branch offset 4096 out of range -4096\.\.4094, a multiple of 2"):
        E.beq(1, 2, 4096)
    with pytest.raises(JitError, match=r"valid letters: i, o, r, w"):
        E.fence("q", "w")


def test_fixed_encodings_from_the_spec() -> None:
    assert E.pause() == 0x0100000F  # Zihintpause: FENCE with pred=W, succ=0, fm=0, rs1=rd=x0
    assert E.fence_i() == 0x0000100F
    assert E.ecall() == 0x00000073
    assert E.fence("rw", "rw") == 0x0330000F


# ---- constants: li and hi_lo ------------------------------------------------------------------------

LI_VALUES = [0, 1, -1, 2047, -2048, 2048, -2049, 0x7FFFF7FF, 0x7FFFF800, 0x7FFFFFFF, -0x80000000,
             0x80000000, 0xFFFFFFFF, 0x100000000, 0x123456789ABCDEF0, -0x123456789ABCDEF0,
             0x7FFFFFFFFFFFFFFF, -(1 << 63), (1 << 64) - 1, 0x8000000000000000, 0xFFFFFFFF00000000,
             0x00000FFFFFFFF000, 0x5555555555555555, 0xAAAAAAAAAAAAAAAA, 1 << 40, 0x800, 0xFFF]


def _simulate(words: list[int]) -> int:
    """Run a li sequence on a tiny model of the four instructions it may use, decoded by capstone
    (not by this project's encoder), and return the destination register (unsigned)."""
    m64 = (1 << 64) - 1
    regs = dict.fromkeys(NAMES.values(), 0)
    rd = ""
    for word in words:
        mnemonic, ops = capstone_canonical(word)
        rd, *rest = ops
        if mnemonic == "lui":
            value = (int(rest[0]) << 12) & 0xFFFFFFFF
            regs[rd] = value - (1 << 32) if value >> 31 else value
        elif mnemonic == "addi":
            regs[rd] = regs[rest[0]] + int(rest[1])
        elif mnemonic == "addiw":
            low = (regs[rest[0]] + int(rest[1])) & 0xFFFFFFFF
            regs[rd] = low - (1 << 32) if low >> 31 else low
        elif mnemonic == "slli":
            regs[rd] = regs[rest[0]] << int(rest[1])
        else:
            raise AssertionError(f"li used {mnemonic}")
        regs[rd] &= m64
        regs["zero"] = 0
    return regs[rd]


@pytest.mark.parametrize("value", LI_VALUES, ids=hex)
def test_li_materializes(value: int) -> None:
    words = E.li(Reg.A5, value)
    assert _simulate(words) == value & ((1 << 64) - 1)
    assert len(words) <= 8
    if -(1 << 31) <= value < (1 << 31):
        assert len(words) <= 2  # LUI + ADDIW at most


@pytest.mark.parametrize("offset", [0, 4, -4, 2047, 2048, -2048, -2049, (1 << 31) - 2049, -(1 << 31) - 2048])
def test_hi_lo_reaches_offset(offset: int) -> None:
    hi, lo = E.hi_lo(offset)
    upper = hi << 12
    upper = upper - (1 << 32) if upper >> 31 else upper
    assert upper + lo == offset and -2048 <= lo <= 2047
