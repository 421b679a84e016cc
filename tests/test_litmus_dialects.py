"""The architecture dialects (AArch64, RISCV, X86, X86_64) against herd7: aarch64/kinds.txt under
Armv8, the .expected state sets of instructions/, and the x86_64 tests under x86-TSO."""

from __future__ import annotations

from pathlib import Path

import pytest
from litmus_corpus import corpus, kinds

from litmus.check import CheckResult, Verdict
from litmus.cli import check_file
from litmus.errors import LitmusError
from litmus.registry import ModelName

AARCH64 = kinds("aarch64")
# Where this implementation and herd7 differ, with the reason (a strict xfail: fixing it shows).
AARCH64_DIFFERENCES = {
    "MP+rel+CAS-ok-bothRs-addr": "a successful CAS's Rs: herd7 orders memory -> Rs -> address when Rs also "
    "came from a read; here memory -> Rs is a pick dependency only",
}
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
