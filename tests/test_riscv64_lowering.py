"""eBPF -> RV64GC lowering, run under qemu-user (``qemu-riscv64``) through jit_core.elf.

Each program becomes a freestanding executable whose stdout is r0; results are compared with the
reference interpreter (jit_core.interp) or, for what the interpreter cannot run (system calls,
threads, run-time code), with values the program checks itself. The programs of a test are built
first and run together, so each test costs a few qemu-user process starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import capstone
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jit_core import asm, conformance, interp, isa
from jit_core.elf import build_executable
from jit_core.errors import JitError
from jit_core.intrinsics import ICACHE_MUTATIONS as MUTATIONS
from jit_core.isa import Insn
from jit_core.riscv64 import BACKEND
from jit_core.riscv64 import encoder as E
from jit_core.riscv64.layout import CodeBuffer

needs_qemu = pytest.mark.skipif(shutil.which("qemu-riscv64") is None,
                                reason="qemu-user (qemu-riscv64) missing")
CONFORMANCE = Path(__file__).resolve().parents[2] / "shared" / "bpf_conformance" / "tests"


def run_native(programs: Sequence[tuple[list[Insn], bytes]], mutation: str = "none") -> list[tuple[int, int]]:
    """(r0, exit status) of each (program, mem) run as a riscv64 executable under qemu-user."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for k, (prog, mem) in enumerate(programs):
            path = Path(tmp) / f"p{k}"
            path.write_bytes(build_executable("riscv64", prog, mem, mutation=mutation))
            path.chmod(0o755)
            paths.append(path)

        def one(path: Path) -> tuple[int, int]:
            done = subprocess.run(["qemu-riscv64", str(path)], capture_output=True, timeout=60)
            assert len(done.stdout) == 8, f"{path.name}: stdout {done.stdout!r}, status {done.returncode}"
            return int.from_bytes(done.stdout, "little"), done.returncode

        with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
            return list(pool.map(one, paths))


# ---- programs compared with the interpreter -----------------------------------------------------

# Each program leaves a digest of its results in r0 (``fold`` mixes a register into r0).
FOLD = "mul %r0, 31\nadd %r0, {}\n"
SEED_REGS = "".join(f"lddw %r{r}, {v:#x}\n" for r, v in
                    ((1, 0x8000000000000000), (2, 0xFFFFFFFF), (3, 0x123456789ABCDEF0), (4, 0x1_0000_0000),
                     (5, 0xFFFFFFFF_80000000), (6, 0x7FFFFFFF), (7, 0xFFFFFFFFFFFFFFFF), (8, 3), (9, 0)))


def alu_program(ops: Sequence[str]) -> str:
    """Run each op on fresh seed registers and fold its destination into r0."""
    body = "mov %r0, 0\n"
    for op in ops:
        dst = op.split()[1].rstrip(",")
        body += "mov %r9, %r0\n" + SEED_REGS.replace("lddw %r9, 0x0\n", "") + op + "\n"
        body += f"mov %r8, {dst}\nmov %r0, %r9\n" + FOLD.format("%r8")
    return body + "exit\n"


