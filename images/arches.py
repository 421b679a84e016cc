"""jitprobe's architectures as images/ sees them: whatever arch_profiles/ holds.

A new architecture is a new profile (with its ``debian_arch``), never an edit here.
"""

from __future__ import annotations

from harness.profiles import available_arches, expand_arch, load_profile


def arches() -> list[str]:
    """Every architecture with a profile."""
    return available_arches()


def debian_arch(arch: str) -> str:
    """Debian's name for jitprobe architecture ``arch``. Raises InputError for an unknown one."""
    return load_profile(arch).debian_arch


def expand_arches(arch: str) -> list[str]:
    """``arch`` as a list, with ``all`` meaning every architecture. Raises InputError if unknown."""
    return expand_arch(arch)


def debian_arches() -> tuple[str, ...]:
    """Debian's names of every architecture with a profile, for the private apt root."""
    return tuple(debian_arch(a) for a in arches())
