"""Where the herdtools7 litmus material lives: ../shared/litmus beside the checkout.

Tests that need it fail (never skip) when it is missing: the verdicts they compare against are
the point of those tests."""

from __future__ import annotations

from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "litmus"


def corpus(*parts: str) -> Path:
    """The corpus path ``parts`` below ../shared/litmus. Raises AssertionError if absent."""
    path = CORPUS.joinpath(*parts)
    assert path.exists(), f"{path} is missing: the litmus tests need ../shared/litmus (herdtools7 material)"
    return path


def kinds(directory: str) -> dict[str, str]:
    """kinds.txt of ``directory``: test file stem -> Allowed, Forbidden, Required or ? (lines
    starting with # are commented out)."""
    lines = corpus(directory, "kinds.txt").read_text().splitlines()
    pairs = (line.split() for line in lines if line.strip() and not line.startswith("#"))
    return {name: kind for name, kind in pairs}
