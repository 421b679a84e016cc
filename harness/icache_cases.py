"""Code-install cases for the sanitizer, and the rules each must be reported with.

Two families of programs install code and run it, each case's code at its own address so that a
violation is attributed to its case by PC:
- jit_core's: ``install_program`` builds, per ``jit_core.intrinsics.MUTATIONS`` name, an eBPF
  program (compiled by jit_core into a freestanding ELF) that installs a function at
  ``JIT_BASE + index * JIT_STRIDE``, synchronizes it with that mutation of icache_sync and calls it;
  ``expected_mutation_rules`` says what a same-thread install must be reported with.
  ``install_program_cross`` does the same with the code written on CPU 0 and run on CPU 1;
  ``expected_cross_mutation_rules`` says what that must be reported with.
- C ones: tests/sanitizer_progs/codegen.c, whose variants (``CODEGEN_VARIANTS``) break one step
  of the protocol each; ``expected_rules`` says what each must be reported with.
The expectations follow from the architectures' rules (harness/sanitizer/README.md), never from
observed output.
"""

from __future__ import annotations

import collections
import struct
from collections.abc import Callable, Iterable, Sequence

from base.contract import Violation
from base.errors import InfraError, InputError
from base.profiles import load_profile
from jit_core.asm import assemble
from jit_core.backend import get_backend
from jit_core.compile import compile_program
from jit_core.elf import build_executable
from jit_core.intrinsics import MUTATIONS
from jit_core.syscalls import syscall_number

__all__ = [
    "CODEGEN_VARIANTS",
    "FILLER",
    "ITERATIONS",
    "JIT_BASE",
    "JIT_STRIDE",
    "MAX_INDEX",
    "PAGE",
    "describe_violations",
    "expected_cross_mutation_rules",
    "expected_mutation_rules",
    "expected_rules",
    "install_program",
    "install_program_cross",
    "installed_function",
    "judge_mutations",
    "mutation_of_pc",
    "rules_by_code",
    "slot_of_pc",
]

JIT_BASE = 0x2000_0000
JIT_STRIDE = 0x1_0000
MAX_INDEX = 256  # install pages stay in the 16 MiB from JIT_BASE, above the ELF's segments
PAGE = 4096
FILLER = 62
ITERATIONS = 50
_CODE_OFFSET = 64  # in mem: the six mmap arguments come first
_RW, _RWX = 3, 7
_PRIVATE_ANONYMOUS = 0x22
_FIXED = _PRIVATE_ANONYMOUS | 0x10
_CROSS_STACK = 64 * 1024

# tests/sanitizer_progs/codegen.c's variants in the order of its table (the index places each
# variant's code at its own address). expected_rules is keyed by them, so they live here.
CODEGEN_VARIANTS = (
    "clear_cache", "explicit", "no_dc_clean", "no_ic_invalidate", "no_dsb", "no_isb",
    "wrong_line_size", "half_range", "cross_clean", "cross_writer_only",
)  # fmt: skip


def installed_function(arch: str) -> tuple[bytes, int]:
    """(code, entry offset) of the function the install programs install: jit_core's ``return FILLER``.

    The eBPF function ``mov r0, 0``, FILLER x ``add r0, 1``, ``exit`` compiled by jit_core: what
    gets installed is JIT output, as in a real JIT (prologue, frame, body, epilogue; callable
    from native code by the backends' calling convention, position independent). It spans
    several cache lines (about 300 bytes), so mutations that miss lines leave some of it stale.
    Raises JitError for an unknown architecture and InfraError if the code does not fit the
    one page it is installed in.
    """
    text = "mov %r0, 0\n" + "add %r0, 1\n" * FILLER + "exit\n"
    compiled = compile_program(arch, assemble(text))
    if len(compiled.code) > PAGE:
        raise InfraError(
            f"jit_core's {arch} code for the installed function is {len(compiled.code)} bytes; "
            f"the install page holds {PAGE} (lower FILLER)"
        )
    return compiled.code, compiled.functions.get(0, 0)


