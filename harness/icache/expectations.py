"""The rules each install case must be reported with, from the architecture's profile
(``code_modification``): the codegen.c variants' and each mutation's, same-thread and cross-thread.

The expectations follow from the architectures' rules (harness/sanitizer/README.md), never from
observed output.
"""

from __future__ import annotations

from base.profiles import load_profile
from jit_core.backend import get_backend
from jit_core.intrinsics import ICACHE_MUTATIONS as MUTATIONS

__all__ = ["CODEGEN_VARIANTS", "expected_cross_mutation_rules", "expected_mutation_rules", "expected_rules"]

# tests/sanitizer_progs/codegen.c's variants in the order of its table (the index places each
# variant's code at its own address). expected_rules is keyed by them, so they live here.
CODEGEN_VARIANTS = (
    "clear_cache", "explicit", "no_dc_clean", "no_ic_invalidate", "no_dsb", "no_isb",
    "wrong_line_size", "half_range", "cross_clean", "cross_writer_only",
)  # fmt: skip


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
    """The rules each MUTATIONS name must be reported with in a same-thread install.

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
    """The rules each MUTATIONS name must be reported with when another thread runs the code.

    As for a same-thread install (expected_mutation_rules), except the profile's
    ``code_modification.writer_only_mutation``, which leaves the executing CPU unsynchronized:
    it makes the program codegen.c's cross_writer_only (the writer synchronizes only itself, the
    executor calls at once) and gets that variant's rules. Raises as expected_mutation_rules does.
    """
    out = expected_mutation_rules(arch, idc, dic)
    writer_only = load_profile(arch).code_modification.writer_only_mutation
    out[writer_only] = set(expected_rules(arch, idc, dic)["cross_writer_only"])
    return out
