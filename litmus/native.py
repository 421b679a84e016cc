"""BPF litmus tests as native executables: many iterations with randomized start skew, one
histogram of final states per test, compared with the BPF model.

The executable (eBPF assembly compiled by jit_core, see jit_core.elf) has ``main`` start one
thread per litmus thread (clone_thread), then for each iteration: reset the locations, publish
the iteration number, wait until every thread has run its body once, map the final state to a
histogram slot and count it. Each thread waits for the next iteration (yielding the CPU), spins
a pseudo-random number of steps so the threads start at different moments, runs its body (the
litmus thread's IR as is, with r10 renamed: r10 is the read-only frame pointer in eBPF), saves
the registers the condition observes and reports with a fully ordered atomic add. At the end
``main`` writes the histogram to stdout.

Slots: each observed variable's value is coded by its index in the values the BPF model's
enumeration gives it (its fixed-point domain), plus one code for anything else; the slot is the
mixed-radix number of the codes. A state with a value the model never produces decodes to ``?``.

A state observed that the BPF model forbids is a failure; a state the model allows that no
iteration showed is "not exercised on this host", never a pass.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from math import prod

from jit_core import elf, isa
from jit_core.asm import assemble, disassemble
from jit_core.isa import Insn
from jit_core.syscalls import syscall_number

from .bpf import BpfThread, bpf_program, thread_registers
from .check import CheckResult, Program, all_runs, format_state
from .errors import LitmusError
from .events import Kind
from .syntax import LitmusTest, Var

SLOT = 64  # one cache line per location and per thread's bookkeeping
STACK = 16384
SPINS = 1000  # polls of the iteration number between two yields
MAX_SLOTS = 1 << 16
M64 = (1 << 64) - 1


class RunVerdict(enum.Enum):
    PASS = "pass"
    FAIL = "fail"


@dataclass(frozen=True)
class Layout:
    """Offsets in the executable's ``mem``; absolute addresses are elf.MEM_ADDR + offset."""

    threads: int
    locations: dict[str, int]
    slots: int

    @property
    def go(self) -> int:
        return SLOT * len(self.locations)

    @property
    def done(self) -> int:
        return self.go + SLOT

    def iteration(self, thread: int) -> int:
        return self.done + SLOT * (1 + thread)

    def saved(self, thread: int, reg: int) -> int:
        return self.iteration(self.threads) + SLOT * 2 * thread + 8 * reg

    @property
    def histogram(self) -> int:
        return self.saved(self.threads, 0)

    def stack_top(self, thread: int) -> int:
        stacks = (self.histogram + 8 * self.slots + 15) & ~15  # stacks are 16-byte aligned
        return stacks + STACK * (thread + 1)

    def tid(self, thread: int) -> int:
        return self.stack_top(self.threads) + 8 * thread

    @property
    def size(self) -> int:
        return self.tid(self.threads)


@dataclass
class NativeTest:
    """A test's executable and how to read its output. ``domains[j]`` lists the model values of
    observed variable j in code order; ``runtime`` maps model addresses to the executable's."""

    test: LitmusTest
    program: Program
    observed: list[Var]
    domains: list[list[int]]
    layout: Layout
    iterations: int
    assembly: str
    runtime: dict[int, int] = field(default_factory=dict)

    def executable(self, arch: str) -> bytes:
        """The static executable for ``arch``. Raises JitError if jit_core refuses it."""
        return elf.build_executable(arch, assemble(self.assembly), bytes(self.layout.size))

    def histogram(self, stdout: bytes) -> dict[str, int]:
        """State (as format_state prints it, ``?`` for a value the model never produces) ->
        count, from the executable's stdout. Raises LitmusError if the output is cut short."""
        size = 8 * self.layout.slots
        if len(stdout) < size:
            raise LitmusError(f"{self.test.name}: {len(stdout)} bytes of output, expected {size}")
        counts = struct.unpack(f"<{self.layout.slots}Q", stdout[:size])
        out: dict[str, int] = {}
        radices = [len(d) + 1 for d in self.domains]
        for slot, count in enumerate(counts):
            if not count:
                continue
            codes = []
            for radix in reversed(radices):
                codes.append(slot % radix)
                slot //= radix
            codes.reverse()
            state = tuple(
                (self.program.label(var), self.program.show(domain[code], var) if code < len(domain) else "?")
                for var, domain, code in zip(self.observed, self.domains, codes, strict=True)
            )
            key = format_state(state)
            out[key] = out.get(key, 0) + count
        return out


