"""The icache stress programs: freestanding ELF executables built by jit_core from eBPF assembly.

Each program installs jit_core's code for a small function again and again at its own address
(``harness.icache``'s slots, so that a violation is attributed to its program by PC) and calls
it. The function alternates between two generations that return different values (chosen by
the scenario's seed), and every call's result is checked against the generation installed at
that moment ("returns 3, then must return 7"). Exit status: 0 every call returned what it
must, 1 a call returned another value (stale code ran), 2 a system call the set-up needs
failed; a signal gives 128 + its number.

Three generators (GENERATORS, named by the scenario files):
- ``install``: one thread writes, synchronizes and calls, optionally moving to the other CPU
  between synchronizing and calling (``migrate``);
- ``publish``: a writer on CPU 0 installs each generation and publishes its round number with a
  store-release; executor threads on CPU 1 wait for it with load-acquire, synchronize as the
  scenario says (``context_sync``, or nothing when the writer's ``membarrier`` does it for them)
  and call;
- ``patch``: live patching. An executor on CPU 1 calls the function in a loop, never
  synchronizing; the writer on CPU 0 rewrites one instruction of it in place (an aligned 32-bit
  store), synchronizes its own side, and waits for two more calls before the next patch. The
  correct program turns the branch that selects the returned value into a NOP and back (a static
  key: B and NOP may be modified while another PE runs them); ``patch_immediate`` patches a MOV
  immediate instead, and ``torn_patch`` writes the branch with two 16-bit stores and lets the
  executor run the half-written word (half B, half NOP) in between. Either value is a right
  result at any time.
Both map the code region as the scenario says: ``rwx`` (one RWX mapping), ``dual`` (a memfd
mapped RX at the slot and RW at an alias: W^X) or ``mprotect`` (RW while writing, RX before
running). Mutations of jit_core's icache_sync and context_sync are applied by jit_core; the
scenario-level ones (harness.stress.scenarios.StressMutation) change the program here.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from base.errors import InfraError, InputError
from base.profiles import load_profile
from harness.icache import JIT_BASE, JIT_STRIDE, MAX_INDEX, PAGE
from jit_core.asm import assemble
from jit_core.backend import get_backend
from jit_core.compile import compile_program
from jit_core.elf import build_executable
from jit_core.intrinsics import Mutation
from jit_core.syscalls import syscall_number

from .scenarios import IcacheScenario, StressMutation

__all__ = [
    "EXIT_SETUP",
    "EXIT_WRONG_RESULT",
    "GENERATORS",
    "REGION",
    "build_program",
    "generation_values",
    "install_generator",
    "installed_code",
    "patch_generator",
    "publish_generator",
    "reuse_generator",
]

EXIT_WRONG_RESULT, EXIT_SETUP = 1, 2
REGION = 2 * PAGE  # the code region of a slot: placements may straddle its page boundary
_RW_ALIAS = 0x8000  # the writable view of a dual mapping, inside the slot's stride
_STACK = 64 * 1024
_PROT_RW, _PROT_RX, _PROT_RWX = 3, 5, 7
_MAP_SHARED, _MAP_PRIVATE, _MAP_FIXED, _MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
_FUTEX_WAIT = 0
# include/uapi/linux/membarrier.h
_MEMBARRIER = {
    "sync_core": (1 << 6, 1 << 5),  # (register, command): PRIVATE_EXPEDITED_SYNC_CORE
    "plain": (1 << 4, 1 << 3),  # PRIVATE_EXPEDITED
}


@dataclass(frozen=True)
class _Program:
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


def _function(arch: str, value: int, filler: int) -> tuple[bytes, int]:
    """(code padded to u64s, entry offset) of jit_core's function returning ``value``."""
    text = f"mov %r0, {value - filler}\n" + "add %r0, 1\n" * filler + "exit\n"
    compiled = compile_program(arch, assemble(text))
    return compiled.code + bytes(-len(compiled.code) % 8), compiled.functions.get(0, 0)


def _mmap(address: int, prot: int, flags: int) -> bytes:
    return struct.pack("<QQQQqQ", address, REGION, prot, flags, -1, 0)


