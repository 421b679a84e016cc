"""Cost of the coherency sanitizer: run time with it over run time without, measured side by side.

For each architecture, alternating plain and sanitized guests (so that host load drifts hit both
alike), this measures:
  command  wall seconds of the whole command a user runs, `jitprobe exec --arch A [--sanitize]
        --guest-cmd true` as a separate process (boot, command, shutdown, report);
  boot  seconds from QEMU start to the readiness marker (Guest.ready_s);
  jit   wall seconds of a JIT-heavy guest command: tests/sanitizer_progs/codegen.c installing a
        function (64 instructions), synchronizing it with __builtin___clear_cache and calling it,
        ITERATIONS times, twice in a row (a cold and a warm pass).
and prints the median of each and their ratio (the issue's target: at most 2x).

    .venv/bin/python bench/sanitizer.py [--arch ARCH|all] [--runs N] [--iterations N] [--json]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from sanitizer_progs import build_program  # noqa: E402

from base.errors import JitprobeError  # noqa: E402
from base.profiles import available_arches, load_profile  # noqa: E402
from harness.guest import Guest  # noqa: E402
from harness.sanitizer import plugin_spec, read_report  # noqa: E402

WORKLOADS = ("command", "boot", "jit")


def measure(arch: str, sanitize: bool, iterations: int, workdir: Path) -> tuple[float, float, dict]:
    """(boot seconds, jit seconds, sanitizer summary) of one fresh guest."""
    run = Path(tempfile.mkdtemp(prefix=f"{arch}-{'san' if sanitize else 'plain'}-", dir=workdir))
    plugin = plugin_spec(arch, None, run) if sanitize else None
    program = build_program(arch, workdir)
    with Guest(load_profile(arch), run_dir=run, plugin=plugin) as guest:
        boot = guest.ready_s or 0.0
        path = guest.copy(program, "codegen")
        started = time.monotonic()
        for _ in range(2):
            result = guest.run(f"{path} clear_cache {iterations}", timeout=900)
            if result.verdict != "pass":
                raise SystemExit(f"{arch}: workload failed: {result.verdict} {result.stderr!r}")
        jit = time.monotonic() - started
    summary: dict = {}
    if sanitize:
        records, summary_or_none = read_report(run)
        summary = summary_or_none or {}
        if records:
            raise SystemExit(f"{arch}: the clean workload reported {len(records)} violations")
    return boot, jit, summary


def whole_command(arch: str, sanitize: bool, runs_dir: Path) -> float:
    """Wall seconds of `jitprobe exec --guest-cmd true`, as the user waits for it."""
    command = [sys.executable, "-m", "harness.cli", "exec", "--arch", arch, "--json", "--guest-cmd", "true"]
    started = time.monotonic()
    proc = subprocess.run(
        command + (["--sanitize"] if sanitize else []), cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "JITPROBE_RUNS": str(runs_dir)},
    )  # fmt: skip
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{arch}: `{' '.join(command)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="all", choices=(*available_arches(), "all"))
    parser.add_argument("--runs", type=int, default=3, help="guests per configuration (default 3)")
    parser.add_argument("--iterations", type=int, default=20000, help="code installs per pass")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    arches = available_arches() if args.arch == "all" else [args.arch]
    rows = []
    with tempfile.TemporaryDirectory(prefix="jitprobe-bench-san-") as tmp:
        workdir = Path(tmp)
        for arch in arches:
            times: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
            summary: dict = {}
            try:
                for _ in range(args.runs):
                    for sanitize in (False, True):
                        command = whole_command(arch, sanitize, workdir / "runs")
                        boot, jit, s = measure(arch, sanitize, args.iterations, workdir)
                        times[sanitize].append((command, boot, jit))
                        summary = s or summary
            except JitprobeError as exc:
                print(f"{arch}: {exc}", file=sys.stderr)
                return exc.exit_code
            row = {"arch": arch, "runs": args.runs, "iterations": args.iterations, "summary": summary}
            for i, name in enumerate(WORKLOADS):
                plain = statistics.median(t[i] for t in times[False])
                san = statistics.median(t[i] for t in times[True])
                row[name] = {
                    "plain_s": round(plain, 2),
                    "sanitized_s": round(san, 2),
                    "ratio": round(san / plain, 2),
                }
            rows.append(row)
    if args.json:
        print(json.dumps({"results": rows}))
        return 0
    print(f"{'arch':8} {'workload':8} {'plain s':>8} {'sanitized s':>12} {'ratio':>6}")
    for row in rows:
        for name in WORKLOADS:
            r = row[name]
            print(f"{row['arch']:8} {name:8} {r['plain_s']:8.2f} {r['sanitized_s']:12.2f} {r['ratio']:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