ALU_CASES = {
    "div64": ["div %r3, %r8", "div %r3, %r9", "div %r1, %r7", "div %r3, 0", "div %r3, -3",
              "div %r7, 0x10000"],
    "div32": ["div32 %r3, %r8", "div32 %r3, %r4", "div32 %r1, %r2", "div32 %r3, 0", "div32 %r2, -1"],
    "sdiv": ["sdiv %r1, %r7", "sdiv %r3, %r9", "sdiv %r5, %r8", "sdiv %r1, -1", "sdiv %r3, -7",
             "sdiv %r3, 0"],
    "sdiv32": ["sdiv32 %r5, %r7", "sdiv32 %r5, -1", "sdiv32 %r3, %r4", "sdiv32 %r6, -5", "sdiv32 %r2, 0"],
    "mod": ["mod %r3, %r8", "mod %r3, %r9", "mod %r3, 0", "mod %r7, -3", "mod32 %r3, %r4", "mod32 %r7, 0",
            "mod32 %r3, %r8"],
    "smod": ["smod %r1, %r7", "smod %r5, %r8", "smod %r3, 0", "smod %r3, -7", "smod32 %r5, %r7",
             "smod32 %r5, -1", "smod32 %r7, %r9", "smod32 %r5, -3"],
    "arith32": ["add32 %r2, 1", "add32 %r3, %r7", "sub32 %r9, 1", "sub32 %r4, %r6", "mul32 %r3, %r3",
                "mul32 %r7, 0x12345", "neg32 %r5", "neg32 %r9", "add32 %r3, 0x7ffff800", "sub32 %r6, -2048"],
    "arith64": ["add %r1, -1", "add %r3, 0x12345678", "sub %r3, %r7", "sub %r9, -2048", "sub %r9, 2048",
                "mul %r3, %r3", "mul %r3, -9", "neg %r1", "neg %r3"],
    "logic": ["and %r3, 0xff00", "and %r3, -16", "or %r9, 0x800", "xor %r3, -1", "and32 %r7, -2",
              "or32 %r1, 1", "xor32 %r3, %r7", "and %r3, %r5", "or %r4, %r2", "xor32 %r5, 0x7fffffff"],
    "shifts": ["lsh %r3, 63", "rsh %r1, 63", "arsh %r1, 63", "lsh %r3, %r8", "rsh %r7, %r6", "arsh %r5, %r8",
               "lsh32 %r3, 31", "rsh32 %r5, 1", "arsh32 %r5, 4", "arsh32 %r2, %r8", "lsh32 %r7, %r6",
               "rsh32 %r3, %r3", "lsh %r8, %r7"],
    "mov": ["mov %r3, -1", "mov32 %r3, -1", "mov32 %r3, %r5", "mov %r9, %r1", "movsx864 %r3, %r3",
            "movsx1664 %r3, %r3", "movsx3264 %r3, %r3", "movsx832 %r3, %r3", "movsx1632 %r5, %r1",
            "movsx3264 %r4, %r5", "movsx832 %r6, %r7", "mov32 %r4, 0x80000000", "mov %r4, 0x7ffff800"],
    "endian": ["le16 %r3", "le32 %r3", "le64 %r3", "be16 %r3", "be32 %r3", "be64 %r3", "bswap16 %r3",
               "bswap32 %r3", "bswap64 %r3", "bswap64 %r5", "be16 %r7", "le32 %r5"],
}

