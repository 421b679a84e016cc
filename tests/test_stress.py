"""The stress suites without guests: scenario files, their validation, the expected matrix, the
``jitprobe run`` command line, and the generated programs run on this host (x86_64 natively,
arm64 and riscv64 under qemu-user), where each must return every generation's value."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from user_mode import require_runner, run_batch

from base.contract import Verdict
from base.errors import InputError
from base.profiles import available_arches, load_profile
from harness.console import CrashReport
from harness.guest import CommandResult
from harness.stress import program_asm
from harness.stress.judging import judge, judge_command
from harness.stress.programs import EXIT_WRONG_RESULT, build_program, generation_values
from harness.stress.runner import Job, Selection, default_workers, plan, reproducer, run_jobs
from harness.stress.scenarios import (
    STRESS_DIR,
    IcacheScenario,
    LitmusScenario,
    ScenarioError,
    StressMutation,
    expected_rules,
    load_suite,
    mutations_for,
    parse_icache,
    parse_kernel,
    parse_litmus,
)
from jit_core.backend import get_backend
from jit_core.intrinsics import ORDERING_MUTATIONS

ICACHE = [s for s in load_suite("icache") if isinstance(s, IcacheScenario)]
ARCHES = available_arches()


def _scenario(name: str) -> IcacheScenario:
    return next(s for s in ICACHE if s.name == name)


def _raw(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((STRESS_DIR / "icache" / f"{name}.yaml").read_text())
    return data


def test_every_bug_class_of_the_suite_has_a_scenario() -> None:
    names = {s.name for s in ICACHE}
    assert {"rewrite_in_place", "cross_modify", "membarrier_publish", "dual_mapping", "mprotect_only",
            "straddle_page", "flush_mistakes", "migrate_after_sync", "live_patch"} <= names  # fmt: skip
    used = {m for s in ICACHE for m in s.mutations}
    assert set(StressMutation) <= used, "every scenario-level mutation runs somewhere"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"generator": "jump"},
         "field 'generator': expected one of install, publish, patch, reuse, got 'jump'"),
        ({"name": "other"}, "field 'name': expected 'flush_mistakes' (the file's name)"),
        ({"mutations": ["no_such"]}, "unknown mutation 'no_such'; expected some of no_dc_clean"),
        ({"params": {"threads": 0}}, "missing field 'params.iterations'"),
        ({"cpus": {"arm64": ["cortex-a72"]}}, "'cpus.arm64': expected a list of cortex-a57, neoverse-n1"),
        ({"cpus": {"mips": ["r4000"]}}, "unknown architecture 'mips'; expected one of arm64, riscv64"),
        ({"expect": {"sync_null_range": {"why": "x", "arm64": ["arm64.no_such"]}}},
         "unknown rule 'arm64.no_such' for arm64; expected one of arm64.no_dc_clean"),
        ({"expect": {"sync_null_range": {"why": "x", "arm64": []}}},
         "field 'expect.sync_null_range': missing the rules for riscv64, x86_64"),
        ({"expect": {"no_isb": {"why": "x"}}}, "field 'expect.no_isb': not one of the scenario's mutations"),
        ({"expect": {"sync_null_range": {"why": "x", "arm64": ["n/a", "arm64.no_dsb"], "riscv64": [],
                                         "x86_64": []}}},
         "'n/a' stands alone (the mutation does not change this architecture's program)"),
    ],
)  # fmt: skip
def test_a_bad_scenario_file_names_the_file_the_field_and_the_choices(change: dict[str, Any],
                                                                      message: str) -> None:
    data = _raw("flush_mistakes")
    for key, value in change.items():
        data[key] = {**data[key], **value} if key == "expect" and "no_isb" not in value else value
    path = STRESS_DIR / "icache" / "flush_mistakes.yaml"
    with pytest.raises(ScenarioError) as caught:
        parse_icache(data, path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_a_mutation_stated_not_applicable_does_not_run_there() -> None:
    """live_patch's membarrier mutations change only x86_64's program (arm64 patches with one store
    and no membarrier): arm64 runs the scenario without them, and --list shows n/a."""
    live = _scenario("live_patch")
    assert live.expect["membarrier_plain"]["arm64"] == ("n/a",)
    assert mutations_for(live, "arm64") == ["none", "patch_immediate", "torn_patch"]
    assert mutations_for(live, "x86_64") == ["none", "patch_immediate", "torn_patch", "membarrier_plain",
                                             "membarrier_unregistered"]  # fmt: skip


def test_a_bad_kernel_scenario_is_refused() -> None:
    data = {"name": "k", "description": "d", "command": "true", "timeout_s": 10, "expect_stdout": ["("],
            "arches": ["arm64"]}  # fmt: skip
    with pytest.raises(ScenarioError, match=r"k.yaml: field 'expect_stdout': '\(' is not a regex"):
        parse_kernel(data, Path("k.yaml"))
    with pytest.raises(ScenarioError, match="unknown architecture 'vax'"):
        parse_kernel({**data, "expect_stdout": [], "arches": ["vax"]}, Path("k.yaml"))


def test_an_unknown_suite_lists_the_suites() -> None:
    with pytest.raises(InputError, match="invalid suite: 'nope'; valid choices: icache, kernel, litmus"):
        load_suite("nope")


# The expectations follow the architectures' rules (the scenario files say why): spot checks of
# cells where the CPU's CTR_EL0 bits, the install kind or the scenario change the answer.
@pytest.mark.parametrize(
    ("scenario", "arch", "cpu", "mutation", "rules"),
    [
        ("rewrite_in_place", "arm64", "cortex-a57", "no_dc_clean", {"arm64.no_dc_clean"}),
        ("rewrite_in_place", "arm64", "neoverse-n1", "no_dc_clean", set()),  # IDC: no clean needed
        ("rewrite_in_place", "arm64", "neoverse-v1", "no_ic_invalidate", set()),  # DIC
        ("rewrite_in_place", "arm64", "neoverse-v1", "no_isb", {"arm64.no_isb"}),
        ("rewrite_in_place", "x86_64", "max", "no_serialize", set()),  # the same CPU sees its stores
        ("rewrite_in_place", "riscv64", "rv64", "fence_i_writer_only", set()),  # the writer's hart runs it
        ("cross_modify", "x86_64", "max", "no_serialize", {"x86_64.no_serialize"}),
        ("cross_modify", "riscv64", "rv64", "fence_i_writer_only", {"riscv64.no_fence_i"}),
        ("migrate_after_sync", "riscv64", "rv64", "fence_i_writer_only", {"riscv64.no_fence_i"}),
        ("migrate_after_sync", "arm64", "cortex-a57", "no_isb", set()),  # the syscall's ERET
        ("migrate_after_sync", "arm64", "neoverse-n1", "no_dsb", {"arm64.no_dsb"}),
        ("mprotect_only", "arm64", "neoverse-n1", "skip_sync", {"arm64.no_ic_invalidate"}),
        ("mprotect_only", "arm64", "neoverse-v1", "skip_sync", set()),
        ("mprotect_only", "riscv64", "rv64", "skip_sync", {"riscv64.no_fence_i"}),
        ("membarrier_publish", "arm64", "neoverse-v1", "membarrier_plain", {"arm64.no_isb"}),
        ("membarrier_publish", "riscv64", "rv64", "membarrier_unregistered", set()),
        ("flush_mistakes", "arm64", "neoverse-n1", "sync_before_last_write", {"arm64.no_dsb"}),
        ("flush_mistakes", "riscv64", "rv64", "sync_wrong_buffer", set()),  # Linux flushes it all
    ],
)  # fmt: skip
def test_expected_rules(scenario: str, arch: str, cpu: str, mutation: str, rules: set[str]) -> None:
    assert expected_rules(_scenario(scenario), arch, cpu, mutation) == rules


def test_every_scenario_runs_the_correct_protocol_and_only_mutations_that_change_the_code() -> None:
    for scenario in ICACHE:
        for arch in ARCHES:
            names = mutations_for(scenario, arch)
            assert names[0] == "none"
            assert all(expected_rules(scenario, arch, cpu, "none") == set()
                       for cpu in load_profile(arch).stress_cpus)  # fmt: skip
    assert "no_serialize" not in mutations_for(_scenario("rewrite_in_place"), "arm64")
    assert "skip_sync" in mutations_for(_scenario("mprotect_only"), "x86_64")


def test_plan_boots_one_guest_per_cpu_model_and_checks_the_model() -> None:
    jobs = plan({"icache": ICACHE}, ARCHES, None)
    assert [(j.arch, j.cpu) for j in jobs] == [
        ("arm64", "cortex-a57"), ("arm64", "neoverse-n1"), ("arm64", "neoverse-v1"), ("riscv64", "rv64"),
        ("x86_64", "max"),
    ]  # fmt: skip
    with pytest.raises(InputError, match="invalid CPU model for arm64: 'pentium'"):
        plan({"icache": ICACHE}, ["arm64"], "pentium")


@pytest.mark.parametrize(("cores", "smps", "workers"), [(2, [2, None], 1), (8, [2, 2], 4), (8, [2, 3], 2),
                                                       (2, [4], 1), (1, [None], 1)])  # fmt: skip
def test_by_default_each_guest_vcpu_gets_a_host_core(monkeypatch: pytest.MonkeyPatch, cores: int,
                                                      smps: list[int | None], workers: int) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    scenario = load_suite("icache")[0]
    jobs = [Job("arm64", "cortex-a57", "icache", (scenario,), smp) for smp in smps]
    assert load_profile("arm64").smp == 2  # None above stands for the profile's 2
    assert default_workers(jobs) == workers


def test_the_reproducer_names_the_one_cell() -> None:
    (job,) = plan({"icache": [_scenario("cross_modify")]}, ["arm64"], "neoverse-n1")
    assert reproducer(job, "cross_modify", "no_isb", Selection(seed=4)) == (
        "jitprobe run --suite icache --arch arm64 --cpu neoverse-n1 --scenario cross_modify "
        "--mutation no_isb --seed 4"
    )


def _cell(expected: set[str]) -> Any:
    (job,) = plan({"icache": [_scenario("rewrite_in_place")]}, ["arm64"], "cortex-a57")
    from harness.stress.runner import _cell as make

    return make(job, "rewrite_in_place", "no_isb", expected, Selection())


def _violation(rule: str) -> Any:
    return {"rule": rule, "pc": 0x2000_0000, "vcpu": 0, "paddr": 0, "insn": "", "disasm": "add x7, x7, #1",
            "symbol": None, "writer_pc": 0, "writer_vcpu": 0, "count": 3, "space": "user"}  # fmt: skip


@pytest.mark.parametrize(
    ("expected", "exit_code", "rules", "verdict", "caught_by"),
    [
        (set(), 0, [], "pass", []),
        ({"arm64.no_isb"}, 0, ["arm64.no_isb"], "pass", ["sanitizer"]),
        ({"arm64.no_isb"}, 0, [], "fail", []),  # a missed bug
        (set(), 0, ["arm64.no_isb"], "fail", ["sanitizer"]),  # a false report
        ({"arm64.no_isb"}, 0, ["arm64.no_dsb"], "fail", ["sanitizer"]),  # the wrong rule
        (set(), EXIT_WRONG_RESULT, [], "fail", ["result"]),  # stale code ran in a correct program
        ({"arm64.no_isb"}, EXIT_WRONG_RESULT, ["arm64.no_isb"], "pass", ["sanitizer", "result"]),
        (set(), 128 + 4, [], "fail", ["crash"]),  # SIGILL
        (set(), 143, [], "timeout", []),
        (set(), None, [], "crash", []),
    ],
)  # fmt: skip
def test_judge(expected: set[str], exit_code: int | None, rules: list[str], verdict: str,
               caught_by: list[str]) -> None:  # fmt: skip
    cell = _cell(expected)
    judge(cell, exit_code, [_violation(r) for r in rules], sanitize=True)
    assert (cell["verdict"], cell["caught_by"]) == (verdict, caught_by)


@pytest.mark.parametrize(
    ("verdict", "exit_code", "crash", "expected"),
    [
        ("pass", 0, None, ("pass", "clean as expected")),
        ("crash", None, CrashReport("oops", "Internal error: Oops", ""), ("crash", "Internal error: Oops")),
        ("timeout", None, None, ("timeout", "console end")),
    ],
)  # fmt: skip
def test_a_guest_command_is_judged_and_a_guest_crash_or_timeout_is_the_verdict(
    verdict: Verdict, exit_code: int | None, crash: CrashReport | None, expected: tuple[str, str]
) -> None:
    cell = _cell(set())
    result = CommandResult("prog", verdict, exit_code, b"out\n", b"", "", "", "console end", 1.0, crash)
    assert judge_command(cell, result, [], sanitize=True) == "out\n"
    assert (cell["verdict"], cell["detail"]) == expected


def test_without_the_sanitizer_a_bug_it_alone_sees_is_not_exercised_never_passed() -> None:
    cell = _cell({"arm64.no_isb"})
    judge(cell, 0, [], sanitize=False)
    assert (cell["observed"], cell["verdict"]) == ("not exercised", None)


def test_without_the_sanitizer_a_bug_the_result_shows_is_caught() -> None:
    cell = _cell({"arm64.no_isb"})
    judge(cell, EXIT_WRONG_RESULT, [], sanitize=False)
    assert (cell["observed"], cell["verdict"], cell["caught_by"]) == ("caught", "pass", ["result"])


@pytest.mark.parametrize("arch", ARCHES)
def test_every_program_returns_each_generation_on_this_host(arch: str) -> None:
    """Every scenario and mutation, run where the code stays coherent (qemu-user or natively):
    each call returned the value of the generation installed then, so the programs work and
    only the sanitizer decides about the bugs they carry."""
    require_runner(arch)
    cells = [(s, m) for s in ICACHE if s.runs_on(arch) for m in mutations_for(s, arch)
             if arch == "x86_64" or s.params["mapping"] != "dual"]  # fmt: skip
    executables = [build_program(s, arch, m, i) for i, (s, m) in enumerate(cells)]
    outcomes = run_batch(arch, executables)
    # Two bugs show whether or not caches are coherent: a torn patch runs a half-written
    # instruction (half B, half NOP: it crashes; on x86_64 the MOVs differ in one immediate byte,
    # which one store writes whole, so it returns a right value), a reused buffer returns the next
    # function's value.
    def as_it_must(mutation: str, rc: int) -> bool:
        if mutation == "torn_patch" and arch != "x86_64":
            return rc > 128
        return rc == (EXIT_WRONG_RESULT if mutation == "reuse_while_running" else 0)

    failed = [(s.name, m, rc) for (s, m), (_, rc) in zip(cells, outcomes, strict=True)
              if not as_it_must(m, rc)]  # fmt: skip
    assert not failed


@pytest.mark.parametrize("scenario", ["rewrite_in_place", "cross_modify"])
def test_a_stale_generation_is_caught_by_the_result_oracle(scenario: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Code that keeps returning the first generation's value (what stale code does) ends the
    program with EXIT_WRONG_RESULT."""
    require_runner("x86_64")
    first = generation_values(_scenario(scenario).params["seed"])[0]
    real = program_asm.function
    monkeypatch.setattr(program_asm, "function", lambda arch, value, filler: real(arch, first, filler))
    ((_, status),) = run_batch("x86_64", [build_program(_scenario(scenario), "x86_64", "none", 0)])
    assert status == EXIT_WRONG_RESULT


