"""Which model and which dialect parser serve which name: BPF is built in, each architecture's
come from its profile (``litmus.memory_model``, ``litmus.headers``) and live in
jit_core/<arch>/memory_model.py and jit_core/<arch>/litmus_dialect.py."""

from __future__ import annotations

import enum
import importlib
from collections.abc import Callable

from base.profiles import available_arches, load_profile

from .bpf import bpf_program
from .bpf_model import BpfModel
from .check import Program
from .errors import LitmusError
from .execution import Model
from .syntax import LitmusTest

BPF_HEADER = "BPF"


class ModelName(enum.Enum):
    BPF = "bpf"
    TSO = "x86-tso"
    ARMV8 = "armv8"
    RVWMO = "rvwmo"


def _arch_with(predicate: Callable[[str], bool]) -> str | None:
    return next((arch for arch in available_arches() if predicate(arch)), None)


def get_model(name: ModelName) -> Model:
    """The model called ``name``. Raises LitmusError when no profile provides it."""
    if name is ModelName.BPF:
        return BpfModel()
    arch = _arch_with(lambda a: load_profile(a).memory_model == name.value)
    if arch is None:
        raise LitmusError(f"no architecture profile provides the {name.value} model")
    model: Model = importlib.import_module(f"jit_core.{arch}.memory_model").MODEL
    return model


def headers() -> list[str]:
    """Every litmus header word a dialect exists for."""
    return [BPF_HEADER, *(h for arch in available_arches() for h in load_profile(arch).litmus_headers)]


def program_for(test: LitmusTest) -> tuple[Program, ModelName]:
    """The executable form of ``test`` by its header word, and its architecture's model.

    Raises LitmusError for a header no dialect serves, LitmusSyntaxError from the dialect."""
    if test.arch == BPF_HEADER:
        return bpf_program(test)[0], ModelName.BPF
    arch = _arch_with(lambda a: test.arch in load_profile(a).litmus_headers)
    if arch is None:
        raise LitmusError(
            f"{test.path}:1: no dialect for litmus header {test.arch!r}; known: {', '.join(headers())}"
        )
    dialect = importlib.import_module(f"jit_core.{arch}.litmus_dialect")
    program: Program = dialect.litmus_program(test)
    return program, ModelName(load_profile(arch).memory_model)
