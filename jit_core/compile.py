"""The front door of the JIT: check the mutation name, then hand over to a backend.

Every backend's ``compile`` runs the verifier itself (it needs the function entries the
verifier finds), so a program is verified once whichever door it comes through.
"""

from __future__ import annotations

from collections.abc import Sequence

from .backend import Compiled, get_backend
from .errors import JitError
from .intrinsics import MUTATIONS
from .isa import Insn

__all__ = ["check_mutation", "compile_program"]


def check_mutation(mutation: str) -> None:
    """Raises JitError if ``mutation`` is not a name in intrinsics.MUTATIONS (listing them)."""
    if mutation not in MUTATIONS:
        raise JitError(f"unknown mutation {mutation!r}; valid choices: {', '.join(MUTATIONS)}")


def compile_program(arch: str, prog: Sequence[Insn], mutation: str = "none") -> Compiled:
    """Native position-independent code for ``prog`` on ``arch``.

    Raises JitError for an unknown architecture or mutation, or a program the verifier or the
    backend refuses; nothing partial is returned.
    """
    return get_backend(arch).compile(list(prog), mutation=mutation)
