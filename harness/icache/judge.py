"""The verdict of a sanitized guest that ran every install program once."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence

from base.contract import Verdict, Violation
from jit_core.backend import get_backend

from .attribution import mutation_of_pc, rules_by_code
from .programs import FILLER

__all__ = ["describe_violations", "judge_mutations"]


def judge_mutations(
    arch: str,
    cpu: str,
    expected: dict[str, set[str]],
    exit_codes: dict[str, int],
    violations: Sequence[Violation],
    install: str = "same-thread",
) -> tuple[Verdict, str]:
    """(verdict, detail) of one sanitized ``arch``/``cpu`` guest that ran every install program once.

    ``install`` names the kind of program (same-thread or cross-thread) for the detail text.

    ``expected`` is expected_mutation_rules' answer (its keys, in order, are the programs'
    names and indexes), ``exit_codes`` each program's exit status, ``violations`` those of the
    whole run. The verdict is pass only if every program returned FILLER, no violation lies
    outside the installed code (the guest itself sanitized clean), and each mutation was
    reported with exactly its expected rules.
    """
    names = list(expected)
    seen, stray = rules_by_code(violations, names, lambda pc: mutation_of_pc(pc, names))
    problems = [f"jit-{name} exited {code}, not {FILLER}" for name, code in exit_codes.items()
                if code != FILLER]  # fmt: skip
    if stray:
        problems.append(f"{len(stray)} violations outside the installed code: "
                        + describe_violations(stray, limit=3, sep="; "))
    for name, rules in expected.items():
        if seen[name] != rules:
            problems.append(f"{name}: expected {_rule_list(rules)}, reported {_rule_list(seen[name])}")
    if problems:
        return "fail", "; ".join(problems)
    caught = [name for name, rules in expected.items() if rules]
    clean = [name for name, rules in expected.items() if not rules]
    # A clean mutation either changes this architecture's code in a way that is no bug here, or
    # changes nothing (then the program runs the correct protocol, as "none" does).
    harmless = [name for name in clean if name in get_backend(arch).mutations]
    why = [f"{', '.join(harmless)}: not a bug on {arch} {cpu} for a {install} install"] if harmless else []
    if len(clean) > len(harmless):
        why.append(f"{len(clean) - len(harmless)} emit the correct {arch} protocol")
    return "pass", (
        f"{len(caught)} mutations caught as expected, {len(clean)} clean as expected ({'; '.join(why)}); "
        "nothing reported outside the installed code"
    )


def _rule_list(rules: set[str]) -> str:
    return ", ".join(sorted(rules)) or "nothing"


def describe_violations(violations: Iterable[Violation], limit: int = 20, sep: str = "\n") -> str:
    """The most frequent (rule, space, symbol, disassembly) of ``violations`` with their counts."""
    counts = collections.Counter((v["rule"], v["space"], v["symbol"], v["disasm"]) for v in violations)
    return sep.join(f"{n} x {rule} {space} {symbol or '?'}: {disasm}"
                    for (rule, space, symbol, disasm), n in counts.most_common(limit))  # fmt: skip