def install_program(arch: str, mutation: str, index: int) -> bytes:
    """The ELF executable that installs ``installed_function`` and calls it, ITERATIONS times.

    It maps a page RWX at JIT_BASE + index * JIT_STRIDE, and in each iteration copies the code
    there, runs icache_sync with ``mutation`` over it and calls it (callx); it exits with the
    function's result, FILLER. Raises InputError for an index outside 0..MAX_INDEX-1, JitError
    for an unknown architecture or mutation and InfraError as installed_function does.
    """
    address, code, entry = _install_site(arch, index)
    mem = _mmap_args(address, PAGE, _RWX, _FIXED).ljust(_CODE_OFFSET, b"\0") + code
    text = f"""
        mov %r6, %r1
        mov %r1, {syscall_number(arch, "mmap")}
        mov %r2, %r6
        call syscall6
        mov %r7, %r0
        mov %r9, %r7
        add %r9, {entry}
        mov %r8, {ITERATIONS}
    again:
        {_copy_code(len(code), _CODE_OFFSET)}
        mov %r1, %r7
        mov %r2, {len(code)}
        call icache_sync
        call %r9
        sub %r8, 1
        jne %r8, 0, again
        exit
    """
    return build_executable(arch, assemble(text), mem, mutation=mutation)


def install_program_cross(arch: str, mutation: str, index: int) -> bytes:
    """The ELF executable in which one CPU installs ``installed_function`` and another calls it.

    The main thread (the writer) pins itself to CPU 0, maps the page as install_program does
    and starts an executor thread (clone_thread) that pins itself to CPU 1. In each of
    ITERATIONS rounds the writer copies the code in, runs icache_sync with ``mutation`` and
    publishes the round's number (store_release); the executor waits for it (load_acquire),
    runs context_sync where the architecture asks the executing CPU to (profile
    ``code_modification.executor_sync``),
    calls the code and publishes that it is done, which the writer waits for. After joining
    the thread (futex wait on its tid word) it exits with the function's result, FILLER, or with
    the negative status of a sched_setaffinity or clone that failed. Raises as install_program does.
    """
    address, code, entry = _install_site(arch, index)
    at, mem = _cross_mem(address, entry, code)
    setaffinity, futex_wait = syscall_number(arch, "sched_setaffinity"), 0
    executor_sync = "call context_sync" if load_profile(arch).code_modification.executor_sync else ""
    text = f"""
        mov %r6, %r1
        mov %r1, {setaffinity}
        mov %r2, 0
        mov %r3, 8
        mov %r4, %r6
        add %r4, {at["cpu0"]}
        call syscall
        jne %r0, 0, leave
        mov %r1, {syscall_number(arch, "mmap")}
        mov %r2, %r6
        add %r2, {at["code_mmap"]}
        call syscall6
        mov %r7, %r0
        mov %r1, {syscall_number(arch, "mmap")}
        mov %r2, %r6
        add %r2, {at["stack_mmap"]}
        call syscall6
        mov %r2, %r0
        add %r2, {_CROSS_STACK}
        lddw %r1, func executor
        mov %r3, %r6
        mov %r4, %r6
        add %r4, {at["tid"]}
        call clone_thread
        jsle %r0, 0, leave
        mov %r8, 1
    round:
        {_copy_code(len(code), at["code"])}
        mov %r1, %r7
        mov %r2, {len(code)}
        call icache_sync
        store_release64 [%r6+{at["published"]}], %r8
    wait_done:
        call spin_hint
        load_acquire64 %r0, [%r6+{at["done"]}]
        jne %r0, %r8, wait_done
        add %r8, 1
        jle %r8, {ITERATIONS}, round
    join:
        ldxw %r3, [%r6+{at["tid"]}]
        jeq %r3, 0, joined
        mov %r1, {syscall_number(arch, "futex")}
        mov %r2, %r6
        add %r2, {at["tid"]}
        mov %r4, %r3
        mov %r3, {futex_wait}
        mov %r5, 0
        call syscall
        ja join
    joined:
        ldxdw %r0, [%r6+{at["pinned"]}]
        jne %r0, 0, leave
        ldxdw %r0, [%r6+{at["result"]}]
    leave:
        exit
    executor:
        mov %r6, %r1
        mov %r1, {setaffinity}
        mov %r2, 0
        mov %r3, 8
        mov %r4, %r6
        add %r4, {at["cpu1"]}
        call syscall
        stxdw [%r6+{at["pinned"]}], %r0
        ldxdw %r9, [%r6+{at["entry"]}]
        mov %r7, 1
    wait_published:
        call spin_hint
        load_acquire64 %r0, [%r6+{at["published"]}]
        jne %r0, %r7, wait_published
        {executor_sync}
        call %r9
        stxdw [%r6+{at["result"]}], %r0
        store_release64 [%r6+{at["done"]}], %r7
        add %r7, 1
        jle %r7, {ITERATIONS}, wait_published
        exit
    """
    return build_executable(arch, assemble(text), mem, mutation=mutation)


