"""Code-install cases for the sanitizer: the rules each must be reported with, and which case a
reported PC belongs to.

Programs that install code put each case's code in its own slot (``programs``), so that a
violation is attributed to its case by PC (``attribution``): the stress suites' programs
(harness.stress) and tests/sanitizer_progs/codegen.c, whose variants (``CODEGEN_VARIANTS``) break
one step of the protocol each. ``expectations`` says what each must be reported with, from the
profiles.
"""

from __future__ import annotations

from .attribution import describe_violations, mutation_of_pc, rules_by_code, slot_of_pc
from .expectations import (
    CODEGEN_VARIANTS,
    expected_cross_mutation_rules,
    expected_mutation_rules,
    expected_rules,
)
from .programs import JIT_BASE, JIT_STRIDE, MAX_INDEX, PAGE

__all__ = [
    "CODEGEN_VARIANTS",
    "JIT_BASE",
    "JIT_STRIDE",
    "MAX_INDEX",
    "PAGE",
    "describe_violations",
    "expected_cross_mutation_rules",
    "expected_mutation_rules",
    "expected_rules",
    "mutation_of_pc",
    "rules_by_code",
    "slot_of_pc",
]
