"""Shared helpers of tests/test_matrix.py and tests/test_report.py: matrix files, cells and a
runner that stands in for guests."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from base.contract import StressResult, Violation
from ci.history import History
from ci.matrix import load_matrix, run_matrix
from ci.report import Report, build_report, write_report
from harness.runs import append_result
from harness.stress.programs import installed_code
from harness.stress.runner import Job, Selection, reproducer
from harness.stress.scenarios import IcacheScenario, expected_rules, load_suite, mutations_for

RULE = "arm64.no_dsb"


def matrix_text(arch: str = "[all]", scenario: str = "[all]", extra: str = "", exclude: str = "[]") -> str:
    return (
        f"axes:\n  arch: {arch}\n  smp: [2]\n  suite: [icache]\n  scenario: {scenario}\n"
        f"  sanitize: [true]\n  seed: [null]\n{extra}exclude: {exclude}\n"
    )


def write_matrix(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "matrix.yaml"
    path.write_text(text)
    return path


def scenario(name: str) -> IcacheScenario:
    (found,) = [s for s in load_suite("icache") if s.name == name]
    assert isinstance(found, IcacheScenario)
    return found


def cell(
    arch: str = "arm64",
    cpu: str = "cortex-a57",
    scenario_name: str = "flush_mistakes",
    mutation: str = "sync_before_last_write",
    verdict: str | None = "pass",
    observed_rules: Sequence[str] | None = None,
    violations: list[Violation] | None = None,
    run_dir: str = "",
    smp: int | None = 2,
    seed: int | None = None,
) -> StressResult:
    """A cell as harness.stress.runner records it (observed_rules default: the expected ones)."""
    job = Job(arch, cpu, "icache", (scenario(scenario_name),), smp)
    expected = sorted(expected_rules(scenario(scenario_name), arch, cpu, mutation))
    observed = sorted(observed_rules) if observed_rules is not None else expected
    return {
        "arch": arch,
        "cpu": cpu,
        "suite": "icache",
        "scenario": scenario_name,
        "mutation": mutation,
        "expected": "caught" if expected else "clean",
        "observed": "caught" if observed else "clean",
        "caught_by": ["sanitizer"] if observed else [],
        "verdict": verdict,  # type: ignore[typeddict-item]
        "violations": violations or [],
        "histogram": None,
        "reproducer": reproducer(job, scenario_name, mutation, Selection(seed=seed)),
        "expected_rules": expected,
        "observed_rules": observed,
        "exit_code": 0,
        "detail": "as expected" if verdict == "pass" else f"expected {expected}; reported {observed}",
        "run_dir": run_dir,
    }


def slot_violation(arch: str, scenario_name: str, index: int, rule: str, offset: int = 0) -> Violation:
    """A violation at ``offset`` of the code slot ``index`` installs (first generation), with the
    instruction bytes the program puts there."""
    address, code, _ = installed_code(scenario(scenario_name), arch, index)
    return {
        "rule": rule,
        "pc": address + offset,
        "vcpu": 1,
        "paddr": 0x4200_0000 + offset,
        "insn": code[offset : offset + 4].hex(),
        "disasm": "?",
        "symbol": None,
        "writer_pc": 0x401000,
        "writer_vcpu": 0,
        "count": 3,
        "space": "user",
    }


def fake_runner(
    verdict_of: Callable[[Job], str] = lambda _job: "pass",
    delay_s: float = 0.0,
    calls: list[str] | None = None,
) -> Callable[..., list[StressResult]]:
    """A stand-in for harness.stress.runner.run_jobs: every mutation of the job's scenario gets a
    cell (after ``delay_s`` each), with the verdict ``verdict_of`` gives."""

    def run(
        jobs: Sequence[Job],
        selection: Selection,
        _results: Path | None,
        on_result: Callable[[StressResult], None],
        _workers: int,
    ) -> list[StressResult]:
        out = []
        for job in jobs:
            if calls is not None:
                calls.append(f"{job.arch}/{job.cpu}/{job.scenarios[0].name}")
            (s,) = job.scenarios
            assert isinstance(s, IcacheScenario)
            for mutation in mutations_for(s, job.arch):
                time.sleep(delay_s)
                verdict = verdict_of(job)
                result = cell(
                    job.arch,
                    job.cpu,
                    s.name,
                    mutation,
                    verdict,
                    observed_rules=[] if verdict == "fail" else None,
                    smp=job.smp,
                    seed=selection.seed,
                )
                if verdict == "fail" and not result["expected_rules"]:
                    result["observed_rules"] = ["made.up_rule"]
                on_result(result)
                out.append(result)
        return out

    return run


def read_lines(path: Path) -> list[dict[str, Any]]:
    from harness.runs import read_results

    records, _ = read_results(path)
    return records


def failing_cell(
    cpu: str = "cortex-a57", pc_offset: int = 0, run_dir: str = "/runs/a", index: int = 3
) -> Any:
    """A cell of flush_mistakes/sync_before_last_write reporting RULE (the wrong rule) at a PC in
    code slot ``index``."""
    v = slot_violation("arm64", "flush_mistakes", index, RULE, pc_offset)
    return cell(
        "arm64",
        cpu,
        "flush_mistakes",
        "sync_before_last_write",
        "fail",
        observed_rules=[RULE],
        violations=[v],
        run_dir=run_dir,
    )


def matrix_results(tmp_path: Path, night: str, failing: bool, history: History | None = None) -> Path:
    """Two arm64 jobs (flush_mistakes with 2 and 3 vCPUs) run by the fake runner; with ``failing`` the
    sync_before_last_write cell of each reports the wrong rule at a PC in its slot."""
    text = matrix_text(arch="[arm64]", scenario="[flush_mistakes]", extra="  cpu: {arm64: [cortex-a57]}\n")
    text = text.replace("smp: [2]", "smp: [2, 3]")
    jobs = list(load_matrix(write_matrix(tmp_path, text)).jobs)
    results = tmp_path / f"results-{night}"
    run_dir = tmp_path / f"run-{night}"
    run_dir.mkdir()
    (run_dir / "console.log").write_text(
        "booting\n" + "".join(f"line {k}\n" for k in range(100)) + "~ # JP-DONE\n"
    )
    inner = fake_runner()

    def runner(*args: Any) -> Any:
        on_result = args[3]

        def patched(c: Any) -> None:
            if failing and c["mutation"] == "sync_before_last_write":
                broken = failing_cell(c["cpu"], 4, str(run_dir), index=2)
                broken["reproducer"] = c["reproducer"]
                c = broken
            on_result(c)

        return inner(args[0], args[1], args[2], patched, args[4])

    run_matrix(
        jobs,
        results,
        night=night,
        runner=runner,
        on_finished=(lambda e, c: history.record_job(e, c)) if history else lambda e, c: None,
    )
    return results


def litmus_cell(arch: str = "arm64", cpu: str = "cortex-a57", forbidden_seen: bool = True) -> dict[str, Any]:
    """A litmus cell as harness.stress.runner records it: message passing run natively, with the
    outcome the BPF model forbids (r0=1 r1=0) seen 3 times when ``forbidden_seen``."""
    histogram = {"r0=0 r1=0": 97, "r0=0 r1=1": 140, "r0=1 r1=1": 760}
    forbidden = ["r0=1 r1=0"] if forbidden_seen else []
    if forbidden_seen:
        histogram["r0=1 r1=0"] = 3
    return {
        "arch": arch, "cpu": cpu, "smp": 2, "suite": "litmus", "scenario": "MP+fences", "mutation": "none",
        "expected": "clean", "observed": "caught" if forbidden_seen else "clean",
        "caught_by": ["run"] if forbidden_seen else [], "verdict": "fail" if forbidden_seen else "pass",
        "violations": [], "histogram": histogram, "forbidden": forbidden, "expected_rules": [],
        "observed_rules": [], "exit_code": 0, "run_dir": "",
        "detail": "run: 1000 iterations" + (", forbidden seen: r0=1 r1=0" if forbidden_seen else ""),
        "reproducer": f"jitprobe litmus run tests/stress/litmus/MP+fences.litmus --arch {arch}",
    }  # fmt: skip


def sample_report(tmp: Path) -> tuple[Report, Path]:
    """A report with something of everything, written to ``tmp/report``: two nights of the matrix
    in a history (the second with the same wrong-rule failure in two jobs, with violations,
    disassembly and a console log), `jitprobe run` cells that missed and crashed, and litmus
    cells, one of which saw a forbidden outcome. Returns the report and its index.html."""
    history = History(tmp / "history.sqlite")
    night1 = matrix_results(tmp, "2026-01-01", failing=False, history=history)
    night2 = matrix_results(tmp, "2026-01-02", failing=True)
    runs = tmp / "runs"
    missed = cell("arm64", "neoverse-v1", "rewrite_in_place", "no_dsb", "fail", observed_rules=[], smp=3)
    crash = dict(cell("arm64", "neoverse-v1", "cross_modify", "no_isb", "crash"), detail="Oops after 3.2 s")
    for c in (missed, crash, cell("arm64", "neoverse-v1", "rewrite_in_place", "none")):
        append_result(runs, {"job": "run", **c})
    for c in (litmus_cell(), litmus_cell("riscv64", "rv64", forbidden_seen=False)):
        append_result(runs, {"job": "run", **c})
    report = build_report([night1, night2, runs], history)
    write_report(report, tmp / "report")
    return report, tmp / "report" / "index.html"


def grid_squares(page: str) -> dict[tuple[str, str], tuple[str, str]]:
    """The detection grid of a report page (its HTML, or a browser's DOM of it): (test, place) ->
    (fill colour, verdicts seen), read from each square's SVG tooltip and path."""
    found = re.findall(
        r"<g id=\"grid-cell-\d+-\d+\">\s*<title>(.*?) on (.*?): (.*?)</title>\s*"
        r"<path [^>]*style=\"fill: (#[0-9a-f]{6})",
        page,
    )
    return {(test, place): (colour, verdicts) for test, place, verdicts, colour in found}
