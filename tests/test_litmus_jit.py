"""``litmus jit``: jit_core's lowering of every BPF litmus test checked under each architecture's
model, and the detection matrix of the ordering mutations."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from litmus_corpus import corpus

from base.profiles import available_arches
from jit_core.backend import get_backend
from jit_core.intrinsics import ORDERING_MUTATIONS
from litmus.bpf import bpf_program
from litmus.check import format_state
from litmus.jit import JitResult, JitVerdict, SourceCache, check_jit
from litmus.syntax import read_test

# herdtools7's BPF tests, and jitprobe's own for bug classes they do not reach
OWN = Path(__file__).resolve().parent / "fixtures" / "litmus"
FILES = sorted(corpus("bpf").glob("*.litmus")) + sorted(OWN.glob("*.litmus"))
SOURCE = SourceCache()

# Where each ordering mutation is a bug the BPF corpus can show, and a test that shows it.
# fence_full_as_*: on riscv64 jit_core's fetch atomics are AMOs with .aqrl (no fence), and the
# fence after cmpxchg's LR.aqrl/SC.rl loop is redundant, so only the fence_full intrinsic
# changes meaning there, which no BPF litmus test reaches. x86_64 is TSO: every mutation leaves
# its code as it is.
ARCHES = available_arches()
CAUGHT: dict[str, dict[str, str]] = {
    "none": {},
    "fence_full_as_store_store": {"arm64": "SB+fencembonceonces"},
    "fence_full_as_load_load": {"arm64": "SB+fencembonceonces"},
    "acquire_as_plain": {
        "arm64": "MP+pooncerelease+poacquireonce",
        "riscv64": "MP+pooncerelease+poacquireonce",
    },
    "release_as_plain": {
        "arm64": "MP+pooncerelease+poacquireonce",
        "riscv64": "MP+pooncerelease+poacquireonce",
    },
    # x86_64's code changes too, but TSO keeps loads ordered before later accesses without them
    "self_sub_as_zero": {"arm64": "MP+release+addr-subself", "riscv64": "MP+release+addr-subself"},
    # herdtools7's LB+fcas-ctrlcvg-once+once-scas does not catch it: the branch inside jit_core's
    # cmpxchg loop keeps a control dependency of its own
    "drop_branch_to_next": {"arm64": "LB+ctrlcvg+data", "riscv64": "LB+ctrlcvg+data"},
    "fetch_atomic_relaxed": {"arm64": "SB+fencembonceonces", "riscv64": "SB+fencembonceonces"},
    # only arm64 has a conditional select to turn the branch into (RV64GC has none, x86's CMOV
    # would keep TSO's load-to-store order)
    "branch_as_select": {"arm64": "LB+ctrlsel+fencemb"},
}


@cache
def _run(arch: str, mutation: str) -> tuple[JitResult, ...]:
    return tuple(check_jit(path, arch, mutation, SOURCE) for path in FILES)


def test_the_matrix_names_every_ordering_mutation() -> None:
    assert set(CAUGHT) - {"none"} == set(ORDERING_MUTATIONS)


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("mutation", list(CAUGHT))
def test_mutation_is_caught_exactly_where_it_is_a_bug(arch: str, mutation: str) -> None:
    failed = [r for r in _run(arch, mutation) if r.verdict is JitVerdict.FAIL]
    if arch not in CAUGHT[mutation]:
        assert failed == [], [(r.test, r.extra_states) for r in failed]
        return
    assert CAUGHT[mutation][arch] in {r.test for r in failed}
    for result in failed:
        assert result.extra_states
        assert not set(result.extra_states) & {format_state(s) for s in result.source.states}
        assert result.witness is not None and result.witness["state"] == result.extra_states[0]


@pytest.mark.parametrize("mutation", list(ORDERING_MUTATIONS))
def test_a_mutation_changes_code_exactly_on_its_architectures(mutation: str) -> None:
    arches = {arch for arch in ARCHES if mutation in get_backend(arch).mutations}
    threads = [ir for path in FILES for ir in bpf_program(read_test(path))[1]]
    for arch in ARCHES:
        backend = get_backend(arch)
        changed = any(
            backend.compile(t.prog).code != backend.compile(t.prog, mutation=mutation).code for t in threads
        )
        assert changed == (arch in arches), arch


def test_a_witness_shows_events_relations_and_disassembly() -> None:
    result = check_jit(
        corpus("bpf", "MP+pooncerelease+poacquireonce.litmus"), "arm64", "release_as_plain", SOURCE
    )
    assert result.verdict is JitVerdict.FAIL and result.source.verdict.value == "Forbidden"
    assert result.to_json()["compiled_verdict"] == "Allowed"
    witness = result.witness
    assert witness is not None
    assert any("(str " in e and " W " in e for e in witness["events"])
    assert witness["rf"] and "ldar" in " ".join(result.disassembly["P1"])
    assert set(result.to_json()) == {
        "test",
        "arch",
        "mutation",
        "source_verdict",
        "compiled_verdict",
        "extra_states",
        "witness",
        "verdict",
    }


def test_branch_as_select_witness_shows_the_csel_and_no_branch() -> None:
    path = OWN / "LB+ctrlsel+fencemb.litmus"
    correct = check_jit(path, "arm64", "none", SOURCE)
    assert correct.verdict is JitVerdict.PASS and "b.eq" in " ".join(correct.disassembly["P0"])
    result = check_jit(path, "arm64", "branch_as_select", SOURCE)
    assert result.verdict is JitVerdict.FAIL and result.extra_states == ["0:r0=1; 1:r0=1;"]
    p0 = " ".join(result.disassembly["P0"])
    assert "csel" in p0 and "b.eq" not in p0
    assert result.witness is not None and not result.witness["ctrl"]


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    from litmus.errors import LitmusSyntaxError

    with pytest.raises(LitmusSyntaxError):
        check_jit(tmp_path / "none.litmus", "arm64")
