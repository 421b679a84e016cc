"""Realjit scenario files: a real JIT's program (harness.realjit), the mutations it is also built
with, the rules each must be reported with, and the sanitizer's known open false positives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from base.profiles import Field, MapOf, available_arches, load_profile

from .scenario_checks import (
    NOT_DETECTED,
    ScenarioError,
    check_arch,
    check_expect_mutation,
    check_mutations,
    check_name,
    check_rules,
    parse_cpus,
    parse_may_also,
    validate_scenario,
)

__all__ = [
    "KNOWN_FALSE_POSITIVE",
    "REALJIT_SCHEMA",
    "FalsePositive",
    "RealjitScenario",
    "false_positive_rules",
    "parse_realjit",
]

# What a cell observes when the sanitizer reports only what its scenario lists as an open false
# positive of the sanitizer: neither a pass nor a failure (verdict null), shown with the reason.
KNOWN_FALSE_POSITIVE: Final = "known false positive"

REALJIT_SCHEMA: dict[str, Field] = {
    "name": Field(str, "the scenario's name; must equal the file name's stem"),
    "description": Field(str, "what the scenario does, one line"),
    "program": Field(str, "the program harness.realjit builds (harness/realjit/programs.yaml)"),
    "timeout_s": Field(float, "time limit of the sanitized program, before slowdown", minimum=1),
    "cpus": Field(dict, "per architecture, the stress models to run on (default: all)", required=False),
    "mutations": Field(list, "build mutations run besides none (harness.realjit.BuildMutation)",
                       required=False),
    "expect": Field(
        MapOf(
            {
                "why": Field(str, "the manual's rule, or the JIT's proven bug, that gives these verdicts"),
                "may_also": Field(dict, "per architecture, rules some runs also report besides these, "
                                  "each maybe 'unless <flag>'", required=False),
                **{
                    arch: Field(list, f"rules on {arch}, each maybe 'unless <flag>'; an architecture "
                                "not named does not run a mutation (it changes nothing there)",
                                required=False)
                    for arch in available_arches()
                },
            }
        ),
        "per mutation (none: the program as built): the rules it must be reported with (default: clean)",
        required=False,
    ),
    "open_false_positives": Field(
        object, "a list of the sanitizer's known open false positives: {why, <arch>: {cpus, rules}} each",
        required=False,
    ),
}
_FALSE_POSITIVE_ARCH: dict[str, Field] = {
    "cpus": Field(list, "the CPU models it shows on"),
    "rules": Field(list, "the rules it is reported with"),
}


@dataclass(frozen=True)
class FalsePositive:
    """A known open false positive of the sanitizer on a realjit program: where, which rules, why."""

    why: str
    cells: Mapping[str, Mapping[str, tuple[str, ...]]]  # arch -> CPU model -> rules


@dataclass(frozen=True)
class RealjitScenario:
    """One realjit scenario file: a real JIT's program (harness.realjit), run in a fresh sanitized
    guest per architecture, CPU model and mutation."""

    name: str
    path: Path
    description: str
    program: str
    timeout_s: float
    cpus: Mapping[str, tuple[str, ...]]
    mutations: tuple[str, ...]
    expect: Mapping[str, Mapping[str, tuple[str, ...]]]
    why: Mapping[str, str]  # per mutation in expect: the reason of its rules
    tolerated: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    false_positives: tuple[FalsePositive, ...] = ()
    suite: str = "realjit"

    def runs_on(self, arch: str) -> bool:
        """Whether the scenario runs on ``arch`` at all (its ``cpus`` may leave an architecture out)."""
        return bool(self.cpus.get(arch, True))


def _parse_false_positive(entry: Any, where: str) -> FalsePositive:
    if not isinstance(entry, dict) or not isinstance(entry.get("why"), str) or len(entry) < 2:
        raise ScenarioError(f"{where}: expected a mapping of why (the reason) and at least one "
                            f"architecture ({', '.join(available_arches())}) with its cpus and rules")
    cells: dict[str, dict[str, tuple[str, ...]]] = {}
    for arch, value in entry.items():
        if arch == "why":
            continue
        check_arch(arch, where)
        validate_scenario(value, _FALSE_POSITIVE_ARCH, f"{where}.{arch}")
        stress = load_profile(arch).stress_cpus
        if not set(value["cpus"]) <= set(stress):
            raise ScenarioError(
                f"{where}.{arch}.cpus: expected some of {', '.join(stress)}, got {value['cpus']!r}"
            )
        rules = check_rules(value["rules"], arch, f"{where}.{arch}.rules")
        if not rules or NOT_DETECTED in rules or any(" unless " in r for r in rules):
            raise ScenarioError(f"{where}.{arch}.rules: expected rule names, got {value['rules']!r}")
        cells[arch] = {cpu: rules for cpu in value["cpus"]}
    return FalsePositive(entry["why"], cells)


def parse_realjit(data: Any, path: Path) -> RealjitScenario:
    """Validate a loaded realjit scenario file. Raises ScenarioError naming file, field and choices."""
    # harness.realjit reads its programs.yaml: imported here, where a realjit file is read
    from harness.realjit import BuildMutation, load_programs

    source = str(path)
    validate_scenario(data, REALJIT_SCHEMA, source)
    check_name(data, path)
    programs = sorted(load_programs())
    if data["program"] not in programs:
        raise ScenarioError(
            f"{source}: field 'program': expected one of {', '.join(programs)}, got {data['program']!r}"
        )
    mutations = check_mutations(data.get("mutations") or [], [str(m) for m in BuildMutation], source)
    expect: dict[str, dict[str, tuple[str, ...]]] = {}
    tolerated: dict[str, dict[str, tuple[str, ...]]] = {}
    why: dict[str, str] = {}
    for mutation, entry in (data.get("expect") or {}).items():
        check_expect_mutation(mutation, mutations, source, none=True)
        why[mutation] = entry["why"]
        expect[mutation] = {
            arch: check_rules(rules, arch, f"{source}: field 'expect.{mutation}.{arch}'")
            for arch, rules in entry.items()
            if arch not in ("why", "may_also")
        }
        tolerated[mutation] = parse_may_also(entry, f"{source}: field 'expect.{mutation}.may_also")
    for mutation in mutations:
        if not expect.get(mutation):
            raise ScenarioError(f"{source}: field 'expect.{mutation}': missing; a mutation states its rules "
                                "on each architecture it changes")  # fmt: skip
    entries = data.get("open_false_positives") or []
    if not isinstance(entries, list):
        raise ScenarioError(f"{source}: field 'open_false_positives': expected a list, got {entries!r}")
    false_positives = tuple(
        _parse_false_positive(entry, f"{source}: field 'open_false_positives[{n}]'")
        for n, entry in enumerate(entries)
    )
    return RealjitScenario(
        name=data["name"], path=path, description=data["description"], program=data["program"],
        timeout_s=float(data["timeout_s"]), cpus=parse_cpus(data.get("cpus"), source),
        mutations=tuple(mutations), expect=expect, why=why, tolerated=tolerated,
        false_positives=false_positives,
    )  # fmt: skip


def false_positive_rules(scenario: RealjitScenario, arch: str, cpu: str) -> tuple[set[str], str]:
    """The rules of the sanitizer's known open false positives on ``scenario`` at ``arch``/``cpu``
    and their reasons ("; "-joined); (empty, "") where none is known."""
    rules: set[str] = set()
    reasons = []
    for entry in scenario.false_positives:
        found = entry.cells.get(arch, {}).get(cpu)
        if found:
            rules |= set(found)
            reasons.append(entry.why)
    return rules, "; ".join(reasons)
