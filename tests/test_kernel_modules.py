"""The kernel's own code patching, deliberately broken: a kernel module that patches its own text.

harness/kernel_modules builds tests/kernel_modules/text_patch against Debian's headers of the
guest kernel (pinned in harness/kernel_modules/packages.lock.json) with the host's cross gcc. The
kernel scenario module_text_patch (tests/stress/kernel/) loads it in sanitized guests. riscv64:
with the kernel's patch_text_nosync (the write, then a FENCE.I on every hart) the guest must
sanitize clean; with the no_icache_flush mutation (patch_insn_write alone: only the writing hart
fences) the call on the other CPU must be reported as riscv64.no_fence_i, a kernel-mode
judgement. arm64: aarch64_insn_patch_text_nosync is clean; aarch64_insn_write alone is
no_dc_clean without IDC, no_ic_invalidate with IDC but not DIC, and no bug with both. Every cell
must also get the function's new result (7) on both CPUs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from base.profiles import available_arches, load_profile
from harness import kernel_modules
from harness.stress.runner import Selection, plan, run_jobs
from harness.stress.scenarios import KernelScenario, ScenarioError, expected_rules, load_suite, parse_kernel

ARCH = "riscv64"
SCENARIO = "module_text_patch"


def _needs_cross_gcc(arch: str) -> pytest.MarkDecorator:
    gcc = f"{load_profile(arch).gnu_triplet}-gcc"
    return pytest.mark.skipif(shutil.which(gcc) is None, reason=f"{gcc} not installed (run `make setup`)")


# (architecture, CPU model, the rule the mutation must be reported with; None: clean)
CELLS = [
    (ARCH, "rv64", "riscv64.no_fence_i"),
    ("arm64", "cortex-a57", "arm64.no_dc_clean"),  # neither IDC nor DIC
    ("arm64", "neoverse-n1", "arm64.no_ic_invalidate"),  # IDC, no DIC
    ("arm64", "max", None),  # IDC and DIC: a DSB and a context synchronization suffice
]


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


def test_the_scenario_states_its_mutation_per_cpu() -> None:
    scenario = _scenario()
    assert scenario.module == "text_patch" and set(scenario.arches) == {ARCH, "arm64"}
    for arch, cpu, rule in CELLS:
        assert expected_rules(scenario, arch, cpu, "no_icache_flush") == ({rule} if rule else set())
        assert expected_rules(scenario, arch, cpu, "none") == set()


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


@pytest.mark.parametrize("arch", [pytest.param(a, marks=_needs_cross_gcc(a)) for a in (ARCH, "arm64")])
def test_the_module_builds_for_the_guest_kernel(arch: str) -> None:
    ko = kernel_modules.build("text_patch", arch)
    release = kernel_modules.pins_for(arch)["headers"].package.removeprefix("linux-headers-")
    data = ko.read_bytes()
    assert data[:4] == b"\x7fELF" and f"vermagic={release} ".encode() in data
    assert kernel_modules.build("text_patch", arch) == ko  # cached


@pytest.mark.qemu
@pytest.mark.parametrize(("arch", "cpu", "rule"),
                         [pytest.param(*c, marks=_needs_cross_gcc(c[0])) for c in CELLS],
                         ids=[f"{a}-{c}" for a, c, _ in CELLS])  # fmt: skip
def test_kernel_text_patched_without_the_icache_flush_is_caught(
    arch: str, cpu: str, rule: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`jitprobe run --suite kernel --arch <arch> --cpu <cpu> --scenario module_text_patch`: the
    correct cell is clean; the mutation is caught with its rule at the patched word, in kernel
    mode, run on CPU 1 after CPU 0 wrote it (or clean where the CPU needs no maintenance); every
    cell returns 7 on both CPUs (expect_stdout)."""
    monkeypatch.setenv("JITPROBE_RUNS", str(tmp_path))
    jobs = plan({"kernel": [_scenario()]}, [arch], cpu)
    results = {r["mutation"]: r for r in run_jobs(jobs, Selection(), tmp_path / "results", workers=1)}
    assert set(results) == {"none", "no_icache_flush"}
    for cell in results.values():
        assert cell["verdict"] == "pass", (cell["mutation"], cell["detail"], cell["run_dir"])
        assert cell["exit_code"] == 0
    assert results["none"]["observed"] == "clean" and results["none"]["violations"] == []
    caught = results["no_icache_flush"]
    if rule is None:
        assert caught["observed"] == "clean" and caught["violations"] == []
        return
    assert caught["observed"] == "caught" and caught["observed_rules"] == [rule]
    (v,) = caught["violations"]
    assert (v["space"], v["symbol"], v["vcpu"], v["writer_vcpu"]) == ("kernel", "jp_target", 1, 0)
    assert v["disasm"] in ("addi a0, zero, 7", "mov w0, #7")
