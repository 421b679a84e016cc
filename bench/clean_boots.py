"""False reports on clean guests: N sanitized runs per architecture of `jitprobe exec --sanitize`,
once with `--guest-cmd true` and once with a clean program (the cross_modify stress scenario with
the correct protocol: code installed on one CPU and run by threads on another), counting the runs
that reported any violation (each printed with its rule, space and symbol).

    .venv/bin/python bench/clean_boots.py [--runs 50] [--arch ARCH|all]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from base.profiles import available_arches  # noqa: E402
from harness.stress.programs import build_program  # noqa: E402
from harness.stress.scenarios import IcacheScenario, load_suite  # noqa: E402


def run_once(arch: str, workdir: Path, program: Path | None) -> list[dict]:
    """The violations of one sanitized exec; exits when the run itself did not complete."""
    what = [str(program)] if program else ["--guest-cmd", "true"]
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "exec", "--arch", arch, "--sanitize", "--json", *what],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "JITPROBE_RUNS": str(workdir / "runs")},
    )  # fmt: skip
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"{arch}: exec printed no JSON ({proc.returncode}): {proc.stderr[-500:]}") from None
    if result["verdict"] not in ("pass", "fail"):
        raise SystemExit(f"{arch}: exec ended {result['verdict']}: {proc.stderr[-500:]}")
    violations: list[dict] = result["violations"]
    return violations


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--arch", default="all")
    parser.add_argument("--what", choices=("both", "true", "program"), default="both",
                        help="--guest-cmd true, the clean program, or both (default)")
    args = parser.parse_args()
    arches = available_arches() if args.arch == "all" else [args.arch]
    dirty_total = 0
    with tempfile.TemporaryDirectory(prefix="jitprobe-clean-") as tmp:
        workdir = Path(tmp)
        for arch in arches:
            program = workdir / f"clean-{arch}"
            cross = next(s for s in load_suite("icache")
                         if isinstance(s, IcacheScenario) and s.name == "cross_modify")  # fmt: skip
            program.write_bytes(build_program(cross, arch, "none", 0))
            program.chmod(0o755)
            kinds: list[tuple[str, Path | None]] = [("true", None), ("clean program", program)]
            chosen = {"true": kinds[:1], "program": kinds[1:]}.get(args.what, kinds)
            for label, prog in chosen:
                dirty = 0
                for _ in range(args.runs):
                    violations = run_once(arch, workdir, prog)
                    if violations:
                        dirty += 1
                        for v in violations:
                            print(f"  {arch} {label}: {v['rule']} {v['space']} {v['symbol']} "
                                  f"writer {v['writer_pc']:#x} count {v['count']}", flush=True)  # fmt: skip
                print(f"{arch} {label}: {dirty} of {args.runs} sanitized runs reported violations")
                dirty_total += dirty
    return 1 if dirty_total else 0


if __name__ == "__main__":
    sys.exit(main())
