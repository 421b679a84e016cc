"""The JIT core: eBPF (RFC 9669) as an architecture-neutral IR, lowered by one backend package
``jit_core.<arch>`` per architecture with a profile."""

__all__ = []
