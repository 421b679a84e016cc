"""C programs for the sanitizer tests and benchmark, cross-compiled with Debian's gcc."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from harness.errors import InfraError

SOURCE_DIR = Path(__file__).resolve().parent
COMPILERS = {"arm64": "aarch64-linux-gnu-gcc", "riscv64": "riscv64-linux-gnu-gcc", "x86_64": "gcc"}

# codegen.c: its variants in index order (the index places each variant's code at
# CODE_BASE + index * CODE_STRIDE, which is how violations are attributed to variants).
CODEGEN_VARIANTS = (
    "clear_cache", "explicit", "no_dc_clean", "no_ic_invalidate", "no_dsb", "no_isb",
    "wrong_line_size", "half_range", "cross_clean", "cross_writer_only",
)  # fmt: skip
CODE_BASE = 0x1000_0000
CODE_STRIDE = 0x1_0000


def variant_of_pc(pc: int) -> str | None:
    """The codegen variant whose generated code holds pc, or None."""
    index, offset = divmod(pc - CODE_BASE, CODE_STRIDE)
    if pc < CODE_BASE or index >= len(CODEGEN_VARIANTS) or offset >= 4096:
        return None
    return CODEGEN_VARIANTS[index]


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


def expected_rules(arch: str, idc: bool = False, dic: bool = False) -> dict[str, set[str]]:
    """The rules each codegen variant must be reported for (empty: it must sanitize clean).

    Derived from the architectures' rules, not from observed output: on arm64 the broken steps
    matter only where CTR_EL0 does not make them unnecessary (IDC: no D-side clean, DIC: no
    I-side invalidation); riscv64 and x86_64 need nothing for same-thread code (riscv64's
    FENCE.I has no range, so line-size and range mistakes cannot happen there), only a
    synchronization on the executing CPU for code another CPU wrote.
    """
    out: dict[str, set[str]] = {v: set() for v in CODEGEN_VARIANTS}
    if arch == "arm64":
        line_rule = set() if idc and dic else {"arm64.no_ic_invalidate" if idc else "arm64.no_dc_clean"}
        out.update(
            no_dc_clean=set() if idc else {"arm64.no_dc_clean"},
            no_ic_invalidate=set() if dic else {"arm64.no_ic_invalidate"},
            no_dsb={"arm64.no_dsb"},
            no_isb={"arm64.no_isb"},
            wrong_line_size=set(line_rule),
            half_range=set(line_rule),
            cross_writer_only={"arm64.no_isb"},
        )
    elif arch == "riscv64":
        out["cross_writer_only"] = {"riscv64.no_fence_i"}
    else:
        out["cross_writer_only"] = {"x86_64.no_serialize"}
    return out
