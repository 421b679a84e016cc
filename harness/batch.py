"""Run many executables in one guest boot: a boot costs seconds, a program milliseconds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .errors import InfraError
from .guest import GUEST_SHARE, Guest

_OUT = "batch-out"


@dataclass(frozen=True)
class ProgramRun:
    """One executable's run: exact stdout bytes and exit status (124 when its time limit hit)."""

    stdout: bytes
    exit_code: int


def run_batch(
    guest: Guest, programs: Mapping[str, bytes], *, each_timeout_s: float = 10.0
) -> dict[str, ProgramRun]:
    """Copy ``programs`` (name -> executable bytes) into the running ``guest`` and run each once.

    Every program gets its own time limit (busybox ``timeout``), so one that hangs costs only its
    own result; a crash of one process does not stop the others. Programs whose result is missing
    (the guest died mid-batch) are absent from the returned mapping. Raises InfraError when the
    batch as a whole cannot run (guest not running, crash or timeout of the shell loop)."""
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
    budget = 30.0 + each_timeout_s * 0.2 * len(programs)
    result = guest.run(script, timeout=budget)
    # A program's own crash shows on the console too; only a loop that did not finish is fatal.
    if result.exit_code is None:
        raise InfraError(
            f"batch of {len(programs)} programs ended as {result.verdict} on {guest.profile.arch}: "
            f"{result.crash.kind if result.crash else 'no crash report'}"
        )
    runs: dict[str, ProgramRun] = {}
    host_out = guest.share_dir / _OUT
    for name in programs:
        rc_file = host_out / f"{name}.rc"
        if not rc_file.exists():
            continue
        runs[name] = ProgramRun((host_out / f"{name}.out").read_bytes(), int(rc_file.read_text().strip()))
    return runs
