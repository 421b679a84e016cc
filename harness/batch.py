"""Run many executables in one guest boot: a boot costs seconds, a program milliseconds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .guest import GUEST_SHARE, Guest

__all__ = ["ProgramRun", "run_batch"]

_OUT = "batch-out"


@dataclass(frozen=True)
class ProgramRun:
    """One executable's run: exact stdout bytes and exit status.

    A program that hits its time limit ends with 143 (128 + SIGTERM): busybox ``timeout`` execs
    the program in its own process and has a watcher send it SIGTERM, so the shell sees the
    program killed by that signal (not GNU timeout's 124)."""

    stdout: bytes
    exit_code: int


def run_batch(
    guest: Guest, programs: Mapping[str, bytes], *, each_timeout_s: float = 10.0
) -> dict[str, ProgramRun]:
    """Copy ``programs`` (name -> executable bytes) into the running ``guest`` and run each once.

    Every program gets its own time limit (busybox ``timeout``), so one that hangs costs only its
    own result; a crash of one process does not stop the others. Programs without a result (the
    guest died or the loop ran out of time mid-batch) are absent from the returned mapping, and
    the results written before that are kept. Raises InfraError if the guest is not running."""
    for name, data in programs.items():
        guest.copy(data, name)
    names = "\n".join(programs) + "\n"
    guest.copy(names.encode(), "batch-names", mode=0o644)
    out = f"{GUEST_SHARE}/{_OUT}"
    script = (
        f"mkdir -p {out}; cd {GUEST_SHARE}; "
        f"while read -r p; do timeout {each_timeout_s:g} ./$p >{out}/$p.out 2>/dev/null; "
        f"echo $? >{out}/$p.rc; done < batch-names"
    )
    # Enough for every program to hit its own limit; normal batches take a small part of it.
    guest.run(script, timeout=30.0 + each_timeout_s * len(programs))
    runs: dict[str, ProgramRun] = {}
    host_out = guest.share_dir / _OUT
    for name in programs:
        rc_file = host_out / f"{name}.rc"
        status = rc_file.read_text().strip() if rc_file.exists() else ""
        if not status.isdigit():  # not run, or cut short while its status was being written
            continue
        runs[name] = ProgramRun((host_out / f"{name}.out").read_bytes(), int(status))
    return runs
