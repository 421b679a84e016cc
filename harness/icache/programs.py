"""Code-install programs for the sanitizer: jit_core's ``return FILLER`` function installed by
an eBPF program (compiled by jit_core into a freestanding ELF) and synchronized with one mutation
of icache_sync.

``install_program`` builds, per ``jit_core.intrinsics.ICACHE_MUTATIONS`` name, a program that installs
the function at ``JIT_BASE + index * JIT_STRIDE`` (so that a violation is attributed to its case
by PC, harness.icache.attribution), synchronizes it and calls it on the same thread;
``install_program_cross`` writes it on CPU 0 and runs it on CPU 1.
"""

from __future__ import annotations

import struct

from base.errors import InfraError, InputError
from base.profiles import load_profile
from jit_core.asm import assemble
from jit_core.compile import compile_program
from jit_core.elf import build_executable
from jit_core.syscalls import syscall_number

__all__ = [
    "FILLER",
    "ITERATIONS",
    "JIT_BASE",
    "JIT_STRIDE",
    "MAX_INDEX",
    "PAGE",
    "install_program",
    "install_program_cross",
    "installed_function",
]

JIT_BASE = 0x2000_0000
JIT_STRIDE = 0x1_0000
MAX_INDEX = 256  # install pages stay in the 16 MiB from JIT_BASE, above the ELF's segments
PAGE = 4096
FILLER = 62
ITERATIONS = 50
_CODE_OFFSET = 64  # in mem: the six mmap arguments come first
_RW, _RWX = 3, 7
_PRIVATE_ANONYMOUS = 0x22
_FIXED = _PRIVATE_ANONYMOUS | 0x10
_CROSS_STACK = 64 * 1024

def installed_function(arch: str) -> tuple[bytes, int]:
    """(code, entry offset) of the function the install programs install: jit_core's ``return FILLER``.

    The eBPF function ``mov r0, 0``, FILLER x ``add r0, 1``, ``exit`` compiled by jit_core: what
    gets installed is JIT output, as in a real JIT (prologue, frame, body, epilogue; callable
    from native code by the backends' calling convention, position independent). It spans
    several cache lines (about 300 bytes), so mutations that miss lines leave some of it stale.
    Raises JitError for an unknown architecture and InfraError if the code does not fit the
    one page it is installed in.
    """
    text = "mov %r0, 0\n" + "add %r0, 1\n" * FILLER + "exit\n"
    compiled = compile_program(arch, assemble(text))
    if len(compiled.code) > PAGE:
        raise InfraError(
            f"jit_core's {arch} code for the installed function is {len(compiled.code)} bytes; "
            f"the install page holds {PAGE} (lower FILLER)"
        )
    return compiled.code, compiled.functions.get(0, 0)


def install_program(arch: str, mutation: str, index: int) -> bytes:
    """The ELF executable that installs ``installed_function`` and calls it, ITERATIONS times.

    It maps a page RWX at JIT_BASE + index * JIT_STRIDE, and in each iteration copies the code
    there, runs icache_sync with ``mutation`` over it and calls it (callx); it exits with the
    function's result, FILLER. Raises InputError for an index outside 0..MAX_INDEX-1, JitError
    for an unknown architecture or mutation and InfraError as installed_function does.
    """
    address, code, entry = _install_site(arch, index)
    mem = _mmap_args(address, PAGE, _RWX, _FIXED).ljust(_CODE_OFFSET, b"\0") + code
    text = f"""
        mov %r6, %r1
        mov %r1, {syscall_number(arch, "mmap")}
        mov %r2, %r6
        call syscall6
        mov %r7, %r0
        mov %r9, %r7
        add %r9, {entry}
        mov %r8, {ITERATIONS}
    again:
        {_copy_code(len(code), _CODE_OFFSET)}
        mov %r1, %r7
        mov %r2, {len(code)}
        call icache_sync
        call %r9
        sub %r8, 1
        jne %r8, 0, again
        exit
    """
    return build_executable(arch, assemble(text), mem, mutation=mutation)