def _install_site(arch: str, index: int) -> tuple[int, bytes, int]:
    """(page address, code padded to whole u64s, entry offset) of install program ``index``."""
    if not 0 <= index < MAX_INDEX:
        raise InputError("install program index", index, hint=f"0 to {MAX_INDEX - 1}")
    code, entry = installed_function(arch)
    return JIT_BASE + index * JIT_STRIDE, code + bytes(-len(code) % 8), entry


def _mmap_args(address: int, length: int, prot: int, flags: int) -> bytes:
    """The six u64 arguments of mmap(address, length, prot, flags, -1, 0), for syscall6."""
    return struct.pack("<QQQQqQ", address, length, prot, flags, -1, 0)


def _copy_code(length: int, offset: int) -> str:
    """Assembly copying ``length`` bytes of code from mem (r6) + offset to the page at r7."""
    return "\n".join(
        f"ldxdw %r3, [%r6+{offset + off}]\nstxdw [%r7+{off}], %r3" for off in range(0, length, 8)
    )


def _cross_mem(address: int, entry: int, code: bytes) -> tuple[dict[str, int], bytes]:
    """(offset of each field, contents) of install_program_cross's mem."""
    u64 = struct.Struct("<q").pack
    fields = [
        ("code_mmap", _mmap_args(address, PAGE, _RWX, _FIXED)),
        ("stack_mmap", _mmap_args(0, _CROSS_STACK, _RW, _PRIVATE_ANONYMOUS)),
        ("cpu0", u64(1 << 0)),  # sched_setaffinity masks
        ("cpu1", u64(1 << 1)),
        ("published", u64(0)),  # the last round the writer installed
        ("done", u64(0)),  # the last round the executor ran
        ("result", u64(0)),  # what the code returned
        ("pinned", u64(0)),  # the executor's sched_setaffinity status
        ("entry", u64(address + entry)),
        # The kernel sets it to the executor's tid and clears it at the thread's exit; -1 until then,
        # so that the writer cannot take a not-yet-set word for a finished thread.
        ("tid", u64(-1)),
        ("code", code),
    ]
    offsets, blob = {}, b""
    for name, data in fields:
        offsets[name] = len(blob)
        blob += data
    return offsets, blob


def slot_of_pc(pc: int, base: int, stride: int, names: Sequence[str]) -> str | None:
    """The name whose code page (``base + index * stride``, one page) holds ``pc``, or None."""
    index, offset = divmod(pc - base, stride)
    if pc < base or index >= len(names) or offset >= PAGE:
        return None
    return names[index]


def mutation_of_pc(pc: int, names: Sequence[str]) -> str | None:
    """The mutation whose install program (``names[index]`` built with ``index``) put code at pc."""
    return slot_of_pc(pc, JIT_BASE, JIT_STRIDE, names)


def rules_by_code(
    violations: Iterable[Violation], names: Sequence[str], owner: Callable[[int], str | None]
) -> tuple[dict[str, set[str]], list[Violation]]:
    """The rules reported in each name's code (``owner`` maps a PC to its name), and the violations
    in nobody's code."""
    seen: dict[str, set[str]] = {name: set() for name in names}
    stray = []
    for v in violations:
        name = owner(v["pc"])
        if name is None:
            stray.append(v)
        else:
            seen[name].add(v["rule"])
    return seen, stray


