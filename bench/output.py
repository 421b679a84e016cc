"""Host memory and disk as a guest prints more: peak resident memory of the
`jitprobe exec --json` process, the size of its JSON and of its run folder, for 1 MB and 200 MB
of guest output, side by side in one run (the memory of the jitprobe process, not QEMU's).

    .venv/bin/python bench/output.py [--arch ARCH] [--sizes 1000000,200000000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from base.profiles import available_arches  # noqa: E402

# jitprobe's own peak (its children, QEMU among them, excluded), printed as it exits.
_PEAK = ("import resource, sys; from harness.cli import main; status = main(sys.argv[1:]); "
         "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); "
         "sys.exit(status)")  # fmt: skip


def measure(arch: str, size: int, workdir: Path) -> dict[str, float]:
    runs = workdir / f"runs-{size}"
    command = [sys.executable, "-c", _PEAK, "exec", "--arch", arch, "--json", "--timeout", "3600",
               "--guest-cmd", f"yes | head -c {size}"]  # fmt: skip
    env = {**os.environ, "JITPROBE_RUNS": str(runs)}
    started = time.monotonic()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.monotonic() - started
    peak = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("PEAK_KIB ")]
    if proc.returncode != 0 or not peak:
        raise SystemExit(f"{arch}: exec of {size} bytes failed: {proc.stderr[-400:]}")
    folder = sum(f.stat().st_size for f in runs.rglob("*") if f.is_file())
    return {"bytes": size, "peak_rss_mb": int(peak[0]) / 1024, "json_mb": len(proc.stdout) / 1e6,
            "run_folder_mb": folder / 1e6, "wall_s": wall}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default=available_arches()[0], choices=available_arches())
    parser.add_argument("--sizes", default="1000000,200000000")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))  # ascending: each run's peak shows
    print(f"{'guest output':>14} {'peak RSS MB':>12} {'JSON MB':>8} {'run folder MB':>14} {'wall s':>7}")
    with tempfile.TemporaryDirectory(prefix="jitprobe-bench-out-") as tmp:
        for size in sizes:
            row = measure(args.arch, size, Path(tmp))
            print(f"{size:>14,} {row['peak_rss_mb']:>12.1f} {row['json_mb']:>8.2f} "
                  f"{row['run_folder_mb']:>14.2f} {row['wall_s']:>7.1f}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
