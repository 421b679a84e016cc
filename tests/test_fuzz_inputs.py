"""Hostile input never ends in a Python traceback: the file readers raise only their documented
errors, and the CLI's input paths return an exit status (hypothesis generates the input)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from base.errors import InfraError, JitprobeError
from base.profiles import ProfileError, load_profile_file
from harness import cli
from harness.runs import RESULTS_FILE, read_results
from jit_core.asm import assemble
from jit_core.conformance import parse_test
from jit_core.errors import JitError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TEXTISH = st.one_of(st.binary(max_size=400), st.text(max_size=400).map(str.encode))


@FUZZ
@given(data=TEXTISH)
def test_results_reader(tmp_path: Path, data: bytes) -> None:
    (tmp_path / RESULTS_FILE).write_bytes(data)
    with contextlib.suppress(InfraError):
        read_results(tmp_path)


@FUZZ
@given(data=TEXTISH)
def test_profile_reader(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "arm64.yaml"
    path.write_bytes(data)
    with pytest.raises(ProfileError):
        load_profile_file(path)


@FUZZ
@given(text=st.text(max_size=400))
def test_conformance_reader_never_raises(text: str) -> None:
    parse_test("fuzz", text)


ASM_WORDS = st.sampled_from(["mov", "add", "ja", "exit", "call", "ldxdw", "stxw", "%r0", "%r1", "%r10",
                             "[%r1+8]", "+3", "-1", "0x7fffffff", ",", "lddw", "jeq", "\n"])  # fmt: skip


@FUZZ
@given(words=st.lists(ASM_WORDS, max_size=30), noise=st.text(max_size=20))
def test_assembler_raises_only_jit_errors(words: list[str], noise: str) -> None:
    with contextlib.suppress(JitError):
        assemble(" ".join(words) + noise)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=TEXTISH, arch=st.sampled_from(["x86_64", "arm64", "riscv64", "mips", ""]))
def test_jit_build_returns_an_exit_status(tmp_path: Path, data: bytes, arch: str) -> None:
    source = tmp_path / "fuzz.s"
    source.write_bytes(data)
    status = cli.main(["jit", "build", str(source), "--arch", arch, "-o", str(tmp_path / "out")])
    assert status in (0, 2)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arch=st.text(max_size=12).filter(lambda a: a not in ("x86_64", "arm64", "riscv64", "all")),
       smp=st.text(max_size=5), timeout=st.text(max_size=8))  # fmt: skip
def test_exec_refuses_bad_options(tmp_path: Path, arch: str, smp: str, timeout: str) -> None:
    try:
        status = cli.main(["exec", "--arch", arch, "--smp", smp, "--timeout", timeout, "--guest-cmd", "true"])
    except SystemExit as exc:  # argparse's own refusal (a value of the wrong type)
        assert exc.code == 2
        return
    except JitprobeError as exc:  # pragma: no cover - main turns these into exit statuses
        raise AssertionError(f"escaped main: {exc}") from exc
    assert status == 2
