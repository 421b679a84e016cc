"""The jitprobe command line on input errors: refused before any guest starts (no QEMU needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cli
from harness.runs import append_result, new_results_dir

ROOT = Path(__file__).resolve().parent.parent


def _jitprobe(runs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, JITPROBE_RUNS=str(runs))
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


def test_unknown_arch_lists_the_valid_ones(tmp_path: Path) -> None:
    proc = _jitprobe(tmp_path, "exec", "--arch", "sparc64", "--json", "--guest-cmd", "true")
    assert proc.returncode == 2
    assert "invalid architecture: 'sparc64'; valid choices: arm64, riscv64, x86_64" in proc.stderr
    assert json.loads(proc.stdout)["verdict"] == "usage"  # --json: one object, whatever happens
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


def test_unknown_cpu_lists_the_known_models(tmp_path: Path) -> None:
    proc = _jitprobe(tmp_path, "boot", "--arch", "arm64", "--cpu", "cortex-a53", "--json")
    assert proc.returncode == 2
    assert "'cortex-a53'" in proc.stderr and "neoverse-n1, neoverse-v1" in proc.stderr


def _elf_header(machine: int) -> bytes:
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)  # 64-bit, little-endian, version 1
    return ident + (2).to_bytes(2, "little") + machine.to_bytes(2, "little") + bytes(44)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--guest-cmd", "true", "prog"], "give either FILE [ARGS...] or --guest-cmd CMD"),
        ([], "give either FILE [ARGS...] or --guest-cmd CMD"),
        (["/no/such/file"], "invalid FILE: '/no/such/file' (no such file)"),
        (["--timeout", "0", "--guest-cmd", "true"], "invalid --timeout: 0.0"),
        (["--smp", "0", "--guest-cmd", "true"], "invalid vCPU count (--smp): 0"),
    ],
)
def test_exec_input_errors(tmp_path: Path, args: list[str], message: str) -> None:
    proc = _jitprobe(tmp_path, "exec", "--arch", "riscv64", *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert not list(tmp_path.iterdir())  # refused before a run folder or guest existed


def test_exec_refuses_an_elf_of_another_architecture(tmp_path: Path) -> None:
    program = tmp_path / "riscv-prog"
    program.write_bytes(_elf_header(243))
    proc = _jitprobe(tmp_path / "runs", "exec", "--arch", "arm64", str(program))
    assert proc.returncode == 2
    assert "an ELF for machine 243, not arm64 (183)" in proc.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_parser_has_the_contract_subcommands() -> None:
    parser = cli.build_parser()
    assert (
        "boot" in parser.format_help() and "exec" in parser.format_help() and "shell" in parser.format_help()
    )


def test_results_file_gets_one_json_line_per_result(tmp_path: Path) -> None:
    append_result(tmp_path / "res", {"arch": "arm64", "verdict": "pass"})
    append_result(tmp_path / "res", {"arch": "x86_64", "verdict": "fail"})
    lines = (tmp_path / "res" / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["arch"] for line in lines] == ["arm64", "x86_64"]


@pytest.mark.parametrize("timeout", ["nan", "inf", "0", "-1"])
def test_timeout_must_be_positive_and_finite(tmp_path: Path, timeout: str) -> None:
    proc = _jitprobe(tmp_path, "exec", "--arch", "arm64", "--timeout", timeout, "--guest-cmd", "true")
    assert proc.returncode == 2
    assert "--timeout" in proc.stderr and "finite" in proc.stderr
    assert not tmp_path.exists() or not list(tmp_path.iterdir())  # refused before any run folder


@pytest.mark.parametrize("slowdown", ["abc", "nan", "inf", "0"])
def test_bad_slowdown_is_refused_before_qemu_starts(tmp_path: Path, slowdown: str) -> None:
    env = dict(os.environ, JITPROBE_RUNS=str(tmp_path), JITPROBE_SLOWDOWN=slowdown)
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "boot", "--arch", "riscv64"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert proc.returncode == 2
    assert "JITPROBE_SLOWDOWN" in proc.stderr and slowdown in proc.stderr
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


def test_truncated_elf_is_an_input_error(tmp_path: Path) -> None:
    program = tmp_path / "short"
    program.write_bytes(b"\x7fELF")
    proc = _jitprobe(tmp_path / "runs", "exec", "--arch", "arm64", str(program))
    assert proc.returncode == 2
    assert "truncated ELF header" in proc.stderr


def test_commands_started_in_the_same_second_get_their_own_results_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `jitprobe run` started at once once appended to one results.jsonl."""
    monkeypatch.setenv("JITPROBE_RUNS", str(tmp_path))
    monkeypatch.setattr("time.strftime", lambda fmt, *a: "20261201-000000")
    first, second = new_results_dir("run"), new_results_dir("run")
    assert first != second and first.is_dir() and second.is_dir()
    assert first.name == "run-20261201-000000" and second.name == "run-20261201-000000-2"
