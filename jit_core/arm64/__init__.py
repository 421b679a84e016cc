"""The arm64 (AArch64) backend: encoder (encoder.py), code buffer (emit.py), lowering (lower.py)."""

from .lower import Arm64Backend

BACKEND = Arm64Backend()

__all__ = ["BACKEND", "Arm64Backend"]