def test_qemu_user_runs_stale_code_written_through_an_alias_and_the_result_oracle_sees_it() -> None:
    """qemu-user notices stores to code only through the address the code runs at; written
    through the RW alias of a dual mapping, the old translation keeps running until IC IVAU
    makes QEMU drop it. So on arm64 the program without IC IVAU returns a stale generation,
    and the result oracle says so (a real stale-code run, not a simulated one)."""
    require_runner("arm64")
    dual = _scenario("dual_mapping")
    outcomes = run_batch("arm64", [build_program(dual, "arm64", m, i) for i, m in
                                   enumerate(["none", "no_ic_invalidate"])])  # fmt: skip
    assert [status for _, status in outcomes] == [0, EXIT_WRONG_RESULT]


def _jitprobe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", "run", *args], capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_run_list_prints_the_matrix_without_booting() -> None:
    out = _jitprobe("--list", "--suite", "icache")
    assert out.returncode == 0, out.stderr
    for column in ("cortex-a57", "neoverse-n1", "neoverse-v1", "rv64", "max"):
        assert column in out.stdout
    assert "membarrier_plain" in out.stdout and "no_fence_i" in out.stdout
    listed = json.loads(_jitprobe("--list", "--suite", "icache", "--arch", "riscv64", "--json").stdout)
    assert {"arch": "riscv64", "cpu": "rv64", "scenario": "migrate_after_sync",
            "mutation": "fence_i_writer_only", "expected": "caught: riscv64.no_fence_i"} in listed["matrix"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--suite", "speed"], "invalid --suite: 'speed'; valid choices: icache, kernel, litmus, realjit,"),
        (["--arch", "mips"], "invalid architecture: 'mips'; valid choices: arm64, riscv64, x86_64"),
        (["--scenario", "nope"], "invalid --scenario: 'nope'; valid choices: "),
        (["--suite", "icache", "--mutation", "nope"], "invalid --mutation: 'nope'; valid choices: "),
        (["--arch", "all", "--cpu", "max"], "invalid --cpu: 'max'"),
    ],
)
def test_run_refuses_bad_input_naming_the_value_and_choices(args: list[str], message: str) -> None:
    out = _jitprobe("--list", *args)
    assert out.returncode == 2
    assert message in out.stderr


