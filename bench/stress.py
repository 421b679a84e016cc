"""Speed of the stress suites, measured side by side in one run:

  installs/s  code installs plus calls per second in a guest, per architecture, without and with
              the sanitizer: the rewrite_in_place program (correct protocol) run with SMALL
              iterations and then with ten times more until that takes MIN_DIFFERENCE_S longer,
              in one booted guest; the extra iterations over the extra wall time, so boot, copy
              and process start cancel out;
  suite       wall seconds of the whole command a user waits for,
              `jitprobe run --suite icache --arch all` (a separate process; the issue's target:
              under 10 minutes on 2 cores), and of one scenario on one architecture,
              `jitprobe run --suite icache --arch A --scenario rewrite_in_place` for the architecture
              with the most stress CPU models (target: 15 s).

    .venv/bin/python bench/stress.py [--arch ARCH|all] [--skip-suite] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from base.profiles import available_arches, load_profile  # noqa: E402
from harness.guest import Guest  # noqa: E402
from harness.sanitizer import plugin_spec  # noqa: E402
from harness.stress.programs import build_program  # noqa: E402
from harness.stress.scenarios import IcacheScenario, load_suite  # noqa: E402

SMALL = 100
MIN_DIFFERENCE_S = 3.0  # the larger run must take this much longer, so that noise stays small


def installs_per_second(arch: str, sanitize: bool, workdir: Path) -> float:
    """Installs plus calls per second of rewrite_in_place in one guest (see the docstring)."""
    scenario = next(s for s in load_suite("icache")
                    if isinstance(s, IcacheScenario) and s.name == "rewrite_in_place")  # fmt: skip
    run = Path(tempfile.mkdtemp(prefix=f"{arch}-{'san' if sanitize else 'plain'}-", dir=workdir))
    plugin = plugin_spec(arch, None, run) if sanitize else None
    with Guest(load_profile(arch), run_dir=run, plugin=plugin) as guest:

        def wall(n: int) -> float:
            sized = dataclasses.replace(scenario, params={**scenario.params, "iterations": n})
            path = guest.copy(build_program(sized, arch, "none", 0), f"rewrite-{n}")
            result = guest.run(path, timeout=900)
            if result.exit_code != 0:
                raise SystemExit(f"{arch}: rewrite_in_place ended {result.verdict} ({result.exit_code})")
            return result.wall_s

        base, large = wall(SMALL), SMALL * 10
        while (spent := wall(large) - base) < MIN_DIFFERENCE_S:  # grow until the work dominates the noise
            large *= 10
    return (large - SMALL) / spent


def command_seconds(args: list[str], workdir: Path) -> tuple[float, int]:
    """(wall seconds, exit status) of one `jitprobe run` as a separate process; the cells that
    differed from their expectation are printed on stderr."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", *args, "--json"], cwd=ROOT,
                          capture_output=True, text=True,
                          env={**os.environ, "JITPROBE_RUNS": str(workdir / "runs")})  # fmt: skip
    wall = time.monotonic() - started
    try:
        differing = [r for r in json.loads(proc.stdout)["results"] if r["verdict"] not in ("pass", None)]
    except (ValueError, KeyError):
        differing = []
        print(f"jitprobe run {' '.join(args)}: no JSON ({proc.returncode}): {proc.stderr[-800:]}",
              file=sys.stderr)  # fmt: skip
    for r in differing:
        where = f"{r['arch']} {r['cpu']} {r['scenario']} {r['mutation']}"
        print(f"differs: {where}: {r['verdict']}: {r['detail']}", file=sys.stderr)
    return wall, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="all")
    parser.add_argument("--skip-suite", action="store_true", help="only the installs per second")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    arches = available_arches() if args.arch == "all" else [args.arch]
    out: dict[str, object] = {"cores": os.cpu_count(), "load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="jitprobe-stress-bench-") as tmp:
        workdir = Path(tmp)
        rates = {}
        for arch in arches:
            plain = installs_per_second(arch, False, workdir)
            sanitized = installs_per_second(arch, True, workdir)
            rates[arch] = {"plain": round(plain), "sanitized": round(sanitized),
                           "ratio": round(plain / sanitized, 2)}  # fmt: skip
            if not args.json:
                print(f"{arch}: {plain:,.0f} installs+calls/s plain, {sanitized:,.0f} sanitized "
                      f"({plain / sanitized:.2f}x)", flush=True)  # fmt: skip
        out["installs_per_second"] = rates
        if not args.skip_suite:
            widest = max(available_arches(), key=lambda a: len(load_profile(a).stress_cpus))
            one_args = ["--suite", "icache", "--arch", widest, "--scenario", "rewrite_in_place"]
            one, one_rc = command_seconds(one_args, workdir)
            whole, whole_rc = command_seconds(["--suite", "icache", "--arch", "all"], workdir)
            out["one_scenario_s"] = {"arch": widest, "seconds": round(one, 1), "exit": one_rc}
            out["suite_all_s"] = {"seconds": round(whole, 1), "exit": whole_rc}
            if not args.json:
                print(f"jitprobe run {' '.join(one_args)}: {one:.1f} s (exit {one_rc})")
                print(f"jitprobe run --suite icache --arch all: {whole:.1f} s (exit {whole_rc})")
    out["load_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
