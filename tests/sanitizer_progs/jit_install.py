"""An eBPF program, compiled by jit_core, that installs native code and calls it.

It maps a page RWX at a fixed address, copies a native function there (the same shape as
codegen.c's: result = FILLER, 64 instructions spanning several cache lines), runs the
icache_sync intrinsic over it and calls it with callx, ITERATIONS times; it exits with the
function's result. Built once per jit_core.intrinsics mutation, each at its own address, to check
that the sanitizer reports each mutation with the right rule where it is a bug.
"""

from __future__ import annotations

import struct

from jit_core.asm import assemble
from jit_core.elf import build_executable
from jit_core.syscalls import syscall_number

JIT_BASE = 0x2000_0000
JIT_STRIDE = 0x1_0000
FILLER = 62
ITERATIONS = 50
CODE_OFFSET = 64  # in mem: six mmap arguments first


def native_function(arch: str) -> bytes:
    """``return FILLER`` as 64 instructions (x86_64: 64 short ones) of native code."""
    if arch == "arm64":
        words = [0xD2800000] + [0x91000400] * FILLER + [0xD65F03C0]  # movz x0, #0; add x0, x0, #1; ret
    elif arch == "riscv64":
        words = [0x00000513] + [0x00150513] * FILLER + [0x00008067]  # li a0, 0; addi a0, a0, 1; ret
    else:
        return b"\xb8\x00\x00\x00\x00" + b"\x83\xc0\x01" * FILLER + b"\xc3"  # mov eax, 0; add eax, 1; ret
    return b"".join(struct.pack("<I", w) for w in words)


def install_program(arch: str, mutation: str, index: int) -> bytes:
    """The ELF executable installing at JIT_BASE + index * JIT_STRIDE with icache_sync's ``mutation``."""
    code = native_function(arch)
    code += bytes(-len(code) % 8)
    address = JIT_BASE + index * JIT_STRIDE
    # mmap(address, 4096, RWX, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
    mem = struct.pack("<QQQQqQ", address, 4096, 7, 0x32, -1, 0).ljust(CODE_OFFSET, b"\0") + code
    copy = "\n".join(
        f"ldxdw %r3, [%r6+{CODE_OFFSET + off}]\nstxdw [%r7+{off}], %r3" for off in range(0, len(code), 8)
    )
    text = f"""
        mov %r6, %r1
        mov %r1, {syscall_number(arch, "mmap")}
        mov %r2, %r6
        call syscall6
        mov %r7, %r0
        mov %r8, {ITERATIONS}
    again:
        {copy}
        mov %r1, %r7
        mov %r2, {len(code)}
        call icache_sync
        call %r7
        sub %r8, 1
        jne %r8, 0, again
        exit
    """
    return build_executable(arch, assemble(text), mem, mutation=mutation)
