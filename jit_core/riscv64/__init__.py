"""The riscv64 (RV64GC, LP64D) backend: encoder.py (instruction forms), layout.py (code buffer,
labels and branch relaxation), intrinsics.py (harness intrinsics), lower.py (eBPF -> RV64GC).
``BACKEND`` is what ``jit_core.backend.get_backend("riscv64")`` returns."""

from __future__ import annotations

from .lower import RiscV64Backend

BACKEND = RiscV64Backend()

__all__ = ["BACKEND", "RiscV64Backend"]
