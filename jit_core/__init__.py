"""The JIT core: eBPF (RFC 9669) as an architecture-neutral IR, lowered to x86_64, arm64 and riscv64."""
