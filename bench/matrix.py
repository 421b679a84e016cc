"""The nightly matrix's speed: the report's time for N results, and (with --guests) jobs per
minute of `jitprobe matrix run` with --jobs 1 and --jobs 2 over the same jobs in one run.

Targets (issue 12): the report under 5 s for 1,000 results; --jobs 2 at least 1.6x the jobs per
minute of --jobs 1.

    .venv/bin/python bench/matrix.py [--results 1000] [--guests N [--rounds R]]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ci.matrix import MATRIX_FILE, load_matrix  # noqa: E402
from ci.report import build_report, write_report  # noqa: E402
from harness.runs import append_result  # noqa: E402
from harness.stress.programs import installed_code  # noqa: E402
from harness.stress.runner import Job, Selection, reproducer  # noqa: E402
from harness.stress.scenarios import IcacheScenario, expected_rules, load_suite, mutations_for  # noqa: E402


def _synthetic(folder: Path, count: int) -> None:
    """``count`` cells over the icache scenarios and the first matrix job's architecture; one in 25
    fails with a violation in its slot, so the report rebuilds and disassembles programs."""
    scenarios = [s for s in load_suite("icache") if isinstance(s, IcacheScenario)]
    job0 = load_matrix(MATRIX_FILE).jobs[0]
    arch, cpu = job0.arch, job0.cpu
    for k in range(count):
        s = scenarios[k % len(scenarios)]
        mutations = mutations_for(s, arch)
        mutation = mutations[k % len(mutations)]
        expected = sorted(expected_rules(s, arch, cpu, mutation))
        failing = k % 25 == 0
        violations = []
        if failing:
            address, code, _ = installed_code(s, arch, k % 200)
            violations = [
                {
                    "rule": "made.up",
                    "pc": address,
                    "vcpu": 1,
                    "paddr": 1,
                    "insn": code[:4].hex(),
                    "disasm": "?",
                    "symbol": None,
                    "writer_pc": 1,
                    "writer_vcpu": 0,
                    "count": 1,
                    "space": "user",
                }
            ]
        observed = sorted({*expected, "made.up"}) if failing else expected
        append_result(
            folder,
            {
                "job": "run",
                "arch": arch,
                "cpu": cpu,
                "suite": "icache",
                "scenario": s.name,
                "mutation": mutation,
                "expected": "caught" if expected else "clean",
                "observed": "caught" if observed else "clean",
                "caught_by": [],
                "verdict": "fail" if failing else "pass",
                "violations": violations,
                "histogram": None,
                "reproducer": reproducer(Job(arch, cpu, "icache", (s,)), s.name, mutation, Selection()),
                "expected_rules": expected,
                "observed_rules": observed,
                "exit_code": 0,
                "detail": "",
                "run_dir": str(folder / f"run-{k}"),
            },
        )


def bench_report(count: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "results"
        _synthetic(folder, count)
        started = time.monotonic()
        report = build_report([folder])
        write_report(report, Path(tmp) / "out")
        elapsed = time.monotonic() - started
        print(
            f"report of {len(report.cells)} results ({len(report.failures)} distinct failures): "
            f"{elapsed:.2f} s"
        )
        return elapsed


def _matrix_run(matrix: Path, workers: int, folder: Path) -> float:
    """Seconds of one `jitprobe matrix run --jobs workers` (its guests' run folders in ``folder``).
    Exits when the run could not run its jobs (exit 2 or 3): its time would not be a rate."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "ci.cli", "matrix", "run", "--file", str(matrix), "--jobs", str(workers),
         "--results", str(folder / "results"), "--no-history"],
        capture_output=True, text=True, env={**os.environ, "JITPROBE_RUNS": str(folder / "runs")},
    )  # fmt: skip
    elapsed = time.monotonic() - started
    if proc.returncode not in (0, 1):  # 1: a cell failed, the jobs still ran
        sys.exit(f"matrix run --jobs {workers} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return elapsed


def bench_guests(count: int, rounds: int) -> None:
    """``count`` jobs (the first matrix job's architecture and CPU model, its first scenarios),
    run with --jobs 1 and --jobs 2 in each of ``rounds`` rounds, alternating which goes first
    (1-2, 2-1, ...) so that a change of the host's load weighs on both; prints each round's
    jobs per minute and ratio, then the median ratio."""
    first = load_matrix(MATRIX_FILE).jobs[0]
    scenarios = [s.name for s in load_suite("icache")][:count]
    text = {
        "axes": {
            "arch": [first.arch],
            "cpu": {first.arch: [first.cpu]},
            "suite": ["icache"],
            "scenario": scenarios,
        }
    }
    print(f"{count} jobs: icache {', '.join(scenarios)} on {first.arch} {first.cpu}; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")  # fmt: skip
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        matrix = Path(tmp) / "matrix.yaml"
        matrix.write_text(json.dumps(text))
        jobs = len(load_matrix(matrix).jobs)
        for number in range(1, rounds + 1):
            rate = {}
            for workers in (1, 2) if number % 2 else (2, 1):
                seconds = _matrix_run(matrix, workers, Path(tmp) / f"round{number}-jobs{workers}")
                rate[workers] = jobs / (seconds / 60)
                print(f"round {number} --jobs {workers}: {jobs} jobs in {seconds:.0f} s, "
                      f"{rate[workers]:.2f} jobs/min")  # fmt: skip
            ratios.append(rate[2] / rate[1])
            print(f"round {number} speed-up --jobs 2 / --jobs 1: {ratios[-1]:.2f}x")
    print(f"speed-up --jobs 2 / --jobs 1, median of {rounds} rounds: {statistics.median(ratios):.2f}x "
          f"(target 1.6x); load average {os.getloadavg()[0]:.1f} at the end")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=int, default=1000, help="results in the report's input")
    parser.add_argument(
        "--guests", type=int, default=0, help="also run this many matrix jobs with --jobs 1 and 2"
    )
    parser.add_argument("--rounds", type=int, default=2, help="with --guests: rounds of both (default 2)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: at least 1")
    bench_report(args.results)
    if args.guests:
        bench_guests(args.guests, args.rounds)


if __name__ == "__main__":
    main()
