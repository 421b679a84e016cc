"""The nightly matrix's speed: the report's time for N results, and (with --guests) jobs per
minute of `jitprobe matrix run` with --jobs 1 and --jobs 2 over the same jobs in one run.

Targets (issue 12): the report under 5 s for 1,000 results; --jobs 2 at least 1.6x the jobs per
minute of --jobs 1.

    .venv/bin/python bench/matrix.py [--results 1000] [--guests N]
"""

from __future__ import annotations

import argparse
import json
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


def bench_guests(count: int) -> None:
    """``count`` jobs (the first matrix job's architecture and CPU model, its first scenarios),
    run with --jobs 1 then --jobs 2."""
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
    with tempfile.TemporaryDirectory() as tmp:
        matrix = Path(tmp) / "matrix.yaml"
        matrix.write_text(json.dumps(text))
        jobs = len(load_matrix(matrix).jobs)
        rate = {}
        for workers in (1, 2):
            started = time.monotonic()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "ci.cli",
                    "matrix",
                    "run",
                    "--file",
                    str(matrix),
                    "--jobs",
                    str(workers),
                    "--results",
                    f"{tmp}/r{workers}",
                    "--no-history",
                ],
                check=False,
            )
            minutes = (time.monotonic() - started) / 60
            rate[workers] = jobs / minutes
            print(f"--jobs {workers}: {jobs} jobs in {minutes * 60:.0f} s, {rate[workers]:.2f} jobs/min")
        print(f"speed-up --jobs 2 / --jobs 1: {rate[2] / rate[1]:.2f}x (target 1.6x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=int, default=1000, help="results in the report's input")
    parser.add_argument(
        "--guests", type=int, default=0, help="also run this many matrix jobs with --jobs 1 and 2"
    )
    args = parser.parse_args()
    bench_report(args.results)
    if args.guests:
        bench_guests(args.guests)


if __name__ == "__main__":
    main()
