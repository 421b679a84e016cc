"""Which install program's code a reported PC lies in, the rules reported in each one's code, and
violations described for people."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Sequence

from base.contract import Violation

from .programs import JIT_BASE, JIT_STRIDE, PAGE

__all__ = ["describe_violations", "mutation_of_pc", "rules_by_code", "slot_of_pc"]


def slot_of_pc(pc: int, base: int, stride: int, names: Sequence[str], span: int = PAGE) -> str | None:
    """The name whose code (``span`` bytes from ``base + index * stride``) holds ``pc``, or None."""
    index, offset = divmod(pc - base, stride)
    if pc < base or index >= len(names) or offset >= span:
        return None
    return names[index]


def mutation_of_pc(pc: int, names: Sequence[str]) -> str | None:
    """The mutation whose install program (``names[index]`` built with ``index``) put code at pc."""
    return slot_of_pc(pc, JIT_BASE, JIT_STRIDE, names)


def rules_by_code(
    violations: Iterable[Violation], names: Sequence[str], owner: Callable[[int], str | None]
) -> tuple[dict[str, set[str]], list[Violation]]:
    """The rules reported in each name's code (``owner`` maps a PC to its name), and the violations
    in nobody's code."""
    seen: dict[str, set[str]] = {name: set() for name in names}
    stray = []
    for v in violations:
        name = owner(v["pc"])
        if name is None:
            stray.append(v)
        else:
            seen[name].add(v["rule"])
    return seen, stray


def describe_violations(violations: Iterable[Violation], limit: int = 20, sep: str = "\n") -> str:
    """The most frequent (rule, space, symbol, disassembly) of ``violations`` with their counts."""
    counts = collections.Counter((v["rule"], v["space"], v["symbol"], v["disasm"]) for v in violations)
    return sep.join(f"{n} x {rule} {space} {symbol or '?'}: {disasm}"
                    for (rule, space, symbol, disasm), n in counts.most_common(limit))  # fmt: skip
