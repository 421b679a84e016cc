"""QEMU command lines built from profiles."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from base.errors import InfraError, InputError
from base.profiles import load_profile
from harness import qemu_cmdline
from harness.qemu_cmdline import LaunchSpec, PluginSpec, Share, build_argv, kernel_append, resolve_accel


def _spec(**overrides: object) -> LaunchSpec:
    values: dict = dict(
        kernel=Path("/img/vmlinuz"), initrd=Path("/img/initramfs.cpio"), cpu="max", smp=2, accel="tcg",
        token="abc123", qmp_socket=Path("/run/1/qmp.sock"),
    )  # fmt: skip
    values.update(overrides)
    return LaunchSpec(**values)


def _option(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


@pytest.mark.parametrize("arch", ["x86_64", "arm64", "riscv64"])
def test_argv_has_machine_console_qmp_and_kernel(arch: str) -> None:
    profile = load_profile(arch)
    argv = build_argv(profile, _spec(cpu=profile.default_cpu))
    assert argv[0] == profile.qemu_binary
    assert _option(argv, "-M") == [profile.machine]
    assert _option(argv, "-cpu") == [profile.cpu_model(None).qemu_cpu()]
    assert _option(argv, "-cpu")[0].split(",")[0] == profile.default_cpu
    assert _option(argv, "-smp") == ["2"]
    assert _option(argv, "-m") == [str(profile.memory_mb)]
    assert _option(argv, "-accel") == [f"tcg,thread={profile.tcg_thread}"]
    assert _option(argv, "-serial") == ["chardev:console"]
    assert "socket,id=qmp,path=/run/1/qmp.sock,server=on,wait=off" in _option(argv, "-chardev")
    assert _option(argv, "-mon") == ["chardev=qmp,mode=control"]
    assert _option(argv, "-kernel") == ["/img/vmlinuz"] and _option(argv, "-initrd") == [
        "/img/initramfs.cpio"
    ]
    assert "-no-reboot" in argv and "-nodefaults" in argv
    append = _option(argv, "-append")[0]
    assert append.startswith(f"console={profile.console} ") and "jitprobe.token=abc123" in append
    assert ("-bios" in argv) == (profile.bios is not None)


def test_x86_64_uses_qboot() -> None:
    assert _option(build_argv(load_profile("x86_64"), _spec()), "-bios") == ["qboot.rom"]


def test_shares_become_fsdev_and_9p_device() -> None:
    profile = load_profile("arm64")
    shares = (
        Share("modules", Path("/cache/lib/modules/6.12"), readonly=True),
        Share("host", Path("/run/1/share")),
    )
    argv = build_argv(profile, _spec(shares=shares))
    assert _option(argv, "-fsdev") == [
        "local,id=fs0,path=/cache/lib/modules/6.12,security_model=none,readonly=on",
        "local,id=fs1,path=/run/1/share,security_model=none",
    ]
    assert _option(argv, "-device") == [
        f"{profile.ninep_device},fsdev=fs0,mount_tag=modules",
        f"{profile.ninep_device},fsdev=fs1,mount_tag=host",
    ]


def test_bad_9p_tag_is_refused() -> None:
    with pytest.raises(InputError, match="9p mount tag"):
        Share("has space", Path("/x"))


def test_plugin_arguments_are_escaped() -> None:
    plugin = PluginSpec(Path("/p/libcoherency.so"), {"arch": "arm64", "out": "/run/a,b/report.jsonl"})
    argv = build_argv(load_profile("arm64"), _spec(plugin=plugin))
    assert _option(argv, "-plugin") == ["/p/libcoherency.so,arch=arm64,out=/run/a,,b/report.jsonl"]


def test_kvm_accel_and_unresolved_auto() -> None:
    profile = load_profile("x86_64")
    assert _option(build_argv(profile, _spec(accel="kvm")), "-accel") == ["kvm"]
    with pytest.raises(InputError, match="resolve 'auto'"):
        build_argv(profile, _spec(accel="auto"))


def test_extra_append_goes_last() -> None:
    profile = load_profile("riscv64")
    assert kernel_append(profile, _spec(extra_append="nokaslr")).endswith("jitprobe.token=abc123 nokaslr")


def test_resolve_accel(monkeypatch: pytest.MonkeyPatch) -> None:
    x86, arm = load_profile("x86_64"), load_profile("arm64")
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    monkeypatch.setattr(qemu_cmdline, "kvm_usable", lambda: True)
    assert resolve_accel(x86, "auto", None) == "kvm"
    assert resolve_accel(arm, "auto", None) == "tcg"  # no KVM for a foreign architecture
    assert resolve_accel(x86, "tcg", None) == "tcg"
    assert resolve_accel(x86, "auto", PluginSpec(Path("/p.so"))) == "tcg"  # plugins need TCG
    with pytest.raises(InputError, match="TCG plugins"):
        resolve_accel(x86, "kvm", PluginSpec(Path("/p.so")))
    with pytest.raises(InfraError, match="KVM cannot run arm64"):
        resolve_accel(arm, "kvm", None)
    round_robin = replace(arm, tcg_thread="single")
    assert resolve_accel(round_robin, "tcg", None) == "tcg"
    with pytest.raises(InputError, match="arm64 profile's accel.tcg_thread: 'single'; valid choices: multi"):
        resolve_accel(round_robin, "tcg", PluginSpec(Path("/p.so")))
    monkeypatch.setattr(qemu_cmdline, "kvm_usable", lambda: False)
    assert resolve_accel(x86, "auto", None) == "tcg"
    with pytest.raises(InputError, match="valid choices: tcg, kvm, auto"):
        resolve_accel(x86, "hvf", None)


def test_a_models_properties_follow_its_name_in_cpu() -> None:
    """x86_64's max leaves out ERMS and FSRM (arch_profiles/x86_64.yaml says why); a model without
    properties is its bare name."""
    profile = load_profile("x86_64")
    assert _option(build_argv(profile, _spec(cpu="max")), "-cpu") == ["max,erms=off,fsrm=off,fsrs=off"]
    assert _option(build_argv(profile, _spec(cpu="Nehalem")), "-cpu") == ["Nehalem"]
