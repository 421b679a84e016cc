"""Exhaustive check of a litmus program under a memory model: final states, verdict, witnesses.

Read values are drawn from a per-location value domain computed as a fixed point: start with
the initial values, run every thread with reads returning any domain value, add the values
written, repeat. The rounds are bounded by the number of writes plus one, which is the longest
chain of values any real execution can build (each write's value comes from at most one read
of an earlier write); values found past a real execution's reach simply have no write to read
from and are pruned by the enumeration.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import TypeVar

from .errors import LitmusSyntaxError
from .events import Kind, ThreadRun, ThreadSemantics, thread_runs
from .execution import Execution, Model, executions
from .syntax import Atom, LitmusTest, Symbol, Value, Var, evaluate

M64 = (1 << 64) - 1
K = TypeVar("K")
LOCATION_BASE = 0x1000_0000
LOCATION_STRIDE = 0x1000


class Verdict(enum.Enum):
    """herd7's kinds: the condition's predicate holds in some, no or every final state."""

    ALLOWED = "Allowed"
    FORBIDDEN = "Forbidden"
    REQUIRED = "Required"


class Observation(enum.Enum):
    SOMETIMES = "Sometimes"
    NEVER = "Never"
    ALWAYS = "Always"


VERDICT_OF = {
    Observation.SOMETIMES: Verdict.ALLOWED,
    Observation.NEVER: Verdict.FORBIDDEN,
    Observation.ALWAYS: Verdict.REQUIRED,
}

# C types a litmus test may declare, as (bits, signed); an unknown one is taken as 64-bit signed.
CTYPES = {
    "int": (32, True),
    "int32_t": (32, True),
    "uint32_t": (32, False),
    "unsigned": (32, False),
    "unsigned int": (32, False),
    "int64_t": (64, True),
    "uint64_t": (64, False),
    "long": (64, True),
    "int16_t": (16, True),
    "uint16_t": (16, False),
    "short": (16, True),
    "int8_t": (8, True),
    "uint8_t": (8, False),
    "char": (8, True),
}

State = tuple[tuple[str, str], ...]
"""A final state: (variable, value) pairs in the test's observed order, values printed."""


@dataclass
class Program:
    """A litmus test made executable: location addresses, initial memory and each thread's
    semantics. ``register`` maps a condition's register name to the semantics' name."""

    test: LitmusTest
    addresses: dict[str, int]
    init_memory: dict[int, int]
    threads: Sequence[ThreadSemantics]
    register: Callable[[str], str] = str

    def value(self, value: Value) -> int:
        return self.addresses[value.name] if isinstance(value, Symbol) else value & M64

    def label(self, var: Var) -> str:
        """How a state names ``var``: ``T:reg`` with the dialect's register name, or ``[loc]``."""
        return f"[{var.name}]" if var.thread is None else f"{var.thread}:{self.register(var.name)}"

    @cached_property
    def _declared(self) -> dict[str, str]:
        return {self.label(v): t for v, t in self.test.types.items()}

    def ctype(self, var: Var) -> tuple[int, bool]:
        """(bits, signed) of ``var``'s declared C type; herd7's default is int."""
        return CTYPES.get(self._declared.get(self.label(var), "int"), (64, True))

    def same(self, var: Var, a: int, b: int) -> bool:
        """Whether ``a`` and ``b`` are equal as values of ``var``'s type."""
        mask = (1 << self.ctype(var)[0]) - 1
        return a & mask == b & mask

    def show(self, value: int, var: Var) -> str:
        names = {a: n for n, a in self.addresses.items()}
        if value in names:
            return names[value]
        bits, is_signed = self.ctype(var)
        value &= (1 << bits) - 1
        return str(value - (1 << bits) if is_signed and value >> (bits - 1) else value)


def allocate(test: LitmusTest, extra: Sequence[str] = ()) -> tuple[dict[str, int], dict[int, int]]:
    """Addresses for the test's locations (and ``extra`` names only its code mentions) and the
    initial memory (0 unless the test says). Element k of an array is ``name[k]``, placed k
    elements after ``name``."""
    names = [n for n in test.memory_names() if "[" not in n]
    names += [name for name in extra if name not in names]
    addresses = {name: LOCATION_BASE + LOCATION_STRIDE * k for k, name in enumerate(names)}
    for name, length in test.arrays.items():
        size = CTYPES.get(test.types.get(Var(None, name), "int"), (64, True))[0] // 8
        addresses.update({f"{name}[{k}]": addresses[name] + k * size for k in range(1, length)})
    memory = {addr: 0 for addr in addresses.values()}
    for var, value in test.init.items():
        if var.thread is None:
            memory[addresses[var.name]] = addresses[value.name] if isinstance(value, Symbol) else value & M64
    return addresses, memory



