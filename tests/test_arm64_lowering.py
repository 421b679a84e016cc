"""The arm64 lowering, run: programs compiled to freestanding executables (jit_core.elf) and run
under qemu-user, compared with the reference interpreter or with values computed here.

CPU models are chosen with QEMU_CPU (qemu-user reads it like -cpu). Their CTR_EL0 decides which
parts of icache_sync run; under qemu-user 10.0.2 it is not what system guests see (NOTES.md):
measured here, cortex-a57 and neoverse-n1 0x8444c004 (IDC=0, DIC=0), neoverse-v1 0x9444c004
(IDC=1, DIC=0), max 0x80038003 (IDC=0, DIC=0, 32-byte lines). The DIC=1 path is therefore also
run with a CTR_EL0 value substituted for the MRS.
"""

from __future__ import annotations

import random
import struct

import capstone
import pytest
from user_mode import run_batch, runner

from jit_core import elf, interp, isa
from jit_core.arm64 import BACKEND
from jit_core.arm64 import encoder as e
from jit_core.arm64 import intrinsics as a64_intrinsics
from jit_core.arm64.layout import FIX_BCOND, CodeBuffer
from jit_core.asm import assemble
from jit_core.errors import JitError
from jit_core.intrinsics import ICACHE_MUTATIONS as MUTATIONS
from jit_core.isa import Insn

pytestmark = pytest.mark.skipif(runner("arm64") is None, reason="qemu-aarch64 (qemu-user) is not installed")

CPU_MODELS = ("cortex-a57", "neoverse-n1", "neoverse-v1", "max")
# CTR_EL0 of each model under qemu-user (see the module docstring).
USER_MODE_CTR = {"cortex-a57": 0x8444C004, "neoverse-n1": 0x8444C004, "neoverse-v1": 0x9444C004,
                 "max": 0x80038003}
# Substituted CTR_EL0 values: every IDC/DIC combination, 16- to 128-byte lines.
FAKE_CTRS = (0x8444C004, 0x9444C004, 0xA444C004, 0xB444C004, 0x80038003, 0xB0025005)
MEM = bytes(range(256)) * 160  # 40 KiB, so loads reach the largest scaled offsets
CS = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)


def run_native(progs: list[list[Insn]], mem: bytes = MEM, cpu: str = "cortex-a57",
               monkeypatch: pytest.MonkeyPatch | None = None, mutation: str = "none") -> list[int]:
    """r0 of each program, run natively; a program whose exit status disagrees with r0 fails."""
    if monkeypatch is not None:
        monkeypatch.setenv("QEMU_CPU", cpu)
    exes = [elf.build_executable("arm64", p, mem, mutation=mutation) for p in progs]
    results = []
    for i, (out, status) in enumerate(run_batch("arm64", exes)):
        assert len(out) >= 8, f"program {i}: no result (exit status {status})"
        r0 = int.from_bytes(out[:8], "little")
        assert status == r0 & 0xFF, f"program {i}: exit status {status}, r0 {r0:#x}"
        results.append(r0)
    return results


def check_against_interp(sources: list[str]) -> None:
    progs = [assemble(s) for s in sources]
    expected = [interp.run(p, MEM).r0 for p in progs]
    got = run_native(progs)
    for src, want, have in zip(sources, expected, got, strict=True):
        assert have == want, f"native {have:#x} != interpreter {want:#x} for:\n{src}"


EDGE_IMMS = [0, 1, -1, 4095, 4096, -4095, -4096, 0xFFF000, 0x7FFFFFFF, -0x80000000, 0xFF, 0x5555,
             0x0F0F0F0F, -2, 0x10000, 0x12345678, 0x8000, 63, 64, 31, 32]
ALU_NAMES = ["add", "sub", "mul", "div", "sdiv", "mod", "smod", "or", "and", "xor", "mov", "lsh", "rsh",
             "arsh"]
UNARY = [f"{kind}{bits}" for kind in ("le", "be", "bswap") for bits in (16, 32, 64)]
MOVSX = ["movsx832", "movsx1632", "movsx864", "movsx1664", "movsx3264"]
WORK_REGS = [0, 2, 3, 4, 5, 6, 7, 8, 9]  # r1 keeps the address of mem