def test_a_litmus_scenario_names_a_pattern_that_matches_nothing(tmp_path: Path) -> None:
    data = {"name": "l", "description": "d", "tests": ["nowhere/*.litmus"], "iterations": 10}
    with pytest.raises(ScenarioError, match=r"l.yaml: field 'tests': 'nowhere/\*.litmus' matches no file"):
        parse_litmus(data, tmp_path / "l.yaml")
    (tmp_path / "MP.litmus").write_text("BPF MP\n")
    found = parse_litmus({**data, "tests": ["*.litmus"]}, tmp_path / "l.yaml").tests
    assert found == ((tmp_path / "MP.litmus").resolve(),)


def test_the_litmus_suite_boots_one_plain_guest_per_architecture_and_lists_each_test() -> None:
    (classics,) = load_suite("litmus")
    assert isinstance(classics, LitmusScenario) and all(t.is_file() for t in classics.tests)
    jobs = plan({"litmus": [classics]}, ARCHES, None)
    assert [(j.arch, j.suite) for j in jobs] == [(arch, "litmus") for arch in ARCHES]
    out = _jitprobe("--list", "--suite", "litmus", "--arch", "arm64", "--json")
    listed = json.loads(out.stdout)["matrix"]
    assert {row["scenario"] for row in listed} == {t.stem for t in classics.tests}
    assert {row["expected"] for row in listed if row["mutation"] == "none"} == {"clean"}
    caught = {(row["scenario"], row["mutation"]) for row in listed if row["expected"] == "caught: model"}
    assert ("LB+ctrlsel+fencemb", "branch_as_select") in caught
    assert {m for _, m in caught} == set(ORDERING_MUTATIONS), "each is a bug on arm64 some test shows"
    for arch in ("riscv64", "x86_64"):  # no conditional select there: nothing to list
        out = _jitprobe("--list", "--suite", "litmus", "--arch", arch, "--mutation", "branch_as_select",
                        "--json")
        assert json.loads(out.stdout)["matrix"] == []


