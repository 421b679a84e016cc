"""The coherency sanitizer: a QEMU TCG plugin and the host side that loads it and reads its reports.

QEMU's TCG keeps translated code coherent with memory, so a guest that skips a cache flush still
runs its new code. The plugin (C, in this folder; built by ``harness.sanitizer.build``) watches
stores and the execution of stored-to bytes and reports every executed instruction that the
architecture does not guarantee to be the new one. Rules, with the manual sections they follow
(details in the arch_*.c sources):

- ``arm64.no_dc_clean``: no DC CVAU (or clean to PoC) covered the line after the store, and
  CTR_EL0.IDC=0.
- ``arm64.no_ic_invalidate``: no IC IVAU / IC IALLUIS (or IC IALLU on the executing PE) after
  the store, and CTR_EL0.DIC=0.
- ``arm64.no_dsb``: the clean (with IDC=1: the store) or the invalidation was not completed by a
  DSB of the PE that issued it, or the invalidation came before that DSB.
- ``arm64.no_isb``: the executing PE had no context synchronization (ISB, exception entry,
  ERET) after the last DSB.
- ``riscv64.no_fence_i``: the executing hart ran no FENCE.I after the store.
- ``x86_64.no_serialize``: another CPU stored the bytes and the executing CPU ran no serializing
  instruction since.

Arm ARM (DDI 0487) "Concurrent modification and execution of instructions" and "Instruction
cache maintenance"; RISC-V unprivileged ISA, "Zifencei"; Intel SDM Vol. 3A "Handling Self- and
Cross-Modifying Code". Instructions another CPU may see old-or-new while they are patched
(arm64 B/BL/NOP/BRK/SVC/HVC/SMC/ISB, riscv64 NOP/JAL as Linux patches them, x86_64 INT3) are not
checked, and x86_64 same-CPU modification is legal. Lines are identified by physical address.

``plugin_spec`` gives the ``-plugin`` argument for a guest; ``read_violations`` turns the
plugin's report into the violation objects of the CLI contract. Design, exemptions and limits:
harness/sanitizer/README.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from base.errors import InfraError, InputError
from harness.guest import GUEST_SHARE, Guest
from harness.qemu_cmdline import PluginSpec

REPORT_NAME = "sanitizer.jsonl"
RULES = (
    "arm64.no_dc_clean",
    "arm64.no_ic_invalidate",
    "arm64.no_dsb",
    "arm64.no_isb",
    "riscv64.no_fence_i",
    "x86_64.no_serialize",
)
ARCHES = ("arm64", "riscv64", "x86_64")

# Guest RAM's physical base for each machine the profiles use (arm64/riscv64 `virt`, x86_64 q35).
RAM_BASE = {"arm64": 0x4000_0000, "riscv64": 0x8000_0000, "x86_64": 0}
# q35 keeps RAM in one block below 4 GiB only up to 2816 MiB; the plugin models one block.
X86_64_MAX_RAM_MB = 2816


def plugin_spec(arch: str, cpu: str | None, run_dir: Path, memory_mb: int | None = None) -> PluginSpec:
    """The sanitizer plugin for a guest of ``arch``/``cpu`` whose report goes to ``run_dir``.

    ``cpu`` None means the profile's default model; ``memory_mb`` None the profile's memory size
    (pass the guest's ``-m`` when it differs). Builds the plugin when needed. Raises InputError
    for an unknown arch or CPU model, or an x86_64 memory size the plugin cannot model, and
    InfraError when the plugin cannot be built or the profile lacks the model's CTR_EL0.
    """
    from base.profiles import load_profile
    from harness.sanitizer.build import ensure_plugin

    if arch not in ARCHES:
        raise InputError("architecture", arch, ARCHES)
    profile = load_profile(arch)
    model = profile.cpu_model(cpu)
    mb = memory_mb or profile.memory_mb
    if arch == "x86_64" and mb > X86_64_MAX_RAM_MB:
        raise InputError(
            "guest memory (MiB) with --sanitize on x86_64", mb, hint=f"at most {X86_64_MAX_RAM_MB}"
        )
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    args = {
        "arch": arch,
        "out": str(run_dir / REPORT_NAME),
        "ram_base": hex(RAM_BASE[arch]),
        "ram_size": hex(mb << 20),
    }
    if arch == "arm64":
        if model.ctr_el0 is None:
            raise InfraError(f"profile arm64 gives no ctr_el0 for CPU model {model.name}")
        args["ctr_el0"] = hex(model.ctr_el0)
    return PluginSpec(ensure_plugin(), args)


def read_report(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The raw violation records (highest count per key) and the exit summary (None if QEMU died).

    Raises InfraError when the report is missing or not JSON lines.
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
        if rec.get("kind") == "summary":
            summary = rec
        elif rec.get("kind") == "violation":
            key = (rec["rule"], rec["pc"], rec["paddr"])
            if key not in records or rec["count"] > records[key]["count"]:
                records[key] = rec
    return list(records.values()), summary


def read_violations(
    run_dir: Path, arch: str, binaries: Sequence[Path] = (), system_map: Path | None = None
) -> list[dict[str, Any]]:
    """The contract's violation objects from the report in ``run_dir``, sorted by rule and pc.

    Each has rule, pc, vcpu, paddr, insn (hex bytes), disasm (capstone), symbol (from the ELF
    symbols of ``binaries`` for user PCs and ``system_map`` for kernel PCs, else None),
    writer_pc, writer_vcpu, count and space. Raises InputError for an unknown arch and
    InfraError when the report is missing or damaged, or the plugin never learnt where guest
    RAM lives (then it checked nothing).
    """
    if arch not in ARCHES:
        raise InputError("architecture", arch, ARCHES)
    from harness.sanitizer.symbols import Symbolizer, disassemble

    records, summary = read_report(run_dir)
    if summary is not None and not summary.get("calibrated"):
        raise InfraError("the sanitizer never located guest RAM (no calibration): nothing was checked")
    symbols = Symbolizer(binaries, system_map)
    out = []
    for rec in records:
        pc = int(rec["pc"], 16)
        insn = bytes.fromhex(rec["insn"])
        out.append(
            {
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
        )
    return sorted(out, key=lambda v: (v["rule"], v["pc"], v["paddr"]))


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
