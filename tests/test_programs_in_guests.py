"""Test programs natively in QEMU guests: one boot per architecture runs a batch of them.

The user-mode tests (qemu-user, or this host for x86_64) are the fast loop; this is the check in
the real thing: the random-program sample (jit_core.progen.sample, the same every run) and every
saved regression program, built as static executables and run by one shell loop in a guest
(harness.batch), must leave exactly the machine state the reference interpreter computes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from base.profiles import load_profile
from harness.batch import run_batch
from harness.guest import Guest
from jit_core import interp
from jit_core.asm import assemble, disassemble
from jit_core.elf import build_executable
from jit_core.isa import Insn
from jit_core.progen import RESULTS_SIZE, sample

REGRESSIONS = sorted((Path(__file__).parent / "regressions").glob("*.s"))
SAMPLE_SIZE = 150


def _programs() -> dict[str, list[Insn]]:
    progs = {f"random-{i:03}": prog for i, prog in enumerate(sample(SAMPLE_SIZE))}
    progs.update((f"regression-{path.stem}", assemble(path.read_text())) for path in REGRESSIONS
                 if not path.name.startswith("latest-"))
    return progs


@pytest.mark.qemu
@pytest.mark.parametrize("arch", ["x86_64", "arm64", "riscv64"])
def test_programs_match_the_interpreter_natively(arch: str, tmp_path: Path) -> None:
    progs = _programs()
    assert any(name.startswith("regression-") for name in progs)
    executables = {name: build_executable(arch, prog, results_size=RESULTS_SIZE)
                   for name, prog in progs.items()}
    with Guest(load_profile(arch), run_dir=tmp_path) as guest:
        runs = run_batch(guest, executables)
    assert set(runs) == set(progs)
    mismatches = []
    for name, prog in progs.items():
        want = interp.run(prog, results_size=RESULTS_SIZE)
        got = runs[name]
        if (got.stdout, got.exit_code) != (want.results, want.r0 & 0xFF):
            mismatches.append(f"{name}:\n" + "\n".join(disassemble(prog))
                              + f"\n# interpreter {want.results.hex()} / {arch} {got.stdout.hex()}")
    assert not mismatches, f"{len(mismatches)} of {len(progs)} differ; first:\n{mismatches[0]}"