LITMUS_BASE: dict[str, Any] = {"name": "l", "description": "d", "tests": ["*.litmus"], "iterations": 10,
                               "mutations": ["branch_as_select"]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mutations": ["no_isb"]}, "field 'mutations': unknown mutation 'no_isb'; expected some of "
         "fence_full_as_store_store"),
        ({"expect": {"self_sub_as_zero": {"why": "w"}}},
         r"field 'expect.self_sub_as_zero': not one of the scenario's mutations \(branch_as_select\)"),
        ({"expect": {"branch_as_select": {"why": "w", "riscv64": ["MP"]}}},
         "field 'expect.branch_as_select.riscv64': branch_as_select does not change riscv64's code"),
        ({"expect": {"branch_as_select": {"why": "w", "arm64": ["SB"]}}},
         "field 'expect.branch_as_select.arm64': 'SB' is not a test of the scenario; expected some of MP"),
        ({"expect": {"branch_as_select": {"arm64": ["MP"]}}}, "why"),
    ],
)
def test_a_litmus_scenario_refuses_bad_mutations_and_expectations(
    change: dict[str, Any], message: str, tmp_path: Path
) -> None:
    (tmp_path / "MP.litmus").write_text("BPF MP\n")
    with pytest.raises(ScenarioError, match=message):
        parse_litmus({**LITMUS_BASE, **change}, tmp_path / "l.yaml")