def _random_program(rng: random.Random) -> str:
    lines = [f"lddw %r{r}, {rng.getrandbits(64):#x}" for r in WORK_REGS]
    for _ in range(40):
        dst, src = rng.choice(WORK_REGS), rng.choice([*WORK_REGS, 1])
        width = rng.choice(["", "32"])
        kind = rng.random()
        if kind < 0.5:
            name = rng.choice(ALU_NAMES)
            if name in ("lsh", "rsh", "arsh") and rng.random() < 0.5:
                operand = str(rng.randrange(32 if width else 64))
            elif rng.random() < 0.5:
                operand = str(rng.choice(EDGE_IMMS + [rng.randrange(-2**31, 2**31)]))
            else:
                operand = f"%r{src}"
            lines.append(f"{name}{width} %r{dst}, {operand}")
        elif kind < 0.6:
            lines.append(f"{rng.choice([f'neg{width}', *UNARY])} %r{dst}")
        elif kind < 0.7:
            lines.append(f"{rng.choice(MOVSX)} %r{dst}, %r{src}")
        elif kind < 0.85:
            size = rng.choice(["b", "h", "w", "dw"])
            off = rng.choice([-512, -264, -257, -256, -8, -1]) & ~({"b": 0, "h": 1, "w": 3, "dw": 7}[size])
            lines.append(f"stx{size} [%r10{off:+d}], %r{src}")
            load = rng.choice([f"ldx{size}", f"ldxs{size}"] if size != "dw" else ["ldxdw"])
            lines.append(f"{load} %r{dst}, [%r10{off:+d}]")
        else:
            size = rng.choice(["b", "h", "w", "dw"])
            scale = {"b": 1, "h": 2, "w": 4, "dw": 8}[size]
            off = rng.choice([0, scale, 255, 256, 4095 * scale, 4096 * scale, 3, 4100]) // scale * scale
            off = min(off, 32767 // scale * scale)  # the 16-bit offset field
            load = rng.choice([f"ldx{size}", f"ldxs{size}"] if size != "dw" else ["ldxdw"])
            lines.append(f"{load} %r{dst}, [%r1+{off}]")
    lines += [f"xor %r0, %r{r}" for r in WORK_REGS[1:]]
    lines.append("exit")
    return "\n".join(lines)


def test_random_programs_match_interpreter() -> None:
    rng = random.Random(20261121)
    check_against_interp([_random_program(rng) for _ in range(120)])


def _jump_program(cond: str, lhs_values: list[int], rhs_values: list[int], by_register: bool) -> str:
    """r0 accumulates (r0 * 3 + taken) over every lhs/rhs pair, so one run checks them all."""
    lines = ["mov %r0, 0"]
    for lhs in lhs_values:
        for rhs in rhs_values:
            operand = "%r2" if by_register else str(rhs)
            lines += [f"lddw %r3, {lhs:#x}", f"lddw %r2, {rhs & (2**64 - 1):#x}", "mul %r0, 3",
                      f"{cond} %r3, {operand}, +1", "ja +1", "add %r0, 1"]
    return "\n".join([*lines, "exit"])


JUMPS = ["jeq", "jne", "jgt", "jge", "jlt", "jle", "jsgt", "jsge", "jslt", "jsle", "jset"]
JUMP_LHS = [0, 1, 4095, 4096, (1 << 64) - 1, (1 << 64) - 4096, 0x80000000, 0xFFFFFFFF, 0x1_0000_0FFF,
            0xFFFFFFFF_FFFFF001, 0x7FFFFFFF]
JUMP_IMMS = [0, 4095, 4096, -1, -4095, -4096, 0x7FFFFFFF, -0x80000000, 0xFF0, 0x5555]


def test_every_jump_condition_at_immediate_edges() -> None:
    check_against_interp([_jump_program(cond + width, JUMP_LHS, JUMP_IMMS, by_register)
                          for cond in JUMPS for width in ("", "32") for by_register in (False, True)])


def _select_program(cond: str, moved: str) -> str:
    """r0 accumulates r4 after each ``if r3 cond imm goto +1; r4 = moved`` over every lhs/imm pair,
    r4 being 7 before: the branch_as_select shape."""
    lines = ["mov %r0, 0", "lddw %r5, 0xFFFFFFFF00000009"]
    for lhs in JUMP_LHS:
        for imm in JUMP_IMMS:
            lines += [f"lddw %r3, {lhs:#x}", "mov %r4, 7", f"{cond} %r3, {imm}, +1", f"mov %r4, {moved}",
                      "mul %r0, 3", "add %r0, %r4"]
    return "\n".join([*lines, "exit"])


def test_branch_as_select_computes_what_the_branch_did() -> None:
    """If-conversion is right for one thread: every condition, both widths, an immediate (0 is
    XZR, a wide one needs a scratch register after the compare) or a register moved."""
    sources = [_select_program(cond + width, moved) for cond in JUMPS for width in ("", "32")
               for moved in ("0", "11", "0x12345678", "-4097", "%r5")]
    progs = [assemble(source) for source in sources]
    for prog in progs:
        names = _mnemonics(BACKEND.compile(prog, mutation="branch_as_select").code)
        assert names.count("csel") == len(JUMP_LHS) * len(JUMP_IMMS)
        assert not [n for n in names if n.startswith("b.")]
    got = run_native(progs, mutation="branch_as_select")
    for source, prog, have in zip(sources, progs, got, strict=True):
        assert have == interp.run(prog, MEM).r0, source


@pytest.mark.parametrize("source", [
    "mov %r4, 7\njeq %r1, 1, +1\nmov32 %r4, 3\nmov %r0, %r4\nexit",  # 32-bit: zero-extends
    "mov %r4, 7\njeq %r1, 1, +1\nmovsx832 %r4, %r1\nmov %r0, %r4\nexit",  # not a plain move
    "mov %r4, 7\njeq %r1, 1, +2\nmov %r4, 3\nmov %r4, 5\nmov %r0, %r4\nexit",  # over two
    "mov %r4, 7\njeq %r1, 1, +1\nadd %r4, 3\nmov %r0, %r4\nexit",  # not a move
    "mov %r4, 7\njeq %r1, 1, +1\nmov %r4, 3\njne %r1, 2, -2\nmov %r0, %r4\nexit",  # the move is a target
])
def test_branch_as_select_leaves_other_branches_alone(source: str) -> None:
    prog = assemble(source)
    assert BACKEND.compile(prog, mutation="branch_as_select").code == BACKEND.compile(prog).code


def test_atomics_acquire_release_calls_and_callx() -> None:
    sources = [
        # every atomic, 32 and 64 bits, with an offset that needs an address register
        "\n".join(["lddw %r2, 0x8000000180000001", "stxdw [%r10-8], %r2", "stxdw [%r10-16], %r2",
                   "mov %r3, 0x70f", "mov %r0, 0x0"]
                  + [f"lock {f}{op}{w} [%r10-{8 if w else 16}], %r3\nxor %r0, %r3\nldxdw %r4, [%r10-8]\n"
                     f"add %r0, %r4\nldxdw %r4, [%r10-16]\nadd %r0, %r4"
                     for op in ("add", "or", "and", "xor") for f in ("", "fetch ") for w in ("", "32")]
                  + ["lock xchg [%r10-16], %r3", "add %r0, %r3", "lock xchg32 [%r10-8], %r3", "add %r0, %r3",
                     "ldxdw %r4, [%r10-8]", "add %r0, %r4", "exit"]),
        # cmpxchg success and failure, both widths
        "\n".join(["lddw %r2, 0x1122334455667788", "stxdw [%r1+0], %r2", "stxdw [%r1+8], %r2",
                   "mov %r6, %r1", "lddw %r0, 0x1122334455667788", "mov %r3, 7",
                   "lock cmpxchg [%r6+0], %r3", "mov %r7, %r0", "lock cmpxchg [%r6+0], %r3",
                   "add %r7, %r0", "mov %r0, 0x55667788", "lock cmpxchg32 [%r6+8], %r3", "add %r7, %r0",
                   "lock cmpxchg32 [%r6+8], %r3", "add %r7, %r0", "ldxdw %r0, [%r6+8]", "add %r0, %r7",
                   "ldxdw %r8, [%r6+0]", "add %r0, %r8", "exit"]),
        # load-acquire / store-release of every size, with offsets
        "\n".join(["lddw %r2, 0x8182838485868788", "mov %r0, 0"]
                  + [f"store_release{b} [%r10-{o}], %r2\nload_acquire{b} %r3, [%r10-{o}]\nadd %r0, %r3"
                     for b, o in ((8, 1), (16, 300), (32, 4), (64, 512))]
                  + ["load_acquire64 %r3, [%r1+4096]", "add %r0, %r3", "exit"]),
        # local calls: each function has its own frame; r6-r9 survive a callee that writes them
        "\n".join(["mov %r6, 6", "mov %r7, 7", "mov %r8, 8", "mov %r9, 9", "stdw [%r10-8], 100",
                   "mov %r1, 3", "call local f", "ldxdw %r2, [%r10-8]", "add %r0, %r2",
                   "add %r0, %r6", "add %r0, %r7", "add %r0, %r8", "add %r0, %r9",
                   "lddw %r3, func g", "mov %r1, 1000", "call %r3", "add %r0, %r6", "exit",
                   "f: stdw [%r10-8], 5", "mov %r6, 60", "mov %r7, 70", "mov %r8, 80", "mov %r9, 90",
                   "mov %r0, %r1", "mul %r0, 11", "ldxdw %r2, [%r10-8]", "add %r0, %r2", "exit",
                   "g: mov %r0, %r1", "add %r0, 1", "call local f", "exit"]),
    ]
    check_against_interp(sources)


def _icache_counter_program(mutation: str, start: int, length: int, ctr: int | None = None) -> bytes:
    """A native executable running icache_sync's words with DC CVAU / IC IVAU replaced by
    counters (x14, x15), and the MRS of CTR_EL0 by a MOV of ``ctr`` when given; it writes
    CTR_EL0, the D-line count and the I-line count to stdout."""
    counters = {e.dc_cvau(12): [e.add_imm(14, 14, 1)], e.ic_ivau(12): [e.add_imm(15, 15, 1)]}
    if ctr is not None:
        counters[e.mrs(9, "ctr_el0")] = e.mov_imm(9, ctr)
    seq = [word for w in a64_intrinsics.icache_sync(mutation) for word in counters.get(w, [w])]
    out = elf.DATA_ADDR
    code = [e.movz(14, 0), e.movz(15, 0), *e.mov_imm(0, start), *e.mov_imm(1, length), *seq,
            *e.mov_imm(2, out), e.ldst_uimm(e.STR_X, 9, 2, 0), e.ldst_uimm(e.STR_X, 14, 2, 8),
            e.ldst_uimm(e.STR_X, 15, 2, 16),
            e.movz(0, 1), e.mov_reg(1, 2), e.movz(2, 24), e.movz(8, 64), e.svc(0),
            e.movz(0, 0), e.movz(8, 94), e.svc(0)]
    return elf.write_elf("arm64", struct.pack(f"<{len(code)}I", *code), bytes(24))


def _lines(start: int, length: int, line: int) -> int:
    end = start + length
    return len(range(start & ~(line - 1), end, line))


def _check_icache_counts(cpu: str, ctr: int | None) -> None:
    cases = [(m, start, length) for m in ("none", "wrong_line_size", "half_range", "no_dc_clean",
                                          "no_ic_invalidate")
             for start, length in ((0x1030, 0x100), (0x1000, 0x40), (0x1001, 0), (0x103F, 1), (0, 0x1000))]
    runs = run_batch("arm64", [_icache_counter_program(*c, ctr) for c in cases])
    for (mutation, start, length), (out, status) in zip(cases, runs, strict=True):
        assert status == 0 and len(out) == 24, (cpu, mutation, status, out)
        ctr_el0, d_count, i_count = struct.unpack("<3Q", out)
        assert ctr_el0 == (USER_MODE_CTR[cpu] if ctr is None else ctr), f"{cpu}: CTR_EL0 {ctr_el0:#x}"
        idc, dic = (ctr_el0 >> 28) & 1, (ctr_el0 >> 29) & 1
        scale = 4 if mutation == "wrong_line_size" else 1
        span = length // 2 if mutation == "half_range" else length
        d_line, i_line = 4 << ((ctr_el0 >> 16) & 0xF), 4 << (ctr_el0 & 0xF)
        want_d = 0 if idc or mutation == "no_dc_clean" else _lines(start, span, d_line * scale)
        want_i = 0 if dic or mutation == "no_ic_invalidate" else _lines(start, span, i_line * scale)
        assert (d_count, i_count) == (want_d, want_i), (cpu, mutation, hex(start), length)


@pytest.mark.parametrize("cpu", CPU_MODELS)
def test_icache_sync_maintains_the_lines_ctr_el0_asks_for(cpu: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QEMU_CPU", cpu)
    _check_icache_counts(cpu, None)


@pytest.mark.parametrize("ctr", FAKE_CTRS, ids=map(hex, FAKE_CTRS))
def test_icache_sync_honours_idc_dic_and_line_sizes(ctr: int) -> None:
    _check_icache_counts("cortex-a57", ctr)


def _self_modifying_program(rounds: int) -> str:
    """mmap an RWX page, write `movz x0, #k; ret` into it, icache_sync, call it; repeat."""
    lines = ["mov %r1, 222", "mov %r2, 0", "mov %r3, 4096", "mov %r4, 7", "mov %r5, 0x22",  # mmap
             "call syscall", "mov %r6, %r0", "mov %r7, 0"]
    for k in range(1, rounds + 1):
        lines += [f"stw [%r6+0], {e.movz(0, k * 3):#x}", f"stw [%r6+4], {e.ret():#x}",
                  "mov %r1, %r6", "mov %r2, 8", "call icache_sync", "call %r6", "mul %r7, 10",
                  "add %r7, %r0"]
    lines += ["mov %r0, %r7", "exit"]
    return "\n".join(lines)


@pytest.mark.parametrize("cpu", CPU_MODELS)
def test_self_modifying_code_runs_new_code_on_each_model(cpu: str, monkeypatch: pytest.MonkeyPatch) -> None:
    progs = [assemble(_self_modifying_program(3))]
    progs += [assemble(f"mov %r1, %r1\ncall {h}\nmov %r0, 5\nexit")
              for h in ("fence_full", "fence_acquire", "fence_release", "fence_store_store",
                        "fence_load_load", "context_sync", "spin_hint")]
    assert run_native(progs, cpu=cpu, monkeypatch=monkeypatch) == [369] + [5] * 7


def test_syscalls_clone_thread_and_cycle_counter() -> None:
    getpid = 172
    syscall6 = "\n".join(["mov %r6, %r1", f"stdw [%r6+0], {getpid}"]
                         + [f"stdw [%r10-{8 * (6 - i)}], {i}" for i in range(6)]
                         + [f"mov %r1, {getpid}", "call syscall", "mov %r7, %r0",
                            f"mov %r1, {getpid}", "mov %r2, %r10", "sub %r2, 48", "call syscall6",
                            "mov %r8, %r0", "mov %r0, 0", "jne %r7, %r8, +2", "jslt %r7, 1, +1",
                            "mov %r0, 1", "exit"])
    clone = "\n".join([
        "mov %r6, %r1", "stdw [%r6+0], 0", "stw [%r6+8], -1",  # shared word, tid word (non-zero)
        "lddw %r1, func child", "mov %r2, %r6", "add %r2, 16384", "mov %r3, %r6", "mov %r4, %r6",
        "add %r4, 8", "call clone_thread", "mov %r7, %r0",
        "wait: call spin_hint", "ldxw %r2, [%r6+8]", "jne %r2, 0, wait",  # cleared at thread exit
        "ldxdw %r0, [%r6+0]", "jsgt %r7, 0, +1", "mov %r0, 99", "exit",
        "child: mov %r6, 41", "add %r6, 1", "stxdw [%r1+0], %r6", "mov %r0, 0", "exit"])
    counter = "\n".join(["call cycle_counter", "mov %r6, %r0", "call cycle_counter", "mov %r7, %r0",
                         "mov %r0, 0", "jlt %r7, %r6, +2", "jeq %r6, 0, +1", "mov %r0, 1", "exit"])
    assert run_native([assemble(s) for s in (syscall6, clone, counter)]) == [1, 42, 1]


def test_branches_and_function_addresses_relax_beyond_one_mib() -> None:
    # icache_sync inlines to about 27 words: 10,000 of them put about 1 MiB between the branches
    # (16-bit slot offsets) and their targets. They are jumped over, never run.
    source = "\n".join(["mov %r6, 0", "mov %r9, 1", "lddw %r8, func far", "top: jne %r9, 0, over",
                        *["call icache_sync"] * 10_000,
                        "over: call %r8", "add %r6, %r0", "jeq %r6, 5, top", "mov %r0, %r6", "exit",
                        "far: mov %r0, 5", "exit"])
    prog = assemble(source)
    compiled = BACKEND.compile(prog)
    assert len(compiled.code) > 1 << 20
    words = struct.unpack(f"<{len(compiled.code) // 4}I", compiled.code)
    # long forms: B.!cond over B for jne (inverted: eq) and jeq (inverted: ne); ADR + add for lddw
    assert e.b_cond(e.EQ, 8) in words and e.b_cond(e.NE, 8) in words
    assert e.adr(21, 0) in words
    expected = interp.run(prog, MEM).r0
    assert expected == 10
    assert run_native([prog]) == [expected]


def test_branch_beyond_128_mib_raises() -> None:
    em = CodeBuffer(2)
    em.fixup(FIX_BCOND, 1, arg=e.EQ)
    em.body[1] = 40_000_000  # a target 160 MB away
    with pytest.raises(JitError, match="out of arm64 reach"):
        em.link()


def _mnemonics(code: bytes) -> list[str]:
    return [i.mnemonic for i in CS.disasm(code, 0)]


def test_mutations_change_only_their_part_of_the_protocol() -> None:
    prog = assemble("mov %r1, %r1\nmov %r2, 64\ncall icache_sync\ncall context_sync\nmov %r0, 0\nexit")
    base = BACKEND.compile(prog).code
    names = _mnemonics(base)
    assert names.count("dc") == 1 and names.count("ic") == 1 and names.count("dsb") == 2
    assert names.count("isb") == 2 and "mrs" in names
    for mutation in MUTATIONS:
        code = BACKEND.compile(prog, mutation=mutation).code
        got = _mnemonics(code)
        if mutation not in BACKEND.mutations:
            assert code == base, mutation
            continue
        removed = {"no_dc_clean": "dc", "no_ic_invalidate": "ic", "no_dsb": "dsb", "no_isb": "isb"}
        if mutation in removed:
            assert removed[mutation] not in got, mutation
            assert len(got) < len(names)
        else:
            assert code != base and len(got) == len(names) + (mutation == "half_range"), mutation


def test_compile_refuses_bad_input() -> None:
    with pytest.raises(JitError, match="valid choices"):
        BACKEND.compile(assemble("mov %r0, 0\nexit"), mutation="no_such_bug")
    with pytest.raises(JitError):
        BACKEND.compile([Insn(isa.ALU64 | isa.MOV, 10, imm=1), Insn(isa.EXIT_OPCODE)])  # writes r10


def test_offsets_and_functions_are_reported() -> None:
    prog = assemble("mov %r0, 1\ncall local f\nexit\nf: mov %r0, 2\nexit")
    compiled = BACKEND.compile(prog)
    assert compiled.arch == "arm64" and len(compiled.insn_offsets) == len(prog)
    assert set(compiled.functions) == {0, 3}
    assert compiled.functions[0] == 0 and compiled.insn_offsets[0] == 4 * 7  # after the prologue
    assert compiled.insn_offsets == sorted(compiled.insn_offsets)
    assert compiled.functions[3] < compiled.insn_offsets[3]