def install_program_cross(arch: str, mutation: str, index: int) -> bytes:
    """The ELF executable in which one CPU installs ``installed_function`` and another calls it.

    The main thread (the writer) pins itself to CPU 0, maps the page as install_program does
    and starts an executor thread (clone_thread) that pins itself to CPU 1. In each of
    ITERATIONS rounds the writer copies the code in, runs icache_sync with ``mutation`` and
    publishes the round's number (store_release); the executor waits for it (load_acquire),
    runs context_sync where the architecture asks the executing CPU to (profile
    ``code_modification.executor_sync``),
    calls the code and publishes that it is done, which the writer waits for. After joining
    the thread (futex wait on its tid word) it exits with the function's result, FILLER, or with
    the negative status of a sched_setaffinity or clone that failed. Raises as install_program does.
    """
    address, code, entry = _install_site(arch, index)
    at, mem = _cross_mem(address, entry, code)
    setaffinity, futex_wait = syscall_number(arch, "sched_setaffinity"), 0
    executor_sync = "call context_sync" if load_profile(arch).code_modification.executor_sync else ""
    text = f"""
        mov %r6, %r1
        mov %r1, {setaffinity}
        mov %r2, 0
        mov %r3, 8
        mov %r4, %r6
        add %r4, {at["cpu0"]}
        call syscall
        jne %r0, 0, leave
        mov %r1, {syscall_number(arch, "mmap")}
        mov %r2, %r6
        add %r2, {at["code_mmap"]}
        call syscall6
        mov %r7, %r0
        mov %r1, {syscall_number(arch, "mmap")}
        mov %r2, %r6
        add %r2, {at["stack_mmap"]}
        call syscall6
        mov %r2, %r0
        add %r2, {_CROSS_STACK}
        lddw %r1, func executor
        mov %r3, %r6
        mov %r4, %r6
        add %r4, {at["tid"]}
        call clone_thread
        jsle %r0, 0, leave
        mov %r8, 1
    round:
        {_copy_code(len(code), at["code"])}
        mov %r1, %r7
        mov %r2, {len(code)}
        call icache_sync
        store_release64 [%r6+{at["published"]}], %r8
    wait_done:
        call spin_hint
        load_acquire64 %r0, [%r6+{at["done"]}]
        jne %r0, %r8, wait_done
        add %r8, 1
        jle %r8, {ITERATIONS}, round
    join:
        ldxw %r3, [%r6+{at["tid"]}]
        jeq %r3, 0, joined
        mov %r1, {syscall_number(arch, "futex")}
        mov %r2, %r6
        add %r2, {at["tid"]}
        mov %r4, %r3
        mov %r3, {futex_wait}
        mov %r5, 0
        call syscall
        ja join
    joined:
        ldxdw %r0, [%r6+{at["pinned"]}]
        jne %r0, 0, leave
        ldxdw %r0, [%r6+{at["result"]}]
    leave:
        exit
    executor:
        mov %r6, %r1
        mov %r1, {setaffinity}
        mov %r2, 0
        mov %r3, 8
        mov %r4, %r6
        add %r4, {at["cpu1"]}
        call syscall
        stxdw [%r6+{at["pinned"]}], %r0
        ldxdw %r9, [%r6+{at["entry"]}]
        mov %r7, 1
    wait_published:
        call spin_hint
        load_acquire64 %r0, [%r6+{at["published"]}]
        jne %r0, %r7, wait_published
        {executor_sync}
        call %r9
        stxdw [%r6+{at["result"]}], %r0
        store_release64 [%r6+{at["done"]}], %r7
        add %r7, 1
        jle %r7, {ITERATIONS}, wait_published
        exit
    """
    return build_executable(arch, assemble(text), mem, mutation=mutation)


def _install_site(arch: str, index: int) -> tuple[int, bytes, int]:
    """(page address, code padded to whole u64s, entry offset) of install program ``index``."""
    if not 0 <= index < MAX_INDEX:
        raise InputError("install program index", index, hint=f"0 to {MAX_INDEX - 1}")
    code, entry = installed_function(arch)
    return JIT_BASE + index * JIT_STRIDE, code + bytes(-len(code) % 8), entry


def _mmap_args(address: int, length: int, prot: int, flags: int) -> bytes:
    """The six u64 arguments of mmap(address, length, prot, flags, -1, 0), for syscall6."""
    return struct.pack("<QQQQqQ", address, length, prot, flags, -1, 0)


def _copy_code(length: int, offset: int) -> str:
    """Assembly copying ``length`` bytes of code from mem (r6) + offset to the page at r7."""
    return "\n".join(
        f"ldxdw %r3, [%r6+{offset + off}]\nstxdw [%r7+{off}], %r3" for off in range(0, length, 8)
    )


def _cross_mem(address: int, entry: int, code: bytes) -> tuple[dict[str, int], bytes]:
    """(offset of each field, contents) of install_program_cross's mem."""
    u64 = struct.Struct("<q").pack
    fields = [
        ("code_mmap", _mmap_args(address, PAGE, _RWX, _FIXED)),
        ("stack_mmap", _mmap_args(0, _CROSS_STACK, _RW, _PRIVATE_ANONYMOUS)),
        ("cpu0", u64(1 << 0)),  # sched_setaffinity masks
        ("cpu1", u64(1 << 1)),
        ("published", u64(0)),  # the last round the writer installed
        ("done", u64(0)),  # the last round the executor ran
        ("result", u64(0)),  # what the code returned
        ("pinned", u64(0)),  # the executor's sched_setaffinity status
        ("entry", u64(address + entry)),
        # The kernel sets it to the executor's tid and clears it at the thread's exit; -1 until then,
        # so that the writer cannot take a not-yet-set word for a finished thread.
        ("tid", u64(-1)),
        ("code", code),
    ]
    offsets, blob = {}, b""
    for name, data in fields:
        offsets[name] = len(blob)
        blob += data
    return offsets, blob
