"""What every icache stress program is assembled from (harness.stress.programs has the
generators): the slot's code region and its mapping, the two generations' code, the mem fields,
system calls, pinning, threads, waits, installing and synchronizing a generation, and checking a
call's result. Assembly text for jit_core's eBPF assembler; r6 holds mem, r7 the writable view of
the code.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from base.errors import InfraError, InputError
from harness.icache import JIT_BASE, JIT_STRIDE, MAX_INDEX, PAGE
from jit_core.asm import assemble
from jit_core.backend import Compiled
from jit_core.compile import compile_program
from jit_core.intrinsics import Mutation
from jit_core.syscalls import syscall_number

from .scenarios import StressMutation

__all__ = [
    "EPILOGUE",
    "EXIT_SETUP",
    "EXIT_WRONG_RESULT",
    "Functions",
    "MEMBARRIER",
    "Program",
    "REGION",
    "STACK_FIELD",
    "build",
    "by_generation",
    "check_result",
    "compiled_function",
    "copy_code",
    "function",
    "generation_values",
    "install_code",
    "jit_mutation",
    "join_thread",
    "membarrier",
    "pin",
    "set_up",
    "start_thread",
    "sync_code",
    "syscall",
    "wait_until",
]

EXIT_WRONG_RESULT, EXIT_SETUP = 1, 2
REGION = 2 * PAGE  # the code region of a slot: placements may straddle its page boundary
_RW_ALIAS = 0x8000  # the writable view of a dual mapping, inside the slot's stride
_STACK = 64 * 1024
_PROT_RW, _PROT_RX, _PROT_RWX = 3, 5, 7
_MAP_SHARED, _MAP_PRIVATE, _MAP_FIXED, _MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
_FUTEX_WAIT = 0
# include/uapi/linux/membarrier.h
MEMBARRIER = {
    "sync_core": (1 << 6, 1 << 5),  # (register, command): PRIVATE_EXPEDITED_SYNC_CORE
    "plain": (1 << 4, 1 << 3),  # PRIVATE_EXPEDITED
}


@dataclass(frozen=True)
class Program:
    """What the assembly of one program needs: its architecture, parameters and code."""

    arch: str
    params: Mapping[str, Any]
    mutation: str
    slot: int
    codes: tuple[bytes, bytes]  # the two generations, padded to whole u64s
    entry: int
    values: tuple[int, int]
    at: Mapping[str, int]  # offset of each mem field

    def sys(self, name: str) -> int:
        return syscall_number(self.arch, name)

    @property
    def code_at(self) -> int:
        return self.slot + int(self.params["placement"])

    @property
    def write_at(self) -> int:
        return self.code_at + (_RW_ALIAS if self.params["mapping"] == "dual" else 0)


def generation_values(seed: int) -> tuple[int, int]:
    """The two different values the generations return, from the scenario's seed."""
    first, second = random.Random(seed).sample(range(1, 100), 2)
    return first, second


def compiled_function(arch: str, value: int, filler: int) -> Compiled:
    """jit_core's function returning ``value``: a MOV of r0 (its first instruction), ``filler``
    adds and exit."""
    text = f"mov %r0, {value - filler}\n" + "add %r0, 1\n" * filler + "exit\n"
    return compile_program(arch, assemble(text))


def function(arch: str, value: int, filler: int) -> tuple[bytes, int]:
    """(code padded to u64s, entry offset) of compiled_function."""
    compiled = compiled_function(arch, value, filler)
    return compiled.code + bytes(-len(compiled.code) % 8), compiled.functions.get(0, 0)


def _mmap_args(address: int, prot: int, flags: int) -> bytes:
    return struct.pack("<QQQQqQ", address, REGION, prot, flags, -1, 0)


def _mem_fields(fields: list[tuple[str, bytes]]) -> tuple[dict[str, int], bytes]:
    offsets, blob = {}, b""
    for name, data in fields:
        offsets[name] = len(blob)
        blob += data + bytes(-len(data) % 8)
    return offsets, blob


# (code0, code1, entry) of a generator's two generations, from the values they return
Functions = Callable[[tuple[int, int]], tuple[bytes, bytes, int]]


