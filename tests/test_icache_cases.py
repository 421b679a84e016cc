"""harness.icache without a guest: expectations and attribution."""

from __future__ import annotations

import pytest

from base.contract import Violation
from base.profiles import load_profile
from harness.icache import (
    CODEGEN_VARIANTS,
    JIT_BASE,
    JIT_STRIDE,
    PAGE,
    expected_cross_mutation_rules,
    expected_mutation_rules,
    expected_rules,
    mutation_of_pc,
)
from jit_core.backend import get_backend
from jit_core.intrinsics import ICACHE_MUTATIONS as MUTATIONS

ARCHES = ["x86_64", "arm64", "riscv64"]
NAMES = [m.value for m in MUTATIONS]


def test_arm64_mutations_expect_their_codegen_variants_rules() -> None:
    expected = expected_mutation_rules("arm64")
    assert set(expected) == set(MUTATIONS)
    arm64_bugs = {m.value for m in get_backend("arm64").mutations if m in MUTATIONS}
    assert arm64_bugs <= set(CODEGEN_VARIANTS)
    assert {name for name, rules in expected.items() if rules} == arm64_bugs
    assert expected["no_isb"] == {"arm64.no_isb"} and expected["half_range"] == {"arm64.no_dc_clean"}


def test_idc_and_dic_make_clean_and_invalidate_unneeded_but_not_dsb_and_isb() -> None:
    expected = expected_mutation_rules("arm64", idc=True, dic=True)
    assert expected["no_dc_clean"] == expected["no_ic_invalidate"] == expected["wrong_line_size"] == set()
    assert expected["no_dsb"] == {"arm64.no_dsb"} and expected["no_isb"] == {"arm64.no_isb"}
    assert expected_mutation_rules("arm64", idc=True)["half_range"] == {"arm64.no_ic_invalidate"}


@pytest.mark.parametrize("arch", ["riscv64", "x86_64"])
def test_same_thread_installs_are_clean_on_riscv64_and_x86_64(arch: str) -> None:
    # Even the mutations that change their code (half_range, fence_i_writer_only, no_serialize).
    assert expected_mutation_rules(arch) == {name: set() for name in MUTATIONS}
    assert expected_rules(arch)["cross_writer_only"]  # another CPU's code is where they need one


@pytest.mark.parametrize("arch", ARCHES)
def test_cross_thread_installs_add_the_writer_only_bug_to_the_same_thread_ones(arch: str) -> None:
    expected = expected_cross_mutation_rules(arch)
    writer_only = load_profile(arch).code_modification.writer_only_mutation
    assert expected[writer_only] == expected_rules(arch)["cross_writer_only"] != set()
    same_thread = expected_mutation_rules(arch)
    del expected[writer_only], same_thread[writer_only]
    assert expected == same_thread


def _bugs(expected: dict[str, set[str]]) -> dict[str, set[str]]:
    return {name: rules for name, rules in expected.items() if rules}


def test_cross_thread_bugs_per_architecture() -> None:
    for idc, dic in ((False, False), (True, True)):
        assert expected_cross_mutation_rules("arm64", idc, dic) == expected_mutation_rules("arm64", idc, dic)
    # riscv_flush_icache flushes every hart whatever the range: half_range stays clean.
    assert _bugs(expected_cross_mutation_rules("riscv64")) == {"fence_i_writer_only": {"riscv64.no_fence_i"}}
    assert _bugs(expected_cross_mutation_rules("x86_64")) == {"no_serialize": {"x86_64.no_serialize"}}


def test_pcs_are_attributed_to_the_mutation_whose_page_holds_them() -> None:
    assert mutation_of_pc(JIT_BASE, NAMES) == NAMES[0]
    last = JIT_BASE + (len(NAMES) - 1) * JIT_STRIDE
    assert mutation_of_pc(last + PAGE - 4, NAMES) == NAMES[-1]
    for pc in (JIT_BASE - 4, JIT_BASE + PAGE, last + JIT_STRIDE):
        assert mutation_of_pc(pc, NAMES) is None


def _violation(rule: str, pc: int, symbol: str | None = None) -> Violation:
    return {"rule": rule, "pc": pc, "vcpu": 0, "paddr": pc, "insn": "00040091", "disasm": "add x0, x0, #1",
            "symbol": symbol, "writer_pc": pc, "writer_vcpu": 0, "count": 1,
            "space": "user" if symbol is None else "kernel"}  # fmt: skip
