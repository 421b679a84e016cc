"""The arm64 code buffer (layout): words, branch fix-ups, relaxation to a fixed point, final layout.

Words are appended in program order. A branch whose target is an eBPF slot (or a function's
prologue) is a fix-up: a placeholder word resolved once every offset is known. B.cond and ADR
start short (+-1 MiB) and become long forms when their target is out of reach; forms only grow,
so the iteration ends. B and BL have a single form (+-128 MiB) and raise JitError beyond it.
"""

from __future__ import annotations

import bisect
from array import array

from ..backend import Compiled
from ..errors import JitError
from . import encoder as e

__all__ = [
    "FIX_ADR",
    "FIX_B",
    "FIX_BCOND",
    "FIX_BL",
    "LONG_EXTRA",
    "REGS",
    "SHORT_REACH",
    "T0",
    "T1",
    "T2",
    "T3",
    "T4",
    "CodeBuffer",
    "Fixup",
]

# eBPF r0..r10 -> X registers (r0 = x7, r1-r5 = x0-x4, r6-r9 = x19-x22, r10 = x25).
REGS = (7, 0, 1, 2, 3, 4, 19, 20, 21, 22, 25)
T0, T1, T2, T3, T4 = 9, 10, 11, 12, 13  # scratch; never an eBPF register

FIX_B, FIX_BCOND, FIX_BL, FIX_ADR = range(4)
LONG_EXTRA = {FIX_B: 0, FIX_BCOND: 1, FIX_BL: 0, FIX_ADR: 4}  # extra words of the long form
SHORT_REACH = {FIX_BCOND: 1 << 20, FIX_ADR: 1 << 20}


class Fixup:
    """A branch (or ADR) to eBPF slot ``target``: its body, or its prologue when ``entry``."""

    __slots__ = ("kind", "pos", "target", "entry", "arg", "long", "index")

    def __init__(self, kind: int, pos: int, target: int, entry: bool, arg: int, index: int):
        self.kind, self.pos, self.target, self.entry, self.arg = kind, pos, target, entry, arg
        self.long = False
        self.index = index  # the eBPF slot that emitted it, for error messages


class CodeBuffer:
    """Words of one program being lowered, plus its fix-ups and slot/prologue positions."""

    def __init__(self, slots: int):
        self.code: list[int] = []
        self.fixups: list[Fixup] = []
        self.index = 0
        self.body = [0] * (slots + 1)  # word index where each slot's code starts
        self.entries: dict[int, int] = {}  # function entry slot -> word index of its prologue

    def fixup(self, kind: int, target: int, *, entry: bool = False, arg: int = 0) -> None:
        """Append a placeholder for a branch of ``kind`` (FIX_*) to slot ``target``."""
        self.fixups.append(Fixup(kind, len(self.code), target, entry, arg, self.index))
        self.code.append(0)

    def link(self) -> Compiled:
        """Relax branches to a fixed point and return the final code. Raises JitError when a
        branch is out of reach even in its long form."""
        while True:
            body_off, entry_off = self._offsets()
            if not self._lengthen(body_off, entry_off):
                break
        out = array("I")
        code = self.code
        start = extra = 0
        for f in self.fixups:
            out.extend(code[start:f.pos])
            rel = (entry_off[f.target] if f.entry else body_off[f.target]) - 4 * (f.pos + extra)
            try:
                words = _resolve(f, rel)
            except JitError as err:
                raise JitError(f"branch to slot {f.target} out of arm64 reach: {err}", f.index) from None
            out.extend(words)
            extra += len(words) - 1
            start = f.pos + 1
        out.extend(code[start:])
        return Compiled("arm64", out.tobytes(), body_off[:-1], entry_off)

    def _lengthen(self, body_off: list[int], entry_off: dict[int, int]) -> bool:
        """Mark every short form whose target is out of reach as long; True if any changed."""
        changed = False
        extra = 0
        for f in self.fixups:
            reach = SHORT_REACH.get(f.kind)
            if reach is not None and not f.long:
                rel = (entry_off[f.target] if f.entry else body_off[f.target]) - 4 * (f.pos + extra)
                if not -reach <= rel < reach:
                    f.long = changed = True
            if f.long:
                extra += LONG_EXTRA[f.kind]
        return changed

    def _offsets(self) -> tuple[list[int], dict[int, int]]:
        """Byte offsets of every slot's code and every prologue in the current layout."""
        longs = [f for f in self.fixups if f.long]
        if not longs:
            return [4 * p for p in self.body], {i: 4 * p for i, p in self.entries.items()}
        positions = [f.pos for f in longs]
        prefix = [0]
        for f in longs:
            prefix.append(prefix[-1] + LONG_EXTRA[f.kind])

        def offset(p: int) -> int:
            return 4 * (p + prefix[bisect.bisect_left(positions, p)])

        return [offset(p) for p in self.body], {i: offset(p) for i, p in self.entries.items()}


def _resolve(f: Fixup, rel: int) -> list[int]:
    """The final words of ``f``, whose target is ``rel`` bytes from its first word."""
    if f.kind == FIX_B:
        return [e.b(rel)]
    if f.kind == FIX_BL:
        return [e.bl(rel)]
    if f.kind == FIX_BCOND:
        return [e.b_cond(f.arg ^ 1, 8), e.b(rel - 4)] if f.long else [e.b_cond(f.arg, rel)]
    if not f.long:
        return [e.adr(f.arg, rel)]
    if not -(1 << 31) <= rel < (1 << 31):
        raise JitError(f"function address offset {rel} beyond +-2 GiB")
    return [e.adr(f.arg, 0), e.movz(T0, rel & 0xFFFF), e.movk(T0, (rel >> 16) & 0xFFFF, 16),
            e.sxtw(T0, T0), e.add_reg(f.arg, f.arg, T0)]
