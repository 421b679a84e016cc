"""The reference interpreter: RFC 9669 corner cases, calls, memory, intrinsics and faults."""

from __future__ import annotations

import pytest

from jit_core import elf
from jit_core.asm import assemble
from jit_core.interp import STACK_TOP, InterpError, run

INT64_MIN = 1 << 63


def r0(text: str, mem: bytes = b"") -> int:
    return run(assemble(text + "\nexit"), mem).r0


@pytest.mark.parametrize(("text", "expected"), [
    ("mov %r0, -1\nadd32 %r0, 1", 0),                       # 32-bit results zero-extend
    ("mov %r0, -1\nmov32 %r0, %r0", 0xFFFFFFFF),
    ("mov %r0, 1\nlsh %r0, 65", 2),                          # shift counts are masked
    ("mov32 %r0, 1\nlsh32 %r0, 33", 2),
    ("mov %r0, -8\narsh32 %r0, 1", 0xFFFFFFFC),
    ("mov %r0, 7\ndiv %r0, 0", 0),                           # division by zero gives 0
    ("mov %r0, 7\nmov %r1, 0\nmod %r0, %r1", 7),             # modulo by zero leaves dst
    ("mov %r0, -1\nmod32 %r0, 0", 0xFFFFFFFF),               # ... truncated to 32 bits
    ("lddw %r0, 0x8000000000000000\nsdiv %r0, -1", INT64_MIN),
    ("lddw %r0, 0x8000000000000000\nsmod %r0, -1", 0),
    ("mov32 %r0, -7\nsdiv32 %r0, 2", 0xFFFFFFFD),            # truncates toward zero
    ("mov %r0, -7\nsmod %r0, 2", (1 << 64) - 1),             # sign of the dividend
    ("mov %r0, 7\nsmod %r0, -2", 1),
    ("lddw %r1, 0x80\nmovsx864 %r0, %r1", (1 << 64) - 0x80),
    ("lddw %r1, 0x8000\nmovsx1632 %r0, %r1", 0xFFFF8000),
    ("lddw %r0, 0x1122334455667788\nbe16 %r0", 0x8877),
    ("lddw %r0, 0x1122334455667788\nle32 %r0", 0x55667788),
    ("lddw %r0, 0x1122334455667788\nbswap64 %r0", 0x8877665544332211),
    ("lddw %r0, 0x1122334455667788\nle64 %r0", 0x1122334455667788),
    ("mov %r0, 5\nneg32 %r0", 0xFFFFFFFB),
    ("mov %r0, 0\nmov %r1, -1\njsgt %r1, 0, +1\nmov %r0, 1", 1),
    ("mov %r0, 0\nlddw %r1, 0x100000000\njeq32 %r1, 0, +1\nmov %r0, 1", 0),
])
def test_alu_and_jump_semantics(text: str, expected: int) -> None:
    assert r0(text) == expected


def test_sign_extending_loads_and_mem_arguments() -> None:
    mem = bytes([0x80, 0xFF, 0x7F, 0x01])
    assert r0("ldxsb %r0, [%r1+0]", mem) == (1 << 64) - 0x80
    assert r0("ldxsh %r0, [%r1+0]", mem) == (1 << 64) - 0x80
    assert r0("ldxw %r0, [%r1+0]", mem) == 0x017FFF80
    assert r0("mov %r0, %r2", mem) == 4
    assert r0("mov %r0, %r1") == elf.MEM_ADDR


@pytest.mark.parametrize(("op", "old", "src", "stored", "fetched"), [
    ("lock add", 5, 3, 8, 3),
    ("lock fetch add", 5, 3, 8, 5),
    ("lock fetch or32", 0xFFFFFFFF00000001, 2, 0xFFFFFFFF00000003, 1),
    ("lock fetch and", 6, 3, 2, 6),
    ("lock fetch xor", 6, 3, 5, 6),
    ("lock xchg32", 0xAAAAAAAA11111111, 0xFFFFFFFF22222222, 0xAAAAAAAA22222222, 0x11111111),
])
def test_atomics(op: str, old: int, src: int, stored: int, fetched: int) -> None:
    text = f"""
        lddw %r2, {old:#x}
        stxdw [%r10-8], %r2
        lddw %r1, {src:#x}
        {op} [%r10-8], %r1
    """
    assert r0(text + "ldxdw %r0, [%r10-8]") == stored
    assert r0(text + "mov %r0, %r1") == fetched


def test_cmpxchg_success_and_failure() -> None:
    base = "mov %r2, 5\nstxw [%r10-4], %r2\nmov %r1, 9\nmov %r0, {expect}\nlock cmpxchg32 [%r10-4], %r1\n"
    assert r0(base.format(expect=5) + "ldxw %r0, [%r10-4]") == 9
    assert r0(base.format(expect=4) + "ldxw %r0, [%r10-4]") == 5
    assert r0(base.format(expect=4)) == 5


def test_acquire_release() -> None:
    assert r0("mov %r1, 0x1234\nstore_release16 [%r10-2], %r1\nload_acquire8 %r0, [%r10-2]") == 0x34


def test_local_calls_have_own_stack_and_preserve_r6_r9() -> None:
    prog = """
        mov %r6, 6
        stdw [%r10-8], 100
        mov %r1, 5
        call local f
        ldxdw %r1, [%r10-8]
        add %r0, %r1
        add %r0, %r6
        exit
        f:
        mov %r6, 0
        stdw [%r10-8], 1
        mov %r0, %r1
        mov %r1, %r10
        exit
    """
    assert run(assemble(prog)).r0 == 5 + 100 + 6


def test_callx_through_function_address() -> None:
    prog = "lddw %r2, func f\nmov %r1, 3\ncall %r2\nexit\nf:\nmov %r0, %r1\nadd %r0, 1\nexit"
    assert run(assemble(prog)).r0 == 4
    with pytest.raises(InterpError, match="no function address"):
        run(assemble("mov %r2, 16\ncall %r2\nexit"))


def test_results_buffer_receives_r0_and_program_stores() -> None:
    prog = assemble(f"lddw %r3, {elf.RESULTS_ADDR:#x}\nstdw [%r3+8], 77\nmov %r0, 258\nexit")
    result = run(prog, results_size=16)
    assert result.results == (258).to_bytes(8, "little") + (77).to_bytes(8, "little")


def test_intrinsics() -> None:
    assert r0("mov %r0, 3\ncall fence_full\ncall icache_sync\ncall context_sync\ncall spin_hint") == 3
    assert r0("call cycle_counter\nmov %r6, %r0\ncall cycle_counter\nsub %r0, %r6") > 0
    with pytest.raises(InterpError, match="helper syscall is not supported in the interpreter"):
        r0("call syscall")


@pytest.mark.parametrize(("text", "message"), [
    ("ldxdw %r0, [%r10+0]", r"8-byte access at 0x7fff00000000 is outside memory"),
    ("mov %r1, 0\nstb [%r1+0], 1", "1-byte access at 0x0 is outside memory"),
    ("ja -1", "step budget"),
    ("f:\ncall local f", "call depth exceeds 8 frames"),
])
def test_faults(text: str, message: str) -> None:
    with pytest.raises(InterpError, match=message):
        run(assemble(text + "\nexit"), max_steps=10_000)


def test_stack_top_is_r10() -> None:
    assert r0("mov %r0, %r10") == STACK_TOP
