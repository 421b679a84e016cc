"""The x86_64 backend: encoder.py (instruction forms), layout.py (code buffer, labels and branch
relaxation), lower.py (eBPF -> x86_64, harness intrinsics inline).
``BACKEND`` is what ``jit_core.backend.get_backend("x86_64")`` returns."""

from __future__ import annotations

from .lower import X86_64Backend

BACKEND = X86_64Backend()

__all__ = ["BACKEND", "X86_64Backend"]
