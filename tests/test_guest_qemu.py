"""Real QEMU guests of every architecture, through the Guest API and the jitprobe command line.

Each test boots its own guest (2-4 s on an idle 2-core host); the Guest API tests share one
guest per architecture. Test programs are built from tests/fixtures/programs/ with Debian's gcc.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from guest_programs import build_program, compiler

from base.profiles import load_profile
from harness.guest import Guest

ARCHES = ("x86_64", "arm64", "riscv64")
ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.qemu


@pytest.fixture(scope="session")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """(program, arch) -> static executable, for every arch that has a compiler here."""
    out = tmp_path_factory.mktemp("programs")
    return {
        (name, arch): build_program(name, arch, out)
        for arch in ARCHES
        if compiler(arch)
        for name in ("hello", "spin", "fault")
    }


def _program(programs: dict[tuple[str, str], Path], name: str, arch: str) -> Path:
    if (name, arch) not in programs:
        pytest.skip(f"no C compiler for {arch}")
    return programs[name, arch]


def _jitprobe(runs: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, JITPROBE_RUNS=str(runs))
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT,
        timeout=timeout,
    )  # fmt: skip


def _qemu_pids(marker: Path) -> list[int]:
    """QEMU processes whose command line mentions ``marker`` (our run folders only)."""
    found = subprocess.run(["pgrep", "-f", f"qemu-system.*{marker}"], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


# -- Guest API: one guest per architecture for several commands ----------------------------


@pytest.fixture(scope="module", params=ARCHES)
def guest(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    run_dir = tmp_path_factory.mktemp(f"guest-{request.param}")
    with Guest(load_profile(request.param), run_dir=run_dir) as g:
        yield g
    assert not g.alive and _qemu_pids(run_dir) == []


def test_guest_runs_a_copied_binary_with_exact_output(guest: Guest, programs: dict) -> None:
    assert guest.ready_s is not None and guest.qemu_version
    path = guest.copy(_program(programs, "hello", guest.profile.arch), "hello")
    result = guest.run(f"{path} 0 x y")
    assert (result.verdict, result.exit_code) == ("pass", 0)
    assert result.stdout == b"hello from the guest: 0 x y\n"
    failed = guest.run(f"{path} 3")
    assert (failed.verdict, failed.exit_code) == ("fail", 3)
    both = guest.run("printf 'a\\0b'; echo oops >&2; exit 5")
    assert (both.stdout, both.stderr, both.exit_code) == (b"a\0b", b"oops\n", 5)


def test_guest_reports_fatal_signals_and_keeps_running(guest: Guest, programs: dict) -> None:
    path = guest.copy(_program(programs, "fault", guest.profile.arch), "fault")
    segv = guest.run(f"{path} segv")
    assert (segv.verdict, segv.exit_code) == ("crash", 139)
    assert segv.crash is not None and segv.crash.kind in ("segfault", "unhandled_signal")
    ill = guest.run(f"{path} ill")
    assert (ill.verdict, ill.exit_code) == ("crash", 132)
    assert ill.crash is not None and ill.crash.kind in ("trap", "unhandled_signal")
    assert guest.run("true").verdict == "pass"  # a user crash leaves the guest usable


def test_guest_copies_bytes_and_loads_modules(guest: Guest) -> None:
    path = guest.copy(b"#!/bin/sh\necho script-ran\n", "script.sh")
    assert guest.run(path).stdout == b"script-ran\n"
    loaded = guest.run("modprobe dummy && grep -o '^dummy ' /proc/modules")
    assert (loaded.verdict, loaded.stdout) == ("pass", b"dummy \n"), loaded.stderr


# -- the command line: a fresh guest each ----------------------------------------------------


@pytest.mark.parametrize("arch", ARCHES)
def test_cli_boot(arch: str, tmp_path: Path) -> None:
    proc = _jitprobe(tmp_path, "boot", "--arch", arch, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) == {"arch", "cpu", "smp", "qemu_version", "kernel", "ready_s", "verdict"}
    profile = load_profile(arch)
    assert (result["arch"], result["cpu"], result["smp"]) == (arch, profile.default_cpu, profile.smp)
    assert result["verdict"] == "pass" and result["ready_s"] > 0 and result["qemu_version"].startswith("10.")
    assert result["kernel"].startswith("6.12")
    assert _qemu_pids(tmp_path) == []
    (run_dir,) = tmp_path.iterdir()
    assert "JITPROBE-READY-" in (run_dir / "console.log").read_text()


@pytest.mark.parametrize("arch", ARCHES)
def test_cli_exec_static_binary(arch: str, tmp_path: Path, programs: dict) -> None:
    hello = _program(programs, "hello", arch)
    results = tmp_path / "results"
    options = ["--arch", arch, "--smp", "1", "--json", "--results", str(results)]
    proc = _jitprobe(tmp_path / "runs", "exec", *options, str(hello), "7", "--flag")
    assert proc.returncode == 1, proc.stderr  # exit status 7 is a failed test
    result = json.loads(proc.stdout)
    contract = {"arch", "cpu", "smp", "verdict", "exit_code", "stdout", "console_tail", "wall_s",
                "violations"}
    assert set(result) == contract | {"stderr", "stdout_bytes", "stderr_bytes", "stdout_truncated",
                                      "stderr_truncated"}  # fmt: skip
    assert (result["verdict"], result["exit_code"], result["smp"]) == ("fail", 7, 1)
    assert result["stdout"] == "hello from the guest: 7 --flag\n"
    assert result["violations"] == [] and result["wall_s"] > 0
    (line,) = (results / "results.jsonl").read_text().splitlines()
    assert json.loads(line)["exit_code"] == 7 and json.loads(line)["command"] == "exec"


@pytest.mark.parametrize("arch", ARCHES)
def test_cli_panic_is_a_crash_with_the_panic_text(arch: str, tmp_path: Path) -> None:
    proc = _jitprobe(
        tmp_path, "exec", "--arch", arch, "--json", "--guest-cmd", "echo c > /proc/sysrq-trigger"
    )
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert result["verdict"] == "crash" and result["exit_code"] is None
    assert "Kernel panic - not syncing: sysrq triggered crash" in result["console_tail"]
    assert "panic" in proc.stderr
    assert _qemu_pids(tmp_path) == []


@pytest.mark.parametrize("arch", ARCHES)
def test_cli_hang_is_a_timeout_and_leaves_no_qemu(arch: str, tmp_path: Path, programs: dict) -> None:
    spin = _program(programs, "spin", arch)
    started = time.monotonic()
    proc = _jitprobe(tmp_path, "exec", "--arch", arch, "--timeout", "2", "--json", str(spin))
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert result["verdict"] == "timeout" and result["exit_code"] is None
    assert re.search(r"JP-DONE-[0-9a-f]{24}-0", result["console_tail"])  # the guest got as far as the shell
    assert time.monotonic() - started < 120
    assert _qemu_pids(tmp_path) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_signalled_jitprobe_leaves_no_qemu(signum: int, tmp_path: Path, programs: dict) -> None:
    spin = _program(programs, "spin", "riscv64")
    env = dict(os.environ, JITPROBE_RUNS=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "exec", "--arch", "riscv64", "--timeout", "300", str(spin)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("*/share/.jitprobe/cmd-1.sh")):  # the program is running
            assert proc.poll() is None and time.monotonic() < deadline, "jitprobe never ran the program"
            time.sleep(0.1)
        assert _qemu_pids(tmp_path)
        proc.send_signal(signum)
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10  # SIGKILL: the kernel delivers QEMU's death signal
    while _qemu_pids(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _qemu_pids(tmp_path) == []
    expected = {signal.SIGTERM: 128 + 15, signal.SIGINT: 130, signal.SIGKILL: -9}
    assert proc.returncode == expected[signal.Signals(signum)]


def test_cli_shell_is_interactive_and_stops_qemu(tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    env = dict(os.environ, JITPROBE_RUNS=str(tmp_path))
    shell = pexpect.spawn(
        sys.executable, ["-m", "harness.cli", "shell", "--arch", "riscv64"], cwd=str(ROOT), env=env,
        timeout=120, encoding="utf-8",
    )  # fmt: skip
    try:
        shell.expect("Ctrl-] leaves")
        # busybox's line editor may swallow a line typed while it waits for its cursor-position
        # query to be answered (no terminal answers here); a person would type it again.
        for _ in range(10):
            shell.sendline("echo sum-$((40+2))")
            if shell.expect(["sum-42", pexpect.TIMEOUT], timeout=5) == 0:
                break
        else:
            pytest.fail(f"the shell never answered: {shell.before!r}")
        shell.send("\x1d")  # Ctrl-]
        shell.expect(pexpect.EOF)
    finally:
        shell.close(force=True)
    assert shell.exitstatus == 0
    assert _qemu_pids(tmp_path) == []
