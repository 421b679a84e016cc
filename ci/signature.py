"""Failure signatures: what a failure is, without where or when it happened.

A signature is (kind, scenario, rule, symbol): the kind of difference from the expectation, the
test that showed it (suite/scenario/mutation), the sanitizer rules involved and the symbols of the
code they were reported in, with offsets, addresses, timings and run folders left out. The same
bug seen by several jobs (CPU models, vCPU counts, seeds) or on several nights has one signature.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from harness.icache import JIT_BASE, JIT_STRIDE, MAX_INDEX

__all__ = ["NO_VERDICT", "Signature", "cell_key", "cell_verdict", "normalize_symbol", "signature_of"]

# What a cell with a null verdict shows: what it observed when that says why (a bug the sanitizer
# has no rule for, a known open false positive of the sanitizer), else "not exercised".
NO_VERDICT = ("not detected", "known false positive", "not exercised")


def cell_verdict(cell: Mapping[str, Any]) -> str:
    """The cell's verdict, or for a null one the NO_VERDICT entry that says why."""
    if cell.get("verdict"):
        return str(cell["verdict"])
    observed = cell.get("observed")
    return str(observed) if observed in NO_VERDICT else "not exercised"


@dataclass(frozen=True)
class Signature:
    """A failure's identity (see the module docstring)."""

    kind: str  # missed, unexpected, wrong-rule, wrong-result, setup, fail, crash, timeout, infra
    scenario: str  # suite/scenario/mutation
    rule: str  # the rules involved, comma-separated (empty when none)
    symbol: str  # where the reported code lies, comma-separated (empty when no violation)

    @property
    def text(self) -> str:
        return " | ".join((self.kind, self.scenario, self.rule or "-", self.symbol or "-"))

    @property
    def id(self) -> str:
        """10 hex digits of the sha256 of ``text``."""
        return sha256(self.text.encode()).hexdigest()[:10]

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "text": self.text, "kind": self.kind, "scenario": self.scenario,
                "rule": self.rule, "symbol": self.symbol}  # fmt: skip


_OFFSET = re.compile(r"\+0x[0-9a-fA-F]+$|\.(isra|constprop|part|cold)\.\d+")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+|\b[0-9a-fA-F]{8,}\b")


def normalize_symbol(violation: Mapping[str, Any]) -> str:
    """Where a violation's code lies, without addresses: the symbol without its offset, ``jit
    code`` for a stress program's code slots, ``program`` for other user code with no symbol,
    ``kernel`` for kernel code with no symbol."""
    symbol = violation.get("symbol")
    if symbol:
        return _ADDRESS.sub("?", _OFFSET.sub("", str(symbol)))
    pc = violation.get("pc")
    if violation.get("space") == "kernel":
        return "kernel"
    if isinstance(pc, int) and JIT_BASE <= pc < JIT_BASE + MAX_INDEX * JIT_STRIDE:
        return "jit code"
    return "program"


def cell_key(cell: Mapping[str, Any]) -> str:
    """suite/scenario/mutation of a cell."""
    return f"{cell.get('suite', '?')}/{cell.get('scenario', '?')}/{cell.get('mutation', 'none')}"


def _symbols(violations: Iterable[Mapping[str, Any]], rules: set[str]) -> str:
    return ",".join(sorted({normalize_symbol(v) for v in violations if not rules or v.get("rule") in rules}))


def signature_of(cell: Mapping[str, Any]) -> Signature | None:
    """The signature of a cell that did not pass (None for pass and not exercised)."""
    verdict = cell.get("verdict")
    if verdict in ("pass", None):
        return None
    scenario = cell_key(cell)
    violations = cell.get("violations") or []
    if verdict in ("crash", "timeout", "infra"):
        return Signature(str(verdict), scenario, "", "")
    expected = set(cell.get("expected_rules") or [])
    observed = set(cell.get("observed_rules") or [])
    if cell.get("sanitize") is False:
        expected = set()
    missing, unexpected = expected - observed, observed - expected
    if missing or unexpected:
        kind = "wrong-rule" if missing and unexpected else "missed" if missing else "unexpected"
        return Signature(
            kind, scenario, ",".join(sorted(missing | unexpected)), _symbols(violations, unexpected)
        )
    exit_code = cell.get("exit_code")
    kind = {1: "wrong-result", 2: "setup"}.get(exit_code, "fail") if isinstance(exit_code, int) else "fail"
    return Signature(kind, scenario, ",".join(sorted(observed)), _symbols(violations, set()))
