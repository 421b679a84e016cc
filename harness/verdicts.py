"""What a guest's boot and a guest command's outcome mean: the verdict rules, apart from the
process handling of harness.guest.

A wait on the console ends in one of three ways (``WaitOutcome``): the marker it waited for
appeared, its time ran out, or QEMU's output ended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from base.contract import Verdict
from base.errors import GuestCrash, GuestTimeout, InfraError

from . import console
from .console import CrashReport

__all__ = ["WaitOutcome", "check_boot", "command_verdict"]

WaitOutcome = Literal["match", "timeout", "eof"]


def check_boot(
    arch: str, outcome: WaitOutcome, text: str, tail: Callable[[int], str], limit_s: float
) -> None:
    """Judge a boot from the wait for the readiness marker and the console ``text`` so far
    (``tail(n)``: its last n lines).

    Raises GuestTimeout when the marker did not come within ``limit_s``, GuestCrash when the
    kernel reported a crash (before the marker, or while QEMU exited), and InfraError when QEMU
    exited without one."""
    crash = console.first_crash(text)
    if outcome == "timeout":
        raise GuestTimeout(f"{arch} guest not ready within {limit_s:.1f} s", tail(40))
    if outcome == "eof":
        if crash is not None:
            raise GuestCrash(f"{arch} kernel {crash.kind} while booting: {crash.line}", crash.excerpt)
        raise InfraError(f"QEMU exited before the guest was ready:\n{tail(20)}")
    if crash is not None:
        raise GuestCrash(f"{arch} kernel reported {crash.kind} while booting: {crash.line}", crash.excerpt)


def command_verdict(
    outcome: WaitOutcome, exit_code: int | None, text: str, kmsg: str
) -> tuple[Verdict, list[CrashReport]]:
    """The verdict of a guest command and the crashes behind it, from how the wait for its end
    marker ended, its exit status, the console ``text`` it printed and the kernel log ``kmsg``.

    pass (status 0) or fail (another status) unless a crash shows: a kernel crash report, a
    fatal signal's status, or QEMU exiting. A command out of time is a timeout unless the kernel
    crashed (then it hung after the crash)."""
    crashes = console.find_crashes(text + "\n" + kmsg)
    if outcome == "match" and exit_code is not None:
        signal_report = console.signal_crash(exit_code)
        if signal_report is not None:
            crashes.append(signal_report)
        return ("crash" if crashes else "pass" if exit_code == 0 else "fail"), crashes
    if outcome == "timeout":
        return ("crash" if crashes else "timeout"), crashes
    if not crashes:
        crashes.append(CrashReport("guest_exit", "QEMU exited while the command ran", console.tail(text, 20)))
    return "crash", crashes
