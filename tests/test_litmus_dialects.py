"""The architecture dialects (AArch64, RISCV, X86, X86_64) against herd7: aarch64/kinds.txt under
Armv8, the .expected state sets of instructions/, and the x86_64 tests under x86-TSO."""

from __future__ import annotations

from pathlib import Path

import pytest
from litmus_corpus import corpus, kinds

from jit_core.arm64.litmus_dialect import parse_thread
from jit_core.arm64.memory_model import machine_semantics
from litmus.check import CheckResult, Verdict
from litmus.cli import check_file
from litmus.errors import LitmusError
from litmus.events import Kind, Taint, thread_runs
from litmus.registry import ModelName
from litmus.syntax import Line

AARCH64 = kinds("aarch64")
# Where this implementation and herd7 differ, with the reason (a strict xfail: fixing it shows).
AARCH64_DIFFERENCES: dict[str, str] = {}
NOT_A_TEST = {"MP+rel+CSEL-addr"}  # the file holds only a path (a symbolic link's text)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=AARCH64_DIFFERENCES[n]))
        if n in AARCH64_DIFFERENCES
        else n
        for n in sorted(AARCH64)
    ],
)
def test_aarch64_verdict_agrees_with_herd7(name: str) -> None:
    path = corpus("aarch64", f"{name}.litmus")
    if name in NOT_A_TEST:
        with pytest.raises(LitmusError, match="header"):
            check_file(path, None)
        return
    assert check_file(path, None).verdict is Verdict(AARCH64[name])


def _after_a_successful_cas(rs_source: str) -> set[tuple[Taint, Taint]]:
    """(addr, pick_addr) of the load whose address is the Rs a successful CAS wrote, over every
    run: events 0 the load of y or nothing, then the CAS's read and write, then that load."""
    lines = [rs_source, "CAS W1,W3,[X4]", "EOR W5,W1,W1", "LDR W7,[X0,W5,SXTW]"]
    code = parse_thread([Line(text, k + 1) for k, text in enumerate(lines)], "cas")
    run = machine_semantics(code, {"x0": 0x100, "x2": 0x200, "x3": 5, "x4": 0x300}, {})
    found = set()
    for r in thread_runs(0, run, lambda loc: {1}):
        assert r.rmw, "the CAS compares 1 with 1: it succeeds"
        load = r.events[-1]
        assert load.kind == Kind.R and load.loc == 0x100
        found.add((load.addr, load.pick_addr))
    return found


def test_a_successful_cas_gives_rs_the_dependencies_of_rs_or_of_its_memory_read() -> None:
    # herd7's two candidates of a successful CAS (eventsMonad.ml aarch64_cas_ok): Rs written from
    # Rs's register read (the memory read only picks it, through iico_ctrl) or from the memory
    # read. MP+rel+CAS-ok-bothRs-addr is Forbidden because both order the load of x.
    assert _after_a_successful_cas("LDR W1,[X2]") == {
        (frozenset({0}), frozenset({1})),
        (frozenset({1}), frozenset()),
    }


def test_a_successful_cas_whose_rs_carries_nothing_is_one_run() -> None:
    # the Rs candidate then orders less than the memory one and allows all it does
    assert _after_a_successful_cas("MOV W1,#1") == {(frozenset(), frozenset({0}))}


def _expected(path: Path) -> tuple[set[frozenset[str]], str | None]:
    lines = path.read_text().splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("States"))
    count = int(lines[start].split()[1])
    states = {
        frozenset(p.strip() for p in line.split(";") if p.strip())
        for line in lines[start + 1 : start + 1 + count]
    }
    observation = next((line.split()[2] for line in lines if line.startswith("Observation")), None)
    return states, observation


def _states(result: CheckResult) -> set[frozenset[str]]:
    return {frozenset(f"{var}={value}" for var, value in state) for state in result.states}


EXPECTED = sorted(str(p.relative_to(corpus())) for p in corpus("instructions").rglob("*.litmus"))
REFUSED = {"instructions/riscv64/A007.litmus": "auipc"}  # herd7 refuses it too (.expected-failure)


@pytest.mark.parametrize("name", EXPECTED)
def test_states_and_observation_agree_with_herd7_expected(name: str) -> None:
    path = corpus(name)
    if name in REFUSED:
        with pytest.raises(LitmusError, match=REFUSED[name]):
            check_file(path, None)
        return
    states, observation = _expected(Path(f"{path}.expected"))
    result = check_file(path, None)
    assert _states(result) == states
    assert observation is None or result.observation.value == observation


# x86-TSO lets a read pass an earlier write to another location and nothing else, so exactly the
# tests whose cycle needs an unfenced write -> read in program order are allowed.
TSO_ALLOWED = {"R", "R+mfence+po", "R+mfence+rfi-po", "SB", "SB+mfence+po", "SB+rfi-pos"}


@pytest.mark.parametrize("path", sorted(corpus("x86_64").glob("*.litmus")), ids=lambda p: p.stem)
def test_x86_tests_follow_tso(path: Path) -> None:
    expected = Verdict.ALLOWED if path.stem in TSO_ALLOWED else Verdict.FORBIDDEN
    assert check_file(path, None).verdict is expected


def test_a_model_can_be_chosen() -> None:
    mp = corpus("aarch64", "MP.litmus")
    assert check_file(mp, None).model == "armv8" and check_file(mp, None).verdict is Verdict.ALLOWED
    assert check_file(mp, ModelName.TSO).verdict is Verdict.FORBIDDEN
    sb = corpus("x86_64", "SB.litmus")
    assert check_file(sb, ModelName.ARMV8).verdict is Verdict.ALLOWED
    assert check_file(sb, ModelName.RVWMO).verdict is Verdict.ALLOWED
