"""``litmus jit``: a BPF litmus test's threads compiled by jit_core, checked under the
architecture's memory model against the BPF model's verdict on the source.

Each thread's IR is compiled as a whole program (body plus exit) and the code between the
body's first instruction and the exit's epilogue is decoded: the prologue and epilogue only
touch the thread's own stack, which no litmus location lives in. Registers the test
initializes are preset in the machine registers jit_core assigns to them. Any final state the
compiled code allows that the source does not is a lowering bug; its witness is one execution
of the compiled code reaching it.
"""

from __future__ import annotations

import enum
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from jit_core.backend import get_backend

from .bpf import bpf_program, thread_registers
from .bpf_model import BpfModel
from .check import CheckResult, Program, check, format_state
from .execution import Execution
from .machine import Code
from .syntax import LitmusTest, read_test


class JitVerdict(enum.Enum):
    PASS = "pass"
    FAIL = "fail"


@dataclass
class JitResult:
    """One (test, architecture, mutation) check. ``extra_states`` are final states the compiled
    code allows and the source does not; ``witness`` explains the first of them."""

    test: str
    arch: str
    mutation: str
    source: CheckResult
    compiled: CheckResult
    extra_states: list[str]
    witness: dict[str, Any] | None
    verdict: JitVerdict
    disassembly: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "arch": self.arch,
            "mutation": self.mutation,
            "source_verdict": self.source.verdict.value,
            "compiled_verdict": self.compiled.verdict.value,
            "extra_states": self.extra_states,
            "witness": self.witness,
            "verdict": self.verdict.value,
        }


def arch_model(arch: str) -> ModuleType:
    """The module holding ``arch``'s memory model and code semantics (jit_core.<arch>.memory_model).

    Raises ModuleNotFoundError for an architecture without one."""
    return importlib.import_module(f"jit_core.{arch}.memory_model")


def compile_threads(test: LitmusTest, arch: str, mutation: str) -> tuple[Program, list[Code]]:
    """The compiled form of a BPF test on ``arch``. Raises LitmusSyntaxError for a test outside
    the BPF dialect and JitError when jit_core refuses a thread."""
    source, threads = bpf_program(test)
    module = arch_model(arch)
    backend = get_backend(arch)
    codes: list[Code] = []
    semantics = []
    for k, ir in enumerate(threads):
        compiled = backend.compile(ir.prog, mutation=mutation)
        exit_slot = len(ir.prog) - 1
        body = compiled.code[compiled.insn_offsets[0] : compiled.insn_offsets[exit_slot]]
        code = module.decode_code(body)
        codes.append(code)
        semantics.append(module.thread_semantics(code, thread_registers(test, k, source.addresses)))
    return Program(test, source.addresses, source.init_memory, semantics), codes


def witness_of(ex: Execution, program: Program, state: str) -> dict[str, Any]:
    """The events of ``ex`` and the relations that make its state: rf, co, fr and the syntactic
    dependencies, each pair as event labels ``eN``."""
    names = {a: n for n, a in program.addresses.items()}

    def pairs(rel: list[int]) -> list[list[str]]:
        return [[f"e{i}", f"e{j}"] for i, row in enumerate(rel) for j in range(ex.n) if row >> j & 1]

    return {
        "state": state,
        "events": [f"e{i} {e.describe(names)}" for i, e in enumerate(ex.events)],
        "rf": pairs(ex.rf),
        "co": pairs(ex.co),
        "fr": pairs(ex.fr),
        "rmw": pairs(ex.rmw),
        "addr": pairs(ex.dependency("addr")),
        "data": pairs(ex.dependency("data")),
        "ctrl": pairs(ex.dependency("ctrl")),
        "initial_reads": [f"e{r}" for r, w in ex.rf_map.items() if w is None],
    }


class SourceCache:
    """BPF-model results per test file, shared by every architecture and mutation."""

    def __init__(self) -> None:
        self.results: dict[Path, tuple[LitmusTest, CheckResult]] = {}

    def get(self, path: Path) -> tuple[LitmusTest, CheckResult]:
        if path not in self.results:
            test = read_test(path)
            program, _ = bpf_program(test)
            self.results[path] = (test, check(program, BpfModel()))
        return self.results[path]


def check_jit(path: Path, arch: str, mutation: str = "none", cache: SourceCache | None = None) -> JitResult:
    """Compile the BPF test at ``path`` for ``arch`` (with ``mutation``) and compare its
    outcomes under the architecture's model with the BPF model's.

    Raises LitmusSyntaxError (bad test), JitError (refused by jit_core) and LitmusError
    (machine code the architecture's semantics does not model)."""
    test, source = (cache or SourceCache()).get(path)
    program, codes = compile_threads(test, arch, mutation)
    compiled = check(program, arch_model(arch).MODEL)
    extra = [s for s in compiled.states if s not in source.witness]
    witness = None
    if extra:
        shown = format_state(extra[0])
        witness = witness_of(compiled.witness[extra[0]], program, shown)
    return JitResult(
        test.name,
        arch,
        mutation,
        source,
        compiled,
        [format_state(s) for s in extra],
        witness,
        JitVerdict.FAIL if extra else JitVerdict.PASS,
        {f"P{k}": code.listing() for k, code in enumerate(codes)},
    )
