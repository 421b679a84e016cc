"""Differential testing: random programs (jit_core.progen) on the interpreter and on each backend.

Each hypothesis example is a batch of programs run in one shell loop, natively for x86_64 and
under qemu-user for arm64 and riscv64; every executable's stdout (r0..r9 and the stack window,
see progen) and exit status must equal the interpreter's. A backend that cannot be run here
(no qemu-user) is skipped.

On a mismatch hypothesis shrinks the batch to one small program; each failing attempt writes its
disassembly to tests/regressions/latest-<arch>.s, so after the run that file holds the shrunk
program. Keep it by renaming it to tests/regressions/<arch>-<what broke>.s (any name ending in
.s); test_saved_regressions runs every saved file on every available backend from then on.
More examples: JITPROBE_RANDOM_EXAMPLES=500 .venv/bin/pytest tests/test_random_programs.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from user_mode import require_runner, run_batch

from jit_core import interp
from jit_core.asm import assemble, disassemble
from jit_core.elf import build_executable
from jit_core.isa import Insn
from jit_core.progen import RESULTS_SIZE, programs

ARCHES = ["x86_64", "arm64", "riscv64"]
REGRESSIONS = Path(__file__).parent / "regressions"
EXAMPLES = int(os.environ.get("JITPROBE_RANDOM_EXAMPLES", "50"))


def _mismatches(arch: str, batch: list[list[Insn]]) -> list[str]:
    expected = [interp.run(prog, results_size=RESULTS_SIZE) for prog in batch]
    runs = run_batch(arch, [build_executable(arch, prog, results_size=RESULTS_SIZE) for prog in batch])
    problems = []
    for prog, want, (stdout, status) in zip(batch, expected, runs, strict=True):
        if stdout != want.results or status != want.r0 & 0xFF:
            problems.append("\n".join(disassemble(prog)) + f"\n# interpreter: {want.results.hex()} "
                            f"status {want.r0 & 0xFF}\n# {arch}: {stdout.hex()} status {status}\n")
    return problems


@pytest.mark.parametrize("arch", ARCHES)
def test_random_programs_match_the_interpreter(arch: str) -> None:
    require_runner(arch)

    @settings(max_examples=max(1, EXAMPLES // 5), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(programs(), min_size=1, max_size=8))
    def check(batch: list[list[Insn]]) -> None:
        problems = _mismatches(arch, batch)
        if problems:
            REGRESSIONS.mkdir(exist_ok=True)
            (REGRESSIONS / f"latest-{arch}.s").write_text(problems[0])
        assert not problems, problems[0]

    check()


SAVED = sorted(p for p in REGRESSIONS.glob("*.s") if not p.name.startswith("latest-")) \
    if REGRESSIONS.is_dir() else []


@pytest.mark.skipif(not SAVED, reason="no saved regression programs in tests/regressions")
@pytest.mark.parametrize("arch", ARCHES)
def test_saved_regressions(arch: str) -> None:
    require_runner(arch)
    batch = [assemble(path.read_text()) for path in SAVED]
    assert _mismatches(arch, batch) == []
