"""Code buffer with labels and x86 branch relaxation (rel8 -> rel32).

Straight-line bytes are appended to the current fragment; every label reference (jmp, jcc,
call, lea rip) closes the fragment and is kept aside until ``finish`` knows where each label
landed. jmp and jcc start in their 2-byte rel8 form and are widened to rel32 when their
displacement does not fit. Widening only ever grows the code, so every displacement can only
grow too and the iteration reaches a fixed point after at most one pass per branch; call and
lea rip are always rel32.
"""

from __future__ import annotations

from ..errors import JitError
from . import encoder as enc

__all__ = ["CALL", "JCC", "JMP", "LEA", "CodeBuffer"]

JMP, JCC, CALL, LEA = range(4)
_SHORT_SIZE = {JMP: enc.JMP_REL8_SIZE, JCC: enc.JCC_REL8_SIZE,
               CALL: enc.CALL_REL32_SIZE, LEA: enc.LEA_RIP_SIZE}
_LONG_SIZE = {JMP: enc.JMP_REL32_SIZE, JCC: enc.JCC_REL32_SIZE,
              CALL: enc.CALL_REL32_SIZE, LEA: enc.LEA_RIP_SIZE}


class CodeBuffer:
    """Bytes, labels and label references of one compilation."""

    __slots__ = ("buf", "_frags", "_refs", "_labels")

    def __init__(self) -> None:
        self.buf = bytearray()  # the open fragment; append encoded instructions here
        self._frags: list[bytes] = []  # closed fragments; reference i follows fragment i
        self._refs: list[tuple[int, int, int]] = []  # (kind, condition code or register, label)
        self._labels: list[tuple[int, int]] = []  # label -> (fragment index, offset in fragment)

    def new_label(self) -> int:
        """A fresh, unbound label."""
        self._labels.append((-1, 0))
        return len(self._labels) - 1

    def bind(self, label: int) -> None:
        """Place ``label`` at the current position."""
        self._labels[label] = (len(self._frags), len(self.buf))

    def _ref(self, kind: int, arg: int, label: int) -> None:
        self._frags.append(bytes(self.buf))
        self.buf.clear()
        self._refs.append((kind, arg, label))

    def jmp(self, label: int) -> None:
        self._ref(JMP, 0, label)

    def jcc(self, cc: int, label: int) -> None:
        self._ref(JCC, cc, label)

    def call(self, label: int) -> None:
        self._ref(CALL, 0, label)

    def lea_rip(self, reg: int, label: int) -> None:
        """``lea reg, [rip + label]``: the label's address, position-independently."""
        self._ref(LEA, reg, label)

    def finish(self) -> tuple[bytes, list[int]]:
        """The final code and each label's offset. Raises JitError on an unbound label or
        if branch relaxation does not converge."""
        frags = [*self._frags, bytes(self.buf)]
        refs = self._refs
        for label, (frag, _) in enumerate(self._labels):
            if frag < 0:
                raise JitError(f"internal error: label {label} was never bound")
        sizes = [_SHORT_SIZE[kind] for kind, _, _ in refs]
        frag_len = [len(f) for f in frags]
        for _ in range(len(refs) + 2):
            starts, offsets = self._layout(frag_len, sizes)
            grown = False
            for i, (kind, _, label) in enumerate(refs):
                if sizes[i] != _LONG_SIZE[kind]:
                    disp = offsets[label] - starts[i + 1]
                    if not -0x80 <= disp <= 0x7F:
                        sizes[i] = _LONG_SIZE[kind]
                        grown = True
            if not grown:
                return self._emit(frags, sizes, starts, offsets), offsets
        raise JitError("internal error: branch relaxation did not converge")

    def _layout(self, frag_len: list[int], sizes: list[int]) -> tuple[list[int], list[int]]:
        """Start offset of each fragment, and each label's offset."""
        starts = [0] * len(frag_len)
        pos = 0
        for i, size in enumerate(sizes):
            starts[i] = pos
            pos += frag_len[i] + size
        starts[-1] = pos
        return starts, [starts[frag] + off for frag, off in self._labels]

    def _emit(self, frags: list[bytes], sizes: list[int], starts: list[int], offsets: list[int]) -> bytes:
        out = bytearray()
        for i, (kind, arg, label) in enumerate(self._refs):
            out += frags[i]
            disp = offsets[label] - starts[i + 1]
            if kind == JMP:
                out += enc.jmp_rel8(disp) if sizes[i] == enc.JMP_REL8_SIZE else enc.jmp_rel32(disp)
            elif kind == JCC:
                out += enc.jcc_rel8(arg, disp) if sizes[i] == enc.JCC_REL8_SIZE else enc.jcc_rel32(arg, disp)
            elif kind == CALL:
                out += enc.call_rel32(disp)
            else:
                out += enc.lea_rip(arg, disp)
        out += frags[-1]
        return bytes(out)