MEM = bytes(range(256)) * 32  # 8 KiB: offsets beyond the 12-bit immediates are reachable
OTHER_CASES = {
    "lddw": "lddw %r0, 0x123456789abcdef0\nlddw %r1, 0xffffffff80000000\nxor %r0, %r1\n"
            "lddw %r1, 0x7fffffff\n" + FOLD.format("%r1") + "lddw %r1, 0x8000000000000000\n"
            + FOLD.format("%r1") + "exit\n",
    "loads": "mov %r6, %r1\nmov %r0, 0\nldxdw %r2, [%r6+4000]\n" + FOLD.format("%r2")
             + "add %r6, 4096\nldxw %r2, [%r6-3000]\n" + FOLD.format("%r2")
             + "ldxh %r2, [%r6+2047]\n" + FOLD.format("%r2") + "ldxb %r2, [%r6-2048]\n" + FOLD.format("%r2")
             + "ldxsb %r2, [%r6+200]\n" + FOLD.format("%r2") + "ldxsh %r2, [%r6+254]\n" + FOLD.format("%r2")
             + "ldxsw %r2, [%r6+4092]\n" + FOLD.format("%r2") + "exit\n",
    "stores": "mov %r6, %r1\nmov %r0, 0\nstdw [%r6+5000], -2\nldxdw %r2, [%r6+5000]\n" + FOLD.format("%r2")
              + "stw [%r6+8], 0x12345678\nsth [%r6+10], -1\nstb [%r6+8], 0\nldxdw %r2, [%r6+8]\n"
              + FOLD.format("%r2") + "lddw %r3, 0x1122334455667788\nstxw [%r6-0], %r3\nstxh [%r6+3], %r3\n"
              + "stxb [%r6+7], %r3\nstxdw [%r10-8], %r3\nldxdw %r2, [%r6+0]\n" + FOLD.format("%r2")
              + "ldxdw %r2, [%r10-8]\n" + FOLD.format("%r2") + "stw [%r10-512], 7\nldxw %r2, [%r10-512]\n"
              + FOLD.format("%r2") + "exit\n",
    "atomics64": "mov %r6, %r1\nstdw [%r6+0], 100\nmov %r2, 5\nlock add [%r6+0], %r2\nmov %r2, 3\n"
                 "lock fetch add [%r6+0], %r2\nmov %r0, %r2\nlddw %r2, 0xf0f0f0f0f0f0f0f0\n"
                 "lock fetch or [%r6+0], %r2\n" + FOLD.format("%r2")
                 + "mov %r2, -256\nlock and [%r6+0], %r2\n"
                 "mov %r2, 0xff\nlock fetch xor [%r6+0], %r2\n" + FOLD.format("%r2")
                 + "mov %r2, 9\nlock xchg [%r6+0], %r2\n" + FOLD.format("%r2")
                 + "mov %r9, %r0\nmov %r0, 9\nmov %r2, 11\nlock cmpxchg [%r6+0], %r2\n"
                 "mov %r8, %r0\nmov %r0, 8\nmov %r2, 12\nlock cmpxchg [%r6+0], %r2\nadd %r0, %r8\n"
                 + FOLD.format("%r9") + "ldxdw %r2, [%r6+0]\n" + FOLD.format("%r2")
                 + "add %r6, 2040\nstdw [%r6+2056], 1\nmov %r2, 2\nlock fetch add [%r6+2056], %r2\n"
                 + FOLD.format("%r2") + "exit\n",
    "atomics32": "mov %r6, %r1\nstdw [%r6+0], -1\nstw [%r6+0], 0x7ffffffe\nlddw %r2, 0xffffffff00000003\n"
                 "lock add32 [%r6+0], %r2\nmov %r2, 1\nlock fetch add32 [%r6+0], %r2\nmov %r0, %r2\n"
                 "mov %r2, 0\nlock fetch or32 [%r6+0], %r2\n" + FOLD.format("%r2")
                 + "lddw %r2, 0x1234567800000001\nlock fetch and32 [%r6+0], %r2\n" + FOLD.format("%r2")
                 + "mov32 %r2, -1\nlock fetch xor32 [%r6+0], %r2\n" + FOLD.format("%r2")
                 + "mov %r2, -5\nlock xchg32 [%r6+0], %r2\n" + FOLD.format("%r2")
                 + "mov %r9, %r0\nlddw %r0, 0x77777777fffffffb\nmov %r2, 6\nlock cmpxchg32 [%r6+0], %r2\n"
                 "mov %r8, %r0\nmov %r0, 5\nlock cmpxchg32 [%r6+0], %r2\nadd %r0, %r8\n" + FOLD.format("%r9")
                 + "ldxdw %r2, [%r6+0]\n" + FOLD.format("%r2") + "exit\n",
    "acquire_release": "mov %r6, %r1\nmov %r0, 0\nlddw %r3, 0x8899aabbccddeeff\nstore_release8 [%r6+0], %r3\n"
                       "store_release16 [%r6+8], %r3\nstore_release32 [%r6+16], %r3\n"
                       "store_release64 [%r6+24], %r3\n"
                       "load_acquire8 %r2, [%r6+0]\n" + FOLD.format("%r2") + "load_acquire16 %r2, [%r6+8]\n"
                       + FOLD.format("%r2") + "load_acquire32 %r2, [%r6+16]\n" + FOLD.format("%r2")
                       + "load_acquire64 %r2, [%r6+24]\n" + FOLD.format("%r2")
                       + "load_acquire64 %r2, [%r6+3000]\n"
                       + FOLD.format("%r2") + "exit\n",
    "jmp32": "mov %r0, 0\nlddw %r1, 0x100000005\nlddw %r2, 0xffffffff00000004\n"
             "jgt32 %r1, %r2, +1\nadd %r0, 1\njgt %r1, %r2, +1\nadd %r0, 2\n"
             "lddw %r3, 0x80000000\nlddw %r4, 0x17fffffff\njsgt32 %r3, %r4, +1\nadd %r0, 4\n"
             "jslt32 %r3, %r4, +1\nadd %r0, 8\njlt32 %r3, %r4, +1\nadd %r0, 16\n"
             "jge32 %r3, -1, +1\nadd %r0, 32\njsge32 %r3, -1, +1\nadd %r0, 64\n"
             "jset32 %r4, 0x80000000, +1\nadd %r0, 128\nlddw %r5, 0x100000000\n"
             "jset32 %r4, %r5, +1\nadd %r0, 256\n"
             "jset %r4, %r5, +1\nadd %r0, 512\njeq32 %r1, 5, +1\nadd %r0, 1024\n"
             "jne32 %r2, 4, +1\nadd %r0, 2048\n"
             "jle32 %r2, %r1, +1\nadd %r0, 4096\njsle32 %r4, %r3, +1\nadd %r0, 8192\n"
             "jeq %r1, 5, +1\nadd %r0, 16384\njslt %r2, 0x7fffffff, +1\nadd %r0, 32768\n"
             "jset32 %r3, -2048, +1\nadd %r0, 65536\njset %r1, 0x12345, +1\nadd %r0, 131072\nexit\n",
    "local_calls": "mov %r6, 6\nmov %r7, 7\nmov %r8, 8\nmov %r9, 9\nstdw [%r10-8], 99\nmov %r1, 5\n"
                   "call local fact\nldxdw %r1, [%r10-8]\nadd %r0, %r1\nmul %r6, %r7\nadd %r0, %r6\n"
                   "mul %r8, %r9\nadd %r0, %r8\nlddw %r3, func clobber\ncall %r3\n"
                   "add %r0, %r6\nadd %r0, %r9\n"
                   "exit\n"
                   "fact:\nstxdw [%r10-8], %r1\nmov %r6, -1\nmov %r0, 1\njle %r1, 1, +4\nsub %r1, 1\n"
                   "call local fact\nldxdw %r1, [%r10-8]\nmul %r0, %r1\nexit\n"
                   "clobber:\nmov %r6, 0\nmov %r7, 0\nmov %r8, 0\nmov %r9, 0\nstdw [%r10-512], 1\n"
                   "mov %r0, 1000\n"
                   "exit\n",
    "backward_loop": "mov %r0, 0\nmov %r1, 100\nloop:\nadd %r0, %r1\nsub %r1, 1\njne %r1, 0, loop\n"
                     "mov32 %r1, 7\nloop2:\nmul %r0, 3\nsub32 %r1, 1\njsgt32 %r1, 0, loop2\nexit\n",
    "ja32": "mov %r0, 1\nja32 over\nmov %r0, 2\nover:\nadd %r0, 10\nexit\n",
}
ALL_CASES = {**{k: alu_program(v) for k, v in ALU_CASES.items()}, **OTHER_CASES}


