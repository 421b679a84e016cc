"""Builds the small static C programs of tests/fixtures/programs/ for a guest architecture.

Used by the QEMU tests and by tests/fixtures/console/capture.py. The compilers are Debian's
(host gcc for x86_64 on an x86_64 host, the cross gcc packages otherwise).
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

PROGRAMS = Path(__file__).resolve().parent / "fixtures" / "programs"
_CROSS = {
    "x86_64": "x86_64-linux-gnu-gcc",
    "arm64": "aarch64-linux-gnu-gcc",
    "riscv64": "riscv64-linux-gnu-gcc",
}
_NATIVE = {"x86_64": "x86_64", "arm64": "aarch64", "riscv64": "riscv64"}


def compiler(arch: str) -> str | None:
    """The C compiler that builds static programs for ``arch`` here, or None if none is installed."""
    candidates = [_CROSS[arch]]
    if platform.machine() == _NATIVE[arch]:
        candidates.insert(0, "gcc")
    return next((c for c in candidates if shutil.which(c)), None)


def build_program(name: str, arch: str, out_dir: Path) -> Path:
    """Compile tests/fixtures/programs/<name>.c statically for ``arch`` into ``out_dir``.

    Raises FileNotFoundError if no compiler is installed, CalledProcessError if it fails."""
    cc = compiler(arch)
    if cc is None:
        raise FileNotFoundError(f"no C compiler for {arch} (install gcc-{_CROSS[arch][:-4]})")
    out = out_dir / f"{name}-{arch}"
    subprocess.run([cc, "-static", "-O2", "-o", str(out), str(PROGRAMS / f"{name}.c")], check=True)
    return out
