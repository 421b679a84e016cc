"""C programs for the sanitizer tests and benchmark, cross-compiled with Debian's gcc."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from base.errors import InfraError
from harness.icache import CODEGEN_VARIANTS, slot_of_pc

SOURCE_DIR = Path(__file__).resolve().parent
COMPILERS = {"arm64": "aarch64-linux-gnu-gcc", "riscv64": "riscv64-linux-gnu-gcc", "x86_64": "gcc"}

# codegen.c's variant index places its code at CODE_BASE + index * CODE_STRIDE (CODEGEN_VARIANTS
# order), which is how violations are attributed to variants.
CODE_BASE = 0x1000_0000
CODE_STRIDE = 0x1_0000


def variant_of_pc(pc: int) -> str | None:
    """The codegen variant whose generated code holds pc, or None."""
    return slot_of_pc(pc, CODE_BASE, CODE_STRIDE, CODEGEN_VARIANTS)


def build_program(arch: str, out_dir: Path, name: str = "codegen") -> Path:
    """A static executable of ``<name>.c`` for ``arch`` in ``out_dir`` (reused while the source is unchanged).

    Raises InfraError when the cross compiler is missing or fails.
    """
    compiler = COMPILERS[arch]
    if shutil.which(compiler) is None:
        raise InfraError(f"{compiler} is not installed (run `make setup`)")
    source = SOURCE_DIR / f"{name}.c"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    out = Path(out_dir) / f"{name}-{arch}-{digest}"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    proc = subprocess.run(
        [compiler, "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread", "-o", str(tmp), str(source)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise InfraError(f"{compiler} failed on {source}:\n{proc.stderr[-2000:]}")
    tmp.replace(out)
    return out
