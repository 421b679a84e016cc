"""Architecture profiles: one YAML file per guest architecture under arch_profiles/.

A profile holds every fact about an architecture that is data: how to boot it (QEMU binary
and package, machine, RAM base, CPU models, console, kernel command line, memory, vCPUs,
accelerator, time limits), its ELF machine, Debian names, capstone mode, system call numbers,
and its rules for making stored code executable (``code_modification``). Profiles are
discovered by listing ``arch_profiles/*.yaml``, so every list of architectures comes from there.
Every file is checked against PROFILE_SCHEMA on load; a bad file raises ProfileError naming the
file, the field and what was expected.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from base.errors import InfraError, InputError

__all__ = [
    "ACCELS",
    "CPU_MODEL_SCHEMA",
    "PROFILES_DIR",
    "PROFILE_SCHEMA",
    "SLOWDOWN_ENV",
    "TCG_THREADS",
    "CodeModification",
    "CpuModel",
    "Field",
    "MapOf",
    "Profile",
    "ProfileError",
    "Timeouts",
    "available_arches",
    "env_slowdown",
    "expand_arch",
    "first_rule",
    "load_profile",
    "load_profile_file",
    "parse_profile",
    "validate",
]

PROFILES_DIR = Path(__file__).resolve().parent.parent / "arch_profiles"
SLOWDOWN_ENV = "JITPROBE_SLOWDOWN"
"""Environment variable whose number multiplies every profile's slowdown (for loaded hosts)."""

ACCELS = ("tcg", "kvm", "auto")
MEMORY_MODELS = ("x86-tso", "armv8", "rvwmo")
TCG_THREADS = ("multi", "single")


class ProfileError(InfraError):
    """A profile file is missing, unreadable or does not match PROFILE_SCHEMA."""


@dataclass(frozen=True)
class Field:
    """One entry of a schema: the expected kind of value and what it is for.

    ``kind`` is a Python type (str, int, float, bool), ``list`` (of strings), a nested schema
    (dict of Field) or ``MapOf`` (free keys, each value matching a nested schema or a list).
    """

    kind: Any
    doc: str
    required: bool = True
    choices: tuple[str, ...] | None = None
    minimum: float | None = None


@dataclass(frozen=True)
class MapOf:
    """A mapping with free string keys whose values all match ``schema`` (or are lists of strings)."""

    schema: Mapping[str, Field] | type[list[str]]


CPU_MODEL_SCHEMA: dict[str, Field] = {
    "description": Field(str, "what the model is"),
    # Only for an architecture with a cache type register giving line sizes and coherence bits.
    "ctr_el0": Field(int, "CTR_EL0 value QEMU reports for this model", required=False),
    "idc": Field(bool, "CTR_EL0.IDC (D-side clean to PoU not needed)", required=False),
    "dic": Field(bool, "CTR_EL0.DIC (I-side invalidation not needed)", required=False),
    "qemu_properties": Field(str, "properties after the name in -cpu (features left out)", required=False),
}

