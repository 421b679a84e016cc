"""The riscv64 (RV64GC, LP64D) backend: encoder.py (instruction forms), layout.py (labels and
branch relaxation), lower.py (eBPF -> RV64GC), intrinsics.py (harness intrinsics)."""

from __future__ import annotations

from collections.abc import Sequence

from ..backend import Compiled
from ..compile import check_mutation
from ..intrinsics import Mutation
from ..isa import Insn
from .lower import compile_program


class RiscV64Backend:
    arch = "riscv64"
    mutations = frozenset({Mutation.HALF_RANGE, Mutation.FENCE_I_WRITER_ONLY})

    def compile(self, prog: Sequence[Insn], *, mutation: str = "none") -> Compiled:
        """Lower a program to RV64GC. Raises JitError for an unknown mutation or a refused program."""
        check_mutation(mutation)
        return compile_program(prog, mutation)


BACKEND = RiscV64Backend()
