"""Architecture profiles: the shipped ones load, and bad files are refused with a precise message."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from base.errors import InputError
from base.profiles import (
    PROFILES_DIR,
    ProfileError,
    available_arches,
    expand_arch,
    load_profile,
    load_profile_file,
)


def _write(tmp_path: Path, arch: str, data: object) -> Path:
    path = tmp_path / f"{arch}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _shipped(arch: str = "arm64") -> dict:
    return yaml.safe_load((PROFILES_DIR / f"{arch}.yaml").read_text())


def test_shipped_profiles_are_discovered_and_valid() -> None:
    assert available_arches() == ["arm64", "riscv64", "x86_64"]
    for arch in available_arches():
        profile = load_profile(arch)
        assert profile.arch == arch
        assert profile.default_cpu in profile.cpus
        assert profile.timeouts.boot_s > 0 and profile.slowdown > 0


def test_arm64_models_carry_ctr_el0_and_idc_dic() -> None:
    cpus = load_profile("arm64").cpus
    assert {"cortex-a57", "neoverse-n1", "neoverse-v1", "max"} <= set(cpus)
    for model in cpus.values():
        assert model.ctr_el0 is not None
        assert model.idc == bool(model.ctr_el0 >> 28 & 1) and model.dic == bool(model.ctr_el0 >> 29 & 1)
    assert (cpus["cortex-a57"].idc, cpus["cortex-a57"].dic) == (False, False)
    assert (cpus["neoverse-n1"].idc, cpus["neoverse-n1"].dic) == (True, False)
    assert (cpus["neoverse-v1"].idc, cpus["neoverse-v1"].dic) == (True, True)


def test_a_new_profile_file_is_a_new_architecture(tmp_path: Path) -> None:
    data = _shipped("riscv64")
    data["arch"] = "riscv64be"
    _write(tmp_path, "riscv64be", data)
    assert available_arches(tmp_path) == ["riscv64be"]
    assert load_profile("riscv64be", tmp_path).qemu_binary == "qemu-system-riscv64"
    assert expand_arch("all", tmp_path) == ["riscv64be"]


def test_unknown_arch_lists_the_valid_ones() -> None:
    with pytest.raises(InputError) as err:
        load_profile("mips")
    assert "'mips'" in str(err.value) and "arm64, riscv64, x86_64" in str(err.value)
    assert err.value.exit_code == 2


def test_unknown_cpu_lists_the_known_models() -> None:
    with pytest.raises(InputError) as err:
        load_profile("arm64").cpu_model("cortex-a53")
    assert "cortex-a53" in str(err.value) and "neoverse-n1" in str(err.value)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d.pop("console"), "missing field 'console'"),
        (lambda d: d["qemu"].pop("binary"), "missing field 'qemu.binary'"),
        (
            lambda d: d.update(memory_mb="1G"),
            "field 'memory_mb' (guest memory in MiB): expected an integer, got '1G'",
        ),
        (
            lambda d: d.update(smp=True),
            "field 'smp' (default number of vCPUs): expected an integer, got True",
        ),
        (lambda d: d.update(smp=0), "field 'smp': expected at least 1, got 0"),
        (lambda d: d["timeouts"].update(boot_s="slow"), "field 'timeouts.boot_s'"),
        (lambda d: d["timeouts"].update(boot_s=float("nan")),
         "'timeouts.boot_s' (from QEMU start to the readiness marker): expected a finite number, got nan"),
        (lambda d: d.update(slowdown=float("inf")), "field 'slowdown' (factor applied to every time limit): "
         "expected a finite number, got inf"),
        (
            lambda d: d["accel"].update(default="hvf"),
            "field 'accel.default': expected one of tcg, kvm, auto, got 'hvf'",
        ),
        (lambda d: d.update(memroy_mb=1), "unknown field 'memroy_mb'"),
        (lambda d: d["cpu"].update(default="cortex-a53"), "field 'cpu.default': expected one of cpu.models"),
        (lambda d: d["cpu"]["models"]["max"].update(idc="yes"), "field 'cpu.models.max.idc'"),
        (lambda d: d["cpu"].update(models={}), "field 'cpu.models' must not be empty"),
        (lambda d: d.update(host_machines="aarch64"), "field 'host_machines'"),
        (
            lambda d: d.update(arch="aarch64"),
            "field 'arch': expected 'arm64' (the file's name), got 'aarch64'",
        ),
    ],
)
def test_invalid_profile_names_file_field_and_expectation(tmp_path: Path, edit, expected: str) -> None:
    data = _shipped()
    edit(data)
    path = _write(tmp_path, "arm64", data)
    with pytest.raises(ProfileError) as err:
        load_profile_file(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)
    assert err.value.exit_code == 3


def test_not_a_mapping_and_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "arm64.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ProfileError, match="top level must be a mapping"):
        load_profile_file(path)
    path.write_text("arch: [unclosed\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile_file(path)


def test_slowdown_scales_every_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    profile = load_profile("riscv64")
    monkeypatch.delenv("JITPROBE_SLOWDOWN", raising=False)
    assert profile.scaled(10) == pytest.approx(10 * profile.slowdown)
    monkeypatch.setenv("JITPROBE_SLOWDOWN", "2.5")
    assert profile.scaled(10) == pytest.approx(25 * profile.slowdown)
    monkeypatch.setenv("JITPROBE_SLOWDOWN", "fast")
    with pytest.raises(InputError, match="JITPROBE_SLOWDOWN"):
        profile.scaled(1)
