"""Run freestanding executables on this host: x86_64 natively, arm64 and riscv64 under qemu-user.

Many executables run in one shell loop (one subprocess) so that a batch of programs costs one
process start on the Python side. Used by the ELF, conformance and random-program tests.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest

USER_EMULATORS = {"x86_64": "qemu-x86_64", "arm64": "qemu-aarch64", "riscv64": "qemu-riscv64"}


def runner(arch: str) -> list[str] | None:
    """The command prefix that runs an ``arch`` executable here, or None if nothing can."""
    if arch == "x86_64" and platform.machine() == "x86_64":
        return []
    emulator = shutil.which(USER_EMULATORS[arch])
    return [emulator] if emulator else None


def require_runner(arch: str) -> None:
    """Skip the calling test when nothing here can run ``arch`` executables (no qemu-user)."""
    if runner(arch) is None:
        pytest.skip(f"cannot run {arch} executables here ({USER_EMULATORS[arch]} from qemu-user is missing)")


def run_batch(arch: str, executables: Sequence[bytes], timeout: float = 120.0) -> list[tuple[bytes, int]]:
    """(stdout, exit status) of each executable, in order. Each gets 10 s before it is killed."""
    prefix = runner(arch)
    if prefix is None:
        raise RuntimeError(f"no way to run {arch} executables on this host")
    with tempfile.TemporaryDirectory(prefix="jitprobe-user-") as tmp:
        folder = Path(tmp)
        for i, blob in enumerate(executables):
            path = folder / f"p{i}"
            path.write_bytes(blob)
            path.chmod(0o755)
        command = " ".join(prefix)
        script = (f'for i in $(seq 0 {len(executables) - 1}); do '
                  f'timeout 10 {command} ./p$i > p$i.out 2>/dev/null; echo $? > p$i.rc; done')
        subprocess.run(["sh", "-c", script], cwd=folder, check=True, timeout=timeout)
        return [((folder / f"p{i}.out").read_bytes(), int((folder / f"p{i}.rc").read_text()))
                for i in range(len(executables))]
