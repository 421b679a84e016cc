"""What the stress suites' scenario files share: their error, the schema check (the profiles'
checker, base.profiles.validate) and the checks of architectures, names, CPU models and rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from base.profiles import Field, ProfileError, available_arches, load_profile, validate

__all__ = [
    "NOT_APPLICABLE",
    "NOT_DETECTED",
    "ScenarioError",
    "check_arch",
    "check_expect_mutation",
    "check_mutations",
    "check_name",
    "check_rules",
    "parse_cpus",
    "parse_may_also",
    "read_scenario",
    "validate_scenario",
]

# An expectation for a real bug the sanitizer has no rule for yet: the matrix shows the cell as
# "not detected", never as a pass.
NOT_DETECTED = "not detected"
# An expectation for a scenario's own mutation that does not change that architecture's program
# (it patches without the step the mutation breaks): the mutation is not run there, and the
# matrix shows "n/a", as for a jit_core mutation the backend does not implement.
NOT_APPLICABLE = "n/a"


class ScenarioError(ProfileError):
    """A scenario file is unreadable or does not match its schema."""


def read_scenario(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: cannot read scenario: {exc}") from exc


def validate_scenario(data: Any, schema: Mapping[str, Field], source: str) -> None:
    try:
        validate(data, schema, source)
    except ProfileError as exc:  # the profiles' checker: the same messages, under this file's error
        raise ScenarioError(str(exc)) from None


def check_arch(arch: str, where: str) -> None:
    if arch not in available_arches():
        known = ", ".join(available_arches())
        raise ScenarioError(f"{where}: unknown architecture {arch!r}; expected one of {known}")


def check_name(data: Mapping[str, Any], path: Path) -> None:
    if data["name"] != path.stem:
        raise ScenarioError(
            f"{path}: field 'name': expected {path.stem!r} (the file's name), got {data['name']!r}"
        )


def check_mutations(names: Sequence[str], valid: Sequence[str], source: str) -> tuple[str, ...]:
    """A scenario's ``mutations``, each one of ``valid``. Raises ScenarioError naming the file, the
    unknown mutation and the choices."""
    for name in names:
        if name not in valid:
            raise ScenarioError(f"{source}: field 'mutations': unknown mutation {name!r}; "
                                f"expected some of {', '.join(valid)}")  # fmt: skip
    return tuple(names)


def check_expect_mutation(name: str, mutations: Sequence[str], source: str, *, none: bool = False) -> None:
    """An ``expect`` key: one of the scenario's ``mutations`` (or, with ``none``, the correct
    program). Raises ScenarioError naming the file, the key and the choices."""
    if name not in mutations and not (none and name == "none"):
        raise ScenarioError(f"{source}: field 'expect.{name}': not {'none or ' if none else ''}one of the "
                            f"scenario's mutations ({', '.join(mutations) or 'none listed'})")  # fmt: skip


def check_rules(entries: Sequence[str], arch: str, where: str) -> tuple[str, ...]:
    known = load_profile(arch).code_modification.rules
    if NOT_DETECTED in entries and len(entries) > 1:
        raise ScenarioError(f"{where}: {NOT_DETECTED!r} stands alone (a bug the sanitizer has no rule for)")
    if NOT_APPLICABLE in entries and len(entries) > 1:
        raise ScenarioError(f"{where}: {NOT_APPLICABLE!r} stands alone (the mutation does not change "
                            "this architecture's program)")
    for entry in entries:
        if entry in (NOT_DETECTED, NOT_APPLICABLE):
            continue
        rule, _, flag = entry.partition(" unless ")
        if rule not in known:
            raise ScenarioError(
                f"{where}: unknown rule {rule!r} for {arch}; expected one of {', '.join(known)}"
            )
        if flag not in ("", "idc", "dic"):
            raise ScenarioError(f"{where}: unknown CPU flag {flag!r}; expected idc or dic")
    return tuple(entries)


def parse_cpus(value: Any, source: str) -> dict[str, tuple[str, ...]]:
    cpus: dict[str, tuple[str, ...]] = {}
    for arch, models in (value or {}).items():
        check_arch(arch, f"{source}: field 'cpus'")
        stress = load_profile(arch).stress_cpus
        if not isinstance(models, list) or not set(models) <= set(stress):
            raise ScenarioError(
                f"{source}: field 'cpus.{arch}': expected a list of {', '.join(stress)}, got {models!r}"
            )
        cpus[arch] = tuple(models)
    return cpus


def parse_may_also(entry: Mapping[str, Any], where: str) -> dict[str, tuple[str, ...]]:
    """An ``expect`` entry's ``may_also``: per architecture, rules each maybe 'unless <flag>'."""
    out = {}
    for arch, rules in (entry.get("may_also") or {}).items():
        if arch not in available_arches() or not isinstance(rules, list):
            arches = ", ".join(available_arches())
            raise ScenarioError(f"{where}.{arch}': expected an architecture ({arches}) with a list of rules")
        out[arch] = check_rules(rules, arch, f"{where}.{arch}'")
    return out
