"""The arm64 (AArch64) backend: encoder.py (instruction forms), layout.py (code buffer, branch
fix-ups and relaxation), intrinsics.py (harness intrinsics), lower.py (eBPF -> AArch64).
``BACKEND`` is what ``jit_core.backend.get_backend("arm64")`` returns."""

from __future__ import annotations

from .lower import Arm64Backend

BACKEND = Arm64Backend()

__all__ = ["BACKEND", "Arm64Backend"]
