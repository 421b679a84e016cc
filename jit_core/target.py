"""The architectures jit_core generates code for: every one with a profile in arch_profiles/.

The data facts of an architecture (ELF machine and flags, system call numbers) are its
profile's; its code generation is the package ``jit_core.<arch>``.
"""

from __future__ import annotations

from base.errors import InputError
from base.profiles import Profile, available_arches, load_profile

from .errors import JitError

__all__ = ["arches", "target_profile"]


def arches() -> list[str]:
    """Every architecture with a profile, sorted."""
    return available_arches()


def target_profile(arch: str) -> Profile:
    """The profile of ``arch``. Raises JitError naming the valid architectures if there is none
    (and ProfileError if its file is invalid)."""
    try:
        return load_profile(arch)
    except InputError:
        raise JitError(f"unknown architecture {arch!r}; valid choices: {', '.join(arches())}") from None
