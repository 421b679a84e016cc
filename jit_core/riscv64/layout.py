"""Code buffer with labels and relaxable PC-relative references (branch relaxation).

Straight-line words are appended as they are lowered; every reference to a label (conditional
branch, jump, call, address) takes one placeholder slot whose final size is chosen by
``finish``:

| kind    | short form (4 bytes)    | relaxed forms                                           |
|---------|-------------------------|---------------------------------------------------------|
| branch  | B<cond>, +-4 KiB        | B<!cond> over JAL (+-1 MiB); B<!cond> over AUIPC+JALR   |
| jump    | JAL zero, +-1 MiB       | AUIPC t6 + JALR zero (+-2 GiB)                          |
| call    | JAL ra, +-1 MiB         | AUIPC ra + JALR ra (+-2 GiB)                            |
| address | -                       | AUIPC rd + ADDI rd (always 8 bytes)                     |

Sizes start at the shortest form and only grow, so the fixed-point iteration converges; it is
bounded and raises JitError if it does not. Reaches are those of the encoder's B/J-type and
AUIPC pairs, which check them again when the final words are built.
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from itertools import accumulate

from ..errors import JitError
from . import encoder as E
from .encoder import Reg

__all__ = ["FAR_SCRATCH", "CodeBuffer"]

# The long jump forms need a scratch register; the lowering never keeps a value in t6.
FAR_SCRATCH = Reg.T6

_BRANCH, _JUMP, _CALL, _ADDRESS = range(4)
_MIN_SIZE = (4, 4, 4, 8)
_JAL_MIN, _JAL_MAX = -(1 << 20), (1 << 20) - 2


def _size_needed(kind: int, disp: int) -> int:
    if kind == _BRANCH:
        if -4096 <= disp <= 4094:
            return 4
        return 8 if _JAL_MIN <= disp - 4 <= _JAL_MAX else 12
    if kind == _ADDRESS:
        return 8
    return 4 if _JAL_MIN <= disp <= _JAL_MAX else 8


def _encode(kind: int, a: int, b: int, c: int, size: int, disp: int) -> list[int]:
    """The words of one reference. ``disp`` is target minus the reference's own offset."""
    if kind == _BRANCH:  # a = funct3, b = rs1, c = rs2
        if size == 4:
            return [E.b_type(a, b, c, disp)]
        inverted = E.b_type(a ^ 1, b, c, size)  # B-type conditions come in pairs differing in bit 0
        if size == 8:
            return [inverted, E.jal(Reg.ZERO, disp - 4)]
        hi, lo = E.hi_lo(disp - 4)
        return [inverted, E.auipc(FAR_SCRATCH, hi), E.jalr(Reg.ZERO, FAR_SCRATCH, lo)]
    if kind == _ADDRESS:  # a = rd
        hi, lo = E.hi_lo(disp)
        return [E.auipc(a, hi), E.addi(a, a, lo)]
    link = Reg.RA if kind == _CALL else Reg.ZERO
    if size == 4:
        return [E.jal(link, disp)]
    via = Reg.RA if kind == _CALL else FAR_SCRATCH
    hi, lo = E.hi_lo(disp)
    return [E.auipc(via, hi), E.jalr(link, via, lo)]


class CodeBuffer:
    """Instruction words, labels bound to word positions, and label references to relax."""

    def __init__(self) -> None:
        self.words: list[int] = []
        self._label_word: list[int] = []
        # One tuple per reference: (word index of its slot, kind, a, b, c, label).
        self._refs: list[tuple[int, int, int, int, int, int]] = []
        self._offsets: list[int] | None = None

    def new_label(self) -> int:
        self._label_word.append(-1)
        return len(self._label_word) - 1

    def new_labels(self, count: int) -> range:
        start = len(self._label_word)
        self._label_word.extend([-1] * count)
        return range(start, start + count)

    def bind(self, label: int) -> None:
        """Place ``label`` at the current end of the code."""
        self._label_word[label] = len(self.words)

    def branch(self, funct3: int, rs1: int, rs2: int, label: int) -> None:
        """Conditional branch (B-type funct3: beq 0, bne 1, blt 4, bge 5, bltu 6, bgeu 7)."""
        self._ref(_BRANCH, funct3, E.check_reg(rs1), E.check_reg(rs2), label)

    def jump(self, label: int) -> None:
        self._ref(_JUMP, 0, 0, 0, label)

    def call(self, label: int) -> None:
        """Call with the return address in ra."""
        self._ref(_CALL, 0, 0, 0, label)

    def address(self, rd: int, label: int) -> None:
        """rd = run-time address of ``label`` (PC-relative, so the code stays position-independent)."""
        self._ref(_ADDRESS, E.check_reg(rd), 0, 0, label)

    def _ref(self, kind: int, a: int, b: int, c: int, label: int) -> None:
        self._refs.append((len(self.words), kind, a, b, c, label))
        self.words.append(0)

    def finish(self) -> bytes:
        """Relax every reference to a fixed point and return the code.

        Raises JitError if a label is unbound, a target is out of every form's reach, or the
        iteration does not converge.
        """
        refs = self._refs
        ats = [r[0] for r in refs]
        targets = []
        for r in refs:
            word = self._label_word[r[5]]
            if word < 0:
                raise JitError(f"internal: reference to unbound label {r[5]}")
            targets.append((4 * word, bisect_left(ats, word)))
        sizes = [_MIN_SIZE[r[1]] for r in refs]
        for _ in range(2 * len(refs) + 2):
            grown = list(accumulate((s - 4 for s in sizes), initial=0))
            changed = False
            for k, (at, kind, *_rest) in enumerate(refs):
                word_off, before = targets[k]
                need = _size_needed(kind, word_off + grown[before] - 4 * at - grown[k])
                if need > sizes[k]:
                    sizes[k] = need
                    changed = True
            if not changed:
                break
        else:
            raise JitError(f"branch relaxation did not converge over {len(refs)} references")
        out: list[int] = []
        done = 0
        for k, (at, kind, a, b, c, _label) in enumerate(refs):
            word_off, before = targets[k]
            out.extend(self.words[done:at])
            out.extend(_encode(kind, a, b, c, sizes[k], word_off + grown[before] - 4 * at - grown[k]))
            done = at + 1
        out.extend(self.words[done:])
        self._offsets = [4 * w + grown[bisect_left(ats, w)] for w in self._label_word]
        return struct.pack(f"<{len(out)}I", *out)

    def offset(self, label: int) -> int:
        """Final byte offset of ``label``; valid after ``finish``."""
        if self._offsets is None:
            raise JitError("internal: label offsets are known only after finish()")
        return self._offsets[label]
