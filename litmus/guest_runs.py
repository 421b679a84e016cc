"""``litmus run``: BPF litmus tests compiled by jit_core and run natively in a guest of each
architecture (one boot per architecture, every test one executable of litmus.native), each
histogram judged against the BPF model."""

from __future__ import annotations

from pathlib import Path

from base.errors import InfraError
from base.profiles import load_profile
from base.progress import status
from harness.batch import run_batch
from harness.guest import Guest
from harness.runs import new_run_dir

from .jit import SourceCache
from .native import NativeResult, judge, native_test

# Seconds one executable may take per 1,000 iterations in a TCG guest on a loaded host, and
# at least; a test that hits its limit is reported, not waited for.
SECONDS_PER_1000 = 2.0
MIN_SECONDS = 30.0


def run_in_guest(paths: list[Path], arch: str, iterations: int, cache: SourceCache,
                 run_dir: Path | None = None) -> list[NativeResult]:
    """Every test of ``paths`` run ``iterations`` times in one ``arch`` guest (its run folder
    ``run_dir``, by default a new one).

    Raises LitmusError / JitError for a test that cannot be built, GuestError or InfraError
    when the guest cannot run them, and InfraError for a test whose run gave no histogram
    (it crashed or hit its time limit)."""
    natives = {
        f"litmus{k}": native_test(cache.get(path)[0], arch, iterations) for k, path in enumerate(paths)
    }
    programs = {name: native.executable(arch) for name, native in natives.items()}
    limit = max(MIN_SECONDS, SECONDS_PER_1000 * iterations / 1000)
    with (
        status(f"{arch}: running {len(programs)} litmus tests in a guest"),
        Guest(load_profile(arch), run_dir=run_dir or new_run_dir("litmus", arch)) as guest,
    ):
        runs = run_batch(guest, programs, each_timeout_s=limit)
    results = []
    for (name, native), path in zip(natives.items(), paths, strict=True):
        run = runs.get(name)
        if run is None or run.exit_code != 0:
            status_text = "no result" if run is None else f"exit status {run.exit_code}"
            raise InfraError(f"{arch}: {native.test.name} ran without a histogram ({status_text})")
        results.append(judge(native, arch, cache.get(path)[1], run.stdout))
    return results
