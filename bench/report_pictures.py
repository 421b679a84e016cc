"""The report's pictures at a full nightly's size: matplotlib's import, the detection grid of
every icache scenario and mutation on 5 CPU models with 2 vCPU counts plus the litmus tests, the
failure trend over 90 nights, and one outcome histogram per litmus test and place.

    .venv/bin/python bench/report_pictures.py [--scenarios 12] [--mutations 10] [--litmus 14]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PLACES = [("arm64", "cortex-a57"), ("arm64", "neoverse-n1"), ("arm64", "neoverse-v1"), ("riscv64", "rv64"),
          ("x86_64", "max")]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenarios", type=int, default=12)
    parser.add_argument("--mutations", type=int, default=10)
    parser.add_argument("--litmus", type=int, default=14, help="litmus tests, each run on 3 places")
    args = parser.parse_args()

    from ci.report.pictures import detection_grid, failure_trend, histograms, outcome_histogram

    started = time.monotonic()
    import matplotlib.figure  # noqa: F401  (what drawing the first picture would import)

    imported = time.monotonic()
    cells: list[dict[str, Any]] = [
        {"suite": "icache", "scenario": f"scenario_{s}", "mutation": f"mutation_{m}", "arch": arch,
         "cpu": cpu, "smp": smp, "verdict": "fail" if (s * m) % 17 == 1 else "pass"}
        for s in range(args.scenarios) for m in range(args.mutations)
        for arch, cpu in PLACES for smp in (2, 4)
    ]  # fmt: skip
    litmus: list[dict[str, Any]] = [
        {"suite": "litmus", "scenario": f"T{k}", "mutation": "none", "arch": arch, "cpu": cpu, "smp": 2,
         "verdict": "pass", "histogram": {"r0=0 r1=0": 100_000, "r0=0 r1=1": 99_000, "r0=1 r1=1": 800_000}}
        for k in range(args.litmus) for arch, cpu in PLACES[2:]
    ]  # fmt: skip
    timings = []
    t = time.monotonic()
    grid = detection_grid(cells + litmus)
    assert grid is not None
    timings.append(f"grid of {len(cells) + len(litmus)} cells {time.monotonic() - t:.2f} s "
                   f"({len(grid.svg) // 1024} KiB)")  # fmt: skip
    t = time.monotonic()
    nights = [f"2026-{1 + k // 28:02d}-{1 + k % 28:02d}" for k in range(90)]
    trend = failure_trend([(night, k % 7, len(cells)) for k, night in enumerate(nights)])
    assert trend is not None
    timings.append(f"trend of 90 nights {time.monotonic() - t:.2f} s ({len(trend.svg) // 1024} KiB)")
    t = time.monotonic()
    drawn = [outcome_histogram(h, f"h{k}") for k, h in enumerate(histograms(litmus))]
    timings.append(f"{len(drawn)} histograms {time.monotonic() - t:.2f} s "
                   f"({sum(len(p.svg) for p in drawn) // 1024} KiB)")  # fmt: skip
    print(f"matplotlib import {imported - started:.2f} s; " + "; ".join(timings)
          + f"; total {time.monotonic() - started:.2f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
