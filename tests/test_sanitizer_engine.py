"""The sanitizer's rule engine without QEMU: harness/sanitizer/engine_test.c, built and run by its
Makefile (every rule's event sequences, including the orderings that must not be reported), and
its concurrent part under ThreadSanitizer, which fails on any report."""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

import capstone
import pytest
from capstone import arm64 as cs_arm64
from capstone import riscv as cs_riscv
from capstone import x86 as cs_x86

from base.profiles import available_arches

SANITIZER = Path(__file__).resolve().parent.parent / "harness" / "sanitizer"


def _make(target: str) -> subprocess.CompletedProcess[str]:
    command = ["make", "-s", "-C", str(SANITIZER), target]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("target", ["test", "test-tsan"])
def test_rule_engine(target: str) -> None:
    proc = _make(target)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = re.search(r"^(\d+) passed, 0 failed$", proc.stdout, re.MULTILINE)
    assert summary and int(summary.group(1)) > 0, proc.stdout


# ---- which instructions store only to the stack (not watched in kernel code) ----------------------

# SIB index 100 without REX.X is no index, whatever the scale: capstone calls it RIZ.
_NO_INDEX = (0, cs_x86.X86_REG_RIZ)
_RISCV_STORES = {"sb", "sh", "sw", "sd", "fsh", "fsw", "fsd", "fsq", "c.sdsp", "c.swsp", "c.fsdsp"}


def _stack_only_by_capstone(arch: str, insn: capstone.CsInsn) -> bool:
    """Whether capstone shows insn storing to [stack pointer + constant] and nowhere else."""
    if arch == "x86_64":
        if insn.mnemonic.startswith(("push", "call")):
            return True
        mems = [op for op in insn.operands if op.type == cs_x86.X86_OP_MEM]
        return (
            insn.mnemonic == "mov"
            and bool(insn.operands)
            and insn.operands[0].type == cs_x86.X86_OP_MEM
            and all(
                m.mem.base == cs_x86.X86_REG_RSP and m.mem.index in _NO_INDEX and m.mem.segment == 0
                for m in mems
            )
        )
    if arch == "arm64":
        mems = [op for op in insn.operands if op.type == cs_arm64.ARM64_OP_MEM]
        return (
            insn.mnemonic.startswith("st")
            and bool(mems)
            and all(m.mem.base == cs_arm64.ARM64_REG_SP and m.mem.index == 0 for m in mems)
        )
    if insn.mnemonic not in _RISCV_STORES:
        return False
    last = insn.operands[-1]
    if last.type == cs_riscv.RISCV_OP_MEM:
        return bool(last.mem.base == cs_riscv.RISCV_REG_SP)
    return bool(last.type == cs_riscv.RISCV_OP_REG and last.reg == cs_riscv.RISCV_REG_SP)


def _candidates(arch: str, rng: random.Random) -> bytes:
    """Random instruction bytes, half of them aimed at the stack-store encodings' neighbourhood."""
    if arch == "arm64":
        word = rng.getrandbits(32)
        return (word | 31 << 5 if rng.random() < 0.5 else word).to_bytes(4, "little")
    if arch == "riscv64":
        if rng.random() < 0.3:
            return rng.getrandbits(16).to_bytes(2, "little") + b"\0\0"
        word = rng.getrandbits(32) | 3
        return ((word & ~(31 << 15)) | 2 << 15 if rng.random() < 0.5 else word).to_bytes(4, "little")
    prefixes = bytes(
        rng.choice(b"\x66\x67\x65\x64\xf0\xf3\x2e\x3e\x48\x41\x4a\x49") for _ in range(rng.randrange(3))
    )
    opcode = bytes([rng.choice(b"\x50\x55\x41\x68\x6a\x9c\xe8\xff\x88\x89\xc6\xc7\x8b\x01\x0f")])
    modrm = bytes([rng.choice((0x04, 0x44, 0x84, rng.getrandbits(8)))])
    sib = bytes([rng.choice((0x24, 0x04, 0x64, rng.getrandbits(8)))])
    return prefixes + opcode + modrm + sib + rng.randbytes(8)


@pytest.mark.parametrize("arch", available_arches())
def test_stack_store_decoder_agrees_with_capstone(arch: str) -> None:
    """Every instruction a rule file calls a stack-only store is one by capstone's reading: a
    wrong call would leave a kernel store to code unwatched, a missed bug. Random encodings, half
    aimed at the stack pointer; capstone is the independent decoder."""
    assert _make("build/engine_test").returncode == 0
    md = {
        "x86_64": capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64),
        "arm64": capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM),
        "riscv64": capstone.Cs(capstone.CS_ARCH_RISCV, capstone.CS_MODE_RISCV64 | capstone.CS_MODE_RISCVC),
    }[arch]
    md.detail = True
    rng = random.Random(f"stack-stores-{arch}")
    insns: list[capstone.CsInsn] = []
    while len(insns) < 40000:
        decoded = next(md.disasm(_candidates(arch, rng), 0), None)
        if decoded is not None:
            insns.append(decoded)
    lines = "".join(bytes(i.bytes).hex() + "\n" for i in insns)
    proc = subprocess.run(
        [str(SANITIZER / "build" / "engine_test"), "stack-stores", arch],
        input=lines,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    flagged = [i for i, bit in zip(insns, proc.stdout.split(), strict=True) if bit == "1"]
    wrong = [
        f"{bytes(i.bytes).hex()} {i.mnemonic} {i.op_str}"
        for i in flagged
        if not _stack_only_by_capstone(arch, i)
    ]
    assert not wrong, wrong[:20]
    assert len(flagged) > 1000, f"only {len(flagged)} stack stores among the samples: the test shows little"
