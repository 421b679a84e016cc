"""The arm64 instruction sequences of jitprobe's intrinsics (jit_core.intrinsics.Helper).

Each function returns the words of one inlined helper call. They may clobber eBPF r1-r5
(x0-x4), the scratch registers x8-x14, and set r0 (x7) when the helper has a result; they
preserve r6-r9 (x19-x22) and r10 (x25). Branches inside a sequence are fixed offsets, so a
sequence never needs relaxation.
"""

from __future__ import annotations

from ..compile import check_mutation
from ..errors import JitError
from ..intrinsics import Helper
from ..syscalls import syscall_number
from . import encoder as e

__all__ = ["full_barrier",
    "CLONE_THREAD_FLAGS",
    "CTR_DIC_BIT",
    "CTR_DMINLINE_LSB",
    "CTR_IDC_BIT",
    "CTR_IMINLINE_LSB",
    "FENCES",
    "NR_CLONE",
    "NR_EXIT",
    "R0",
    "SYSNO",
    "T0",
    "T1",
    "T2",
    "T3",
    "T4",
    "clone_thread",
    "context_sync",
    "cycle_counter",
    "helper_words",
    "icache_sync",
    "spin_hint",
    "syscall",
    "syscall6",
]

R0 = 7  # eBPF r0 lives in x7; see lower.REGS
T0, T1, T2, T3, T4 = 9, 10, 11, 12, 13
SYSNO = 8

NR_CLONE, NR_EXIT = syscall_number("arm64", "clone"), syscall_number("arm64", "exit")
CLONE_THREAD_FLAGS = (0x100 | 0x200 | 0x400 | 0x800  # CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND
                      | 0x10000 | 0x40000  # CLONE_THREAD | CLONE_SYSVSEM
                      | 0x200000 | 0x1000000)  # CLONE_CHILD_CLEARTID | CLONE_CHILD_SETTID

CTR_IDC_BIT, CTR_DIC_BIT = 28, 29
CTR_DMINLINE_LSB, CTR_IMINLINE_LSB = 16, 0

FENCES = {
    Helper.FENCE_FULL: e.dmb("ish"),
    Helper.FENCE_ACQUIRE: e.dmb("ishld"),
    Helper.FENCE_RELEASE: e.dmb("ish"),
    Helper.FENCE_STORE_STORE: e.dmb("ishst"),
    Helper.FENCE_LOAD_LOAD: e.dmb("ishld"),
}


def full_barrier(mutation: str) -> int:
    """DMB ISH, or the weaker barrier a fence_full_as_* mutation puts in its place."""
    weaker = {"fence_full_as_store_store": "ishst", "fence_full_as_load_load": "ishld"}
    return e.dmb(weaker.get(mutation, "ish"))


def _line_loop(mutation: str, lsb: int, maintain: int) -> list[int]:
    """``maintain`` (DC CVAU or IC IVAU of T3) on every cache line of [x0 aligned down, x1).

    The line size is 4 << CTR_EL0[lsb+3:lsb] bytes (CTR_EL0 in T0); ``wrong_line_size``
    steps by twice that (a line size cached from a core with bigger lines: the heterogeneous-
    cores bug), so every other line is missed.
    """
    shift = 1 if mutation == "wrong_line_size" else 0
    return [
        e.ubfx(T1, T0, lsb, 4),
        e.movz(T2, 4 << shift),
        e.lslv(T1, T2, T1),          # T1 = line size in bytes
        e.sub_imm(T2, T1, 1),
        e.bic_reg(T3, 0, T2),        # T3 = start aligned down to a line
        e.b(12),                     # test before the first line: an empty range does nothing
        maintain,
        e.add_reg(T3, T3, T1),
        e.cmp_reg(T3, 1),
        e.b_cond(e.LO, -12),
    ]


def _unless_ctr_bit(bit: int, words: list[int]) -> list[int]:
    """``words``, skipped at run time when bit ``bit`` of CTR_EL0 (in T0) is set."""
    return [e.tbnz(T0, bit, 4 * (len(words) + 1)), *words] if words else []