def _mem(fields: list[tuple[str, bytes]]) -> tuple[dict[str, int], bytes]:
    offsets, blob = {}, b""
    for name, data in fields:
        offsets[name] = len(blob)
        blob += data + bytes(-len(data) % 8)
    return offsets, blob


# (code0, code1, entry) of a generator's two generations, from the values they return
Functions = Callable[[tuple[int, int]], tuple[bytes, bytes, int]]


def _build(arch: str, params: Mapping[str, Any], mutation: str, index: int, seed: int | None,
           extra: list[tuple[str, bytes]],
           functions: Functions | None = None) -> tuple[_Program, bytes]:
    """The program's description and mem: its slot, the two generations' code (by default
    ``_function`` of each value; ``functions`` gives (code0, code1, entry) instead) and mem
    fields (the mapping's, the CPU masks, the code, then ``extra``)."""
    if not 0 <= index < MAX_INDEX:
        raise InputError("stress program index", index, hint=f"0 to {MAX_INDEX - 1}")
    values = generation_values(params["seed"] if seed is None else seed)
    if functions is None:
        (code0, entry), (code1, _) = (_function(arch, v, params["filler"]) for v in values)
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
        "rwx": [("map_rx", _mmap(slot, _PROT_RWX, anon))],
        "mprotect": [("map_rx", _mmap(slot, _PROT_RW, anon))],
        "dual": [
            ("map_rx", _mmap(slot, _PROT_RX, _MAP_SHARED | _MAP_FIXED)),
            ("map_rw", _mmap(slot + _RW_ALIAS, _PROT_RW, _MAP_SHARED | _MAP_FIXED)),
            ("memfd_name", b"jitprobe-code\0"),
        ],
    }[mapping]
    at, mem = _mem([*maps, ("cpu0", u64(1)), ("cpu1", u64(2)), ("code0", code0), ("code1", code1), *extra])
    return _Program(arch, params, mutation, slot, (code0, code1), entry, values, at), mem


def _syscall(number: int, *args: str | int) -> str:
    """Assembly of syscall ``number`` with up to four arguments (registers or immediates)."""
    moves = [f"mov %r{2 + k}, {arg}" for k, arg in enumerate(args)]
    return "\n".join([f"mov %r1, {number}", *moves, "call syscall"])


