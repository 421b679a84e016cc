"""The QEMU command line of a guest, built from its profile and the options of one launch."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from base.errors import InfraError, InputError
from base.profiles import Profile

KVM_DEVICE = "/dev/kvm"
_KVM_GET_API_VERSION = 0xAE00
_KVM_CREATE_VM = 0xAE01
_KVM_API_VERSION = 12
_NINEP_TAG = re.compile(r"^[A-Za-z0-9_.-]{1,31}$")
TOKEN_PARAM = "jitprobe.token"


@dataclass(frozen=True)
class Share:
    """A host directory exported to the guest over virtio-9p under mount tag ``tag``."""

    tag: str
    path: Path
    readonly: bool = False

    def __post_init__(self) -> None:
        if not _NINEP_TAG.match(self.tag):
            raise InputError("9p mount tag", self.tag, hint="1-31 letters, digits, '_', '.', '-'")


@dataclass(frozen=True)
class PluginSpec:
    """A TCG plugin to load: ``-plugin <path>,<key>=<value>,...`` (harness.sanitizer makes them)."""

    path: Path
    args: Mapping[str, str] = field(default_factory=dict)

    def qemu_args(self) -> list[str]:
        """The ``-plugin`` option, with commas in paths and values escaped for QEMU."""
        args = [f"{k}={qemu_escape(v)}" for k, v in self.args.items()]
        return ["-plugin", ",".join([qemu_escape(str(self.path)), *args])]


@dataclass(frozen=True)
class LaunchSpec:
    """What varies between launches of one profile."""

    kernel: Path
    initrd: Path
    cpu: str
    smp: int
    accel: str
    token: str
    qmp_socket: Path
    shares: tuple[Share, ...] = ()
    plugin: PluginSpec | None = None
    memory_mb: int | None = None
    extra_append: str = ""


def qemu_escape(value: str) -> str:
    """``value`` with commas doubled, as QEMU's option parser needs inside key=value lists."""
    return value.replace(",", ",,")


def kvm_usable() -> bool:
    """Whether /dev/kvm opens, speaks API version 12 and creates a VM."""
    try:
        fd = os.open(KVM_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if fcntl.ioctl(fd, _KVM_GET_API_VERSION) != _KVM_API_VERSION:
            return False
        os.close(fcntl.ioctl(fd, _KVM_CREATE_VM, 0))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def resolve_accel(profile: Profile, requested: str | None, plugin: PluginSpec | None) -> str:
    """The accelerator to use: ``tcg`` or ``kvm``.

    ``requested`` (or the profile's default) may be ``auto``: KVM when this host can run the guest
    and /dev/kvm works, TCG otherwise. A plugin needs TCG. Raises InputError for an unknown or
    contradictory request and InfraError when KVM is asked for but unusable."""
    accel = requested or profile.accel
    if accel not in ("tcg", "kvm", "auto"):
        raise InputError("accelerator", accel, ("tcg", "kvm", "auto"))
    if plugin is not None:
        if accel == "kvm":
            raise InputError("accelerator", accel, ("tcg", "auto"), hint="TCG plugins (--sanitize) need TCG")
        if profile.tcg_thread != "multi":
            # round-robin vCPUs run each other's blocks, whose callbacks name the translating vCPU
            raise InputError(f"{profile.arch} profile's accel.tcg_thread", profile.tcg_thread, ("multi",),
                             hint="the sanitizer needs a host thread per vCPU (harness/sanitizer/README.md)")
        return "tcg"
    if accel == "tcg":
        return "tcg"
    usable = profile.kvm_possible() and kvm_usable()
    if accel == "kvm" and not usable:
        raise InfraError(
            f"KVM cannot run {profile.arch} guests here: host machine must be one of "
            f"{', '.join(profile.host_machines) or '(none)'} and {KVM_DEVICE} must work"
        )
    return "kvm" if usable else "tcg"


def kernel_append(profile: Profile, spec: LaunchSpec) -> str:
    """The kernel command line: console, the profile's parameters, the token, extras."""
    token = f"{TOKEN_PARAM}={spec.token}"
    parts = [f"console={profile.console}", profile.kernel_cmdline, token, spec.extra_append]
    return " ".join(p for p in parts if p)


def build_argv(profile: Profile, spec: LaunchSpec) -> list[str]:
    """The QEMU argv for ``spec`` on ``profile``: serial console on stdio, QMP on a unix socket.

    Raises InputError for an accelerator other than tcg or kvm (resolve ``auto`` first)."""
    if spec.accel == "tcg":
        accel = f"tcg,thread={profile.tcg_thread}"
    elif spec.accel == "kvm":
        accel = "kvm"
    else:
        raise InputError("accelerator", spec.accel, ("tcg", "kvm"), hint="resolve 'auto' with resolve_accel")
    argv = [profile.qemu_binary, "-M", profile.machine]
    if profile.bios:
        argv += ["-bios", profile.bios]
    argv += [
        "-accel", accel,
        "-cpu", profile.cpu_model(spec.cpu).qemu_cpu(),
        "-smp", str(spec.smp),
        "-m", str(spec.memory_mb or profile.memory_mb),
        "-nodefaults", "-no-user-config", "-display", "none",
        # A guest reboot (panic=-1 reboots at once) ends QEMU, so a panic shows as end of output.
        "-no-reboot",
        # signal=off: Ctrl-C typed in `jitprobe shell` goes to the guest, not to QEMU.
        "-chardev", "stdio,id=console,signal=off",
        "-serial", "chardev:console",
        # A chardev with path= rather than -qmp unix:PATH: the legacy form splits on '=' too.
        "-chardev", f"socket,id=qmp,path={qemu_escape(str(spec.qmp_socket))},server=on,wait=off",
        "-mon", "chardev=qmp,mode=control",
        "-kernel", str(spec.kernel),
        "-initrd", str(spec.initrd),
        "-append", kernel_append(profile, spec),
    ]  # fmt: skip
    for index, share in enumerate(spec.shares):
        fsdev = f"local,id=fs{index},path={qemu_escape(str(share.path))},security_model=none"
        if share.readonly:
            fsdev += ",readonly=on"
        argv += ["-fsdev", fsdev, "-device", f"{profile.ninep_device},fsdev=fs{index},mount_tag={share.tag}"]
    if spec.plugin is not None:
        argv += spec.plugin.qemu_args()
    argv += list(profile.machine_args)
    return argv


def check_binary(profile: Profile) -> str:
    """Full path of the profile's QEMU binary. Raises InfraError if it is not installed."""
    found = shutil.which(profile.qemu_binary)
    if found is None:
        raise InfraError(
            f"QEMU binary {profile.qemu_binary!r} for {profile.arch} not found on PATH "
            "(run `make run` or `bash ci/setup.sh` to install QEMU 10 from bookworm-backports)"
        )
    return found


__all__ = [
    "LaunchSpec",
    "PluginSpec",
    "Share",
    "build_argv",
    "check_binary",
    "kernel_append",
    "kvm_usable",
    "qemu_escape",
    "resolve_accel",
]
