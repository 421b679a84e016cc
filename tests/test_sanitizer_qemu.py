"""The coherency sanitizer in real guests: each protocol step, determinism (the kernel's own code
patching: the kernel stress suite, tests/test_stress_qemu.py).

One guest per CPU model runs every variant of tests/sanitizer_progs/codegen.c (each variant's
code at its own address, so violations are attributed by PC); the whole run, boot included,
must report exactly the expected rules and nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sanitizer_progs import CODEGEN_VARIANTS, build_program, variant_of_pc

from base.contract import Violation
from base.profiles import load_profile
from harness.guest import Guest
from harness.icache import (
    describe_violations,
    expected_rules,
    rules_by_code,
)
from harness.sanitizer import plugin_spec, read_violations, save_kernel_symbols

pytestmark = pytest.mark.qemu
ITERATIONS = 100  # per variant
CROSS_ITERATIONS = 100  # interrupts no longer hide a missing synchronization: no need for many


def run_sanitized(
    arch: str, cpu: str | None, run_dir: Path, commands: list[str], program: Path | None = None, smp: int = 2
) -> tuple[list[Any], list[Violation]]:
    """Boot a sanitized guest and run commands (``{prog}``: the copied program).

    Returns the command results and the violations of the whole run."""
    results = []
    # nokaslr: kernel PCs then match /proc/kallsyms read at the end, for readable failures.
    with Guest(load_profile(arch), run_dir=run_dir, cpu=cpu, smp=smp, plugin=plugin_spec(arch, cpu, run_dir),
               extra_append="nokaslr") as guest:  # fmt: skip
        guest_prog = guest.copy(program, "codegen") if program else ""
        for command in commands:
            results.append(guest.run(command.format(prog=guest_prog), timeout=600))
        kallsyms = save_kernel_symbols(guest)
    binaries = [program] if program else []
    return results, read_violations(run_dir, arch, binaries, system_map=kallsyms)


MODELS = [("arm64", "cortex-a57"), ("arm64", "neoverse-n1"), ("arm64", "neoverse-v1"), ("riscv64", None),
          ("x86_64", None)]  # fmt: skip


@pytest.mark.parametrize(("arch", "cpu"), MODELS, ids=[f"{a}-{c or 'default'}" for a, c in MODELS])
def test_each_broken_step_is_reported_with_its_rule(arch: str, cpu: str | None, tmp_path: Path) -> None:
    program = build_program(arch, tmp_path)
    commands = [
        f"{{prog}} {variant} {CROSS_ITERATIONS if variant.startswith('cross') else ITERATIONS}"
        for variant in CODEGEN_VARIANTS
    ]
    results, violations = run_sanitized(arch, cpu, tmp_path / "run", commands, program)
    for variant, result in zip(CODEGEN_VARIANTS, results, strict=True):
        # TCG keeps code coherent: even the broken variants compute the right results.
        assert result.verdict == "pass", (variant, result.stderr, result.console_tail)
    model = load_profile(arch).cpu_model(cpu)
    expected = expected_rules(arch, bool(model.idc), bool(model.dic))
    seen, stray = rules_by_code(violations, CODEGEN_VARIANTS, variant_of_pc)
    assert not stray, "outside the generated code (boot or program):\n" + describe_violations(stray)
    for v in violations:
        assert v["space"] == "user" and v["symbol"] is None and v["disasm"] != "(unknown)"
    assert seen == expected


def test_same_program_same_violations_with_one_vcpu(tmp_path: Path) -> None:
    program = build_program("arm64", tmp_path)
    variants = [v for v in CODEGEN_VARIANTS if not v.startswith("cross")]
    commands = [f"{{prog}} {variant} 20" for variant in variants]
    sets = []
    for attempt in range(2):
        run_dir = tmp_path / f"run{attempt}"
        _, violations = run_sanitized("arm64", "cortex-a57", run_dir, commands, program, smp=1)
        # Physical pages may differ between boots, and "insn" is that of the first violating
        # iteration (an interrupt, a real context synchronization, can hide one); the rule, the
        # PC and the line within its page may not differ.
        sets.append({(v["rule"], v["pc"], v["paddr"] % 4096) for v in violations})
    assert sets[0] and sets[0] == sets[1]
