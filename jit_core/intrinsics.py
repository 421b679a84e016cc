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
JIT does after writing code (arm64: DC CVAU, DSB ISH, IC IVAU, DSB ISH, ISB with line sizes
from CTR_EL0, skipping DC when IDC=1 and IC when DIC=1; riscv64: the riscv_flush_icache
system call for all harts; x86_64: nothing, same-CPU stores are seen after a jump).
``context_sync`` is what a thread does before running code another thread wrote (arm64 ISB,
riscv64 FENCE.I, x86_64 CPUID). ``clone_thread`` starts a thread that calls the function with
r1 = argument and exits when it returns; the tid word is cleared and futex-woken at exit
(CLONE_CHILD_CLEARTID), so the parent can join with futex wait.
"""

from __future__ import annotations

from enum import IntEnum


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

# Named protocol mutations of icache_sync / context_sync. Each is a real bug class; the
# architectures where it changes the emitted code are listed (elsewhere it is a no-op, so the
# program stays correct there and a sanitizer must not report it).
ICACHE_MUTATIONS: dict[str, tuple[str, frozenset[str]]] = {
    "none": ("the correct protocol", frozenset()),
    "no_dc_clean": ("skip DC CVAU (no D-side clean to PoU)", frozenset({"arm64"})),
    "no_ic_invalidate": ("skip IC IVAU (no I-side invalidate)", frozenset({"arm64"})),
    "no_dsb": ("skip the DSBs that complete the maintenance", frozenset({"arm64"})),
    "no_isb": ("skip the ISB / context synchronization on the executing CPU", frozenset({"arm64"})),
    "wrong_line_size": ("step by 4x the CTR_EL0 line size, missing lines", frozenset({"arm64"})),
    "half_range": ("synchronize only the first half of the range", frozenset({"arm64", "riscv64"})),
    "fence_i_writer_only": ("FENCE.I on the writing hart only, no remote harts", frozenset({"riscv64"})),
    "no_serialize": ("no serializing instruction on the executing CPU", frozenset({"x86_64"})),
}

# Mutations of the memory-ordering lowering (fences, acquire/release, atomics), checked by
# ``litmus jit``. x86_64 is absent from all: TSO gives the ordering with the plain instructions,
# so its correct code already is the mutated code.
ORDERING_MUTATIONS: dict[str, tuple[str, frozenset[str]]] = {
    "fence_full_as_store_store": ("a full fence (fence_full, the barrier of fetch atomics) lowered as "
                                  "a store-store barrier", frozenset({"arm64", "riscv64"})),
    "fence_full_as_load_load": ("a full fence (fence_full, the barrier of fetch atomics) lowered as "
                                "a load-load barrier", frozenset({"arm64", "riscv64"})),
    "acquire_as_plain": ("load-acquire lowered as a plain load", frozenset({"arm64", "riscv64"})),
    "release_as_plain": ("store-release lowered as a plain store", frozenset({"arm64", "riscv64"})),
    "self_sub_as_zero": ("rX -= rX / rX ^= rX lowered as rX = 0, dropping the dependency the idiom carries",
                         frozenset({"x86_64", "arm64", "riscv64"})),
    "drop_branch_to_next": ("a conditional jump to the next instruction removed, dropping the control "
                            "dependency it carries", frozenset({"x86_64", "arm64", "riscv64"})),
    "fetch_atomic_relaxed": ("atomics that return a value without their ordering (no release, no "
                             "trailing barrier, no .aq/.rl)", frozenset({"arm64", "riscv64"})),
}

MUTATIONS: dict[str, tuple[str, frozenset[str]]] = {**ICACHE_MUTATIONS, **ORDERING_MUTATIONS}
