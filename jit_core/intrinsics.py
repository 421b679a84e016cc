"""Harness intrinsics: eBPF ``call`` helper ids that every backend inlines.

| id | name            | inputs                                   | result                |
|----|-----------------|------------------------------------------|-----------------------|
| 1  | fence_full      | -                                        | -                     |
| 2  | fence_acquire   | -                                        | -                     |
| 3  | fence_release   | -                                        | -                     |
| 4  | fence_store_store | -                                      | -                     |
| 5  | fence_load_load | -                                        | -                     |
| 6  | icache_sync     | r1 = start address, r2 = length in bytes | -                     |
| 7  | context_sync    | -                                        | -                     |
| 8  | syscall         | r1 = native syscall number, r2..r5 = args 0..3 | r0 = raw return |
| 9  | syscall6        | r1 = native syscall number, r2 = address of six u64 args | r0 = raw return |
| 10 | clone_thread    | r1 = function, r2 = stack top, r3 = argument, r4 = u32 tid word address | r0 = tid |
| 11 | cycle_counter   | -                                        | r0 = counter          |
| 12 | spin_hint       | -                                        | -                     |
| 13 | sigaction       | r1 = signal, r2 = address of a kernel sigaction | r0 = raw return |

As with any eBPF call, r1-r5 are clobbered and r6-r9, r10 preserved. ``icache_sync`` is what a
JIT does after writing code and ``context_sync`` what a thread does before running code another
thread wrote; each backend's sequences, with the manual sections they follow, are documented in
``jit_core/<arch>/``. ``clone_thread`` starts a thread that calls the function with
r1 = argument and exits when it returns; the tid word is cleared and futex-woken at exit
(CLONE_CHILD_CLEARTID), so the parent can join with futex wait. ``sigaction`` is
rt_sigaction(r1, r2, NULL, 8) for a program without libc: r2 points at the kernel's struct
(u64 handler, u64 flags, u64 restorer, u64 mask), and the helper fills its restorer with a stub of
its own code that calls rt_sigreturn and adds SA_RESTORER to its flags (some kernels have no
return trampoline of their own). The handler is a program-local function (``lddw func``) called
as a C function (r1 = signal, r2 = siginfo, r3 = ucontext). Lowered only where programs take
signals (a backend whose ``ucontext_pc`` is set); the others raise JitError.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

__all__ = ["HELPER_IDS", "ICACHE_MUTATIONS", "MUTATIONS", "ORDERING_MUTATIONS", "Helper", "Mutation"]


class Helper(IntEnum):
    FENCE_FULL = 1
    FENCE_ACQUIRE = 2
    FENCE_RELEASE = 3
    FENCE_STORE_STORE = 4
    FENCE_LOAD_LOAD = 5
    ICACHE_SYNC = 6
    CONTEXT_SYNC = 7
    SYSCALL = 8
    SYSCALL6 = 9
    CLONE_THREAD = 10
    CYCLE_COUNTER = 11
    SPIN_HINT = 12
    SIGACTION = 13


HELPER_IDS = frozenset(int(h) for h in Helper)

class Mutation(StrEnum):
    """Named mutations of icache_sync / context_sync and of the ordering lowering; each is a real
    bug class."""

    NONE = "none"
    NO_DC_CLEAN = "no_dc_clean"
    NO_IC_INVALIDATE = "no_ic_invalidate"
    NO_DSB = "no_dsb"
    NO_ISB = "no_isb"
    WRONG_LINE_SIZE = "wrong_line_size"
    HALF_RANGE = "half_range"
    FENCE_I_WRITER_ONLY = "fence_i_writer_only"
    NO_SERIALIZE = "no_serialize"
    # of the memory-ordering lowering, checked by ``litmus jit``
    FENCE_FULL_AS_STORE_STORE = "fence_full_as_store_store"
    FENCE_FULL_AS_LOAD_LOAD = "fence_full_as_load_load"
    ACQUIRE_AS_PLAIN = "acquire_as_plain"
    RELEASE_AS_PLAIN = "release_as_plain"
    SELF_SUB_AS_ZERO = "self_sub_as_zero"
    DROP_BRANCH_TO_NEXT = "drop_branch_to_next"
    BRANCH_AS_SELECT = "branch_as_select"
    FETCH_ATOMIC_RELAXED = "fetch_atomic_relaxed"


# What each mutation does. Each backend lists the ones that change its code
# (``jit_core.<arch>.BACKEND.mutations``); elsewhere a mutation is a no-op, so the program stays
# correct there and a sanitizer must not report it.
ICACHE_MUTATIONS: dict[Mutation, str] = {
    Mutation.NONE: "the correct protocol",
    Mutation.NO_DC_CLEAN: "skip DC CVAU (no D-side clean to PoU)",
    Mutation.NO_IC_INVALIDATE: "skip IC IVAU (no I-side invalidate)",
    Mutation.NO_DSB: "skip the DSBs that complete the maintenance",
    Mutation.NO_ISB: "skip the ISB / context synchronization on the executing CPU",
    Mutation.WRONG_LINE_SIZE: "step by 2x the CTR_EL0 line size (a bigger core's), missing every other line",
    Mutation.HALF_RANGE: "synchronize only the first half of the range",
    Mutation.FENCE_I_WRITER_ONLY: "FENCE.I on the writing hart only, no remote harts",
    Mutation.NO_SERIALIZE: "no serializing instruction on the executing CPU",
}

# Mutations of the memory-ordering lowering (fences, acquire/release, atomics), checked by
# ``litmus jit``. Under TSO most of them change nothing: a TSO architecture's correct code already is the
# mutated code, so its backend lists only the two that change its instructions.
ORDERING_MUTATIONS: dict[Mutation, str] = {
    Mutation.FENCE_FULL_AS_STORE_STORE: "a full fence (fence_full, the barrier of fetch atomics) lowered as "
    "a store-store barrier",
    Mutation.FENCE_FULL_AS_LOAD_LOAD: "a full fence (fence_full, the barrier of fetch atomics) lowered as "
    "a load-load barrier",
    Mutation.ACQUIRE_AS_PLAIN: "load-acquire lowered as a plain load",
    Mutation.RELEASE_AS_PLAIN: "store-release lowered as a plain store",
    Mutation.SELF_SUB_AS_ZERO: "rX -= rX / rX ^= rX lowered as rX = 0, dropping the dependency the "
    "idiom carries",
    Mutation.DROP_BRANCH_TO_NEXT: "a conditional jump to the next instruction removed, dropping the control "
    "dependency it carries",
    Mutation.BRANCH_AS_SELECT: "a conditional jump over one register move lowered as a conditional select "
    "(if-conversion), which keeps the moved register's dependency and drops the control dependency of "
    "every later instruction",
    Mutation.FETCH_ATOMIC_RELAXED: "atomics that return a value without their ordering (no release, no "
    "trailing barrier, no .aq/.rl)",
}

MUTATIONS: dict[Mutation, str] = {**ICACHE_MUTATIONS, **ORDERING_MUTATIONS}