PROFILE_SCHEMA: dict[str, Field] = {
    "arch": Field(str, "jitprobe architecture name; must equal the file name's stem"),
    "debian_arch": Field(str, "Debian's name of the architecture (packages of images/)"),
    "host_machines": Field(list, "`uname -m` values of hosts that can run this guest under KVM"),
    "elf_machine": Field(int, "e_machine of the architecture's ELF executables"),
    "elf_flags": Field(int, "e_flags of the architecture's ELF executables"),
    "cross_packages": Field(list, "Debian packages of this guest's binutils and gcc on the host (tests)"),
    "gnu_triplet": Field(str, "GNU triplet: Debian's multiarch folder, prefix of the host's gcc for it"),
    "capstone": Field(
        {
            "arch": Field(str, "capstone's CS_ARCH_* name without the prefix"),
            "mode": Field(list, "capstone's CS_MODE_* names without the prefix, or-ed"),
        },
        "the capstone disassembler of native code",
    ),
    "syscalls": Field(dict, "Linux system call numbers of the calls programs make, by name"),
    "code_modification": Field(
        {
            "rules": Field(list, "the sanitizer's rule names for this architecture"),
            "plugin_cpu_args": Field(list, "CPU-model fields passed to the sanitizer plugin"),
            "executor_sync": Field(bool, "code another CPU wrote needs context_sync on the executing CPU"),
            "writer_only_mutation": Field(str, "the mutation that leaves the executing CPU unsynchronized"),
            "same_thread_reported": Field(
                bool, "a same-thread install with a mutation is reported as the codegen.c variant of its name"
            ),
            "variant_rules": Field(
                MapOf(list), "per broken step: rules, each maybe 'unless <CPU flag>'; the first applies"
            ),
        },
        "making stored code executable",
    ),
    "qemu": Field(
        {
            "binary": Field(str, "QEMU system emulator, looked up on PATH"),
            "machine": Field(str, "QEMU machine type (-M)"),
            "bios": Field(str, "firmware passed with -bios (QEMU finds it by name)", required=False),
            "machine_args": Field(list, "further QEMU arguments for this machine", required=False),
            "ninep_device": Field(str, "QEMU device that exports a 9p share (virtio-9p-pci, ...)"),
            "debian_package": Field(str, "Debian package of the QEMU binary"),
            "ram_base": Field(int, "guest physical address where the machine's RAM starts"),
            "ram_block_mb": Field(
                int, "largest memory the machine keeps in one physical block", required=False, minimum=64
            ),
        },
        "QEMU binary and machine",
    ),
    "cpu": Field(
        {
            "default": Field(str, "CPU model used when none is asked for; one of models"),
            "models": Field(MapOf(CPU_MODEL_SCHEMA), "CPU models known to work, by QEMU name"),
            "stress_models": Field(
                list, "models the stress suites run on (default: the default model); each one of models",
                required=False,
            ),
        },
        "CPU models",
    ),
    "console": Field(str, "guest device of the serial console (ttyS0, ttyAMA0)"),
    "kernel_cmdline": Field(str, "kernel command line (console= and the readiness token are added)"),
    "memory_mb": Field(int, "guest memory in MiB", minimum=64),
    "smp": Field(int, "default number of vCPUs", minimum=1),
    "accel": Field(
        {
            "default": Field(str, "accelerator", choices=ACCELS),
            "tcg_thread": Field(str, "TCG threading", choices=TCG_THREADS),
        },
        "accelerator",
    ),
    "timeouts": Field(
        {
            "boot_s": Field(float, "from QEMU start to the readiness marker", minimum=0.1),
            "command_s": Field(float, "default limit of one guest command", minimum=0.1),
            "stop_s": Field(float, "for QEMU to exit after QMP quit before it is killed", minimum=0.1),
        },
        "time limits in seconds, before the slowdown factor",
    ),
    "slowdown": Field(float, "factor applied to every time limit", minimum=0.01),
    "litmus": Field(
        {
            "memory_model": Field(str, "memory model the compiled code is checked under",
                                  choices=MEMORY_MODELS),
            "headers": Field(list, "first words of this architecture's herdtools7 litmus tests"),
        },
        "memory-ordering checks (litmus); the model and the dialect live in jit_core/<arch>/memory_model.py",
    ),
}


@dataclass(frozen=True)
class CpuModel:
    """A CPU model a profile knows, by its QEMU name."""

    name: str
    description: str
    ctr_el0: int | None = None
    idc: bool | None = None
    dic: bool | None = None
    qemu_properties: str = ""

    def qemu_cpu(self) -> str:
        """The ``-cpu`` value: the name and its properties."""
        return ",".join(p for p in (self.name, self.qemu_properties) if p)


@dataclass(frozen=True)
class CodeModification:
    """An architecture's rules for making stored code executable (profile ``code_modification``)."""

    rules: tuple[str, ...]
    plugin_cpu_args: tuple[str, ...]
    executor_sync: bool
    writer_only_mutation: str
    same_thread_reported: bool
    variant_rules: Mapping[str, tuple[str, ...]]

    def rules_for(self, variant: str, flags: Mapping[str, bool]) -> set[str]:
        """The rules broken step ``variant`` is reported with on a CPU with ``flags`` (empty: none)."""
        return first_rule(self.variant_rules.get(variant, ()), flags)


def first_rule(entries: Sequence[str], flags: Mapping[str, bool]) -> set[str]:
    """The rule of the first of ``entries`` that applies on a CPU with ``flags`` (empty: none).

    Each entry is ``rule`` or ``rule unless <flag>``; it applies when its flag is false (or
    absent from ``flags``)."""
    for entry in entries:
        rule, _, flag = entry.partition(" unless ")
        if not flags.get(flag, False):
            return {rule}
    return set()


@dataclass(frozen=True)
class Timeouts:
    """Time limits in seconds before scaling (see Profile.scaled)."""

    boot_s: float
    command_s: float
    stop_s: float


