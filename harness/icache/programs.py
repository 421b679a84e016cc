"""Where install programs put their code: one slot per program, so that a violation is attributed
to its program by PC (harness.icache.attribution). The programs themselves are the stress
suites' (harness.stress.programs) and tests/sanitizer_progs/codegen.c."""

from __future__ import annotations

__all__ = ["JIT_BASE", "JIT_STRIDE", "MAX_INDEX", "PAGE"]

JIT_BASE = 0x2000_0000
JIT_STRIDE = 0x1_0000
MAX_INDEX = 256  # slots stay in the 16 MiB from JIT_BASE, above the ELF's segments
PAGE = 4096
