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

As with any eBPF call, r1-r5 are clobbered and r6-r9, r10 preserved. ``icache_sync`` is what a
JIT does after writing code and ``context_sync`` what a thread does before running code another
thread wrote; each backend's sequences, with the manual sections they follow, are documented in
``jit_core/<arch>/``. ``clone_thread`` starts a thread that calls the function with
r1 = argument and exits when it returns; the tid word is cleared and futex-woken at exit
(CLONE_CHILD_CLEARTID), so the parent can join with futex wait.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

__all__ = ["HELPER_IDS", "MUTATIONS", "Helper", "Mutation"]


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


HELPER_IDS = frozenset(int(h) for h in Helper)

class Mutation(StrEnum):
    """Named protocol mutations of icache_sync / context_sync; each is a real bug class."""

    NONE = "none"
    NO_DC_CLEAN = "no_dc_clean"
    NO_IC_INVALIDATE = "no_ic_invalidate"
    NO_DSB = "no_dsb"
    NO_ISB = "no_isb"
    WRONG_LINE_SIZE = "wrong_line_size"
    HALF_RANGE = "half_range"
    FENCE_I_WRITER_ONLY = "fence_i_writer_only"
    NO_SERIALIZE = "no_serialize"


# What each mutation does. Each backend lists the ones that change its code
# (``jit_core.<arch>.BACKEND.mutations``); elsewhere a mutation is a no-op, so the program stays
# correct there and a sanitizer must not report it.
MUTATIONS: dict[Mutation, str] = {
    Mutation.NONE: "the correct protocol",
    Mutation.NO_DC_CLEAN: "skip DC CVAU (no D-side clean to PoU)",
    Mutation.NO_IC_INVALIDATE: "skip IC IVAU (no I-side invalidate)",
    Mutation.NO_DSB: "skip the DSBs that complete the maintenance",
    Mutation.NO_ISB: "skip the ISB / context synchronization on the executing CPU",
    Mutation.WRONG_LINE_SIZE: "step by 4x the CTR_EL0 line size, missing lines",
    Mutation.HALF_RANGE: "synchronize only the first half of the range",
    Mutation.FENCE_I_WRITER_ONLY: "FENCE.I on the writing hart only, no remote harts",
    Mutation.NO_SERIALIZE: "no serializing instruction on the executing CPU",
}