@dataclass(frozen=True)
class Profile:
    """A validated architecture profile."""

    arch: str
    path: Path
    debian_arch: str
    host_machines: tuple[str, ...]
    elf_machine: int
    elf_flags: int
    cross_packages: tuple[str, ...]
    gnu_triplet: str
    capstone_arch: str
    capstone_mode: tuple[str, ...]
    syscalls: Mapping[str, int]
    code_modification: CodeModification
    qemu_binary: str
    qemu_package: str
    ram_base: int
    ram_block_mb: int | None
    machine: str
    bios: str | None
    machine_args: tuple[str, ...]
    ninep_device: str
    default_cpu: str
    cpus: Mapping[str, CpuModel]
    stress_cpus: tuple[str, ...]
    console: str
    kernel_cmdline: str
    memory_mb: int
    smp: int
    accel: str
    tcg_thread: str
    timeouts: Timeouts
    slowdown: float
    memory_model: str
    litmus_headers: tuple[str, ...]

    def scaled(self, seconds: float) -> float:
        """``seconds`` times the profile's slowdown and the JITPROBE_SLOWDOWN factor.

        Raises InputError if JITPROBE_SLOWDOWN is set but not a positive number."""
        return seconds * self.slowdown * env_slowdown()

    def cpu_model(self, name: str | None) -> CpuModel:
        """The model called ``name`` (the default when None). Raises InputError if unknown."""
        name = name or self.default_cpu
        try:
            return self.cpus[name]
        except KeyError:
            raise InputError(f"CPU model for {self.arch}", name, sorted(self.cpus)) from None

    def kvm_possible(self) -> bool:
        """Whether this host's machine can run the guest under KVM (architecture only)."""
        return platform.machine() in self.host_machines


def env_slowdown() -> float:
    """The JITPROBE_SLOWDOWN factor (1.0 when unset). Raises InputError if it is not positive."""
    raw = os.environ.get(SLOWDOWN_ENV)
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < math.inf:
        raise InputError(SLOWDOWN_ENV, raw, hint="a positive, finite number, e.g. 2.5")
    return value


_CPU_FLAGS = tuple(name for name, f in CPU_MODEL_SCHEMA.items() if f.kind is bool)


def _kind_name(kind: Any) -> str:
    if isinstance(kind, dict):
        return "a mapping"
    if isinstance(kind, MapOf):
        return "a mapping of names to mappings"
    if kind is list:
        return "a list of strings"
    names = {str: "a string", int: "an integer", float: "a finite number", bool: "true or false",
             dict: "a mapping"}
    return names[kind]


def _matches(value: Any, kind: Any) -> bool:
    if kind is float:  # NaN and infinities pass every comparison wrongly: not numbers here
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if isinstance(kind, dict | MapOf):
        return isinstance(value, dict)
    return isinstance(value, kind)


def validate(data: Any, schema: Mapping[str, Field], source: str, prefix: str = "") -> None:
    """Check ``data`` against ``schema``. Raises ProfileError naming source, field and expectation."""
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: {prefix or 'top level'} must be a mapping, got {data!r}")
    for key in data:
        if key not in schema:
            known = ", ".join(schema)
            raise ProfileError(f"{source}: unknown field '{prefix}{key}'; expected one of: {known}")
    for key, field in schema.items():
        where = f"{prefix}{key}"
        if key not in data:
            if field.required:
                expected = _kind_name(field.kind)
                raise ProfileError(f"{source}: missing field '{where}' ({field.doc}): expected {expected}")
            continue
        value = data[key]
        if not _matches(value, field.kind):
            raise ProfileError(
                f"{source}: field '{where}' ({field.doc}): expected {_kind_name(field.kind)}, got {value!r}"
            )
        if field.choices is not None and value not in field.choices:
            raise ProfileError(
                f"{source}: field '{where}': expected one of {', '.join(field.choices)}, got {value!r}"
            )
        if field.minimum is not None and value < field.minimum:
            raise ProfileError(f"{source}: field '{where}': expected at least {field.minimum}, got {value!r}")
        if isinstance(field.kind, dict):
            validate(value, field.kind, source, where + ".")
        elif isinstance(field.kind, MapOf):
            if not value:
                raise ProfileError(f"{source}: field '{where}' must not be empty")
            for name, entry in value.items():
                if isinstance(field.kind.schema, Mapping):
                    validate(entry, field.kind.schema, source, f"{where}.{name}.")
                elif not _matches(entry, list):
                    raise ProfileError(f"{source}: field '{where}.{name}': expected a list of strings")


