"""harness.icache without a guest: install programs, expectations, attribution, verdicts."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from user_mode import require_runner, run_batch

from base.contract import Violation
from base.disasm import disassembler
from base.errors import InputError
from base.profiles import load_profile
from harness.icache import (
    CODEGEN_VARIANTS,
    FILLER,
    JIT_BASE,
    JIT_STRIDE,
    MAX_INDEX,
    PAGE,
    expected_cross_mutation_rules,
    expected_mutation_rules,
    expected_rules,
    install_program,
    install_program_cross,
    installed_function,
    judge_mutations,
    mutation_of_pc,
)
from jit_core.backend import get_backend
from jit_core.errors import JitError
from jit_core.intrinsics import ICACHE_MUTATIONS as MUTATIONS

ARCHES = ["x86_64", "arm64", "riscv64"]
NAMES = [m.value for m in MUTATIONS]


@pytest.mark.parametrize("arch", ARCHES)
def test_installed_function_is_whole_native_code_within_a_page(arch: str) -> None:
    code, entry = installed_function(arch)
    assert entry == 0 and 64 * 4 <= len(code) <= PAGE  # spans several 64-byte lines
    insns = list(disassembler(arch).disasm(code, 0))
    assert sum(i.size for i in insns) == len(code)  # all of it decodes: no data, no padding


@pytest.mark.parametrize("arch", ARCHES)
def test_every_install_program_returns_the_functions_result(arch: str) -> None:
    require_runner(arch)
    results = run_batch(arch, [install_program(arch, name, index) for index, name in enumerate(NAMES)])
    assert [status for _, status in results] == [FILLER] * len(NAMES)


@pytest.mark.parametrize("arch", ARCHES)
def test_every_cross_thread_program_returns_the_functions_result(arch: str) -> None:
    # Both threads pin themselves (a failed sched_setaffinity would be the exit status): this
    # host has two CPUs, and qemu-user runs guest threads on host threads.
    require_runner(arch)
    results = run_batch(arch, [install_program_cross(arch, name, index) for index, name in enumerate(NAMES)])
    assert [status for _, status in results] == [FILLER] * len(NAMES)


def test_riscv64_cross_executor_runs_no_fence_i_of_its_own() -> None:
    # Only the writer's icache_sync may fence; an executor FENCE.I would hide fence_i_writer_only.
    fence_i = (0x0000100F).to_bytes(4, "little")
    assert install_program_cross("riscv64", "none", 0).count(fence_i) == 0
    assert install_program_cross("riscv64", "fence_i_writer_only", 0).count(fence_i) == 1


@pytest.mark.parametrize("build", [install_program, install_program_cross])
def test_unknown_mutation_and_bad_index_are_refused(build: Callable[[str, str, int], bytes]) -> None:
    with pytest.raises(JitError, match="no_such_mutation"):
        build("arm64", "no_such_mutation", 0)
    for index in (-1, MAX_INDEX):
        with pytest.raises(InputError, match=f"install program index: {index}"):
            build("arm64", "none", index)


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


def _caught(expected: dict[str, set[str]]) -> list[Violation]:
    return [_violation(rule, JIT_BASE + NAMES.index(name) * JIT_STRIDE + 8)
            for name, rules in expected.items() for rule in rules]  # fmt: skip


def test_judge_passes_exactly_the_expected_reports() -> None:
    expected = expected_mutation_rules("arm64")
    verdict, detail = judge_mutations("arm64", "cortex-a57", expected, dict.fromkeys(NAMES, FILLER),
                                      _caught(expected))  # fmt: skip
    assert (verdict, detail) == ("pass", "6 mutations caught as expected, 3 clean as expected (3 emit the "
                                 "correct arm64 protocol); nothing reported outside the installed code")


def test_judge_names_the_mutations_that_change_code_but_are_no_bug() -> None:
    verdict, detail = judge_mutations("riscv64", "rv64", expected_mutation_rules("riscv64"),
                                      dict.fromkeys(NAMES, FILLER), [])  # fmt: skip
    assert verdict == "pass"
    why = "(half_range, fence_i_writer_only: not a bug on riscv64 rv64 for a same-thread install; 7 emit"
    assert why + " the correct riscv64 protocol)" in detail


def test_judge_fails_a_miss_an_extra_rule_a_stray_and_a_wrong_result() -> None:
    expected = expected_mutation_rules("arm64")
    violations = [v for v in _caught(expected) if v["rule"] != "arm64.no_isb"]
    violations.append(_violation("arm64.no_dsb", JIT_BASE + NAMES.index("none") * JIT_STRIDE))
    violations.append(_violation("arm64.no_isb", 0xFFFF_8000_1000_0000, symbol="patch_me+0x4"))
    exits = {**dict.fromkeys(NAMES, FILLER), "no_dsb": 1}
    verdict, detail = judge_mutations("arm64", "cortex-a57", expected, exits, violations)
    assert verdict == "fail"
    for part in ("jit-no_dsb exited 1, not 62", "1 violations outside the installed code: 1 x arm64.no_isb "
                 "kernel patch_me+0x4", "no_isb: expected arm64.no_isb, reported nothing",
                 "none: expected nothing, reported arm64.no_dsb"):  # fmt: skip
        assert part in detail