@pytest.fixture(scope="module")
def native_results() -> dict[str, tuple[int, int]]:
    names = list(ALL_CASES)
    runs = run_native([(asm.assemble(ALL_CASES[n]), MEM) for n in names])
    return dict(zip(names, runs, strict=True))


@needs_qemu
@pytest.mark.parametrize("name", list(ALL_CASES))
def test_matches_interpreter(name: str, native_results: dict[str, tuple[int, int]]) -> None:
    expected = interp.run(asm.assemble(ALL_CASES[name]), MEM).r0
    r0, status = native_results[name]
    assert (r0, status) == (expected, expected & 0xFF)


# ---- random programs ---------------------------------------------------------------------------

_REG_OPS = [name + width for name in ("add", "sub", "mul", "div", "sdiv", "mod", "smod", "or", "and", "xor",
                                      "lsh", "rsh", "arsh", "mov") for width in ("", "32")]
_UNARY = ["neg", "neg32", "le16", "le32", "be16", "be32", "be64", "bswap16", "bswap32", "bswap64"]
_MOVSX = ["movsx864", "movsx1664", "movsx3264", "movsx832", "movsx1632"]
_INTERESTING = [0, 1, -1, 2, 31, 32, 63, 64, 2047, 2048, -2048, -2049, 0x7FFFFFFF, -0x80000000, 0x12345]
_reg = st.integers(0, 5)
_line = st.one_of(
    st.builds(lambda op, d, s: f"{op} %r{d}, %r{s}", st.sampled_from(_REG_OPS), _reg, _reg),
    st.builds(lambda op, d, v: f"{op} %r{d}, {v}", st.sampled_from(_REG_OPS), _reg,
              st.one_of(st.sampled_from(_INTERESTING), st.integers(-(1 << 31), (1 << 31) - 1))),
    st.builds(lambda op, d: f"{op} %r{d}", st.sampled_from(_UNARY), _reg),
    st.builds(lambda op, d, s: f"{op} %r{d}, %r{s}", st.sampled_from(_MOVSX), _reg, _reg),
)
_seeds = st.lists(st.integers(0, (1 << 64) - 1), min_size=6, max_size=6)