def initial_registers(
    test: LitmusTest,
    thread: int,
    addresses: Mapping[str, int],
    register: Callable[[str], K | None],
    expected: str,
) -> dict[K, int]:
    """Thread ``thread``'s initial registers from the test's initial state, each named by
    ``register`` (a location's name stands for its address). Raises LitmusSyntaxError
    ("expected <expected>, found <variable>") for a name ``register`` gives None."""
    registers: dict[K, int] = {}
    for var, value in test.init.items():
        if var.thread != thread:
            continue
        name = register(var.name)
        if name is None:
            raise LitmusSyntaxError(test.path, test.init_line, f"expected {expected}, found {var}")
        registers[name] = addresses[value.name] if isinstance(value, Symbol) else value & M64
    return registers

@dataclass
class CheckResult:
    """The outcome of one test under one model. ``witness`` holds one execution per state."""

    test: str
    model: str
    states: list[State]
    observation: Observation
    verdict: Verdict
    positive: int
    negative: int
    witness: dict[State, Execution] = field(default_factory=dict)
    satisfying: set[State] = field(default_factory=set)

    def to_json(self) -> dict[str, object]:
        return {
            "test": self.test,
            "model": self.model,
            "verdict": self.verdict.value,
            "observation": self.observation.value,
            "states": [format_state(s) for s in self.states],
            "witnesses": self.positive,
        }


def format_state(state: State) -> str:
    return " ".join(f"{var}={value};" for var, value in state)


def all_runs(program: Program) -> list[list[ThreadRun]]:
    """Every run of every thread over the fixed-point value domain. Raises LoopBound or
    LitmusError from the thread semantics."""
    domain: dict[int, set[int]] = {addr: {v} for addr, v in program.init_memory.items()}
    rounds, limit = 0, 2
    while True:
        runs = [
            thread_runs(t, sem, lambda loc: domain.setdefault(loc, {0}))
            for t, sem in enumerate(program.threads)
        ]
        grown = False
        writes = 0
        for thread in runs:
            writes += max((sum(1 for e in r.events if Kind.W in e.kind) for r in thread), default=0)
            for run in thread:
                for e in run.events:
                    if Kind.W in e.kind and e.loc is not None and e.wval not in domain.setdefault(e.loc, {0}):
                        assert e.wval is not None
                        domain[e.loc].add(e.wval)
                        grown = True
        rounds += 1
        limit = max(limit, writes + 1)
        if not grown or rounds >= limit:
            return runs


def final_values(program: Program, ex: Execution, observed: Sequence[Var]) -> list[int]:
    """The value of each observed variable at the end of ``ex``."""
    memory = ex.final_memory(program.init_memory)
    regs = {run.thread: run.registers for run in ex.runs}
    return [
        memory.get(program.addresses[var.name], 0)
        if var.thread is None
        else regs[var.thread].get(program.register(var.name), 0)
        for var in observed
    ]


def check(program: Program, model: Model, runs: list[list[ThreadRun]] | None = None) -> CheckResult:
    """All final states of ``program`` under ``model`` and herd7's verdict on its condition.

    Raises LoopBound or LitmusError from the thread semantics."""
    test = program.test
    observed = test.observed()
    if runs is None:
        runs = all_runs(program)
    witness: dict[State, Execution] = {}
    satisfying: set[State] = set()
    positive = negative = 0
    for ex in executions(runs, program.init_memory):
        if model.violation(ex) is not None:
            continue
        values = final_values(program, ex, observed)
        state = tuple(
            (program.label(var), program.show(v, var)) for var, v in zip(observed, values, strict=True)
        )
        witness.setdefault(state, ex)
        if evaluate(test.condition, partial(_holds, program, dict(zip(observed, values, strict=True)))):
            positive += 1
            satisfying.add(state)
        else:
            negative += 1
    if positive and negative:
        observation = Observation.SOMETIMES
    elif positive:
        observation = Observation.ALWAYS
    else:
        observation = Observation.NEVER
    return CheckResult(
        test.name,
        model.name,
        sorted(witness),
        observation,
        VERDICT_OF[observation],
        positive,
        negative,
        witness,
        satisfying,
    )


def _holds(program: Program, values: dict[Var, int], atom: Atom) -> bool:
    return program.same(atom.var, values[atom.var], program.value(atom.value))
