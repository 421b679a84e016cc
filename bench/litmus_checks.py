"""Litmus model-checking speed: checks per second of the BPF model over the BPF litmus tests, and
of each architecture's model over those tests compiled by jit_core (``litmus jit``), best of
--repeat runs. Guest runs of litmus tests (issue 11, part 6) are not built, so no guest
iteration rate is printed.
Target (issue 11): the whole ``litmus jit --arch all`` over the 120 BPF tests under 60 s.

    .venv/bin/python bench/litmus_checks.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.profiles import available_arches, load_profile  # noqa: E402
from litmus.bpf import bpf_program  # noqa: E402
from litmus.bpf_model import BpfModel  # noqa: E402
from litmus.check import check  # noqa: E402
from litmus.jit import SourceCache, check_jit  # noqa: E402
from litmus.syntax import read_test  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "litmus" / "bpf"
TARGET_S = 60.0


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
    print("guest iterations per second: not measured (guest runs of litmus tests are not built)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
