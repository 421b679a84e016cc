"""The icache stress programs: freestanding ELF executables built by jit_core from eBPF assembly.

Each program installs jit_core's code for a small function again and again at its own address
(``harness.icache``'s slots, so that a violation is attributed to its program by PC) and calls
it. The function alternates between two generations that return different values (chosen by
the scenario's seed), and every call's result is checked against the generation installed at
that moment ("returns 3, then must return 7"). Exit status: 0 every call returned what it
must, 1 a call returned another value (stale code ran), 2 a system call the set-up needs
failed; a signal gives 128 + its number.

Four generators (GENERATORS, named by the scenario files), assembled from the pieces in
harness.stress.program_asm:
- ``install``: one thread writes, synchronizes and calls, optionally moving to the other CPU
  between synchronizing and calling (``migrate``);
- ``publish``: a writer on CPU 0 installs each generation and publishes its round number with a
  store-release; executor threads on CPU 1 wait for it with load-acquire, synchronize as the
  scenario says (``context_sync``, or nothing when the writer's ``membarrier`` does it for them)
  and call;
- ``patch``: live patching. An executor on CPU 1 calls the function in a loop, never
  synchronizing; the writer on CPU 0 rewrites one instruction of it in place, synchronizes its
  own side, and waits for two more calls before the next patch. Where instructions are aligned
  words the correct program turns the branch that selects the returned value into a NOP and back
  with one aligned 32-bit store (a static key: the branch and NOP may be modified while another
  CPU runs them); ``patch_immediate`` patches a MOV immediate instead, and ``torn_patch`` writes
  the branch with two 16-bit stores and lets the executor run the half-written word in between.
  Where the backend names a breakpoint, the function's first MOV is patched breakpoint first
  (text_poke_bp: the breakpoint, membarrier SYNC_CORE, the other bytes, membarrier, the first
  byte, membarrier), and the executor's SIGTRAP handler waits for the patch and resumes at the
  instruction; ``patch_immediate`` rewrites the immediate with one plain store, ``torn_patch``
  the instruction with two, and the membarrier mutations break the synchronization. Either value
  is a right result at any time;
- ``reuse``: a code buffer reused for the next function, after a grace period, or under
  ``reuse_while_running`` while the executor is still inside the old function.
Each maps the code region as the scenario says: ``rwx`` (one RWX mapping), ``dual`` (a memfd
mapped RX at the slot and RW at an alias: W^X) or ``mprotect`` (RW while writing, RX before
running). Mutations of jit_core's icache_sync and context_sync are applied by jit_core; the
scenario-level ones (harness.stress.scenarios.StressMutation) change the program here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

from base.errors import InfraError, InputError
from base.profiles import load_profile
from jit_core.asm import assemble
from jit_core.backend import get_backend
from jit_core.compile import compile_program
from jit_core.elf import MEM_ADDR, build_executable

from . import program_asm as asm
from .program_asm import EXIT_SETUP, EXIT_WRONG_RESULT, REGION, generation_values
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

def install_generator(
    arch: str, params: Mapping[str, Any], mutation: str, index: int, seed: int | None = None
) -> bytes:
    """One thread installs, synchronizes and calls each generation (see the module docstring)."""
    p, mem = asm.build(arch, params, mutation, index, seed, [])
    migrate = bool(params.get("migrate"))
    text = "\n".join(
        [
            "mov %r6, %r1",
            asm.set_up(p),
            f"mov %r7, {p.write_at}",
            f"mov %r9, {p.code_at + p.entry}",
            "mov %r8, 0",
            "again:",
            asm.pin(p, 0) if migrate else "",
            asm.by_generation(p, "%r8", "install", lambda gen: asm.install_code(p, gen)),
            asm.pin(p, 1) if migrate else "",
            "call %r9",
            asm.check_result(p, "%r8", "check", "ja wrong"),
            "add %r8, 1",
            f"jlt %r8, {params['iterations']}, again",
            asm.EPILOGUE,
        ]
    )
    return build_executable(arch, assemble(text), mem, mutation=asm.jit_mutation(mutation))


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
    p, mem = asm.build(
        arch, params, mutation, index, seed,
        [("published", u64(0)), ("bad", u64(0)), asm.STACK_FIELD, *per_thread],
    )
    publish = params.get("publish", "context_sync")
    executor_sync = publish == "context_sync" and load_profile(arch).code_modification.executor_sync
    iterations = params["iterations"]
    writer = [
        "mov %r6, %r1",
        asm.pin(p, 0),
        asm.membarrier(p, register=True) if publish == "membarrier" else "",
        asm.set_up(p),
        f"mov %r7, {p.write_at}",
    ]
    writer += [asm.start_thread(p, f"executor{k}", f"tid{k}") for k in range(threads)]
    writer += [
        "mov %r8, 1",
        "round:",
        asm.by_generation(p, "%r8", "install", lambda gen: asm.install_code(p, gen)),
        asm.membarrier(p) if publish == "membarrier" else "",
        f"store_release64 [%r6+{p.at['published']}], %r8",
    ]
    writer += [asm.wait_until(f"wait_done{k}", p.at[f"done{k}"], "%r8") for k in range(threads)]
    writer += ["add %r8, 1", f"jle %r8, {iterations}, round"]
    writer += [asm.join_thread(p, f"tid{k}", f"pinned{k}") for k in range(threads)]
    writer += [f"ldxdw %r0, [%r6+{p.at['bad']}]", "jne %r0, 0, wrong", asm.EPILOGUE]
    executors = []
    for k in range(threads):
        executors += [
            f"executor{k}:",
            "mov %r6, %r1",
            asm.pin(p, 1, status=f"pinned{k}"),
            f"mov %r9, {p.code_at + p.entry}",
            "mov %r7, 1",
            asm.wait_until(f"wait_published{k}", p.at["published"], "%r7"),
            "call context_sync" if executor_sync else "",
            "call %r9",
            asm.check_result(p, "%r7", f"check{k}", f"stdw [%r6+{p.at['bad']}], 1"),
            f"store_release64 [%r6+{p.at[f'done{k}']}], %r7",
            "add %r7, 1",
            f"jle %r7, {iterations}, wait_published{k}",
            "exit",
        ]
    text = "\n".join([*writer, *executors])
    return build_executable(arch, assemble(text), mem, mutation=asm.jit_mutation(mutation))


# A running multi-byte instruction is patched breakpoint first where the backend names a
# breakpoint (Linux's text_poke_bp): no store can replace the whole instruction at once while
# another CPU may be fetching it (Intel SDM vol. 3A, "Handling Self- and Cross-Modifying Code").
_SIGTRAP, _SA_SIGINFO = 5, 4  # include/uapi/asm-generic/signal.h and signal-defs.h


def _patched_functions(arch: str, mutation: str, values: tuple[int, int],
                       filler: int) -> tuple[bytes, bytes, int, int]:
    """(code before, code after, offset and length of the one instruction that differs) of the
    patch generator's function. Where the architecture patches breakpoint first it is
    program_asm.function's, whose first instruction, a MOV of the value, is the patched one.
    Elsewhere a jump selects the block that returns the first value, and the patch turns it into
    the architecture's NOP, falling through to the block that returns the second (a static
    key); under ``patch_immediate`` the patch changes that block's immediate instead. Raises
    InfraError when the two versions differ elsewhere."""
    if get_backend(arch).breakpoint is not None:
        (code0, _), (code1, _) = (asm.function(arch, v, filler) for v in values)
        offsets = asm.compiled_function(arch, values[0], filler).insn_offsets
        site, end = offsets[0], offsets[1]
        if len(code0) != len(code1) or code0[:site] + code0[end:] != code1[:site] + code1[end:]:
            raise InfraError(f"{arch}: the patched function's two versions differ outside their first "
                             f"instruction (bytes {site} to {end}); the patch generator patches one")
        return code0, code1, site, end - site
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
    return before + pad8, after + pad8, word, 4


def patch_generator(arch: str, params: Mapping[str, Any], mutation: str, index: int,
                    seed: int | None = None) -> bytes:
    """A writer patches one instruction of a function an executor keeps calling (module docstring)."""
    u64 = struct.Struct("<q").pack
    flags = [("started", u64(0)), ("calls", u64(0)), ("stop", u64(0)), ("bad", u64(0)), ("pinned", u64(0)),
             ("tid", u64(-1))]  # fmt: skip
    backend = get_backend(arch)
    breakpoint_first = backend.breakpoint is not None and backend.ucontext_pc is not None
    if breakpoint_first:  # the writer's "patch under way" flag, and the SIGTRAP handler's sigaction
        flags += [("poking", u64(0)), ("sigaction", struct.pack("<QQQQ", 0, _SA_SIGINFO, 0, 0))]
    site = length = 0

    def functions(values: tuple[int, int]) -> tuple[bytes, bytes, int]:
        nonlocal site, length
        before, after, site, length = _patched_functions(arch, mutation, values, int(params["filler"]))
        return before, after, 0

    p, mem = asm.build(arch, params, mutation, index, seed, [asm.STACK_FIELD, *flags], functions)
    at, before = p.at, p.codes[0]
    def wait_calls(label: str) -> str:
        """Until the executor has made two more calls (so it ran what is there now)."""
        return "\n".join([f"load_acquire64 %r9, [%r6+{at['calls']}]", "add %r9, 2",
                          asm.wait_until(label, at["calls"], "%r9", equal=False)])

    def patch(gen: int) -> str:
        if mutation == StressMutation.TORN_PATCH:
            # Two stores, then the executor runs the half-written instruction, then the other part.
            split = site + (1 << ((length - 1).bit_length() - 1))
            return "\n".join([*asm.copy_code(p, gen, site, split), wait_calls(f"torn{gen}"),
                              *asm.copy_code(p, gen, split, site + length)])  # fmt: skip
        if not breakpoint_first:
            return "\n".join(asm.copy_code(p, gen, site, site + length))
        tail = asm.copy_code(p, gen, site + 1, site + length)
        if mutation == StressMutation.PATCH_IMMEDIATE:
            return "\n".join(tail)  # the bytes after the opcode, with a plain store, no breakpoint
        # text_poke_bp: the breakpoint, every core serialized, the tail, serialized, the first byte,
        # serialized. An executor that meets the breakpoint waits in its SIGTRAP handler.
        return "\n".join([
            "mov %r3, 1", f"store_release64 [%r6+{at['poking']}], %r3",
            f"stb [%r7+{site}], {backend.breakpoint[0] if backend.breakpoint else 0}", asm.membarrier(p),
            *tail, asm.membarrier(p),
            *asm.copy_code(p, gen, site, site + 1), asm.membarrier(p),
            "mov %r3, 0", f"store_release64 [%r6+{at['poking']}], %r3",
        ])  # fmt: skip

    # Called by the kernel on the executor's SIGTRAP (r3: its ucontext): wait until the patch is
    # complete, then resume at the patched instruction's start (the trap's RIP is one byte past
    # the breakpoint); the handler returns through rt_sigreturn.
    handler = [
        "sigtrap:", "mov %r7, %r3", f"lddw %r6, {MEM_ADDR}", asm.wait_until("trap_wait", at["poking"], 0),
        f"mov %r3, {p.code_at + site}", f"stxdw [%r7+{backend.ucontext_pc}], %r3", "exit",
    ] if breakpoint_first else []  # fmt: skip
    install_handler = [
        asm.membarrier(p, register=True),
        "mov %r2, %r6", f"add %r2, {at['sigaction']}", "lddw %r3, func sigtrap", "stxdw [%r2+0], %r3",
        f"mov %r1, {_SIGTRAP}", "call sigaction", "jne %r0, 0, setup_failed",
    ] if breakpoint_first else []  # fmt: skip
    text = "\n".join([
        "mov %r6, %r1", asm.pin(p, 0), asm.set_up(p), f"mov %r7, {p.write_at}",
        *install_handler,
        "\n".join(asm.copy_code(p, 0, 0, len(before))),
        f"mov %r1, {p.code_at}", f"mov %r2, {len(before)}", "call icache_sync",
        asm.start_thread(p, "executor", "tid"),
        asm.wait_until("wait_started", at["started"], 1),
        "mov %r8, 1",
        "round:",
        asm.by_generation(p, "%r8", "patch", patch),
        f"mov %r1, {p.code_at + site}", f"mov %r2, {length}", "call icache_sync",
        wait_calls("wait_calls"),
        "add %r8, 1", f"jle %r8, {params['iterations']}, round",
        "mov %r3, 1", f"store_release64 [%r6+{at['stop']}], %r3",
        asm.join_thread(p, "tid", "pinned"),
        f"ldxdw %r0, [%r6+{at['bad']}]", "jne %r0, 0, wrong",
        asm.EPILOGUE,
        "executor:",
        "mov %r6, %r1", asm.pin(p, 1, status="pinned"), f"mov %r9, {p.code_at}",
        "mov %r3, 1", f"store_release64 [%r6+{at['started']}], %r3",
        "call_again:",
        "call %r9",
        f"jeq %r0, {p.values[0]}, right", f"jeq %r0, {p.values[1]}, right", f"stdw [%r6+{at['bad']}], 1",
        "right:",
        f"ldxdw %r3, [%r6+{at['calls']}]", "add %r3, 1", f"store_release64 [%r6+{at['calls']}], %r3",
        f"load_acquire64 %r0, [%r6+{at['stop']}]", "jeq %r0, 0, call_again",
        "exit",
        *handler,
    ])  # fmt: skip
    return build_executable(arch, assemble(text), mem, mutation=asm.jit_mutation(mutation))


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

    p, mem = asm.build(arch, params, mutation, index, seed, [asm.STACK_FIELD, *flags], functions)
    at, iterations = p.at, params["iterations"]
    reuse_early = mutation == StressMutation.REUSE_WHILE_RUNNING
    executor_sync = load_profile(arch).code_modification.executor_sync

    def running(label: str, counter: str, bounded: bool = False) -> str:
        """Until the executor's loop stores the value of ``counter``'s generation; ``bounded``: or
        until the program's patience (mem field, counted down in r9) has run out."""
        def wait(gen: int) -> str:
            if not bounded:
                return asm.wait_until(f"{label}{gen}", at["spinning"], p.values[gen])
            return "\n".join([f"ldxdw %r9, [%r6+{at['patience']}]", f"{label}{gen}:",
                              f"jeq %r9, 0, {label}{gen}_end", "call spin_hint",
                              f"load_acquire64 %r0, [%r6+{at['spinning']}]",
                              f"jeq %r0, {p.values[gen]}, {label}{gen}_end", "sub %r9, 1", f"ja {label}{gen}",
                              f"{label}{gen}_end:", f"stxdw [%r6+{at['patience']}], %r9"])  # fmt: skip
        return asm.by_generation(p, counter, label, wait)

    def next_generation(label: str, write: Callable[[int], str]) -> str:
        """``write`` of round r8 + 1's generation, unless r8 is the last round."""
        return "\n".join([f"jge %r8, {iterations}, {label}_none", "mov %r9, %r8", "add %r9, 1",
                          asm.by_generation(p, "%r9", label, write), f"{label}_none:"])  # fmt: skip

    def write_while_running(gen: int) -> str:
        return "\n".join([*asm.copy_code(p, gen, 0, len(p.codes[gen])),
                          running(f"new{gen}_", "%r9", bounded=True),
                          asm.sync_code(p, gen, len(p.codes[gen]))])  # fmt: skip

    text = "\n".join([
        "mov %r6, %r1", asm.pin(p, 0), asm.set_up(p), f"mov %r7, {p.write_at}",
        asm.start_thread(p, "executor", "tid"),
        "mov %r8, 1", asm.by_generation(p, "%r8", "first", lambda gen: asm.install_code(p, gen)),
        "round:",
        f"stdw [%r6+{at['spinning']}], 0", f"store_release64 [%r6+{at['published']}], %r8",
        running("inside", "%r8"),
        next_generation("early", write_while_running) if reuse_early else "",
        f"store_release64 [%r6+{at['release']}], %r8",
        asm.wait_until("wait_done", at["done"], "%r8"),
        "" if reuse_early else next_generation("later", lambda gen: asm.install_code(p, gen)),
        "add %r8, 1", f"jle %r8, {iterations}, round",
        asm.join_thread(p, "tid", "pinned"),
        f"ldxdw %r0, [%r6+{at['bad']}]", "jne %r0, 0, wrong",
        asm.EPILOGUE,
        "executor:",
        "mov %r6, %r1", asm.pin(p, 1, status="pinned"), f"mov %r9, {p.code_at + p.entry}", "mov %r7, 1",
        "call_round:",
        asm.wait_until("wait_published", at["published"], "%r7"),
        "call context_sync" if executor_sync else "",
        "mov %r1, %r6", f"add %r1, {at['spinning']}", "mov %r2, %r7", "call %r9",
        asm.check_result(p, "%r7", "check", f"stdw [%r6+{at['bad']}], 1"),
        f"store_release64 [%r6+{at['done']}], %r7",
        "add %r7, 1", f"jle %r7, {iterations}, call_round",
        "exit",
    ])  # fmt: skip
    return build_executable(arch, assemble(text), mem, mutation=asm.jit_mutation(mutation))


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
    functions: asm.Functions | None = None
    filler = int(scenario.params["filler"])
    if scenario.generator == "patch":
        def functions(values: tuple[int, int]) -> tuple[bytes, bytes, int]:
            before, after, _, _ = _patched_functions(arch, mutation, values, filler)
            return before, after, 0
    elif scenario.generator == "reuse":
        def functions(values: tuple[int, int]) -> tuple[bytes, bytes, int]:
            (code0, entry), (code1, _) = (_spinning_function(arch, v, filler) for v in values)
            return code0, code1, entry
    p, _ = asm.build(arch, scenario.params, mutation, index, seed, [], functions)
    return p.code_at, p.codes[0], p.codes[1]
