"""The one error type of the JIT core."""

from __future__ import annotations

__all__ = ["JitError"]


class JitError(Exception):
    """A program or operand the JIT refuses. Names the instruction index and text when known.

    A failed compile returns no partial code; the error may come from any stage, from the
    verifier before lowering to a backend's final layout (a branch out of reach).
    """

    def __init__(self, message: str, index: int | None = None, text: str | None = None):
        self.index = index
        self.text = text
        where = ""
        if index is not None:
            where = f"instruction {index}"
            if text:
                where += f" ({text})"
            where += ": "
        super().__init__(where + message)
