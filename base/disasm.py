"""Native disassembly: the capstone disassembler of an architecture, as its profile names it."""

from __future__ import annotations

from functools import cache

import capstone

from base.profiles import ProfileError, load_profile

__all__ = ["disassembler"]


@cache
def disassembler(arch: str) -> capstone.Cs:
    """A capstone disassembler for ``arch``'s native code (profile field ``capstone``).

    Raises InputError for an unknown architecture and ProfileError when the profile names a
    capstone architecture or mode this capstone does not have."""
    profile = load_profile(arch)
    try:
        cs_arch = getattr(capstone, f"CS_ARCH_{profile.capstone_arch}")
        mode = 0
        for name in profile.capstone_mode:
            mode |= getattr(capstone, f"CS_MODE_{name}")
    except AttributeError as exc:
        raise ProfileError(f"{profile.path}: field 'capstone': {exc}") from None
    return capstone.Cs(cs_arch, mode)