def parse_profile(data: Any, path: Path) -> Profile:
    """Validate ``data`` (a loaded YAML document) read from ``path`` and build its Profile.

    Raises ProfileError when it does not match PROFILE_SCHEMA or is inconsistent."""
    source = str(path)
    validate(data, PROFILE_SCHEMA, source)
    if data["arch"] != path.stem:
        raise ProfileError(
            f"{source}: field 'arch': expected {path.stem!r} (the file's name), got {data['arch']!r}"
        )
    cpus = {
        name: CpuModel(name=name, **{k: v for k, v in entry.items() if k in CPU_MODEL_SCHEMA})
        for name, entry in data["cpu"]["models"].items()
    }
    unknown_models = sorted(set(data["cpu"].get("stress_models", ())) - set(cpus))
    if unknown_models:
        raise ProfileError(
            f"{source}: field 'cpu.stress_models': {unknown_models} not in cpu.models ({', '.join(cpus)})"
        )
    if data["cpu"]["default"] not in cpus:
        raise ProfileError(
            f"{source}: field 'cpu.default': expected one of cpu.models ({', '.join(cpus)}), "
            f"got {data['cpu']['default']!r}"
        )
    syscalls = data["syscalls"]
    if not all(isinstance(k, str) and _matches(v, int) for k, v in syscalls.items()):
        raise ProfileError(f"{source}: field 'syscalls': expected names mapped to integers")
    modification = data["code_modification"]
    named = {r.partition(" unless ")[0] for rules in modification["variant_rules"].values() for r in rules}
    unknown = named - set(modification["rules"])
    flags = {r.partition(" unless ")[2] for rules in modification["variant_rules"].values() for r in rules}
    bad_flags = sorted(flags - {"", *_CPU_FLAGS})
    if bad_flags:
        raise ProfileError(
            f"{source}: code_modification.variant_rules: unknown CPU flags {bad_flags}; "
            f"expected one of {', '.join(_CPU_FLAGS)}"
        )
    if unknown:
        raise ProfileError(
            f"{source}: code_modification.variant_rules names rules not in code_modification.rules: "
            + ", ".join(sorted(unknown))
        )
    qemu, timeouts = data["qemu"], data["timeouts"]
    return Profile(
        arch=data["arch"],
        path=path,
        debian_arch=data["debian_arch"],
        host_machines=tuple(data["host_machines"]),
        elf_machine=data["elf_machine"],
        elf_flags=data["elf_flags"],
        cross_packages=tuple(data["cross_packages"]),
        gnu_triplet=data["gnu_triplet"],
        capstone_arch=data["capstone"]["arch"],
        capstone_mode=tuple(data["capstone"]["mode"]),
        syscalls=dict(syscalls),
        code_modification=CodeModification(
            rules=tuple(modification["rules"]),
            plugin_cpu_args=tuple(modification["plugin_cpu_args"]),
            executor_sync=modification["executor_sync"],
            writer_only_mutation=modification["writer_only_mutation"],
            same_thread_reported=modification["same_thread_reported"],
            variant_rules={k: tuple(v) for k, v in modification["variant_rules"].items()},
        ),
        qemu_binary=qemu["binary"],
        qemu_package=qemu["debian_package"],
        ram_base=qemu["ram_base"],
        ram_block_mb=qemu.get("ram_block_mb"),
        machine=qemu["machine"],
        bios=qemu.get("bios"),
        machine_args=tuple(qemu.get("machine_args", ())),
        ninep_device=qemu["ninep_device"],
        default_cpu=data["cpu"]["default"],
        cpus=cpus,
        stress_cpus=tuple(data["cpu"].get("stress_models") or [data["cpu"]["default"]]),
        console=data["console"],
        kernel_cmdline=data["kernel_cmdline"],
        memory_mb=data["memory_mb"],
        smp=data["smp"],
        accel=data["accel"]["default"],
        tcg_thread=data["accel"]["tcg_thread"],
        timeouts=Timeouts(float(timeouts["boot_s"]), float(timeouts["command_s"]), float(timeouts["stop_s"])),
        slowdown=float(data["slowdown"]),
        memory_model=data["litmus"]["memory_model"],
        litmus_headers=tuple(data["litmus"]["headers"]),
    )


def load_profile_file(path: Path) -> Profile:
    """Read and validate one profile file. Raises ProfileError if unreadable or invalid."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read profile: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start]
        raise ProfileError(f"{path}: not UTF-8 text (byte {bad:#04x} at offset {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from exc
    return parse_profile(data, path)


def available_arches(directory: Path = PROFILES_DIR) -> list[str]:
    """Architectures with a profile in ``directory``, sorted."""
    return sorted(p.stem for p in directory.glob("*.yaml"))


@cache
def _load_cached(path: Path, mtime_ns: int) -> Profile:
    return load_profile_file(path)


def load_profile(arch: str, directory: Path = PROFILES_DIR) -> Profile:
    """The validated profile of ``arch``.

    Raises InputError listing the available architectures if there is no such profile, and
    ProfileError if its file is invalid."""
    path = directory / f"{arch}.yaml"
    if not path.is_file() or "/" in arch:
        raise InputError("architecture", arch, available_arches(directory))
    return _load_cached(path, path.stat().st_mtime_ns)


def expand_arch(arch: str, directory: Path = PROFILES_DIR) -> list[str]:
    """``arch`` as a list of architectures, with ``all`` meaning every profile. Raises InputError."""
    if arch == "all":
        return available_arches(directory)
    load_profile(arch, directory)
    return [arch]
