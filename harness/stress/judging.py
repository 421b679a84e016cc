"""Judging a stress cell: what its guest run observed, set against what its scenario expects.

The runner (harness.stress.runner) makes each cell and runs its guest; these fill in the cell's
observations, verdict and detail.
"""

from __future__ import annotations

from base.contract import StressResult, Violation
from base.errors import GuestError, JitprobeError
from harness.guest import CommandResult
from harness.icache import describe_violations

from .programs import EXIT_SETUP, EXIT_WRONG_RESULT
from .scenarios import KNOWN_FALSE_POSITIVE, NOT_DETECTED

__all__ = [
    "PROGRAM_TIMEOUT_S",
    "TIMEOUT_STATUS",
    "error_verdict",
    "judge",
    "judge_command",
    "mark_known_false_positive",
]

PROGRAM_TIMEOUT_S = 60.0
TIMEOUT_STATUS = 143  # busybox timeout's SIGTERM (harness.batch)


def judge(cell: StressResult, exit_code: int | None, violations: list[Violation], sanitize: bool) -> None:
    """Fill in what was observed and the cell's verdict (pass: exactly what was expected)."""
    cell["exit_code"] = exit_code
    cell["violations"] = violations
    cell["observed_rules"] = sorted({v["rule"] for v in violations})
    caught_by = ["sanitizer"] if violations else []
    if exit_code == EXIT_WRONG_RESULT:
        caught_by.append("result")
    elif exit_code is not None and exit_code > 128 and exit_code != TIMEOUT_STATUS:
        caught_by.append("crash")
    cell["caught_by"] = caught_by
    cell["observed"] = "caught" if caught_by else "clean"
    if exit_code is None:
        cell["verdict"], cell["detail"] = "crash", "no result: the guest stopped before the program ended"
        return
    if exit_code == TIMEOUT_STATUS:
        cell["verdict"], cell["detail"] = "timeout", f"did not end within {PROGRAM_TIMEOUT_S:g} s"
        return
    if exit_code == EXIT_SETUP:
        cell["verdict"], cell["detail"] = "fail", "a system call the set-up needs failed (exit 2)"
        return
    if not sanitize and cell["expected"] == "caught":
        if caught_by:
            cell["verdict"] = "pass"
            cell["detail"] = f"caught by {', '.join(caught_by)} (exit {exit_code}) without the sanitizer"
        else:
            cell["observed"], cell["verdict"] = "not exercised", None
            cell["detail"] = (
                "without the sanitizer only wrong results and crashes are seen (TCG keeps code coherent)"
            )
        return
    if cell["expected_rules"] == [NOT_DETECTED]:
        # A real bug the sanitizer has no rule for: caught by a wrong result or a crash, or not
        # detected; rules it may hit on the way are listed (may_also), any other is a false report.
        extra = set(cell["observed_rules"]) - set(cell["tolerated_rules"])
        if extra:
            cell["verdict"] = "fail"
            cell["detail"] = f"reported {', '.join(sorted(extra))}, which the scenario does not expect"
        elif set(caught_by) - {"sanitizer"}:
            cell["verdict"] = "pass"
            cell["detail"] = (f"caught by {', '.join(caught_by)} (exit {exit_code}); "
                              "the sanitizer has no rule for it")
        else:
            cell["observed"], cell["verdict"] = "not detected", None
            cell["detail"] = "a real bug the sanitizer has no rule for (the scenario file says which)"
        return
    expected_rules_ = set(cell["expected_rules"]) if sanitize else set()
    observed = set(cell["observed_rules"])
    allowed = expected_rules_ | set(cell["tolerated_rules"])
    if not expected_rules_ <= observed <= allowed or ("crash" in caught_by and not expected_rules_):
        cell["verdict"] = "fail"
        want = ", ".join(sorted(expected_rules_)) or "nothing"
        cell["detail"] = f"expected {want}; reported {', '.join(cell['observed_rules']) or 'nothing'}" + (
            f", exit {exit_code}" if exit_code else ""
        )
    elif exit_code != 0 and not expected_rules_:
        cell["verdict"], cell["detail"] = (
            "fail",
            f"exit {exit_code} (wrong result or signal) in a correct program",
        )
    else:
        cell["verdict"] = "pass"
        cell["detail"] = f"{cell['observed']} as expected" + (
            f" ({', '.join(caught_by)}: {describe_violations(violations, limit=1)})" if violations else ""
        )


def judge_command(
    cell: StressResult, result: CommandResult, violations: list[Violation], sanitize: bool
) -> str:
    """Judge the cell by its guest command (``judge``), where a crash or timeout of the guest is the
    verdict, with its console line; the command's stdout."""
    judge(cell, result.exit_code, violations, sanitize)
    if result.verdict in ("crash", "timeout"):
        cell["verdict"] = result.verdict
        cell["detail"] = result.crash.line if result.crash else result.console_tail[-300:]
    return result.stdout.decode(errors="replace")


def error_verdict(cell: StressResult, exc: JitprobeError) -> None:
    """The error that kept the cell from running is its verdict: the guest's own (crash, timeout)
    for a GuestError, infra for any other."""
    cell["verdict"] = exc.verdict if isinstance(exc, GuestError) else "infra"
    cell["detail"] = str(exc)


def mark_known_false_positive(cell: StressResult, rules: set[str], why: str) -> None:
    """A cell that differs from its expectation only by rules its scenario lists as a known open
    false positive of the sanitizer there, each reported in the program's own text (an ELF symbol
    of the binary; the open false positives are there, never in JIT code): neither pass nor fail
    (verdict null, observed ``known false positive``), with the reason and what was reported."""
    extra = set(cell["observed_rules"]) - set(cell["expected_rules"])
    shown = [v for v in cell["violations"] if v["rule"] in extra]
    in_text = all(v["symbol"] and v["space"] == "user" for v in shown)
    if (cell["verdict"] == "fail" and cell["exit_code"] == 0 and extra and extra <= rules and in_text
            and set(cell["expected_rules"]) <= set(cell["observed_rules"])):  # fmt: skip
        cell["observed"], cell["verdict"] = KNOWN_FALSE_POSITIVE, None
        cell["detail"] = f"known open false positive ({why}): {describe_violations(shown, limit=2, sep='; ')}"