@needs_qemu
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_line, min_size=1, max_size=12), min_size=8, max_size=8), _seeds)
def test_random_alu_programs_match_interpreter(bodies: list[list[str]], seeds: list[int]) -> None:
    """Eight random ALU programs per example, run in one batch; r0 folds r0-r5 together."""
    init = "".join(f"lddw %r{r}, {v:#x}\n" for r, v in enumerate(seeds))
    tail = "".join(f"mul %r0, 31\nxor %r0, %r{r}\n" for r in range(1, 6)) + "exit\n"
    progs = [asm.assemble(init + "\n".join(body) + "\n" + tail) for body in bodies]
    native = run_native([(p, b"") for p in progs])
    for prog, body, (r0, _) in zip(progs, bodies, native, strict=True):
        assert r0 == interp.run(prog).r0, body


# ---- intrinsics and mutations ------------------------------------------------------------------

# mmap an RWX page with syscall6, write a native function into it, icache_sync, call it with
# callx; rewrite it and call again: 42 + 43.
RUNTIME_CODE = f"""
stdw [%r10-48], 0
stdw [%r10-40], 4096
stdw [%r10-32], 7
stdw [%r10-24], 0x22
stdw [%r10-16], -1
stdw [%r10-8], 0
mov %r2, %r10
add %r2, -48
mov %r1, 222
call syscall6
mov %r6, %r0
stw [%r6+0], {E.addi(E.Reg.A0, E.Reg.ZERO, 42):#x}
stw [%r6+4], {E.jalr(E.Reg.ZERO, E.Reg.RA, 0):#x}
mov %r1, %r6
mov %r2, 8
call icache_sync
call %r6
mov %r7, %r0
stw [%r6+0], {E.addi(E.Reg.A0, E.Reg.ZERO, 43):#x}
mov %r1, %r6
mov %r2, 8
call icache_sync
call context_sync
call %r6
add %r0, %r7
exit
"""

# A thread writes 77 to mem[0]; the parent spins until it sees it, then waits with futex for
# the kernel to clear the tid word (CLONE_CHILD_CLEARTID) and returns mem[0].
CLONE = """
mov %r6, %r1
lddw %r1, func child
mov %r2, %r6
add %r2, 65536
mov %r3, %r6
mov %r4, %r6
add %r4, 8
call clone_thread
mov %r7, %r0
jsle %r7, 0, fail
spin:
call spin_hint
ldxdw %r0, [%r6+0]
jne %r0, 77, spin
wait:
ldxw %r4, [%r6+8]
jeq %r4, 0, done
mov %r1, 98
mov %r2, %r6
add %r2, 8
mov %r3, 0
mov %r5, 0
call syscall
ja wait
done:
ldxdw %r0, [%r6+0]
exit
fail:
mov %r0, %r7
exit
child:
stdw [%r1+0], 77
mov %r0, 0
exit
"""
FENCES_AND_CLOCK = """
call cycle_counter
mov %r6, %r0
call fence_full
call fence_acquire
call fence_release
call fence_store_store
call fence_load_load
call spin_hint
call cycle_counter
mov %r7, 0
jlt %r0, %r6, +1
mov %r7, 1
mov %r1, 172
call syscall
mov %r8, 0
jsle %r0, 0, +1
mov %r8, 1
mov %r0, %r7
add %r0, %r8
exit
"""


@needs_qemu
@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_runtime_code_runs_under_every_mutation(mutation: str) -> None:
    # qemu-user's TCG keeps code coherent, so every mutation still computes the right answer;
    # the sanitizer, not the result, tells them apart.
    assert run_native([(asm.assemble(RUNTIME_CODE), b"")], mutation) == [(85, 85)]