def _domains(program: Program, observed: list[Var]) -> list[list[int]]:
    """Every value the BPF model's enumeration gives each observed variable."""
    runs = all_runs(program)
    out = []
    for var in observed:
        if var.thread is None:
            addr = program.addresses[var.name]
            values = {program.init_memory.get(addr, 0)}
            values |= {
                e.wval
                for thread in runs
                for r in thread
                for e in r.events
                if Kind.W in e.kind and e.loc == addr and e.wval is not None
            }
        else:
            values = {r.registers.get(program.register(var.name), 0) for r in runs[var.thread]}
        out.append(sorted(values))
    return out


def _renamed(thread: BpfThread, init: dict[int, int]) -> tuple[list[Insn], dict[int, int], int]:
    """The thread's IR with r10 renamed to a register it does not use (eBPF's r10 is the frame
    pointer, never written), its initial registers likewise, and the register r10 became."""
    used = {insn.dst for insn in thread.prog} | {insn.src for insn in thread.prog} | set(init)
    if 10 not in used:
        return thread.prog, init, 10
    free = next((r for r in range(10) if r not in used), None)
    if free is None:
        raise LitmusError("a thread uses every register r0..r10; r10 cannot be renamed")

    def swap(reg: int) -> int:
        return free if reg == 10 else reg

    prog = [Insn(i.opcode, swap(i.dst), swap(i.src), i.off, i.imm) for i in thread.prog]
    return prog, {swap(r): v for r, v in init.items()}, free


def _abs(offset: int) -> int:
    return elf.MEM_ADDR + offset


def native_test(test: LitmusTest, arch: str, iterations: int) -> NativeTest:
    """The executable form of BPF test ``test`` for ``arch``. Raises LitmusSyntaxError for a test
    outside the BPF dialect and LitmusError when its state space or registers do not fit."""
    program, threads = bpf_program(test)
    observed = test.observed()
    domains = _domains(program, observed)
    slots = prod(len(d) + 1 for d in domains)
    if slots > MAX_SLOTS:
        raise LitmusError(f"{test.name}: {slots} histogram slots, more than {MAX_SLOTS}")
    names = sorted(program.addresses, key=program.addresses.__getitem__)
    layout = Layout(len(threads), {name: SLOT * k for k, name in enumerate(names)}, slots)
    runtime = {program.addresses[n]: _abs(off) for n, off in layout.locations.items()}
    native = NativeTest(test, program, observed, domains, layout, iterations, "", runtime)
    lines = _main(native, threads[0], arch)
    for t, thread in enumerate(threads[1:], start=1):
        lines += _thread(native, t, thread, arch)
    native.assembly = "\n".join(lines) + "\n"
    return native


def _value(native: NativeTest, value: int) -> int:
    return native.runtime.get(value, value)