def judge_mutations(
    arch: str,
    cpu: str,
    expected: dict[str, set[str]],
    exit_codes: dict[str, int],
    violations: Sequence[Violation],
    install: str = "same-thread",
) -> tuple[str, str]:
    """(verdict, detail) of one sanitized ``arch``/``cpu`` guest that ran every install program once.

    ``install`` names the kind of program (same-thread or cross-thread) for the detail text.

    ``expected`` is expected_mutation_rules' answer (its keys, in order, are the programs'
    names and indexes), ``exit_codes`` each program's exit status, ``violations`` those of the
    whole run. The verdict is pass only if every program returned FILLER, no violation lies
    outside the installed code (the guest itself sanitized clean), and each mutation was
    reported with exactly its expected rules.
    """
    names = list(expected)
    seen, stray = rules_by_code(violations, names, lambda pc: mutation_of_pc(pc, names))
    problems = [f"jit-{name} exited {code}, not {FILLER}" for name, code in exit_codes.items()
                if code != FILLER]  # fmt: skip
    if stray:
        problems.append(f"{len(stray)} violations outside the installed code: "
                        + describe_violations(stray, limit=3, sep="; "))
    for name, rules in expected.items():
        if seen[name] != rules:
            problems.append(f"{name}: expected {_rule_list(rules)}, reported {_rule_list(seen[name])}")
    if problems:
        return "fail", "; ".join(problems)
    caught = [name for name, rules in expected.items() if rules]
    clean = [name for name, rules in expected.items() if not rules]
    # A clean mutation either changes this architecture's code in a way that is no bug here, or
    # changes nothing (then the program runs the correct protocol, as "none" does).
    harmless = [name for name in clean if name in get_backend(arch).mutations]
    why = [f"{', '.join(harmless)}: not a bug on {arch} {cpu} for a {install} install"] if harmless else []
    if len(clean) > len(harmless):
        why.append(f"{len(clean) - len(harmless)} emit the correct {arch} protocol")
    return "pass", (
        f"{len(caught)} mutations caught as expected, {len(clean)} clean as expected ({'; '.join(why)}); "
        "nothing reported outside the installed code"
    )


def _rule_list(rules: set[str]) -> str:
    return ", ".join(sorted(rules)) or "nothing"


def describe_violations(violations: Iterable[Violation], limit: int = 20, sep: str = "\n") -> str:
    """The most frequent (rule, space, symbol, disassembly) of ``violations`` with their counts."""
    counts = collections.Counter((v["rule"], v["space"], v["symbol"], v["disasm"]) for v in violations)
    return sep.join(f"{n} x {rule} {space} {symbol or '?'}: {disasm}"
                    for (rule, space, symbol, disasm), n in counts.most_common(limit))  # fmt: skip


def expected_rules(arch: str, idc: bool = False, dic: bool = False) -> dict[str, set[str]]:
    """The rules each codegen.c variant must be reported for (empty: it must sanitize clean).

    From the profile's ``code_modification.variant_rules``, on a CPU whose CTR_EL0 has ``idc``
    and ``dic`` (steps those bits make unnecessary are no bug). Raises InputError for an
    architecture without a profile.
    """
    modification = load_profile(arch).code_modification
    flags = {"idc": idc, "dic": dic}
    return {v: modification.rules_for(v, flags) for v in CODEGEN_VARIANTS}


def expected_mutation_rules(arch: str, idc: bool = False, dic: bool = False) -> dict[str, set[str]]:
    """The rules each MUTATIONS name's install program (a same-thread install) must be reported with.

    Where the profile says same-thread installs are checked (``code_modification.same_thread_reported``),
    a mutation that changes the architecture's code breaks the same step as the codegen.c variant
    of its name and gets that variant's rules; elsewhere every same-thread install is clean (the
    profile says why). Mutations that change nothing on an architecture, and ``none``, are clean.
    Raises InputError for an architecture without a profile and KeyError if a reported mutation
    has no codegen.c variant of its name.
    """
    by_variant = expected_rules(arch, idc, dic)
    reported = load_profile(arch).code_modification.same_thread_reported
    changed = get_backend(arch).mutations
    return {
        name: set(by_variant[name]) if reported and name in changed else set()
        for name in MUTATIONS
    }


def expected_cross_mutation_rules(arch: str, idc: bool = False, dic: bool = False) -> dict[str, set[str]]:
    """The rules each MUTATIONS name's install_program_cross program must be reported with.

    As for a same-thread install (expected_mutation_rules), except the profile's
    ``code_modification.writer_only_mutation``, which leaves the executing CPU unsynchronized:
    it makes the program codegen.c's cross_writer_only (the writer synchronizes only itself, the
    executor calls at once) and gets that variant's rules. Raises as expected_mutation_rules does.
    """
    out = expected_mutation_rules(arch, idc, dic)
    writer_only = load_profile(arch).code_modification.writer_only_mutation
    out[writer_only] = set(expected_rules(arch, idc, dic)["cross_writer_only"])
    return out