@needs_qemu
def test_clone_fences_clock_and_syscall() -> None:
    results = run_native([(asm.assemble(CLONE), bytes(65536)), (asm.assemble(FENCES_AND_CLOCK), b"")])
    assert results == [(77, 77), (2, 2)]


def _decode(code: bytes) -> list[str]:
    md = capstone.Cs(capstone.CS_ARCH_RISCV, capstone.CS_MODE_RISCV64 | capstone.CS_MODE_RISCVC)
    return [f"{i.mnemonic} {i.op_str}".strip() for i in md.disasm(code, 0)]


def test_icache_sync_sequences_per_mutation() -> None:
    prog = asm.assemble("call icache_sync\ncall context_sync\nexit")
    text = {m.value: _decode(BACKEND.compile(prog, mutation=m).code) for m in MUTATIONS}
    syscall = ["add a1, a0, a1", "mv a2, zero", "addi a7, zero, 0x103", "ecall", "fence.i"]
    assert syscall == text["none"][8:13]
    assert text["half_range"][8:14] == ["srli a1, a1, 1", *syscall]
    assert text["fence_i_writer_only"][8:10] == ["fence.i", "fence.i"]
    assert "ecall" not in text["fence_i_writer_only"]
    untouched = {m.value for m in MUTATIONS if m not in BACKEND.mutations}
    assert all(text[m] == text["none"] for m in untouched)


def test_unknown_mutation_names_choices() -> None:
    with pytest.raises(JitError, match="valid choices: none, "):
        BACKEND.compile(asm.assemble("exit"), mutation="no_flush")


# ---- layout, offsets, relaxation ----------------------------------------------------------------

def test_offsets_and_functions() -> None:
    prog = asm.assemble("lddw %r0, 0x1122334455667788\ncall local f\nexit\nf:\nmov %r0, 1\nexit")
    compiled = BACKEND.compile(prog)
    assert compiled.arch == "riscv64"
    assert compiled.functions[0] == 0 and set(compiled.functions) == {0, 4}
    offs = compiled.insn_offsets
    assert len(offs) == len(prog) and offs[1] == offs[0] and offs == sorted(offs)
    assert compiled.functions[4] < offs[4]  # the slot's code follows its function's prologue
    assert len(compiled.code) % 4 == 0


def test_refused_program_names_instruction() -> None:
    with pytest.raises(JitError, match="instruction 0"):
        BACKEND.compile([Insn(isa.ALU64 | isa.MOV, dst=10, imm=1), Insn(isa.EXIT_OPCODE)])


def _nops(buf: CodeBuffer, count: int) -> None:
    buf.words.extend([E.addi(0, 0, 0)] * count)


def _relaxed(code: bytes, at: int) -> tuple[list[str], int]:
    """Mnemonics of the reference at byte ``at`` (with the link register of a JALR) and the address
    it transfers control to, worked out from capstone's operands (not from this project's encoder)."""
    md = capstone.Cs(capstone.CS_ARCH_RISCV, capstone.CS_MODE_RISCV64 | capstone.CS_MODE_RISCVC)
    md.detail = True
    insns = []
    for insn in md.disasm(code[at:at + 12], at):
        insns.append(insn)
        if insn.mnemonic not in ("auipc",) and not (insn.mnemonic.startswith("b") and len(insns) == 1
                                                    and insn.operands[-1].imm in (8, 12)):
            break
    imms = [op.imm for op in insns[-1].operands if op.type == capstone.riscv.RISCV_OP_IMM]
    last = insns[-1]
    if len(insns) >= 2 and insns[-2].mnemonic == "auipc":
        hi = insns[-2].operands[1].imm << 12
        hi = hi - (1 << 32) if hi >> 31 else hi
        target = insns[-2].address + hi + (imms[0] if imms else 0)
    else:
        target = last.address + imms[-1]
    names = [f"{i.mnemonic} {i.op_str.split(',')[0]}" if i.mnemonic == "jalr" else i.mnemonic for i in insns]
    return names, target