def build(arch: str, params: Mapping[str, Any], mutation: str, index: int, seed: int | None,
           extra: list[tuple[str, bytes]],
           functions: Functions | None = None) -> tuple[Program, bytes]:
    """The program's description and mem: its slot, the two generations' code (by default
    ``function`` of each value; ``functions`` gives (code0, code1, entry) instead) and mem
    fields (the mapping's, the CPU masks, the code, then ``extra``)."""
    if not 0 <= index < MAX_INDEX:
        raise InputError("stress program index", index, hint=f"0 to {MAX_INDEX - 1}")
    values = generation_values(params["seed"] if seed is None else seed)
    if functions is None:
        (code0, entry), (code1, _) = (function(arch, v, params["filler"]) for v in values)
    else:
        code0, code1, entry = functions(values)
    if params["placement"] + max(len(code0), len(code1)) > REGION:
        raise InfraError(f"{arch} code of {len(code0)} bytes at placement {params['placement']} "
                         f"does not fit the {REGION}-byte region")
    slot = JIT_BASE + index * JIT_STRIDE
    u64 = struct.Struct("<q").pack
    mapping = params["mapping"]
    anon = _MAP_PRIVATE | _MAP_ANONYMOUS | _MAP_FIXED
    maps = {
        "rwx": [("map_rx", _mmap_args(slot, _PROT_RWX, anon))],
        "mprotect": [("map_rx", _mmap_args(slot, _PROT_RW, anon))],
        "dual": [
            ("map_rx", _mmap_args(slot, _PROT_RX, _MAP_SHARED | _MAP_FIXED)),
            ("map_rw", _mmap_args(slot + _RW_ALIAS, _PROT_RW, _MAP_SHARED | _MAP_FIXED)),
            ("memfd_name", b"jitprobe-code\0"),
        ],
    }[mapping]
    fields = [*maps, ("cpu0", u64(1)), ("cpu1", u64(2)), ("code0", code0), ("code1", code1), *extra]
    at, mem = _mem_fields(fields)
    return Program(arch, params, mutation, slot, (code0, code1), entry, values, at), mem


def syscall(number: int, *args: str | int) -> str:
    """Assembly of syscall ``number`` with up to four arguments (registers or immediates)."""
    moves = [f"mov %r{2 + k}, {arg}" for k, arg in enumerate(args)]
    return "\n".join([f"mov %r1, {number}", *moves, "call syscall"])


def membarrier(p: Program, register: bool = False) -> str:
    """membarrier(2) as the mutation has it: the registration (``register``) or the command that
    serializes the core of every CPU running a thread of the process
    (PRIVATE_EXPEDITED_SYNC_CORE). Under membarrier_plain both are PRIVATE_EXPEDITED's, which
    orders memory and serializes no core; under membarrier_unregistered there is no
    registration, and the kernel refuses the command (EPERM)."""
    if register and p.mutation == StressMutation.MEMBARRIER_UNREGISTERED:
        return ""
    commands = MEMBARRIER["plain" if p.mutation == StressMutation.MEMBARRIER_PLAIN else "sync_core"]
    return syscall(p.sys("membarrier"), commands[0 if register else 1], 0, 0)


def set_up(p: Program) -> str:
    """Map the code region; any failure exits EXIT_SETUP."""
    mmap = p.sys("mmap")
    steps = []
    if p.params["mapping"] == "dual":
        steps += [
            "mov %r3, %r6",
            f"add %r3, {p.at['memfd_name']}",
            syscall(p.sys("memfd_create"), "%r3", 0),
            "jslt %r0, 0, setup_failed",
            f"stxdw [%r6+{p.at['map_rx'] + 32}], %r0",
            f"stxdw [%r6+{p.at['map_rw'] + 32}], %r0",
            syscall(p.sys("ftruncate"), "%r0", REGION),
            "jne %r0, 0, setup_failed",
        ]
    for name, address in (("map_rx", p.slot), ("map_rw", p.slot + _RW_ALIAS)):
        if name in p.at:
            steps += [
                f"mov %r1, {mmap}",
                "mov %r2, %r6",
                f"add %r2, {p.at[name]}",
                "call syscall6",
                f"jne %r0, {address}, setup_failed",
            ]
    return "\n".join(steps)


def pin(p: Program, cpu: int, status: str = "") -> str:
    """sched_setaffinity(0, 8, mask of ``cpu``); a failure exits EXIT_SETUP, or is stored at
    mem field ``status`` when given (an executor thread cannot exit the program)."""
    call = [
        "mov %r4, %r6",
        f"add %r4, {p.at[f'cpu{cpu}']}",
        syscall(p.sys("sched_setaffinity"), 0, 8, "%r4"),
    ]
    check = f"stxdw [%r6+{p.at[status]}], %r0" if status else "jne %r0, 0, setup_failed"
    return "\n".join([*call, check])


_STACK_MMAP = struct.pack("<QQQQqQ", 0, _STACK, _PROT_RW, _MAP_PRIVATE | _MAP_ANONYMOUS, -1, 0)
STACK_FIELD = ("map_stack", _STACK_MMAP)


def start_thread(p: Program, function: str, tid: str) -> str:
    """A new thread on its own stack calling ``function`` with mem (r6) as argument, its tid
    word at mem field ``tid``; a failure exits EXIT_SETUP. Needs the mem field ``map_stack``
    (STACK_FIELD)."""
    return "\n".join([
        f"mov %r1, {p.sys('mmap')}", "mov %r2, %r6", f"add %r2, {p.at['map_stack']}", "call syscall6",
        "jslt %r0, 0, setup_failed", "mov %r2, %r0", f"add %r2, {_STACK}", f"lddw %r1, func {function}",
        "mov %r3, %r6", "mov %r4, %r6", f"add %r4, {p.at[tid]}", "call clone_thread",
        "jsle %r0, 0, setup_failed",
    ])  # fmt: skip