def _main(native: NativeTest, thread0: BpfThread, arch: str) -> list[str]:
    """``main``: starts threads 1.., then per iteration resets the locations, publishes the
    iteration, runs litmus thread 0 itself, waits for the others and counts the final state.
    Running thread 0 here (not in a thread of its own) keeps a two-thread test on two CPUs."""
    lay, program = native.layout, native.program
    yield_nr = syscall_number(arch, "sched_yield")
    out = ["main:"]
    for t in range(1, lay.threads):
        out += [
            f"lddw %r1, func thread{t}",
            f"lddw %r2, {_abs(lay.stack_top(t))}",
            "mov %r3, 0",
            f"lddw %r4, {_abs(lay.tid(t))}",
            "call clone_thread",
        ]
    out += [
        "loop:",
        f"lddw %r1, {_abs(lay.iteration(0))}",
        "ldxdw %r2, [%r1+0]",
        "add %r2, 1",
        "stxdw [%r1+0], %r2",
        f"jgt %r2, {native.iterations}, finish",
    ]
    for name, off in lay.locations.items():
        init = _value(native, program.init_memory.get(program.addresses[name], 0))
        out += [f"lddw %r1, {_abs(off)}", f"lddw %r3, {init}", "stxdw [%r1+0], %r3"]
    out += [
        "call fence_full",
        f"lddw %r1, {_abs(lay.iteration(0))}",
        "ldxdw %r2, [%r1+0]",
        f"lddw %r1, {_abs(lay.go)}",
        "stxdw [%r1+0], %r2",
    ]
    out += _body(native, 0, thread0, "collect")
    out += [
        "collect:",
        f"lddw %r1, {_abs(lay.iteration(0))}",
        "ldxdw %r6, [%r1+0]",
        f"mul %r6, {lay.threads}",
        "wait:",
        f"lddw %r1, {_abs(lay.done)}",
        "ldxdw %r1, [%r1+0]",
        "jeq %r1, %r6, collected",
        f"mov %r1, {yield_nr}",
        "call syscall",
        "ja wait",
        "collected:",
        "call fence_full",
        "mov %r8, 0",
    ]
    for j, (var, domain) in enumerate(zip(native.observed, native.domains, strict=True)):
        if var.thread is None:
            address = _abs(lay.locations[var.name])
        else:
            address = _abs(lay.saved(var.thread, int(program.register(var.name)[1:])))
        out += [f"lddw %r1, {address}", "ldxdw %r1, [%r1+0]", f"mov %r2, {len(domain)}"]
        for code, value in enumerate(domain):
            out += [
                f"lddw %r3, {_value(native, value)}",
                f"jne %r1, %r3, next{j}_{code}",
                f"mov %r2, {code}",
                f"next{j}_{code}:",
            ]
        out += [f"mul %r8, {len(domain) + 1}", "add %r8, %r2"]
    out += [
        "lsh %r8, 3",
        f"lddw %r1, {_abs(lay.histogram)}",
        "add %r8, %r1",
        "ldxdw %r1, [%r8+0]",
        "add %r1, 1",
        "stxdw [%r8+0], %r1",
        "ja loop",
        "finish:",
        f"lddw %r1, {_abs(lay.go)}",
        "stdw [%r1+0], -1",
        f"mov %r1, {syscall_number(arch, 'write')}",
        "mov %r2, 1",
        f"lddw %r3, {_abs(lay.histogram)}",
        f"lddw %r4, {8 * lay.slots}",
        "call syscall",
        "mov %r0, 0",
        "exit",
    ]
    return out


def _thread(native: NativeTest, t: int, thread: BpfThread, arch: str) -> list[str]:
    """Thread t (t >= 1): wait for each iteration, run the body, until main says stop."""
    lay = native.layout
    # waiting threads spin so that they start together; every SPINS polls they yield once, so a
    # thread that has no CPU of its own (more threads than CPUs) still gets to run
    out = [
        f"thread{t}:",
        f"top{t}:",
        f"lddw %r1, {_abs(lay.iteration(t))}",
        "ldxdw %r2, [%r1+0]",
        "add %r2, 1",
        "stxdw [%r1+0], %r2",
        f"ja spin{t}",
        f"yield{t}:",
        f"mov %r1, {syscall_number(arch, 'sched_yield')}",
        "call syscall",
        f"spin{t}:",
        f"lddw %r4, {SPINS}",
        f"wait{t}:",
        f"lddw %r1, {_abs(lay.iteration(t))}",
        "ldxdw %r2, [%r1+0]",
        f"lddw %r1, {_abs(lay.go)}",
        "ldxdw %r3, [%r1+0]",
        f"jeq %r3, -1, quit{t}",
        f"jeq %r3, %r2, go{t}",
        "sub %r4, 1",
        f"jeq %r4, 0, yield{t}",
        f"ja wait{t}",
        f"go{t}:",
    ]
    return [*out, *_body(native, t, thread, f"top{t}"), f"quit{t}:", "exit"]