@pytest.mark.parametrize("gap,forms", [
    (10, ["bne"]),
    (1100, ["beq", "j"]),
    (300_000, ["beq", "auipc", "jalr zero"]),
])
def test_branch_relaxation_forms(gap: int, forms: list[str]) -> None:
    buf = CodeBuffer()
    label = buf.new_label()
    buf.branch(1, E.Reg.A0, E.Reg.A1, label)  # bne a0, a1, label
    _nops(buf, gap)
    buf.bind(label)
    code = buf.finish()
    assert buf.offset(label) == 4 * gap + 4 * len(forms)
    assert _relaxed(code, 0) == (forms, buf.offset(label))
    if len(forms) > 1:  # the inverted branch skips the long form
        assert _relaxed(code[:4], 0)[1] == 4 * len(forms)


def test_far_jump_and_call_relax_to_auipc_jalr() -> None:
    buf = CodeBuffer()
    fwd, back = buf.new_label(), buf.new_label()
    buf.bind(back)
    buf.jump(fwd)
    buf.call(fwd)
    _nops(buf, 300_000)
    buf.bind(fwd)
    buf.jump(back)
    buf.jump(fwd)
    code = buf.finish()
    target = buf.offset(fwd)
    assert target == 16 + 4 * 300_000
    assert _relaxed(code, 0) == (["auipc", "jalr zero"], target)
    assert _relaxed(code, 8) == (["auipc", "jalr ra"], target)
    assert _relaxed(code, target) == (["auipc", "jalr zero"], 0)
    assert _relaxed(code, target + 8) == (["j"], target)


def test_unbound_label_raises() -> None:
    buf = CodeBuffer()
    buf.jump(buf.new_label())
    with pytest.raises(JitError, match="unbound label"):
        buf.finish()


@needs_qemu
def test_relaxed_branches_run() -> None:
    """Conditional branches over more than 4 KiB (forward and backward) and a jump over more than
    1 MiB, in one program run natively and by the interpreter."""
    add1 = Insn(isa.ALU64 | isa.ADD, 0, imm=1)
    small, big = 1100, 270_000
    prog = [
        Insn(isa.ALU64 | isa.MOV, 0, imm=0), Insn(isa.ALU64 | isa.MOV, 6, imm=2),
        Insn(isa.ALU64 | isa.SUB, 6, imm=1), *[add1] * small,    # top: slot 2
        Insn(isa.JMP | isa.JNE, 6, off=-(small + 2)),             # back to top
        Insn(isa.JMP | isa.JEQ, 6, off=small), *[add1] * small,   # over the second pad
        Insn(isa.JMP32 | isa.JA, imm=big), *[add1] * big,         # gotol over > 1 MiB of code
        Insn(isa.ALU64 | isa.ADD, 0, imm=5), Insn(isa.EXIT_OPCODE),
    ]
    compiled = BACKEND.compile(prog)
    offsets, code = compiled.insn_offsets, compiled.code
    assert len(code) > 1 << 20
    assert _relaxed(code, offsets[small + 3]) == (["beqz", "j"], offsets[2])
    assert _relaxed(code, offsets[small + 4]) == (["bnez", "j"], offsets[2 * small + 5])
    assert _relaxed(code, offsets[2 * small + 5]) == (["auipc", "jalr zero"], offsets[2 * small + 6 + big])
    assert run_native([(prog, b"")]) == [(2205, 2205 & 0xFF)]
    assert interp.run(prog).r0 == 2205


# ---- the outside conformance suite ------------------------------------------------------------------

@needs_qemu
def test_conformance_suite_under_qemu_user() -> None:
    tests = conformance.load_suite(CONFORMANCE)
    elves, decided = conformance.build_elves("riscv64", tests)
    with tempfile.TemporaryDirectory() as tmp:
        def one(item: tuple[str, bytes]) -> tuple[str, tuple[bytes, int]]:
            path = Path(tmp) / item[0]
            path.write_bytes(item[1])
            path.chmod(0o755)
            done = subprocess.run(["qemu-riscv64", str(path)], capture_output=True, timeout=60)
            return item[0], (done.stdout, done.returncode)

        with ThreadPoolExecutor(max_workers=2) as pool:
            runs = dict(pool.map(one, elves.items()))
    report = conformance.native_report(tests, decided, runs)
    assert report["failed"] == []
    assert isinstance(report["passed"], int) and report["passed"] >= 300