def _set_up(p: _Program) -> str:
    """Map the code region; any failure exits EXIT_SETUP."""
    mmap = p.sys("mmap")
    steps = []
    if p.params["mapping"] == "dual":
        steps += [
            "mov %r3, %r6",
            f"add %r3, {p.at['memfd_name']}",
            _syscall(p.sys("memfd_create"), "%r3", 0),
            "jslt %r0, 0, setup_failed",
            f"stxdw [%r6+{p.at['map_rx'] + 32}], %r0",
            f"stxdw [%r6+{p.at['map_rw'] + 32}], %r0",
            _syscall(p.sys("ftruncate"), "%r0", REGION),
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


def _pin(p: _Program, cpu: int, status: str = "") -> str:
    """sched_setaffinity(0, 8, mask of ``cpu``); a failure exits EXIT_SETUP, or is stored at
    mem field ``status`` when given (an executor thread cannot exit the program)."""
    call = [
        "mov %r4, %r6",
        f"add %r4, {p.at[f'cpu{cpu}']}",
        _syscall(p.sys("sched_setaffinity"), 0, 8, "%r4"),
    ]
    check = f"stxdw [%r6+{p.at[status]}], %r0" if status else "jne %r0, 0, setup_failed"
    return "\n".join([*call, check])


_STACK_MMAP = struct.pack("<QQQQqQ", 0, _STACK, _PROT_RW, _MAP_PRIVATE | _MAP_ANONYMOUS, -1, 0)
_STACK_FIELD = ("map_stack", _STACK_MMAP)


def _start_thread(p: _Program, function: str, tid: str) -> str:
    """A new thread on its own stack calling ``function`` with mem (r6) as argument, its tid
    word at mem field ``tid``; a failure exits EXIT_SETUP. Needs the mem field ``map_stack``
    (_STACK_FIELD)."""
    return "\n".join([
        f"mov %r1, {p.sys('mmap')}", "mov %r2, %r6", f"add %r2, {p.at['map_stack']}", "call syscall6",
        "jslt %r0, 0, setup_failed", "mov %r2, %r0", f"add %r2, {_STACK}", f"lddw %r1, func {function}",
        "mov %r3, %r6", "mov %r4, %r6", f"add %r4, {p.at[tid]}", "call clone_thread",
        "jsle %r0, 0, setup_failed",
    ])  # fmt: skip


def _join(p: _Program, tid: str, pinned: str) -> str:
    """Wait for the thread whose tid word is mem field ``tid`` to exit (the kernel clears the
    word and wakes its futex), then exit EXIT_SETUP if its pinning, stored at ``pinned``, failed."""
    label = f"join_{tid}"
    return "\n".join([
        f"{label}:", f"ldxw %r3, [%r6+{p.at[tid]}]", f"jeq %r3, 0, {label}_done", "mov %r4, %r3",
        "mov %r2, %r6", f"add %r2, {p.at[tid]}", f"mov %r1, {p.sys('futex')}", f"mov %r3, {_FUTEX_WAIT}",
        "mov %r5, 0", "call syscall", f"ja {label}", f"{label}_done:",
        f"ldxdw %r0, [%r6+{p.at[pinned]}]", "jne %r0, 0, setup_failed",
    ])  # fmt: skip


def _wait_until(label: str, field: int, value: str | int, equal: bool = True) -> str:
    """Spin until the u64 at mem offset ``field`` (load-acquire) equals ``value`` (a register or
    immediate), or, without ``equal``, is at least it."""
    return "\n".join([f"{label}:", "call spin_hint", f"load_acquire64 %r0, [%r6+{field}]",
                      f"{'jne' if equal else 'jlt'} %r0, {value}, {label}"])  # fmt: skip


def _sync(p: _Program, gen: int, length: int) -> str:
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


def _copy(p: _Program, gen: int, lo: int, hi: int) -> list[str]:
    """Bytes lo to hi of generation ``gen`` written through the writable view (r7), a u64 at a time."""
    source = p.at[f"code{gen}"]
    return [f"ldxdw %r3, [%r6+{source + off}]\nstxdw [%r7+{off}], %r3" for off in range(lo, hi, 8)]


def _install(p: _Program, gen: int) -> str:
    """Write generation ``gen`` through the writable view and synchronize it; under
    sync_before_last_write its last u64 is written after icache_sync."""
    code = p.codes[gen]
    late = 8 if p.mutation == StressMutation.SYNC_BEFORE_LAST_WRITE else 0
    mprotect = p.params["mapping"] == "mprotect"
    protect = [_syscall(p.sys("mprotect"), p.slot, REGION, prot) for prot in (_PROT_RW, _PROT_RX)]
    return "\n".join(
        [
            *([protect[0]] if mprotect else []),
            *_copy(p, gen, 0, len(code) - late),
            *([protect[1]] if mprotect else []),
            _sync(p, gen, len(code)),
            *_copy(p, gen, len(code) - late, len(code)),
        ]
    )


def _by_generation(p: _Program, counter: str, label: str, block: Callable[[int], str]) -> str:
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


def _check(p: _Program, counter: str, label: str, on_wrong: str) -> str:
    """After a call: r0 must be the value of the generation installed in round ``counter``."""
    return _by_generation(
        p,
        counter,
        label,
        lambda gen: f"jeq %r0, {p.values[gen]}, {label}_ok{gen}\n{on_wrong}\n{label}_ok{gen}:",
    )


_EPILOGUE = f"""
    mov %r0, 0
    exit
wrong:
    mov %r0, {EXIT_WRONG_RESULT}
    exit
setup_failed:
    mov %r0, {EXIT_SETUP}
    exit
"""


def install_generator(
    arch: str, params: Mapping[str, Any], mutation: str, index: int, seed: int | None = None
) -> bytes:
    """One thread installs, synchronizes and calls each generation (see the module docstring)."""
    p, mem = _build(arch, params, mutation, index, seed, [])
    migrate = bool(params.get("migrate"))
    text = "\n".join(
        [
            "mov %r6, %r1",
            _set_up(p),
            f"mov %r7, {p.write_at}",
            f"mov %r9, {p.code_at + p.entry}",
            "mov %r8, 0",
            "again:",
            _pin(p, 0) if migrate else "",
            _by_generation(p, "%r8", "install", lambda gen: _install(p, gen)),
            _pin(p, 1) if migrate else "",
            "call %r9",
            _check(p, "%r8", "check", "ja wrong"),
            "add %r8, 1",
            f"jlt %r8, {params['iterations']}, again",
            _EPILOGUE,
        ]
    )
    return build_executable(arch, assemble(text), mem, mutation=_jit_mutation(mutation))


def publish_generator(
    arch: str, params: Mapping[str, Any], mutation: str, index: int, seed: int | None = None
) -> bytes:
    """A writer installs each generation and publishes it to executor threads (module docstring)."""
    threads = int(params["threads"])
    if threads < 1:
        raise InputError("publish generator threads", threads, hint="at least 1")
    u64 = struct.Struct("<q").pack
    per_thread = [
        (f"{field}{k}", u64(init))
        for k in range(threads)
        for field, init in (("done", 0), ("pinned", 0), ("tid", -1))
    ]
    p, mem = _build(
        arch, params, mutation, index, seed,
        [("published", u64(0)), ("bad", u64(0)), _STACK_FIELD, *per_thread],
    )
    publish = params.get("publish", "context_sync")
    register, command = _MEMBARRIER["plain" if mutation == StressMutation.MEMBARRIER_PLAIN else "sync_core"]
    membarrier = p.sys("membarrier")
    executor_sync = publish == "context_sync" and load_profile(arch).code_modification.executor_sync
    iterations = params["iterations"]
    writer = [
        "mov %r6, %r1",
        _pin(p, 0),
        _syscall(membarrier, register, 0, 0)
        if publish == "membarrier" and mutation != StressMutation.MEMBARRIER_UNREGISTERED
        else "",
        _set_up(p),
        f"mov %r7, {p.write_at}",
    ]
    writer += [_start_thread(p, f"executor{k}", f"tid{k}") for k in range(threads)]
    writer += [
        "mov %r8, 1",
        "round:",
        _by_generation(p, "%r8", "install", lambda gen: _install(p, gen)),
        _syscall(membarrier, command, 0, 0) if publish == "membarrier" else "",
        f"store_release64 [%r6+{p.at['published']}], %r8",
    ]
    writer += [_wait_until(f"wait_done{k}", p.at[f"done{k}"], "%r8") for k in range(threads)]
    writer += ["add %r8, 1", f"jle %r8, {iterations}, round"]
    writer += [_join(p, f"tid{k}", f"pinned{k}") for k in range(threads)]
    writer += [f"ldxdw %r0, [%r6+{p.at['bad']}]", "jne %r0, 0, wrong", _EPILOGUE]
    executors = []
    for k in range(threads):
        executors += [
            f"executor{k}:",
            "mov %r6, %r1",
            _pin(p, 1, status=f"pinned{k}"),
            f"mov %r9, {p.code_at + p.entry}",
            "mov %r7, 1",
            _wait_until(f"wait_published{k}", p.at["published"], "%r7"),
            "call context_sync" if executor_sync else "",
            "call %r9",
            _check(p, "%r7", f"check{k}", f"stdw [%r6+{p.at['bad']}], 1"),
            f"store_release64 [%r6+{p.at[f'done{k}']}], %r7",
            "add %r7, 1",
            f"jle %r7, {iterations}, wait_published{k}",
            "exit",
        ]
    text = "\n".join([*writer, *executors])
    return build_executable(arch, assemble(text), mem, mutation=_jit_mutation(mutation))


def _jit_mutation(mutation: str) -> str:
    """The jit_core mutation the program is compiled with (none for a StressMutation)."""
    return Mutation.NONE if mutation in StressMutation.__members__.values() else mutation


def _patched_functions(arch: str, mutation: str, values: tuple[int, int],
                       filler: int) -> tuple[bytes, bytes, int]:
    """(code before, code after, offset of the one instruction word that differs) of the patch
    generator's function: a jump selects the block that returns the first value, and the patch
    turns it into the architecture's NOP, falling through to the block that returns the second
    (a static key); under ``patch_immediate`` the patch changes that block's immediate instead."""
    first, second = values
    pad = "add %r0, 0\n" * filler  # code after the blocks, as in a real function's body
    jump = f"ja +{2 + filler}\nmov %r0, {second}\n{pad}exit\nmov %r0, {first}\n{pad}exit\n"
    immediate = mutation == StressMutation.PATCH_IMMEDIATE
    other = (jump.replace(f"mov %r0, {first}", f"mov %r0, {second}") if immediate
             else jump.replace(f"ja +{2 + filler}", "ja +0"))  # fmt: skip
    before, located = (compile_program(arch, assemble(t)).code for t in (jump, other))
    nop = get_backend(arch).nop
    words = [off for off in range(0, min(len(before), len(located)), len(nop))
             if before[off:off + len(nop)] != located[off:off + len(nop)]]  # fmt: skip
    if len(before) != len(located) or len(words) != 1 or len(nop) != 4:
        raise InfraError(f"{arch}: the patched function's two versions differ in {len(words)} words "
                         f"({len(before)} and {len(located)} bytes); the patch generator needs one "
                         "4-byte word")
    word = words[0]
    after = located if immediate else before[:word] + nop + before[word + 4:]
    pad8 = bytes(-len(before) % 8)
    return before + pad8, after + pad8, word


def patch_generator(arch: str, params: Mapping[str, Any], mutation: str, index: int,
                    seed: int | None = None) -> bytes:
    """A writer patches one instruction of a function an executor keeps calling (module docstring)."""
    u64 = struct.Struct("<q").pack
    flags = [("started", u64(0)), ("calls", u64(0)), ("stop", u64(0)), ("bad", u64(0)), ("pinned", u64(0)),
             ("tid", u64(-1))]  # fmt: skip
    word = 0

    def functions(values: tuple[int, int]) -> tuple[bytes, bytes, int]:
        nonlocal word
        before, after, word = _patched_functions(arch, mutation, values, int(params["filler"]))
        return before, after, 0

    p, mem = _build(arch, params, mutation, index, seed, [_STACK_FIELD, *flags], functions)
    at, before = p.at, p.codes[0]
    def wait_calls(label: str) -> str:
        """Until the executor has made two more calls (so it ran what is there now)."""
        return "\n".join([f"load_acquire64 %r9, [%r6+{at['calls']}]", "add %r9, 2",
                          _wait_until(label, at["calls"], "%r9", equal=False)])

    def patch(gen: int) -> str:
        if mutation != StressMutation.TORN_PATCH:
            return f"ldxw %r3, [%r6+{at[f'code{gen}'] + word}]\nstxw [%r7+{word}], %r3"
        # Half the word, then the executor runs the half-written instruction, then the other half.
        halves = [f"ldxh %r3, [%r6+{at[f'code{gen}'] + word + half}]\nstxh [%r7+{word + half}], %r3"
                  for half in (0, 2)]  # fmt: skip
        return "\n".join([halves[0], wait_calls(f"torn{gen}"), halves[1]])
    text = "\n".join([
        "mov %r6, %r1", _pin(p, 0), _set_up(p), f"mov %r7, {p.write_at}",
        "\n".join(f"ldxdw %r3, [%r6+{at['code0'] + off}]\nstxdw [%r7+{off}], %r3"
                  for off in range(0, len(before), 8)),
        f"mov %r1, {p.code_at}", f"mov %r2, {len(before)}", "call icache_sync",
        _start_thread(p, "executor", "tid"),
        _wait_until("wait_started", at["started"], 1),
        "mov %r8, 1",
        "round:",
        _by_generation(p, "%r8", "patch", patch),
        f"mov %r1, {p.code_at + word}", "mov %r2, 4", "call icache_sync",
        wait_calls("wait_calls"),
        "add %r8, 1", f"jle %r8, {params['iterations']}, round",
        "mov %r3, 1", f"store_release64 [%r6+{at['stop']}], %r3",
        _join(p, "tid", "pinned"),
        f"ldxdw %r0, [%r6+{at['bad']}]", "jne %r0, 0, wrong",
        _EPILOGUE,
        "executor:",
        "mov %r6, %r1", _pin(p, 1, status="pinned"), f"mov %r9, {p.code_at}",
        "mov %r3, 1", f"store_release64 [%r6+{at['started']}], %r3",
        "call_again:",
        "call %r9",
        f"jeq %r0, {p.values[0]}, right", f"jeq %r0, {p.values[1]}, right", f"stdw [%r6+{at['bad']}], 1",
        "right:",
        f"ldxdw %r3, [%r6+{at['calls']}]", "add %r3, 1", f"store_release64 [%r6+{at['calls']}], %r3",
        f"load_acquire64 %r0, [%r6+{at['stop']}]", "jeq %r0, 0, call_again",
        "exit",
    ])
    return build_executable(arch, assemble(text), mem, mutation=_jit_mutation(mutation))


# How many turns, in all rounds together, the writer of a reused buffer waits for the executor to
# run the new bytes before it synchronizes: under TCG they run at once (a few turns a round), but
# where stale code runs until the maintenance (qemu-user, and hardware may) the wait would never
# end; there the first round spends it all, in about a second.
_REUSE_SPINS = 1 << 24


def _spinning_function(arch: str, value: int, filler: int) -> tuple[bytes, int]:
    """(code padded to u64s, entry offset) of the reuse generator's function: called with r1 = its
    flags (u64 "spinning", then u64 "release") and r2 = the round, it stores ``value`` to spinning
    on every turn of a loop that waits for release == round, then returns ``value``. A thread in
    the loop keeps running its bytes and shows which generation of them it runs."""
    text = (f"spin:\nmov %r3, {value}\nstore_release64 [%r1+0], %r3\nload_acquire64 %r0, [%r1+8]\n"
            f"jne %r0, %r2, spin\nmov %r0, {value - filler}\n"
            + "add %r0, 1\n" * filler + "exit\n")  # fmt: skip
    compiled = compile_program(arch, assemble(text))
    return compiled.code + bytes(-len(compiled.code) % 8), compiled.functions.get(0, 0)


def reuse_generator(arch: str, params: Mapping[str, Any], mutation: str, index: int,
                    seed: int | None = None) -> bytes:
    """A code buffer reused for the next function: the writer publishes round k, waits until the
    executor runs generation k (it spins inside the function until released), releases it, waits
    until it has returned, and only then writes the next generation into the same buffer (a
    grace period, as RCU gives a JIT). Under ``reuse_while_running`` the writer rewrites the
    buffer while the executor is still inside the old function, waits until the executor runs
    the new bytes (so every run shows the bug, however the host schedules the vCPUs), then
    synchronizes and releases it: the executor returns the new generation's value (where stale
    code keeps running until the maintenance, the writer gives up waiting: _REUSE_SPINS)."""
    u64 = struct.Struct("<q").pack
    flags = [("spinning", u64(0)), ("release", u64(0)), ("published", u64(0)), ("done", u64(0)),
             ("bad", u64(0)), ("pinned", u64(0)), ("tid", u64(-1)),
             ("patience", u64(_REUSE_SPINS))]  # fmt: skip
    filler = int(params["filler"])

    def functions(values: tuple[int, int]) -> tuple[bytes, bytes, int]:
        (code0, entry), (code1, _) = (_spinning_function(arch, v, filler) for v in values)
        return code0, code1, entry

    p, mem = _build(arch, params, mutation, index, seed, [_STACK_FIELD, *flags], functions)
    at, iterations = p.at, params["iterations"]
    reuse_early = mutation == StressMutation.REUSE_WHILE_RUNNING
    executor_sync = load_profile(arch).code_modification.executor_sync

    def running(label: str, counter: str, bounded: bool = False) -> str:
        """Until the executor's loop stores the value of ``counter``'s generation; ``bounded``: or
        until the program's patience (mem field, counted down in r9) has run out."""
        def wait(gen: int) -> str:
            if not bounded:
                return _wait_until(f"{label}{gen}", at["spinning"], p.values[gen])
            return "\n".join([f"ldxdw %r9, [%r6+{at['patience']}]", f"{label}{gen}:",
                              f"jeq %r9, 0, {label}{gen}_end", "call spin_hint",
                              f"load_acquire64 %r0, [%r6+{at['spinning']}]",
                              f"jeq %r0, {p.values[gen]}, {label}{gen}_end", "sub %r9, 1", f"ja {label}{gen}",
                              f"{label}{gen}_end:", f"stxdw [%r6+{at['patience']}], %r9"])  # fmt: skip
        return _by_generation(p, counter, label, wait)

    def next_generation(label: str, write: Callable[[int], str]) -> str:
        """``write`` of round r8 + 1's generation, unless r8 is the last round."""
        return "\n".join([f"jge %r8, {iterations}, {label}_none", "mov %r9, %r8", "add %r9, 1",
                          _by_generation(p, "%r9", label, write), f"{label}_none:"])  # fmt: skip

    def write_while_running(gen: int) -> str:
        return "\n".join([*_copy(p, gen, 0, len(p.codes[gen])), running(f"new{gen}_", "%r9", bounded=True),
                          _sync(p, gen, len(p.codes[gen]))])  # fmt: skip

    text = "\n".join([
        "mov %r6, %r1", _pin(p, 0), _set_up(p), f"mov %r7, {p.write_at}",
        _start_thread(p, "executor", "tid"),
        "mov %r8, 1", _by_generation(p, "%r8", "first", lambda gen: _install(p, gen)),
        "round:",
        f"stdw [%r6+{at['spinning']}], 0", f"store_release64 [%r6+{at['published']}], %r8",
        running("inside", "%r8"),
        next_generation("early", write_while_running) if reuse_early else "",
        f"store_release64 [%r6+{at['release']}], %r8",
        _wait_until("wait_done", at["done"], "%r8"),
        "" if reuse_early else next_generation("later", lambda gen: _install(p, gen)),
        "add %r8, 1", f"jle %r8, {iterations}, round",
        _join(p, "tid", "pinned"),
        f"ldxdw %r0, [%r6+{at['bad']}]", "jne %r0, 0, wrong",
        _EPILOGUE,
        "executor:",
        "mov %r6, %r1", _pin(p, 1, status="pinned"), f"mov %r9, {p.code_at + p.entry}", "mov %r7, 1",
        "call_round:",
        _wait_until("wait_published", at["published"], "%r7"),
        "call context_sync" if executor_sync else "",
        "mov %r1, %r6", f"add %r1, {at['spinning']}", "mov %r2, %r7", "call %r9",
        _check(p, "%r7", "check", f"stdw [%r6+{at['bad']}], 1"),
        f"store_release64 [%r6+{at['done']}], %r7",
        "add %r7, 1", f"jle %r7, {iterations}, call_round",
        "exit",
    ])  # fmt: skip
    return build_executable(arch, assemble(text), mem, mutation=_jit_mutation(mutation))


Generator = Callable[[str, Mapping[str, Any], str, int, "int | None"], bytes]
GENERATORS: dict[str, Generator] = {
    "install": install_generator, "publish": publish_generator, "patch": patch_generator,
    "reuse": reuse_generator,
}


def build_program(
    scenario: IcacheScenario, arch: str, mutation: str, index: int, seed: int | None = None
) -> bytes:
    """The executable of ``scenario`` with ``mutation`` for ``arch``, its code in slot ``index``.

    ``seed`` replaces the scenario's. Raises InputError for a bad index, JitError for an unknown
    architecture or mutation and InfraError when the code does not fit its region."""
    return GENERATORS[scenario.generator](arch, scenario.params, mutation, index, seed)


def installed_code(
    scenario: IcacheScenario, arch: str, index: int, seed: int | None = None, mutation: str = "none"
) -> tuple[int, bytes, bytes]:
    """(address, first generation, second generation): the code the program of slot ``index``
    with ``mutation`` installs and calls, as build_program puts it in the executable (``seed``
    replaces the scenario's). Raises as build_program does."""
    functions: Functions | None = None
    filler = int(scenario.params["filler"])
    if scenario.generator == "patch":
        def functions(values: tuple[int, int]) -> tuple[bytes, bytes, int]:
            before, after, _ = _patched_functions(arch, mutation, values, filler)
            return before, after, 0
    elif scenario.generator == "reuse":
        def functions(values: tuple[int, int]) -> tuple[bytes, bytes, int]:
            (code0, entry), (code1, _) = (_spinning_function(arch, v, filler) for v in values)
            return code0, code1, entry
    p, _ = _build(arch, scenario.params, mutation, index, seed, [], functions)
    return p.code_at, p.codes[0], p.codes[1]
