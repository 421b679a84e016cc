"""Boot-to-ready time per architecture: median of N boots (default 5), printed as a table.

    .venv/bin/python bench/boot.py [--arch ARCH|all] [--runs N] [--cpu MODEL] [--accel tcg|kvm|auto] [--json]

Ready time is from starting QEMU to the guest's readiness marker on the console (QEMU start,
firmware, kernel, /init with its 9p mounts). Target on the 2-core reference machine: at most
2.5 s median per architecture. The host's load average is printed with the results, since
other work on the machine slows TCG down.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from base.profiles import expand_arch, load_profile  # noqa: E402
from harness.guest import Guest  # noqa: E402

TARGET_S = 2.5


def measure(arch: str, runs: int, cpu: str | None, accel: str | None, work: Path) -> dict[str, object]:
    """Boot ``arch`` ``runs`` times; return its times and their median."""
    profile = load_profile(arch)
    times = []
    for n in range(runs):
        run_dir = work / f"{arch}-{n}"
        run_dir.mkdir()
        with Guest(profile, run_dir=run_dir, cpu=cpu, accel=accel) as guest:
            assert guest.ready_s is not None
            times.append(guest.ready_s)
            used_cpu, used_accel = guest.cpu, guest.accel
    median = statistics.median(times)
    return {
        "arch": arch, "cpu": used_cpu, "accel": used_accel, "times_s": [round(t, 3) for t in times],
        "median_s": round(median, 3), "target_s": TARGET_S, "met": median <= TARGET_S,
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="all")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cpu")
    parser.add_argument("--accel", choices=("tcg", "kvm", "auto"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="jitprobe-bench-") as tmp:
        rows = [measure(a, args.runs, args.cpu, args.accel, Path(tmp)) for a in expand_arch(args.arch)]
    load_after = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"results": rows, "loadavg_1min": [load_before, load_after]}))
        return 0
    table = Table(title=f"boot to ready, median of {args.runs} (target <= {TARGET_S} s)")
    for column in ("arch", "cpu", "accel", "median s", "min s", "max s", "target met"):
        table.add_column(column)
    for row in rows:
        times = row["times_s"]
        assert isinstance(times, list)
        table.add_row(
            str(row["arch"]), str(row["cpu"]), str(row["accel"]), f"{row['median_s']:.2f}",
            f"{min(times):.2f}", f"{max(times):.2f}", "yes" if row["met"] else "no",
        )  # fmt: skip
    console = Console()
    console.print(table)
    console.print(
        f"host load average (1 min): {load_before:.2f} before, {load_after:.2f} after; {os.cpu_count()} CPUs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
