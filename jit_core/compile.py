"""The front door of the JIT: check the mutation name, then hand over to a backend.

Every backend's ``compile`` runs the verifier itself (it needs the function entries the
verifier finds), so a program is verified once whichever door it comes through.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import isa
from .backend import Compiled, get_backend
from .errors import JitError
from .intrinsics import MUTATIONS
from .isa import Insn

__all__ = ["check_mutation", "compile_program", "lowered_ir"]


def check_mutation(mutation: str) -> None:
    """Raises JitError if ``mutation`` is not a name in intrinsics.MUTATIONS (listing them)."""
    if mutation not in MUTATIONS:
        raise JitError(f"unknown mutation {mutation!r}; valid choices: {', '.join(MUTATIONS)}")


def lowered_ir(prog: Sequence[Insn], mutation: str) -> list[Insn]:
    """``prog`` as every backend lowers it under ``mutation``: the name checked, then the
    IR-level mutations applied, each an optimization that is right for one thread and drops a
    dependency other threads can observe. ``self_sub_as_zero`` turns ``rX -= rX`` and
    ``rX ^= rX`` into ``rX = 0`` (the value is 0 either way; the address or data dependency of
    the idiom is lost); ``drop_branch_to_next`` turns a conditional jump to the next instruction
    into ``ja +0`` (both paths meet there; the control dependency is lost). Raises JitError for an
    unknown mutation."""
    check_mutation(mutation)
    return [_mutated(insn, mutation) for insn in prog]


def _mutated(insn: Insn, mutation: str) -> Insn:
    op, cls = insn.opcode & 0xF0, insn.opcode & 0x07
    if mutation == "self_sub_as_zero" and cls in (isa.ALU, isa.ALU64) and op in (isa.SUB, isa.XOR) \
            and insn.opcode & isa.SRC_X and insn.dst == insn.src:
        return Insn(cls | isa.MOV, insn.dst)
    if mutation == "drop_branch_to_next" and cls in (isa.JMP, isa.JMP32) and op in isa.COND_JUMPS \
            and insn.off == 0:
        return Insn(isa.JMP | isa.JA)
    return insn


def compile_program(arch: str, prog: Sequence[Insn], mutation: str = "none") -> Compiled:
    """Native position-independent code for ``prog`` on ``arch``.

    Raises JitError for an unknown architecture or mutation, or a program the verifier or the
    backend refuses; nothing partial is returned.
    """
    return get_backend(arch).compile(list(prog), mutation=mutation)
