"""Native Linux system call numbers per architecture, for programs that use the SYSCALL intrinsic.

arm64 and riscv64 share the generic table (include/uapi/asm-generic/unistd.h); x86_64 has its
own (arch/x86/entry/syscalls/syscall_64.tbl). ``riscv_flush_icache`` exists only on riscv64.
"""

from __future__ import annotations

from .backend import ARCHES
from .errors import JitError

_GENERIC = {
    "write": 64, "exit": 93, "exit_group": 94, "mmap": 222, "munmap": 215, "mprotect": 226,
    "clone": 220, "futex": 98, "getpid": 172, "gettid": 178, "sched_yield": 124, "nanosleep": 101,
    "clock_gettime": 113, "memfd_create": 279, "ftruncate": 46, "kill": 129, "tgkill": 131,
    "membarrier": 283, "madvise": 233, "sched_setaffinity": 122,
}

SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {
        "write": 1, "exit": 60, "exit_group": 231, "mmap": 9, "munmap": 11, "mprotect": 10,
        "clone": 56, "futex": 202, "getpid": 39, "gettid": 186, "sched_yield": 24, "nanosleep": 35,
        "clock_gettime": 228, "memfd_create": 319, "ftruncate": 77, "kill": 62, "tgkill": 234,
        "membarrier": 324, "madvise": 28, "sched_setaffinity": 203,
    },
    "arm64": dict(_GENERIC),
    "riscv64": {**_GENERIC, "riscv_flush_icache": 259},
}


def syscall_number(arch: str, name: str) -> int:
    """The native number of system call ``name`` on ``arch``.

    Raises JitError naming the valid architectures or the system calls known for ``arch``.
    """
    if arch not in SYSCALLS:
        raise JitError(f"unknown architecture {arch!r}; valid choices: {', '.join(ARCHES)}")
    table = SYSCALLS[arch]
    if name not in table:
        raise JitError(f"unknown system call {name!r} on {arch}; valid choices: {', '.join(sorted(table))}")
    return table[name]