def icache_sync(mutation: str) -> list[int]:
    """Make [r1, r1 + r2) coherent for instruction fetch, as libgcc's __clear_cache does.

    Arm ARM B2.4.4 "Concurrent modification and execution of instructions" and D7.5.9
    "Instruction cache maintenance": clean the D-side to the PoU (DC CVAU per D-line, not
    needed when CTR_EL0.IDC=1), DSB ISH, invalidate the I-side to the PoU (IC IVAU per I-line,
    not needed when CTR_EL0.DIC=1) and DSB ISH, then ISB on this PE. Line sizes are read from
    CTR_EL0 at run time, never assumed. Raises JitError on an unknown mutation.
    """
    check_mutation(mutation)
    barrier = [] if mutation == "no_dsb" else [e.dsb("ish")]
    words = [e.mrs(T0, "ctr_el0")]
    if mutation == "half_range":
        words.append(e.lsr_imm(1, 1, 1))
    words.append(e.add_reg(1, 0, 1))  # x1 = end of the range
    if mutation != "no_dc_clean":
        words += _unless_ctr_bit(CTR_IDC_BIT, _line_loop(mutation, CTR_DMINLINE_LSB, e.dc_cvau(T3)))
    words += barrier
    ic_loop = [] if mutation == "no_ic_invalidate" else _line_loop(mutation, CTR_IMINLINE_LSB, e.ic_ivau(T3))
    # The DSB after the I-side loop is only needed when that loop runs (DIC=0), as in libgcc.
    words += _unless_ctr_bit(CTR_DIC_BIT, ic_loop + barrier)
    words += context_sync(mutation)
    return words


def context_sync(mutation: str) -> list[int]:
    """ISB: a context synchronization event on this PE (none under ``no_isb``)."""
    return [] if mutation == "no_isb" else [e.isb()]


def syscall() -> list[int]:
    """x8 = r1, x0..x3 = r2..r5, SVC #0, r0 = x0."""
    return [e.mov_reg(SYSNO, 0), e.mov_reg(0, 1), e.mov_reg(1, 2), e.mov_reg(2, 3), e.mov_reg(3, 4),
            e.svc(0), e.mov_reg(R0, 0)]


def syscall6() -> list[int]:
    """x8 = r1, x0..x5 = the six u64 at [r2], SVC #0, r0 = x0."""
    loads = [e.ldst_uimm(e.LDR_X, reg, T0, 8 * reg) for reg in range(6)]
    return [e.mov_reg(SYSNO, 0), e.mov_reg(T0, 1), *loads, e.svc(0), e.mov_reg(R0, 0)]


def clone_thread() -> list[int]:
    """Raw clone(flags, stack = r2, parent_tid = 0, tls = 0, child_tid = r4) (arm64 order).

    The child shares the registers of the parent at the SVC, so it finds the function in T0 and
    its argument in T1; it calls the function (which sets up its own frame on the new stack)
    and then SYS_exit(0), never returning here. The parent gets r0 = tid or -errno.
    """
    child = [e.mov_reg(0, T1), e.blr(T0), e.movz(0, 0), e.movz(SYSNO, NR_EXIT), e.svc(0)]
    return [
        e.mov_reg(T0, 0), e.mov_reg(T1, 2), e.mov_reg(4, 3),
        *e.mov_imm(0, CLONE_THREAD_FLAGS), e.movz(2, 0), e.movz(3, 0), e.movz(SYSNO, NR_CLONE),
        e.svc(0),
        e.cbnz(0, 4 * (len(child) + 1)),
        *child,
        e.mov_reg(R0, 0),
    ]


def cycle_counter() -> list[int]:
    """ISB (so earlier instructions are not counted late), then r0 = CNTVCT_EL0."""
    return [e.isb(), e.mrs(R0, "cntvct_el0")]


def spin_hint() -> list[int]:
    """YIELD."""
    return [e.yield_()]


def helper_words(helper: int, mutation: str) -> list[int]:
    """The inlined sequence of helper id ``helper``. Raises JitError on an unknown id."""
    if helper == Helper.FENCE_FULL:
        return [full_barrier(mutation)]
    if helper in FENCES:
        return [FENCES[Helper(helper)]]
    builders = {
        Helper.ICACHE_SYNC: lambda: icache_sync(mutation),
        Helper.CONTEXT_SYNC: lambda: context_sync(mutation),
        Helper.SYSCALL: syscall,
        Helper.SYSCALL6: syscall6,
        Helper.CLONE_THREAD: clone_thread,
        Helper.CYCLE_COUNTER: cycle_counter,
        Helper.SPIN_HINT: spin_hint,
    }
    if helper == Helper.SIGACTION:
        raise JitError("helper sigaction is not lowered on arm64 (no arm64 program takes signals)")
    if helper not in builders:
        valid = ", ".join(f"{h.value} ({h.name.lower()})" for h in Helper)
        raise JitError(f"unknown helper id {helper}; valid: {valid}")
    return builders[Helper(helper)]()
