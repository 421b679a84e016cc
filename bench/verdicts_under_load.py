"""The sanitizer's detection verdicts on a loaded host: the same tests, N times in a row, with
CPU-bound processes hogging the host's cores for the whole run.

Runs the detection tests with pytest -n 2, beside HOGS processes of `yes > /dev/null`, which this
script ends itself whatever happens: tests/test_sanitizer_qemu.py's broken steps (every codegen.c
variant on every CPU model, same-thread and cross-thread) and tests/test_stress_qemu.py's icache
matrix (every scenario, jit_core mutation and scenario mutation on every stress CPU model, the
correct protocol included). Prints one line per run and the count of runs whose verdicts were
all as expected.

    .venv/bin/python bench/verdicts_under_load.py [--runs 10] [--hogs 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DETECTION = ["tests/test_sanitizer_qemu.py::test_each_broken_step_is_reported_with_its_rule",
             "tests/test_stress_qemu.py::test_every_cell_of_the_icache_matrix_holds"]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--hogs", type=int, default=2, help="CPU-bound processes beside the tests")
    args = parser.parse_args()
    hogs = [subprocess.Popen(["sh", "-c", "exec yes > /dev/null"]) for _ in range(args.hogs)]
    good = 0
    try:
        for run in range(1, args.runs + 1):
            started = time.monotonic()
            proc = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider",
                 *DETECTION],
                cwd=ROOT, capture_output=True, text=True,
            )  # fmt: skip
            last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
            good += proc.returncode == 0
            print(f"run {run}: {'expected' if proc.returncode == 0 else 'DIFFERENT'} ({last}; "
                  f"{time.monotonic() - started:.0f} s)", flush=True)  # fmt: skip
            if proc.returncode != 0:
                failures = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "E  "))]
                print("\n".join(failures[:20]), flush=True)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    print(f"{good} of {args.runs} loaded runs gave every expected verdict ({args.hogs} hogs)")
    return 0 if good == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