def _body(native: NativeTest, t: int, thread: BpfThread, then: str) -> list[str]:
    """Skew, the litmus thread's body, saving its observed registers and reporting; then ``then``.
    Expects the iteration number in r2."""
    lay, program = native.layout, native.program
    prog, init, r10 = _renamed(thread, thread_registers(native.test, t, program.addresses))
    observed = sorted({int(program.register(v.name)[1:]) for v in native.observed if v.thread == t})
    # start skew: 0..1023 steps from a hash of (iteration, thread), so that which thread starts
    # first and by how much changes from one iteration to the next
    out = [
        "mul %r2, 0x9E3779B1",
        f"add %r2, {7919 * t + 1}",
        "mov %r3, %r2",
        "rsh %r3, 15",
        "xor %r2, %r3",
        "mul %r2, 0x2C1B3C6D",
        "rsh %r2, 29",
        "and %r2, 1023",
        f"skew{t}:",
        f"jeq %r2, 0, body{t}",
        "sub %r2, 1",
        f"ja skew{t}",
        f"body{t}:",
    ]
    out += [f"lddw %r{reg}, {_value(native, init.get(reg, 0))}" for reg in range(10)]
    body = disassemble(prog)
    assert prog[-1].opcode == isa.EXIT_OPCODE  # the dialect ends every thread with one exit
    out += [*body[:-1], f"ja save{t}", f"save{t}:"]
    # the frame pointer is intact (the body's r10 was renamed), so the observed registers go to
    # this frame first and then to their slots; the body's r10 lives in the register it became
    out += [f"stxdw [%r10-{8 * (k + 1)}], %r{r10 if reg == 10 else reg}" for k, reg in enumerate(observed)]
    for k, reg in enumerate(observed):
        out += [
            f"ldxdw %r2, [%r10-{8 * (k + 1)}]",
            f"lddw %r1, {_abs(lay.saved(t, reg))}",
            "stxdw [%r1+0], %r2",
        ]
    return [*out, f"lddw %r1, {_abs(lay.done)}", "mov %r2, 1", "lock fetch add [%r1+0], %r2", f"ja {then}"]


@dataclass
class NativeResult:
    """One test run natively on one architecture."""

    test: str
    arch: str
    iterations: int
    histogram: dict[str, int]
    forbidden_observed: list[str]
    not_exercised: list[str]
    verdict: RunVerdict

    def to_json(self) -> dict[str, object]:
        return {
            "test": self.test,
            "arch": self.arch,
            "iterations": self.iterations,
            "histogram": self.histogram,
            "forbidden_observed": self.forbidden_observed,
            "not_exercised": self.not_exercised,
            "verdict": self.verdict.value,
        }


def judge(native: NativeTest, arch: str, source: CheckResult, stdout: bytes) -> NativeResult:
    """The histogram of one run and what it shows against the BPF model's states.

    Raises LitmusError if the output is cut short."""
    histogram = native.histogram(stdout)
    allowed = {format_state(s) for s in source.states}
    forbidden = sorted(s for s in histogram if s not in allowed)
    not_exercised = sorted(allowed - set(histogram))
    verdict = RunVerdict.FAIL if forbidden else RunVerdict.PASS
    return NativeResult(
        native.test.name, arch, native.iterations, histogram, forbidden, not_exercised, verdict
    )
