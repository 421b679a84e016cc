"""The harness intrinsics (jit_core.intrinsics) as RV64GC instruction sequences.

Linux system calls on riscv64: number in a7, arguments in a0-a5, ECALL, result in a0; the
kernel preserves every other register. eBPF r1-r5 live in a0-a4 and r0 in a5 (see lower.py).

icache_sync(r1 = start, r2 = length) is the riscv_flush_icache system call (numbers: profile;
arguments start, end, flags = 0 for all harts of the process). RISC-V unprivileged ISA,
"Zifencei" chapter: FENCE.I makes a hart's later instruction fetches see stores already visible
to that same hart, and does not make other harts' fetches see them; a store to instruction memory
needs a FENCE.I on every hart that will execute it, which user code cannot arrange because it
does not know where its threads run. Linux's riscv_flush_icache executes FENCE.I on the calling
hart and has the other harts of the process do it (IPI / SBI remote fence, or lazily when a
thread is next scheduled on a hart whose icache is stale). It leaves r0 unchanged, like the
interpreter.

Mutations of icache_sync (intrinsics.MUTATIONS; the others change nothing on riscv64):
- ``half_range``: end = start + length / 2 (the system call covers only the first half).
- ``fence_i_writer_only``: a local FENCE.I instead of the system call, correct only when the same
  hart later runs the code.
context_sync is FENCE.I on the executing hart in every case.
"""

from __future__ import annotations

from ..errors import JitError
from ..intrinsics import Helper
from ..syscalls import syscall_number
from . import encoder as E
from .encoder import Reg

__all__ = ["full_fence",
    "CLONE_THREAD_FLAGS",
    "R0",
    "SYS_CLONE",
    "SYS_EXIT",
    "SYS_RISCV_FLUSH_ICACHE",
    "clone_thread",
    "helper_words",
    "icache_sync",
    "syscall4",
    "syscall6",
]

SYS_EXIT, SYS_CLONE, SYS_RISCV_FLUSH_ICACHE = (
    syscall_number("riscv64", name) for name in ("exit", "clone", "riscv_flush_icache")
)
R0 = Reg.A5  # eBPF r0

# CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM
# | CLONE_CHILD_CLEARTID | CLONE_CHILD_SETTID
CLONE_THREAD_FLAGS = 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000 | 0x200000 | 0x1000000

# RVWMO fences for the five ordering intrinsics (acquire = FENCE r,rw; release = FENCE rw,w).
_FENCES = {
    Helper.FENCE_FULL: ("rw", "rw"),
    Helper.FENCE_ACQUIRE: ("r", "rw"),
    Helper.FENCE_RELEASE: ("rw", "w"),
    Helper.FENCE_STORE_STORE: ("w", "w"),
    Helper.FENCE_LOAD_LOAD: ("r", "r"),
}


def _syscall(nr: int) -> list[int]:
    return [*E.li(Reg.A7, nr), E.ecall()]


def icache_sync(mutation: str) -> list[int]:
    if mutation == "fence_i_writer_only":
        return [E.fence_i()]
    halve = [E.srli(Reg.A1, Reg.A1, 1)] if mutation == "half_range" else []
    return [*halve, E.add(Reg.A1, Reg.A0, Reg.A1), E.mv(Reg.A2, Reg.ZERO), *_syscall(SYS_RISCV_FLUSH_ICACHE)]


def syscall4() -> list[int]:
    """r1 = number, r2..r5 = arguments 0..3 -> a7, a0..a3."""
    return [E.mv(Reg.A7, Reg.A0), E.mv(Reg.A0, Reg.A1), E.mv(Reg.A1, Reg.A2), E.mv(Reg.A2, Reg.A3),
            E.mv(Reg.A3, Reg.A4), E.ecall(), E.mv(R0, Reg.A0)]


def syscall6() -> list[int]:
    """r1 = number, r2 = address of six u64 arguments."""
    args = (Reg.A0, Reg.A1, Reg.A2, Reg.A3, Reg.A4, Reg.A5)
    loads = [E.ld(reg, Reg.T0, 8 * k) for k, reg in enumerate(args)]
    return [E.mv(Reg.A7, Reg.A0), E.mv(Reg.T0, Reg.A1), *loads, E.ecall(), E.mv(R0, Reg.A0)]


def clone_thread() -> list[int]:
    """r1 = function, r2 = stack top, r3 = argument, r4 = address of the u32 tid word.

    riscv64's clone takes (flags, stack, parent_tid, tls, child_tid). The function and its
    argument travel on the child's stack (16 bytes below the aligned top), because the child
    starts with only sp changed; it calls the function with a0 = argument, then SYS_exit(0),
    which ends only this thread.
    """
    child = [E.ld(Reg.T0, Reg.SP, 0), E.ld(Reg.A0, Reg.SP, 8), E.jalr(Reg.RA, Reg.T0, 0),
             E.mv(Reg.A0, Reg.ZERO), *_syscall(SYS_EXIT)]
    return [
        E.andi(Reg.A1, Reg.A1, -16), E.addi(Reg.A1, Reg.A1, -16),
        E.sd(Reg.A0, Reg.A1, 0), E.sd(Reg.A2, Reg.A1, 8),
        E.mv(Reg.A4, Reg.A3), E.mv(Reg.A2, Reg.ZERO), E.mv(Reg.A3, Reg.ZERO),
        *E.li(Reg.A0, CLONE_THREAD_FLAGS), *_syscall(SYS_CLONE),
        E.bne(Reg.A0, Reg.ZERO, 4 + 4 * len(child)),  # the parent skips the child's code
        *child,
        E.mv(R0, Reg.A0),
    ]


def full_fence(mutation: str) -> int:
    """FENCE rw,rw, or the weaker fence a fence_full_as_* mutation puts in its place."""
    weaker = {"fence_full_as_store_store": ("w", "w"), "fence_full_as_load_load": ("r", "r")}
    return E.fence(*weaker.get(mutation, ("rw", "rw")))


def helper_words(helper_id: int, mutation: str) -> list[int]:
    """The inlined sequence of intrinsic ``helper_id``. Raises JitError for an unknown id."""
    if helper_id == Helper.FENCE_FULL:
        return [full_fence(mutation)]
    if helper_id in _FENCES:
        return [E.fence(*_FENCES[Helper(helper_id)])]
    if helper_id == Helper.ICACHE_SYNC:
        return icache_sync(mutation)
    if helper_id == Helper.CONTEXT_SYNC:
        return [E.fence_i()]
    if helper_id == Helper.SYSCALL:
        return syscall4()
    if helper_id == Helper.SYSCALL6:
        return syscall6()
    if helper_id == Helper.CLONE_THREAD:
        return clone_thread()
    if helper_id == Helper.CYCLE_COUNTER:
        return [E.rdtime(R0)]
    if helper_id == Helper.SPIN_HINT:
        return [E.pause()]
    if helper_id == Helper.SIGACTION:
        raise JitError("helper sigaction is not lowered on riscv64 (no riscv64 program takes signals)")
    valid = ", ".join(f"{int(h)} ({h.name.lower()})" for h in Helper)
    raise JitError(f"unknown helper id {helper_id}; valid ids: {valid}")
