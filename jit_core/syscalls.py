"""Native Linux system call numbers, for programs that use the SYSCALL intrinsic.

The numbers are each architecture's profile's (``syscalls`` in arch_profiles/<arch>.yaml).
"""

from __future__ import annotations

from .errors import JitError
from .target import target_profile

__all__ = ["syscall_number"]


def syscall_number(arch: str, name: str) -> int:
    """The native number of system call ``name`` on ``arch``.

    Raises JitError naming the valid architectures or the system calls known for ``arch``.
    """
    table = target_profile(arch).syscalls
    if name not in table:
        raise JitError(f"unknown system call {name!r} on {arch}; valid choices: {', '.join(sorted(table))}")
    return table[name]
