"""Litmus speed: checks per second of the BPF model over the BPF litmus tests and of each
architecture's model over those tests compiled by jit_core (``litmus jit``), best of --repeat
runs; then iterations per second of one test run natively in each architecture's guest
(``litmus run``, one boot each).
Target (issue 11): the whole ``litmus jit --arch all`` over the 120 BPF tests under 60 s.

    .venv/bin/python bench/litmus_checks.py [--repeat 3] [--guest-iterations 20000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from base.profiles import available_arches, load_profile  # noqa: E402
from litmus.bpf import bpf_program  # noqa: E402
from litmus.bpf_model import BpfModel  # noqa: E402
from litmus.check import check  # noqa: E402
from litmus.guest_runs import run_in_guest  # noqa: E402
from litmus.jit import SourceCache, check_jit  # noqa: E402
from litmus.syntax import read_test  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "litmus" / "bpf"
TARGET_S = 60.0
GUEST_TEST = "SB+poonceonces.litmus"


def _best(repeat: int, run: object) -> float:
    assert callable(run)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--guest-iterations",
        type=int,
        default=20_000,
        help=f"iterations of {GUEST_TEST} in each guest (0: no guest runs)",
    )
    args = parser.parse_args()
    files = sorted(CORPUS.glob("*.litmus"))
    if not files:
        print(f"no litmus tests in {CORPUS}", file=sys.stderr)
        return 2
    tests = [read_test(f) for f in files]

    def source() -> None:
        for test in tests:
            check(bpf_program(test)[0], BpfModel())

    seconds = _best(args.repeat, source)
    print(f"{'model':10} {'tests':>5} {'seconds':>8} {'checks/s':>9}")
    print(f"{'bpf':10} {len(files):5} {seconds:8.2f} {len(files) / seconds:9.1f}")
    cache = SourceCache()
    for path in files:
        cache.get(path)
    total = seconds
    for arch in available_arches():

        def compiled(arch: str = arch) -> None:
            for path in files:
                check_jit(path, arch, "none", cache)

        seconds = _best(args.repeat, compiled)
        total += seconds
        model = load_profile(arch).memory_model
        rate = len(files) / seconds
        print(f"{model:10} {len(files):5} {seconds:8.2f} {rate:9.1f}  ({arch}: compile, decode, check)")
    verdict = "met" if total < TARGET_S else "missed"
    print(
        f"litmus jit --arch all over {len(files)} tests: {total:.1f} s (target {TARGET_S:.0f} s: {verdict})"
    )
    if args.guest_iterations:
        _guest_rates(CORPUS / GUEST_TEST, args.guest_iterations, cache)
    return 0


def _guest_rates(path: Path, iterations: int, cache: SourceCache) -> None:
    """Iterations per second of ``path`` run natively in each architecture's guest (one boot
    included, so this understates the steady rate)."""
    print(f"guest runs of {path.stem}, {iterations} iterations (one boot included):")
    for arch in available_arches():
        start = time.perf_counter()
        [result] = run_in_guest([path], arch, iterations, cache)
        seconds = time.perf_counter() - start
        states = ", ".join(f"{state} x{count}" for state, count in sorted(result.histogram.items()))
        rate = iterations / seconds
        print(f"  {arch:8} {seconds:6.1f} s {rate:8.0f} iterations/s  {result.verdict.value}: {states}")


if __name__ == "__main__":
    sys.exit(main())