def join_thread(p: Program, tid: str, pinned: str) -> str:
    """Wait for the thread whose tid word is mem field ``tid`` to exit (the kernel clears the
    word and wakes its futex), then exit EXIT_SETUP if its pinning, stored at ``pinned``, failed."""
    label = f"join_{tid}"
    return "\n".join([
        f"{label}:", f"ldxw %r3, [%r6+{p.at[tid]}]", f"jeq %r3, 0, {label}_done", "mov %r4, %r3",
        "mov %r2, %r6", f"add %r2, {p.at[tid]}", f"mov %r1, {p.sys('futex')}", f"mov %r3, {_FUTEX_WAIT}",
        "mov %r5, 0", "call syscall", f"ja {label}", f"{label}_done:",
        f"ldxdw %r0, [%r6+{p.at[pinned]}]", "jne %r0, 0, setup_failed",
    ])  # fmt: skip


def wait_until(label: str, field: int, value: str | int, equal: bool = True) -> str:
    """Spin until the u64 at mem offset ``field`` (load-acquire) equals ``value`` (a register or
    immediate), or, without ``equal``, is at least it."""
    return "\n".join([f"{label}:", "call spin_hint", f"load_acquire64 %r0, [%r6+{field}]",
                      f"{'jne' if equal else 'jlt'} %r0, {value}, {label}"])  # fmt: skip


def sync_code(p: Program, gen: int, length: int) -> str:
    """icache_sync as the mutation has it, over ``length`` bytes of generation ``gen``."""
    if p.mutation == StressMutation.SKIP_SYNC:
        return ""
    if p.mutation == StressMutation.SYNC_NULL_RANGE:
        return "mov %r1, 0\nmov %r2, 0\ncall icache_sync"
    if p.mutation == StressMutation.SYNC_WRONG_BUFFER:
        start = f"mov %r1, %r6\nadd %r1, {p.at[f'code{gen}']}"
    else:
        start = f"mov %r1, {p.code_at}"
    return f"{start}\nmov %r2, {length}\ncall icache_sync"


_STORE_SUFFIX = {8: "dw", 4: "w", 2: "h", 1: "b"}


def copy_code(p: Program, gen: int, lo: int, hi: int) -> list[str]:
    """Bytes lo to hi of generation ``gen`` written through the writable view (r7), each store the
    widest (u64 down to a byte) that fits what is left: a u64 at a time from a multiple of 8."""
    source, stores, off = p.at[f"code{gen}"], [], lo
    while off < hi:
        size = next(size for size in _STORE_SUFFIX if size <= hi - off)
        suffix = _STORE_SUFFIX[size]
        stores.append(f"ldx{suffix} %r3, [%r6+{source + off}]\nstx{suffix} [%r7+{off}], %r3")
        off += size
    return stores


def install_code(p: Program, gen: int) -> str:
    """Write generation ``gen`` through the writable view and synchronize it; under
    sync_before_last_write its last u64 is written after icache_sync."""
    code = p.codes[gen]
    late = 8 if p.mutation == StressMutation.SYNC_BEFORE_LAST_WRITE else 0
    mprotect = p.params["mapping"] == "mprotect"
    protect = [syscall(p.sys("mprotect"), p.slot, REGION, prot) for prot in (_PROT_RW, _PROT_RX)]
    return "\n".join(
        [
            *([protect[0]] if mprotect else []),
            *copy_code(p, gen, 0, len(code) - late),
            *([protect[1]] if mprotect else []),
            sync_code(p, gen, len(code)),
            *copy_code(p, gen, len(code) - late, len(code)),
        ]
    )


def by_generation(p: Program, counter: str, label: str, block: Callable[[int], str]) -> str:
    """``block(0)`` when ``counter`` is even, else ``block(1)``."""
    return "\n".join(
        [
            f"mov %r3, {counter}",
            "and %r3, 1",
            f"jne %r3, 0, {label}_odd",
            block(0),
            f"ja {label}_end",
            f"{label}_odd:",
            block(1),
            f"{label}_end:",
        ]
    )


def check_result(p: Program, counter: str, label: str, on_wrong: str) -> str:
    """After a call: r0 must be the value of the generation installed in round ``counter``."""
    return by_generation(
        p,
        counter,
        label,
        lambda gen: f"jeq %r0, {p.values[gen]}, {label}_ok{gen}\n{on_wrong}\n{label}_ok{gen}:",
    )


EPILOGUE = f"""
    mov %r0, 0
    exit
wrong:
    mov %r0, {EXIT_WRONG_RESULT}
    exit
setup_failed:
    mov %r0, {EXIT_SETUP}
    exit
"""


def jit_mutation(mutation: str) -> str:
    """The jit_core mutation the program is compiled with (none for a StressMutation)."""
    return Mutation.NONE if mutation in StressMutation.__members__.values() else mutation
