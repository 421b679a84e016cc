"""Code-install cases for the sanitizer, and the rules each must be reported with.

Two families of programs install code and run it, each case's code at its own address so that a
violation is attributed to its case by PC:
- jit_core's (``programs``): per ``jit_core.intrinsics.ICACHE_MUTATIONS`` name, a same-thread install
  (``install_program``) and a cross-thread one (``install_program_cross``);
- C ones: tests/sanitizer_progs/codegen.c, whose variants (``CODEGEN_VARIANTS``) break one step
  of the protocol each.
``expectations`` says what each must be reported with (from the profiles), ``attribution`` which
case a reported PC belongs to, and ``judge`` gives the verdict of a guest that ran them all.
"""

from __future__ import annotations

from .attribution import mutation_of_pc, rules_by_code, slot_of_pc
from .expectations import (
    CODEGEN_VARIANTS,
    expected_cross_mutation_rules,
    expected_mutation_rules,
    expected_rules,
)
from .judge import describe_violations, judge_mutations
from .programs import (
    FILLER,
    ITERATIONS,
    JIT_BASE,
    JIT_STRIDE,
    MAX_INDEX,
    PAGE,
    install_program,
    install_program_cross,
    installed_function,
)

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
