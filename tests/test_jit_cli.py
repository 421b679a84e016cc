"""`jitprobe jit conformance` end to end: the outside suite on the interpreter and natively in guests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parents[2] / "shared" / "bpf_conformance" / "tests"
JITPROBE = [sys.executable, "-m", "harness.cli"]



@pytest.mark.qemu
def test_conformance_suite_passes_natively_on_every_architecture(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*JITPROBE, "jit", "conformance", str(SUITE), "--arch", "all", "--json"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "JITPROBE_RUNS": str(tmp_path)},
    )
    result = json.loads(proc.stdout)
    assert set(result) == {"interp", "x86_64", "arm64", "riscv64"}
    runnable = len(list(SUITE.glob("*.data"))) - len(result["interp"]["skipped"])
    for part, report in result.items():
        assert report["failed"] == [], (part, report["failed"][:5])
        assert report["passed"] == runnable, part
        # Only tests that need the suite's own runtime helpers may be skipped, each with a reason.
        assert all(s["reason"] for s in report["skipped"]), part
    assert proc.returncode == 0, proc.stderr


def test_unknown_arch_is_an_input_error_listing_the_choices() -> None:
    proc = subprocess.run([*JITPROBE, "jit", "conformance", str(SUITE), "--arch", "sparc"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "sparc" in proc.stderr
    for arch in ("x86_64", "arm64", "riscv64"):
        assert arch in proc.stderr


def test_empty_folder_is_an_input_error(tmp_path: Path) -> None:
    proc = subprocess.run([*JITPROBE, "jit", "conformance", str(tmp_path), "--arch", "x86_64"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert str(tmp_path) in proc.stderr


def test_build_writes_an_executable_that_runs_natively(tmp_path: Path) -> None:
    source = tmp_path / "answer.s"
    source.write_text("mov %r0, 40\nadd %r0, 2\nexit\n")
    out = tmp_path / "answer"
    proc = subprocess.run([*JITPROBE, "jit", "build", str(source), "--arch", "x86_64", "-o", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    run = subprocess.run([str(out)], capture_output=True, timeout=10)
    assert run.returncode == 42
    assert int.from_bytes(run.stdout[:8], "little") == 42


def test_build_refuses_a_bad_program_naming_the_line(tmp_path: Path) -> None:
    source = tmp_path / "bad.s"
    source.write_text("mov %r0, 1\nfrobnicate %r0\nexit\n")
    command = [*JITPROBE, "jit", "build", str(source), "--arch", "x86_64", "-o", str(tmp_path / "x")]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "frobnicate" in proc.stderr and "line 2" in proc.stderr
    assert not (tmp_path / "x").exists()
