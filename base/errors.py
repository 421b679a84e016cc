"""Errors that say whose fault a failure is.

Every error jitprobe reports is one of three kinds, mirroring the contract's exit statuses:
the user's input (exit 2), the harness or host (exit 3, verdict ``infra``), or the guest
(verdicts ``fail``, ``crash``, ``timeout``; exit 1). Guest outcomes are normally verdicts in a
result rather than exceptions; the exceptions below exist for code paths that must unwind.
"""

from __future__ import annotations

from collections.abc import Iterable

from base.contract import Verdict

__all__ = [
    "EXIT_FAIL",
    "EXIT_INFRA",
    "EXIT_PASS",
    "EXIT_USAGE",
    "GuestCrash",
    "GuestError",
    "GuestTimeout",
    "InfraError",
    "InputError",
    "JitprobeError",
]

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_INFRA = 3



class JitprobeError(Exception):
    """Base of every error jitprobe raises on purpose."""

    exit_code = EXIT_INFRA


class InputError(JitprobeError):
    """Bad input from the user: names the bad value and the valid choices."""

    exit_code = EXIT_USAGE

    def __init__(self, what: str, value: object, choices: Iterable[object] | None = None, hint: str = ""):
        self.what = what
        self.value = value
        self.choices = list(choices) if choices is not None else None
        msg = f"invalid {what}: {value!r}"
        if self.choices is not None:
            msg += "; valid choices: " + ", ".join(str(c) for c in self.choices)
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class InfraError(JitprobeError):
    """The harness or host failed: QEMU or an image missing, a build failed, a port in use."""

    exit_code = EXIT_INFRA


class GuestError(JitprobeError):
    """The guest misbehaved in a way the caller cannot turn into a verdict itself."""

    exit_code = EXIT_FAIL

    def __init__(self, verdict: Verdict, message: str, console_tail: str = ""):
        self.verdict = verdict
        self.console_tail = console_tail
        super().__init__(message)


class GuestTimeout(GuestError):
    """A wait on the guest ran past its (profile-scaled) time limit."""

    def __init__(self, message: str, console_tail: str = ""):
        super().__init__("timeout", message, console_tail)


class GuestCrash(GuestError):
    """The guest kernel panicked or oopsed, or a process died of a fatal signal."""

    def __init__(self, message: str, console_tail: str = ""):
        super().__init__("crash", message, console_tail)
