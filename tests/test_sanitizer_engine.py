"""The sanitizer's rule engine without QEMU: harness/sanitizer/engine_test.c, built and run by its
Makefile (every rule's event sequences, including the orderings that must not be reported), and
its concurrent part under ThreadSanitizer, which fails on any report."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

SANITIZER = Path(__file__).resolve().parent.parent / "harness" / "sanitizer"


def _make(target: str) -> subprocess.CompletedProcess[str]:
    command = ["make", "-s", "-C", str(SANITIZER), target]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("target", ["test", "test-tsan"])
def test_rule_engine(target: str) -> None:
    proc = _make(target)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = re.search(r"^(\d+) passed, 0 failed$", proc.stdout, re.MULTILINE)
    assert summary and int(summary.group(1)) > 0, proc.stdout
