"""What every native backend provides, and how to find one by architecture name."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .intrinsics import Mutation
from .isa import Insn
from .target import target_profile

__all__ = ["Backend", "Compiled", "get_backend"]


@dataclass(frozen=True)
class Compiled:
    """Position-independent native code for one eBPF program.

    ``insn_offsets[i]`` is the native offset where eBPF slot ``i`` starts (the second slot of
    an lddw shares its first slot's offset); ``functions`` maps the eBPF index of each
    program-local function (the main one is 0) to its native entry offset.
    """

    arch: str
    code: bytes
    insn_offsets: list[int]
    functions: dict[int, int] = field(default_factory=dict)


class Backend(Protocol):
    """A native backend, ``jit_core.<arch>.BACKEND``.

    ``mutations`` are the MUTATIONS that change its code; the others emit the correct protocol."""

    arch: str
    mutations: frozenset[Mutation]
    nop: bytes  # the architecture's no-op instruction: a branch patched out in place (live patching)
    # Where instructions are not one aligned word, a running one is patched breakpoint first
    # (Linux's text_poke_bp): this breakpoint, written over its first byte; None elsewhere.
    breakpoint: bytes | None
    # the saved PC's offset in a SA_SIGINFO handler's ucontext where programs take signals; None elsewhere
    ucontext_pc: int | None

    def compile(self, prog: Sequence[Insn], *, mutation: str = "none") -> Compiled:
        """Lower a verified program to native code. Raises JitError on any refused input."""
        ...


def get_backend(arch: str) -> Backend:
    """The backend for ``arch`` (the package ``jit_core.<arch>``). Raises JitError naming the
    valid architectures."""
    target_profile(arch)
    module = importlib.import_module(f"jit_core.{arch}")
    backend: Backend = module.BACKEND
    return backend
