"""jitprobe's architecture names and the Debian architecture each maps to."""

from __future__ import annotations

from harness.errors import InputError

DEBIAN_ARCH = {"x86_64": "amd64", "arm64": "arm64", "riscv64": "riscv64"}
ARCHES = tuple(DEBIAN_ARCH)


def debian_arch(arch: str) -> str:
    """Debian's name for jitprobe architecture ``arch``. Raises InputError for an unknown one."""
    try:
        return DEBIAN_ARCH[arch]
    except KeyError:
        raise InputError("architecture", arch, ARCHES) from None


def expand_arches(arch: str) -> list[str]:
    """``arch`` as a list, with ``all`` meaning every architecture. Raises InputError if unknown."""
    if arch == "all":
        return list(ARCHES)
    debian_arch(arch)
    return [arch]
