"""The kernel's own code patching, deliberately broken: a kernel module that patches its own text.

harness/kernel_modules builds tests/kernel_modules/text_patch against Debian's headers of the
guest kernel (pinned in harness/kernel_modules/packages.lock.json) with the host's cross gcc. The
kernel scenario module_text_patch (tests/stress/kernel/) loads it in a sanitized riscv64 guest:
with the kernel's patch_text_nosync (the write, then a FENCE.I on every hart) the guest must
sanitize clean; with the no_icache_flush mutation (patch_insn_write alone: only the writing hart
fences) the call on the other CPU must be reported as riscv64.no_fence_i, a kernel-mode
judgement. Both cells must also get the function's new result (7) on both CPUs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from base.profiles import available_arches, load_profile
from harness import kernel_modules
from harness.stress.runner import Selection, plan, run_jobs
from harness.stress.scenarios import KernelScenario, ScenarioError, load_suite, parse_kernel

ARCH = "riscv64"
SCENARIO = "module_text_patch"
CROSS_GCC = f"{load_profile(ARCH).gnu_triplet}-gcc"
needs_cross_gcc = pytest.mark.skipif(shutil.which(CROSS_GCC) is None,
                                     reason=f"{CROSS_GCC} not installed (run `make setup`)")  # fmt: skip


def _scenario() -> KernelScenario:
    (scenario,) = [s for s in load_suite("kernel") if s.name == SCENARIO]
    assert isinstance(scenario, KernelScenario)
    return scenario


def test_the_lock_pins_a_module_build_for_every_guest_kernel() -> None:
    for arch in available_arches():
        pins = kernel_modules.pins_for(arch)
        kernel, version = kernel_modules.kernel_release(arch)
        assert set(pins) == set(kernel_modules.ROLES)
        assert pins["headers"].version == pins["kbuild"].version == version
        assert pins["headers"].package == kernel.replace("linux-image-", "linux-headers-", 1)


def test_the_scenario_states_its_mutation_on_riscv64() -> None:
    scenario = _scenario()
    assert scenario.module == "text_patch" and scenario.arches == (ARCH,)
    assert scenario.expect == {"no_icache_flush": {ARCH: ("riscv64.no_fence_i",)}}


def test_a_bad_kernel_module_field_is_refused() -> None:
    data = {"name": "k", "description": "d", "command": "true", "timeout_s": 10, "expect_stdout": [],
            "arches": [ARCH], "module": "text_patch", "mutations": ["no_icache_flush"],
            "expect": {"no_icache_flush": {"why": "w", ARCH: ["riscv64.no_fence_i"]}}}  # fmt: skip
    assert parse_kernel(data, Path("k.yaml")).mutations == ("no_icache_flush",)
    with pytest.raises(ScenarioError, match=r"k.yaml: field 'module': unknown kernel module 'nope'; "
                       r"expected one of text_patch"):  # fmt: skip
        parse_kernel({**data, "module": "nope"}, Path("k.yaml"))
    with pytest.raises(ScenarioError, match=r"field 'mutations': unknown mutation 'skip_sync'; "
                       r"expected some of no_icache_flush"):  # fmt: skip
        parse_kernel({**data, "mutations": ["skip_sync"]}, Path("k.yaml"))
    with pytest.raises(ScenarioError, match=r"field 'expect.no_icache_flush': missing"):
        parse_kernel({**data, "expect": {"no_icache_flush": {"why": "w"}}}, Path("k.yaml"))
    with pytest.raises(ScenarioError, match=r"field 'expect.no_icache_flush.arm64': the scenario does not "
                       rf"run on arm64; expected one of {ARCH}"):  # fmt: skip
        parse_kernel({**data, "expect": {"no_icache_flush": {"why": "w", "arm64": ["arm64.no_dsb"]}}},
                     Path("k.yaml"))
    with pytest.raises(ScenarioError, match=r"unknown rule 'riscv64.nope' for riscv64"):
        parse_kernel({**data, "expect": {"no_icache_flush": {"why": "w", ARCH: ["riscv64.nope"]}}},
                     Path("k.yaml"))


@needs_cross_gcc
def test_the_module_builds_for_the_guest_kernel() -> None:
    ko = kernel_modules.build("text_patch", ARCH)
    release = kernel_modules.pins_for(ARCH)["headers"].package.removeprefix("linux-headers-")
    data = ko.read_bytes()
    assert data[:4] == b"\x7fELF" and f"vermagic={release} ".encode() in data
    assert kernel_modules.build("text_patch", ARCH) == ko  # cached


@pytest.mark.qemu
@needs_cross_gcc
def test_kernel_text_patched_without_the_remote_fence_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`jitprobe run --suite kernel --arch riscv64 --scenario module_text_patch`: the correct cell
    is clean, the mutation is caught with riscv64.no_fence_i at the patched word, in kernel mode,
    run on CPU 1 after CPU 0 wrote it; both cells return 7 on both CPUs (expect_stdout)."""
    monkeypatch.setenv("JITPROBE_RUNS", str(tmp_path))
    jobs = plan({"kernel": [_scenario()]}, [ARCH], None)
    results = {r["mutation"]: r for r in run_jobs(jobs, Selection(), tmp_path / "results", workers=1)}
    assert set(results) == {"none", "no_icache_flush"}
    for cell in results.values():
        assert cell["verdict"] == "pass", (cell["mutation"], cell["detail"], cell["run_dir"])
    clean = results["none"]
    assert clean["observed"] == "clean" and clean["violations"] == [] and clean["exit_code"] == 0
    caught = results["no_icache_flush"]
    assert caught["observed"] == "caught" and caught["observed_rules"] == ["riscv64.no_fence_i"]
    (v,) = caught["violations"]
    assert (v["space"], v["symbol"], v["disasm"]) == ("kernel", "jp_target", "addi a0, zero, 7")
    assert (v["vcpu"], v["writer_vcpu"]) == (1, 0)
