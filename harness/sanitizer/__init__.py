"""The coherency sanitizer: a QEMU TCG plugin and the host side that loads it and reads its reports.

QEMU's TCG keeps translated code coherent with memory, so a guest that skips a cache flush still
runs its new code. The plugin (C, in this folder; built by ``harness.sanitizer.build``) watches
stores and the execution of stored-to bytes and reports every executed instruction that the
architecture does not guarantee to be the new one. Each architecture's rules are named in its
profile (``code_modification.rules``) and checked by its rule file ``arch_<arch>.c``, which cites
the manual sections they follow; harness/sanitizer/README.md explains them. Lines are identified
by physical address.

``plugin_spec`` gives the ``-plugin`` argument for a guest; ``read_violations`` turns the
plugin's report into the violation objects of the CLI contract. Design, exemptions and limits:
harness/sanitizer/README.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from base.contract import Violation
from base.errors import InfraError, InputError
from base.profiles import load_profile
from harness.guest import GUEST_SHARE, Guest
from harness.qemu_cmdline import PluginSpec

__all__ = [
    "KALLSYMS_NAME",
    "REPORT_NAME",
    "check_ctr_el0",
    "kernel_violations_seen",
    "plugin_spec",
    "read_report",
    "read_violations",
    "save_kernel_symbols",
]

REPORT_NAME = "sanitizer.jsonl"


def plugin_spec(arch: str, cpu: str | None, run_dir: Path, memory_mb: int | None = None) -> PluginSpec:
    """The sanitizer plugin for a guest of ``arch``/``cpu`` whose report goes to ``run_dir``.

    ``cpu`` None means the profile's default model; ``memory_mb`` None the profile's memory size
    (pass the guest's ``-m`` when it differs). Builds the plugin when needed. Raises InputError
    for an unknown arch or CPU model, or a memory size larger than the one physical block the
    plugin models (profile ``qemu.ram_block_mb``), and InfraError when the plugin cannot be
    built or the model lacks a field the plugin needs (``code_modification.plugin_cpu_args``).
    """
    from harness.sanitizer.build import ensure_plugin

    profile = load_profile(arch)
    model = profile.cpu_model(cpu)
    mb = memory_mb or profile.memory_mb
    if profile.ram_block_mb is not None and mb > profile.ram_block_mb:
        raise InputError(
            f"guest memory (MiB) with --sanitize on {arch}", mb, hint=f"at most {profile.ram_block_mb}"
        )
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    args = {
        "arch": arch,
        "out": str(run_dir / REPORT_NAME),
        "ram_base": hex(profile.ram_base),
        "ram_size": hex(mb << 20),
    }
    for name in profile.code_modification.plugin_cpu_args:
        value = getattr(model, name, None)
        if not isinstance(value, int) or isinstance(value, bool):
            raise InfraError(f"profile {arch} gives no {name} for CPU model {model.name}")
        if name == "ctr_el0":
            check_ctr_el0(arch, model.name, value)
        args[name] = hex(value)
    return PluginSpec(ensure_plugin(), args)


def check_ctr_el0(arch: str, cpu: str, value: int) -> None:
    """Refuse a CTR_EL0 the plugin would refuse, before QEMU starts: a 32-bit value whose DminLine
    (bits 19:16) and IminLine (bits 3:0) give lines of 8 bytes to 2 KiB. Raises InfraError naming
    the argument, its value and the valid range (the profile is the project's data)."""
    dmin, imin = (value >> 16) & 0xF, value & 0xF
    if not (0 <= value < 1 << 32 and 1 <= dmin <= 9 and 1 <= imin <= 9):
        raise InfraError(
            f"sanitizer argument ctr_el0={value:#x} (profile {arch}, CPU model {cpu}) is not valid: "
            "expected a 32-bit CTR_EL0 whose DminLine (bits 19:16) and IminLine (bits 3:0) are 1 to 9"
        )


def read_report(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The raw violation records (highest count per key) and the exit summary (None if QEMU died).

    Raises InfraError when the report is missing or not JSON lines, or says the plugin refused to
    check (at once, so a guest still running is refused too: round-robin TCG).
    """
    path = Path(run_dir) / REPORT_NAME
    if not path.is_file():
        raise InfraError(f"the sanitizer wrote no report at {path} (was the plugin loaded?)")
    records: dict[tuple[str, str, str], dict[str, Any]] = {}
    summary = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InfraError(f"{path}:{number}: not JSON: {exc}") from exc
        if rec.get("kind") == "refused":
            raise InfraError(f"the sanitizer checked nothing: {rec['why']}")
        if rec.get("kind") == "summary":
            summary = rec
        elif rec.get("kind") == "violation":
            key = (rec["rule"], rec["pc"], rec["paddr"])
            if key not in records or rec["count"] > records[key]["count"]:
                records[key] = rec
    return list(records.values()), summary


def read_violations(
    run_dir: Path, arch: str, binaries: Sequence[Path] = (), system_map: Path | None = None
) -> list[Violation]:
    """The contract's violation objects from the report in ``run_dir``, sorted by rule and pc.

    Each has rule, pc, vcpu, paddr, insn (hex bytes), disasm (capstone), symbol (from the ELF
    symbols of ``binaries`` for user PCs and ``system_map`` for kernel PCs, else None),
    writer_pc, writer_vcpu, count and space, and events (what the judgement rested on) when the
    plugin recorded them. Raises InputError for an unknown arch and
    InfraError when the report is missing or damaged, or the plugin never learnt where guest
    RAM lives or refused to check (then it checked nothing).
    """
    load_profile(arch)
    from harness.sanitizer.symbols import Symbolizer, disassemble

    records, summary = read_report(run_dir)
    if summary is not None and not summary.get("calibrated"):
        raise InfraError("the sanitizer never located guest RAM (no calibration): nothing was checked")
    if summary is not None and summary.get("events_overflowed"):
        raise InfraError(
            f"the sanitizer ran out of event numbers ({summary['events']}): its verdicts are void"
        )
    symbols = Symbolizer(binaries, system_map)
    out: list[Violation] = []
    for rec in records:
        pc = int(rec["pc"], 16)
        insn = bytes.fromhex(rec["insn"])
        violation: Violation = {
            "rule": rec["rule"],
            "pc": pc,
            "vcpu": rec["vcpu"],
            "paddr": int(rec["paddr"], 16),
            "insn": rec["insn"],
            "disasm": disassemble(arch, insn, pc),
            "symbol": symbols.lookup(pc, kernel=rec["space"] == "kernel"),
            "writer_pc": int(rec["writer_pc"], 16),
            "writer_vcpu": rec["writer_vcpu"],
            "count": rec["count"],
            "space": rec["space"],
        }
        if isinstance(rec.get("events"), dict):
            violation["events"] = rec["events"]
        out.append(violation)
    return sorted(out, key=lambda v: (v["rule"], v["pc"], v["paddr"]))


def kernel_violations_seen(run_dir: Path) -> bool:
    """Whether the plugin has reported a violation at a kernel PC so far (it appends each first
    occurrence at once). Only then are the guest's kernel symbols worth dumping: the dump costs a
    second or more of a sanitized guest. A torn last line (QEMU still writing) is ignored."""
    path = Path(run_dir) / REPORT_NAME
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("kind") == "violation" and rec.get("space") == "kernel":
            return True
    return False


KALLSYMS_NAME = "kallsyms"


def save_kernel_symbols(guest: Guest) -> Path | None:
    """Dump the running guest's /proc/kallsyms into its share and return the host path.

    Debian's System.map is a stub, and kallsyms also covers KASLR and loaded modules, so this is
    what ``read_violations`` should get as ``system_map``. Returns None when the guest could not
    write it (the violations then carry no kernel symbols). Raises InfraError if the guest is not
    running."""
    result = guest.run(f"cat /proc/kallsyms > {GUEST_SHARE}/{KALLSYMS_NAME}", timeout=120)
    path = guest.share_dir / KALLSYMS_NAME
    return path if result.verdict == "pass" and path.is_file() else None
