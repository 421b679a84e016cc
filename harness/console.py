"""Crash reports found in guest console and kernel log text.

The patterns are data (CRASH_PATTERNS): each has a kind name and a regular expression matched
against single lines, with or without the kernel's ``[ seconds]`` timestamp prefix. Every kind
counts as a crash (verdict ``crash``): the kernel's own failures (panic, Oops, BUG, WARNING,
unhandled kernel faults) and its reports of user processes killed by a fatal signal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "CRASH_PATTERNS",
    "EXCERPT_AFTER",
    "EXCERPT_BEFORE",
    "FATAL_SIGNALS",
    "CrashReport",
    "clean_lines",
    "crash_kind",
    "find_crashes",
    "first_crash",
    "signal_crash",
    "tail",
    "tail_with_crash",
]

CRASH_PATTERNS: tuple[tuple[str, str], ...] = (
    ("panic", r"Kernel panic - not syncing"),
    # "Internal error: Oops: ...", "Oops: general protection fault", "Oops [#1]" (architectures differ)
    ("oops", r"\bOops(: | \[#\d+\]| - )"),
    ("bug", r"(^|\s)(BUG: |kernel BUG at )"),
    ("warning", r"(^|\s)WARNING: (CPU: \d+ PID: \d+|at )"),
    ("kernel_fault", r"Unable to handle kernel "),
    # "prog[42]: segfault at 0 ip ... error 6 in prog[...]" (architectures that log user faults so)
    ("segfault", r"\S+\[\d+\]: segfault at [0-9a-f]+"),
    # "traps: prog[42] trap invalid opcode ip:..." (also general protection, divide error)
    ("trap", r"traps: \S+\[\d+\] "),
    # "prog[42]: unhandled exception: ..." or "prog[42]: unhandled signal 4 code 0x1 at ..."
    ("unhandled_signal", r"\S+\[\d+\]: unhandled (exception|signal)"),
)
"""(kind, regex) pairs; a line matching a regex is a crash of that kind."""

_COMPILED = tuple((kind, re.compile(rx)) for kind, rx in CRASH_PATTERNS)
# The kernel's "[  seconds]" prefix, and whatever shared its console line before it (a shell prompt).
_TIMESTAMP = re.compile(r"^.*?\[\s*\d+\.\d+\]\s?")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

EXCERPT_BEFORE = 3
EXCERPT_AFTER = 40

# Signals whose default action is a core dump: a process ending with one of them crashed.
# Numbers are Linux's generic ones, shared by every architecture jitprobe has a profile for.
FATAL_SIGNALS = {
    4: "SIGILL",
    5: "SIGTRAP",
    6: "SIGABRT",
    7: "SIGBUS",
    8: "SIGFPE",
    11: "SIGSEGV",
    31: "SIGSYS",
}


@dataclass(frozen=True)
class CrashReport:
    """One crash found in console text: its kind, the matching line and the lines around it."""

    kind: str
    line: str
    excerpt: str

    def as_dict(self) -> dict[str, str]:
        """The report as a JSON-ready mapping."""
        return {"kind": self.kind, "line": self.line, "excerpt": self.excerpt}


def clean_lines(text: str) -> list[str]:
    """``text`` split into lines without carriage returns or terminal escape sequences."""
    return [_ANSI.sub("", line).rstrip("\r") for line in text.replace("\r\n", "\n").split("\n")]


def crash_kind(line: str) -> str | None:
    """The kind of crash ``line`` reports, or None."""
    body = _TIMESTAMP.sub("", line)
    for kind, regex in _COMPILED:
        if regex.search(body):
            return kind
    return None


def find_crashes(text: str) -> list[CrashReport]:
    """Every crash line in ``text``, in order, each with an excerpt of the lines around it."""
    lines = clean_lines(text)
    reports = []
    for index, line in enumerate(lines):
        kind = crash_kind(line)
        if kind is not None:
            excerpt = "\n".join(lines[max(0, index - EXCERPT_BEFORE) : index + EXCERPT_AFTER + 1])
            reports.append(CrashReport(kind, _TIMESTAMP.sub("", line).strip(), excerpt.strip("\n")))
    return reports


def first_crash(text: str) -> CrashReport | None:
    """The first crash in ``text``, or None."""
    reports = find_crashes(text)
    return reports[0] if reports else None


def signal_crash(exit_code: int) -> CrashReport | None:
    """A report for a shell exit status 128+N where N is a fatal signal, else None."""
    name = FATAL_SIGNALS.get(exit_code - 128)
    if name is None:
        return None
    line = f"process killed by {name} (exit status {exit_code})"
    return CrashReport("fatal_signal", line, line)


def tail(text: str, lines: int = 40) -> str:
    """The last ``lines`` lines of ``text``, cleaned of carriage returns and escapes."""
    cleaned = clean_lines(text.rstrip("\n"))
    return "\n".join(cleaned[-lines:])


def tail_with_crash(console_tail: str, crash: CrashReport | None) -> str:
    """``console_tail``, preceded by the crash's excerpt when the crash line scrolled out of it
    (a panic's stack dump alone can fill a 40-line tail)."""
    if crash is None or crash.line in console_tail:
        return console_tail
    return f"{crash.excerpt}\n[...]\n{console_tail}"
