"""Errors of the litmus machinery; the CLI turns them into InputError (exit 2)."""

from __future__ import annotations


class LitmusError(Exception):
    """Base of every error a litmus test can cause."""


class LitmusSyntaxError(LitmusError):
    """A test the reader or a dialect parser cannot accept: names file, line and what was expected."""

    def __init__(self, path: str, lineno: int, message: str):
        self.path, self.lineno, self.message = path, lineno, message
        super().__init__(f"{path}:{lineno}: {message}")
