"""What a maintainer needs to act on a failure without re-running it: the code around the stale
instruction, the sanitizer's events for its line and the console excerpt.

The stress programs are deterministic (harness.stress.programs): the program of a cell is rebuilt
from its scenario, architecture, mutation, slot and seed, and the code it installs at the slot a
violation's PC lies in is disassembled around that PC. The slot is the PC's (JIT_BASE + k *
JIT_STRIDE, harness.icache), so nothing needs to be recorded beyond the violation itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from base.disasm import disassembler
from base.errors import JitprobeError
from harness.icache import JIT_BASE, JIT_STRIDE, MAX_INDEX
from harness.stress.programs import REGION, build_program, installed_code
from harness.stress.scenarios import IcacheScenario, load_suite
from jit_core.errors import JitError

__all__ = ["AsmLine", "Disassembly", "console_excerpt", "disassemble_around", "events"]


@dataclass(frozen=True)
class AsmLine:
    address: int
    hex: str
    text: str
    marked: bool


@dataclass(frozen=True)
class Disassembly:
    """The code around a violation's PC; ``source`` says where the bytes came from."""

    lines: tuple[AsmLine, ...]
    source: str


def _scenario(cell: Mapping[str, Any]) -> IcacheScenario | None:
    if cell.get("suite") != "icache":
        return None
    try:
        found = [s for s in load_suite("icache") if s.name == cell.get("scenario")]
    except JitprobeError:
        return None
    return found[0] if found and isinstance(found[0], IcacheScenario) else None


def disassemble_around(
    cell: Mapping[str, Any], violation: Mapping[str, Any], context: int = 6
) -> Disassembly | None:
    """The instructions around ``violation``'s PC (it marked), from the rebuilt stress program of
    ``cell`` when the PC lies in a code slot; else the violation's own instruction only; None when
    there is nothing to show."""
    pc, arch = violation.get("pc"), str(cell.get("arch", ""))
    if not isinstance(pc, int):
        return None
    index, _ = divmod(pc - JIT_BASE, JIT_STRIDE)
    scenario = _scenario(cell)
    if scenario is not None and violation.get("space") == "user" and pc >= JIT_BASE and index < MAX_INDEX:
        seed = cell.get("seed")
        try:
            build_program(scenario, arch, str(cell.get("mutation", "none")), index,
                          seed if isinstance(seed, int) else None)  # fmt: skip
            mutation = str(cell.get("mutation", "none"))
            address, *generations = installed_code(
                scenario, arch, index, seed if isinstance(seed, int) else None, mutation
            )
        except (JitprobeError, JitError):
            generations, address = [], 0
        offset = pc - address
        insn = bytes.fromhex(str(violation.get("insn") or ""))
        for number, code in enumerate(generations):
            if 0 <= offset < min(len(code), REGION) and code[offset : offset + len(insn)] == insn:
                lines = [
                    AsmLine(i.address, i.bytes.hex(), f"{i.mnemonic} {i.op_str}".strip(), i.address == pc)
                    for i in disassembler(arch).disasm(code, address)
                ]
                at = next((k for k, line in enumerate(lines) if line.marked), None)
                if at is None:
                    break
                chosen = lines[max(0, at - context) : at + context + 1]
                return Disassembly(
                    tuple(chosen),
                    f"rebuilt {scenario.name} ({cell.get('mutation')}) slot {index}, generation {number + 1} "
                    f"of the installed function at {address:#x}",
                )
    if violation.get("disasm"):
        line = AsmLine(pc, str(violation.get("insn") or ""), str(violation["disasm"]), True)
        return Disassembly((line,), "the sanitizer's report (the code is not one of the stress programs')")
    return None


def _hexa(value: Any) -> str:
    return f"{value:#x}" if isinstance(value, int) else str(value)


def _maintenance(kind: str, records: Any) -> str:
    if not isinstance(records, list) or not records:
        return f"{kind} seen: none"
    seen = ", ".join(
        f"event {r.get('event')} on vCPU {r.get('vcpu')} by "
        f"{'the kernel' if r.get('kernel') else 'the program'} (thread {r.get('thread')})"
        for r in records
        if isinstance(r, Mapping)
    )
    return f"{kind} seen: {seen}"


def _dsb(event: Any) -> str:
    if event == -1:
        return "not known (thread untracked)"
    return f"event {event}" if event else "none"


def events(violation: Mapping[str, Any]) -> list[str]:
    """The sanitizer's events for the violation's cache line, as sentences: the ones its report
    recorded for the judgement (the violation's ``events``) when present, else what the violation
    itself names."""
    rule = str(violation.get("rule", "?"))
    store = (
        f"store: vCPU {violation.get('writer_vcpu')} at PC {_hexa(violation.get('writer_pc'))} wrote the "
        f"line at physical address {_hexa(violation.get('paddr'))}"
    )
    execution = (
        f"execution: vCPU {violation.get('vcpu')} ran {violation.get('disasm') or '?'} at PC "
        f"{_hexa(violation.get('pc'))} ({violation.get('space')} space, {violation.get('count')} time(s))"
    )
    recorded = violation.get("events")
    if not isinstance(recorded, Mapping) or "store" not in recorded:
        missing = (
            f"maintenance missing: {rule} (the step this rule requires was not seen between the store "
            "and the execution)"
        )
        return [store, missing, execution]
    s, x = recorded.get("store") or {}, recorded.get("executor") or {}
    through = f", through the virtual page {s['va_page']}" if s.get("va_page") else ""
    return [
        f"{store}, at event {s.get('event')} (thread {s.get('thread')}, {s.get('thread_state')}, process "
        f"{s.get('mm')}{through})",
        _maintenance("cleans (DC)", recorded.get("cleans")),
        _maintenance("invalidates (IC)", recorded.get("invalidates")),
        f"first DSB after the store: on the writer's vCPU {_dsb(recorded.get('writer_cpu_dsb'))}, by the "
        f"writer's thread {_dsb(recorded.get('writer_thread_dsb'))}",
        f"judged by the {'program' if recorded.get('judged_by') == 'program' else 'kernel'}'s protocol; "
        f"first step missing: {rule}",
        f"{execution}; the executing thread ({x.get('thread')}, process {x.get('mm')}) last synchronized at "
        f"event {x.get('thread_sync')}, its vCPU at event {x.get('cpu_sync')} (the report was written at "
        f"event {recorded.get('now')})",
    ]


def console_excerpt(run_dir: str | None, lines: int = 30, limit: int = 6000) -> str | None:
    """The last ``lines`` lines (at most ``limit`` characters) of ``run_dir``/console.log, when it exists."""
    if not run_dir:
        return None
    path = Path(run_dir) / "console.log"
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return None
    return "\n".join(text.splitlines()[-lines:])[-limit:]