@pytest.mark.parametrize("mutation", list(ORDERING_MUTATIONS))
def test_each_ordering_mutation_is_caught_exactly_on_the_tests_the_suite_expects(
    mutation: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Model-only cells (no guest boots for a mutation): each passes, and the caught ones are the
    scenario's expectation, on the architectures whose code the mutation changes."""
    monkeypatch.setenv("JITPROBE_RUNS", str(tmp_path))
    (classics,) = load_suite("litmus")
    assert isinstance(classics, LitmusScenario)
    jobs = plan({"litmus": [classics]}, ARCHES, None)
    cells = run_jobs(jobs, Selection(mutation=mutation), None, workers=1)
    assert {c["arch"] for c in cells} == {a for a in ARCHES if mutation in get_backend(a).mutations}
    assert [c for c in cells if c["verdict"] != "pass"] == []
    caught = {(c["arch"], c["scenario"]) for c in cells if c["observed"] == "caught"}
    assert caught == {(arch, test) for arch, tests in classics.caught[mutation].items() for test in tests}
    assert caught and all(c["histogram"] is None and c["caught_by"] in ([], ["model"]) for c in cells)


def test_branch_as_select_cell_names_the_forbidden_state_and_a_wrong_expectation_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JITPROBE_RUNS", str(tmp_path))
    (classics,) = load_suite("litmus")
    assert isinstance(classics, LitmusScenario)
    job = Job("arm64", "cortex-a57", "litmus", (classics,))
    (cell,) = [c for c in run_jobs([job], Selection(mutation="branch_as_select"), None, workers=1)
               if c["scenario"] == "LB+ctrlsel+fencemb"]
    assert cell["verdict"] == "pass" and cell["expected"] == cell["observed"] == "caught"
    assert "1 the BPF model forbids: 0:r0=1; 1:r0=1;" in cell["detail"]
    assert "litmus jit" in cell["reproducer"] and "--mutation branch_as_select" in cell["reproducer"]
    unexpected = replace(classics, caught={})
    cells = run_jobs([replace(job, scenarios=(unexpected,))], Selection(mutation="branch_as_select"), None,
                     workers=1)
    assert [(c["scenario"], c["verdict"]) for c in cells if c["verdict"] != "pass"] == [
        ("LB+ctrlsel+fencemb", "fail")
    ]
