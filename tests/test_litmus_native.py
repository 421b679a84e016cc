"""Litmus tests as native executables (litmus.native): histograms, judging, and runs in guests."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest
from litmus_corpus import corpus
from user_mode import require_runner, run_batch

from litmus.bpf import bpf_program
from litmus.bpf_model import BpfModel
from litmus.check import CheckResult, check
from litmus.native import NativeTest, RunVerdict, judge, native_test
from litmus.syntax import LitmusTest, read_test


def _source(name: str) -> tuple[LitmusTest, CheckResult]:
    test = read_test(corpus("bpf", f"{name}.litmus"))
    return test, check(bpf_program(test)[0], BpfModel())


@pytest.mark.parametrize(
    ("arch", "name"),
    [
        ("x86_64", "SB+poonceonces"),
        ("arm64", "C-LB-GRR+OB-O+OB-O+OB-OB-BPF"),  # five threads, r10 used as a data register
        ("riscv64", "X+addr-reads+corr-writes+data-rw"),  # locations as values
    ],
)
def test_every_iteration_lands_in_a_state_the_model_allows(arch: str, name: str) -> None:
    require_runner(arch)
    test, source = _source(name)
    native = native_test(test, arch, 300)
    [(stdout, status)] = run_batch(arch, [native.executable(arch)])
    assert status == 0
    result = judge(native, arch, source, stdout)
    assert sum(result.histogram.values()) == 300
    assert result.verdict is RunVerdict.PASS and result.forbidden_observed == []
    assert set(result.not_exercised) | set(result.histogram) <= {
        "".join(f"{v}={x}; " for v, x in s).rstrip() for s in source.states
    } | set(result.histogram)


def _slot(native: NativeTest, values: list[int]) -> int:
    slot = 0
    for domain, value in zip(native.domains, values, strict=True):
        slot = slot * (len(domain) + 1) + domain.index(value)
    return slot


def test_an_observed_forbidden_state_fails_and_unseen_allowed_ones_are_not_exercised() -> None:
    test, source = _source("SB+fencembonceonces")
    native = native_test(test, "x86_64", 10)
    counts = [0] * native.layout.slots
    counts[_slot(native, [0, 0])] = 3  # both reads see 0: what the full barriers forbid
    counts[_slot(native, [1, 1])] = 7
    stdout = struct.pack(f"<{len(counts)}Q", *counts) + bytes(8)
    result = judge(native, "x86_64", source, stdout)
    assert result.verdict is RunVerdict.FAIL
    assert result.histogram == {"0:r2=0; 1:r2=0;": 3, "0:r2=1; 1:r2=1;": 7}
    assert result.forbidden_observed == ["0:r2=0; 1:r2=0;"]
    assert result.not_exercised == ["0:r2=0; 1:r2=1;", "0:r2=1; 1:r2=0;"]


@pytest.mark.qemu
def test_litmus_run_in_guests_reports_histograms() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "litmus",
            "run",
            str(corpus("bpf", "MP+pooncerelease+poacquireonce.litmus")),
            "--arch",
            "all",
            "--iterations",
            "2000",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert {r["arch"] for r in results} == {"x86_64", "arm64", "riscv64"}
    for r in results:
        assert (
            sum(r["histogram"].values()) == 2000 and r["forbidden_observed"] == [] and r["verdict"] == "pass"
        )
        assert "1:r3=1; 1:r4=0;" not in r["histogram"]
