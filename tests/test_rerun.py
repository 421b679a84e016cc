"""Re-running failures: parameter overrides, the reproduction rate, the shrinking search and what
the report shows of them (guests stood in for by a runner that fails by a rule), and one real
re-run of a deliberately failing cell in an x86_64 guest."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import yaml
from helpers_matrix import cell, matrix_text, read_lines, scenario, write_matrix

from base.contract import StressResult
from base.errors import InputError
from ci.matrix import MatrixJob, load_matrix, run_matrix
from ci.report import build_report, write_report
from ci.rerun import rerun_failures, shrink
from ci.signature import signature_of
from harness.stress.runner import Job, Selection, applied, plan, reproducer
from harness.stress.scenarios import IcacheScenario, expected_rules, mutations_for, override_params

PY = sys.executable
FLAKY = "membarrier_plain"  # the mutation the stand-in runner fails


# -- overrides ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "iterations", "threads", "message"),
    [
        ("membarrier_publish", 1, None, "invalid --iterations: 1 (an integer, at least 2)"),
        ("membarrier_publish", None, 0,
         "invalid --threads: 0 (an integer, at least 1 for membarrier_publish (the publish generator))"),
        ("rewrite_in_place", None, -1, "invalid --threads: -1 (an integer, at least 0 for rewrite_in_place"),
    ],
)  # fmt: skip
def test_a_bad_override_names_the_value_and_its_range(
    name: str, iterations: int | None, threads: int | None, message: str
) -> None:
    with pytest.raises(InputError) as raised:
        override_params(scenario(name), iterations, threads)
    assert message in str(raised.value)


def test_overrides_replace_the_parameters_and_the_expectation_follows() -> None:
    s = scenario("live_patch")  # the patch generator: threads only say cross-thread
    same = override_params(s, iterations=2, threads=0)
    assert (same.params["iterations"], same.params["threads"], same.install) == (2, 0, "same-thread")
    assert override_params(s) is s and s.params["iterations"] == 40
    (job,) = plan({"icache": [scenario("membarrier_publish")]}, ["x86_64"], None)
    selection = Selection(mutation=FLAKY, iterations=4, threads=1)
    (shrunk,) = applied(job, selection).scenarios
    assert isinstance(shrunk, IcacheScenario) and shrunk.params["iterations"] == 4
    command = reproducer(job, "membarrier_publish", FLAKY, selection)
    assert command.endswith("--mutation membarrier_plain --iterations 4 --threads 1")


def test_run_refuses_bad_overrides_before_booting() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PY, "-m", "harness.cli", "run", "--list", "--suite", "icache", *args],
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    out = run("--iterations", "1")
    assert out.returncode == 2 and "invalid --iterations: 1 (an integer, at least 2)" in out.stderr
    out = run("--scenario", "membarrier_publish", "--threads", "0")
    assert out.returncode == 2 and "invalid --threads: 0" in out.stderr and "publish generator" in out.stderr
    out = run("--scenario", "rewrite_in_place", "--threads", "0", "--iterations", "2", "--json")
    assert out.returncode == 0, out.stderr


# -- the shrinking search ----------------------------------------------------------------------


def _fails_from(least_iterations: int, least_threads: int = 0) -> Callable[[tuple[int, int]], bool]:
    return lambda c: c[0] >= least_iterations and c[1] >= least_threads


def test_shrink_halves_iterations_and_threads_while_it_reproduces() -> None:
    found = shrink((40, 2), (2, 1), _fails_from(8), attempts=8)
    assert found.smallest == (10, 1)
    assert found.tried == (
        ((2, 1), False), ((20, 2), True), ((20, 1), True), ((10, 1), True), ((5, 1), False))  # fmt: skip


def test_shrink_tries_the_least_configuration_first_and_stops_after_the_bound() -> None:
    always = shrink((40, 0), (2, 0), lambda _c: True, attempts=8)
    assert always.smallest == (2, 0) and len(always.tried) == 1
    bounded = shrink((640, 4), (2, 1), _fails_from(3), attempts=4)
    assert len(bounded.tried) == 4 and bounded.smallest == (160, 2)
    assert shrink((40, 1), (2, 1), _fails_from(8), attempts=0).smallest == (40, 1)
    nothing_smaller = shrink((2, 1), (2, 1), lambda _c: True, attempts=8)
    assert nothing_smaller.smallest == (2, 1) and nothing_smaller.tried == ()


# -- re-running through the matrix, guests stood in for ----------------------------------------


def rule_runner(fails: Callable[[int, int, int], bool], calls: list[Selection]) -> Callable[..., object]:
    """A stand-in for run_jobs: each cell of the selected mutations; FLAKY fails (the expected
    rule missed) when ``fails(iterations, threads, call number)``."""

    def run(jobs: Sequence[Job], selection: Selection, _results: Path | None,
            on_result: Callable[[StressResult], None], _workers: int) -> None:  # fmt: skip
        calls.append(selection)
        for job in jobs:
            (s,) = job.scenarios
            assert isinstance(s, IcacheScenario)
            iterations = selection.iterations or s.params["iterations"]
            threads = s.params["threads"] if selection.threads is None else selection.threads
            for mutation in mutations_for(s, job.arch):
                if selection.mutation not in (None, mutation):
                    continue
                bad = mutation == FLAKY and fails(iterations, threads, len(calls))
                on_result(cell(job.arch, job.cpu, s.name, mutation, "fail" if bad else "pass",
                               observed_rules=[] if bad else None, smp=job.smp))  # fmt: skip

    return run


def _matrix(tmp_path: Path) -> list[MatrixJob]:
    text = matrix_text(arch="[x86_64]", scenario="[membarrier_publish, rewrite_in_place]")
    return list(load_matrix(write_matrix(tmp_path, text)).jobs)


def test_each_failure_is_rerun_for_its_rate_then_shrunk_and_the_report_shows_both(tmp_path: Path) -> None:
    jobs, results = _matrix(tmp_path), tmp_path / "results"
    assert expected_rules(scenario("membarrier_publish"), "x86_64", "max", FLAKY)  # a miss when clean
    calls: list[Selection] = []
    runner = rule_runner(lambda iterations, _t, _n: iterations >= 8, calls)
    run_matrix(jobs, results, night="n1", runner=runner)
    calls.clear()
    (record,) = rerun_failures(results, jobs, "n1", runs=3, attempts=8, runner=runner)
    assert [c.mutation for c in calls] == [FLAKY] * len(calls)  # only the failing cell's mutation
    assert (record["runs"], record["reproduced"], record["errors"]) == (3, 3, 0)
    assert [(a["iterations"], a["threads"], a["reproduced"]) for a in record["attempts"][3:]] == [
        (2, 1, False), (20, 1, True), (10, 1, True), (5, 1, False)]  # fmt: skip
    smallest = record["smallest"]
    assert (smallest["iterations"], smallest["threads"], smallest["attempts"]) == (10, 1, 4)
    assert smallest["reproducer"].endswith(f"--mutation {FLAKY} --smp 2 --iterations 10 --threads 1")
    assert [r for r in read_lines(results) if r["job"] == "rerun"] == [{"schema": 1, **record}]
    assert not [r for r in read_lines(results) if r["job"] == "run" and r.get("attempt") is None]

    calls.clear()  # the night's re-runs are recorded: resuming does not repeat them
    assert rerun_failures(results, jobs, "n1", runs=3, runner=runner) == [] and calls == []

    out = tmp_path / "report"
    report = build_report([results])
    write_report(report, out)
    (failure,) = report.failures
    assert failure.rerun is not None and failure.rerun.rate == "3/3 (100%)"
    data = json.loads((out / "results.json").read_text())
    (entry,) = data["failures"]
    assert entry["rerun"]["reproduced"] == 3 and entry["rerun"]["smallest"]["iterations"] == 10
    assert data["summary"]["cells"] == len(report.cells)  # the re-runs' cells are not the night's
    summary = (out / "summary.md").read_text()
    assert "| 3/3 (100%) | 10, 1 |" in summary and "--iterations 10 --threads 1`" in summary
    page = (out / "index.html").read_text()
    assert "reproduced <b>3/3 (100%)</b>" in page and "<pre class=smallest>" in page
    assert "smallest reproducer: jitprobe run" in (out / "junit.xml").read_text()


def test_a_flaky_failure_gets_its_rate_and_one_that_never_reproduces_is_not_shrunk(tmp_path: Path) -> None:
    jobs, results = _matrix(tmp_path), tmp_path / "results"
    calls: list[Selection] = []
    run_matrix(jobs, results, night="n1", runner=rule_runner(lambda *_: True, calls))
    odd = rule_runner(lambda _i, _t, n: n % 2 == 1, calls)
    calls.clear()
    (record,) = rerun_failures(results, jobs, "n1", runs=4, attempts=0, runner=odd)
    assert (record["runs"], record["reproduced"], record["smallest"]) == (4, 2, None)
    results2 = tmp_path / "results2"
    run_matrix(jobs, results2, night="n1", runner=rule_runner(lambda *_: True, calls))
    assert rerun_failures(results2, jobs, "n1", runs=2, runner=rule_runner(lambda *_: False, calls),
                          limit=0) == []  # fmt: skip
    (never,) = rerun_failures(results2, jobs, "n1", runs=2, runner=rule_runner(lambda *_: False, calls))
    assert (never["runs"], never["reproduced"], never["smallest"]) == (2, 0, None)
    assert len(never["attempts"]) == 2  # no shrinking without a reproduction
    report = build_report([results2])
    assert report.failures[0].rerun is not None and report.failures[0].rerun.rate == "0/2 (0%)"
    write_report(report, tmp_path / "r")
    assert "Not shrunk" in (tmp_path / "r" / "index.html").read_text()


# -- one real re-run in a guest -----------------------------------------------------------------


@pytest.mark.qemu
def test_a_deliberately_failing_cell_reruns_2_of_2_and_shrinks_in_a_guest(tmp_path: Path) -> None:
    """rewrite_in_place expected (wrongly) to be caught without a serializing instruction on
    x86_64: the matrix job fails, both re-runs reproduce it, and the least configuration
    (2 iterations, no executor thread) still does."""
    suite = tmp_path / "scenarios" / "icache"
    suite.mkdir(parents=True)
    project = scenario("rewrite_in_place").path
    data = yaml.safe_load(project.read_text())
    wrong = {"why": "wrong on purpose", "x86_64": ["x86_64.no_serialize"], "arm64": [], "riscv64": []}
    data.update(mutations=["no_serialize"], expect={"no_serialize": wrong})
    (suite / "rewrite_in_place.yaml").write_text(yaml.safe_dump(data))
    shutil.copy(project.parent / "cross_modify.yaml", suite)
    path = write_matrix(tmp_path, matrix_text(arch="[x86_64]", scenario="[rewrite_in_place]"))
    results, out = tmp_path / "results", tmp_path / "report"
    started = time.monotonic()
    env = {**os.environ, "JITPROBE_RUNS": str(tmp_path / "runs")}
    proc = subprocess.run(
        [PY, "-m", "ci.cli", "matrix", "run", "--file", str(path), "--scenario-dir", str(suite.parent),
         "--results", str(results), "--night", "t1", "--jobs", "1", "--rerun", "2", "--json"],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    (rerun,) = summary["reruns"]
    assert (rerun["runs"], rerun["reproduced"]) == (2, 2), rerun
    assert "missed | icache/rewrite_in_place/no_serialize" in rerun["signature_text"]
    smallest = rerun["smallest"]
    assert (smallest["iterations"], smallest["threads"]) == (2, 0)
    assert "--iterations 2 --threads 0 --scenario-dir" in smallest["reproducer"]
    (record,) = [r for r in read_lines(results) if r["job"] == "rerun"]
    assert [a["reproduced"] for a in record["attempts"]] == [True, True, True]
    assert all(a["run_dir"] and not a["error"] for a in record["attempts"])
    report = subprocess.run([PY, "-m", "ci.cli", "report", str(results), "--out", str(out)],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert "| 2/2 (100%) | 2, 0 |" in (out / "summary.md").read_text()
    # the smallest configuration's reproducer reproduces the failure
    words = shlex.split(smallest["reproducer"])
    assert words[:2] == ["jitprobe", "run"]
    again = subprocess.run([PY, "-m", "harness.cli", *words[1:], "--json"], capture_output=True, text=True,
                           timeout=600, env=env)  # fmt: skip
    assert again.returncode == 1, again.stderr[-3000:]
    (cell_,) = json.loads(again.stdout)["results"]
    sig = signature_of({**cell_, "sanitize": True})
    assert sig is not None and sig.id == rerun["signature"]
    print(f"matrix job + 2 re-runs + shrinking: {elapsed:.0f} s, re-runs {summary['rerun_s']} s")
