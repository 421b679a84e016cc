"""JIT compile throughput and code density per backend.

For each backend that exists: compile a large program mix (random programs from jit_core.progen,
derandomized so that every run compiles the same mix, plus the bpf_conformance programs when
../shared is there) through jit_core.compile.compile_program (verifier included), report eBPF
instructions compiled per second (best of --repeat runs), and count the native instructions
emitted with capstone to give native instructions per eBPF instruction.
Target (issue 3): at least 100,000 eBPF instructions per second per backend in CPython.

    .venv/bin/python bench/jit.py [--programs 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from base.disasm import disassembler  # noqa: E402
from jit_core.compile import compile_program  # noqa: E402
from jit_core.conformance import load_suite, skip_reason  # noqa: E402
from jit_core.isa import Insn  # noqa: E402
from jit_core.progen import sample  # noqa: E402
from jit_core.target import arches  # noqa: E402
from jit_core.verify import verify  # noqa: E402

TARGET = 100_000
SUITE = Path(__file__).resolve().parents[2] / "shared" / "bpf_conformance" / "tests"


def program_mix(count: int) -> list[list[Insn]]:
    """``count`` derandomized random programs, plus the runnable conformance programs."""
    mix = sample(count, max_items=80)
    if SUITE.is_dir():
        mix += [t.prog for t in load_suite(SUITE) if t.problem is None and skip_reason(t) is None]
    return mix


def native_count(arch: str, code: bytes) -> tuple[int, int]:
    """(native instructions, bytes capstone could not decode)."""
    md = disassembler(arch)
    count = decoded = 0
    for _address, size, _mnemonic, _operands in md.disasm_lite(code, 0):
        count += 1
        decoded += size
    return count, len(code) - decoded


def measure(arch: str, mix: list[list[Insn]], repeat: int) -> dict[str, float]:
    slots = sum(len(p) for p in mix)
    best = float("inf")
    compiled = []
    for _ in range(repeat):
        start = time.perf_counter()
        compiled = [compile_program(arch, prog) for prog in mix]
        best = min(best, time.perf_counter() - start)
    native = undecoded = 0
    for result in compiled:
        count, rest = native_count(arch, result.code)
        native += count
        undecoded += rest
    return {"slots": slots, "seconds": best, "rate": slots / best, "native": native,
            "per_insn": native / slots, "bytes": sum(len(c.code) for c in compiled), "undecoded": undecoded}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--programs", type=int, default=300, help="random programs in the mix")
    parser.add_argument("--repeat", type=int, default=3, help="compile the mix N times, keep the best")
    args = parser.parse_args()
    mix = program_mix(args.programs)
    slots = sum(len(p) for p in mix)
    start = time.perf_counter()
    for prog in mix:
        verify(prog)
    verify_rate = slots / (time.perf_counter() - start)
    print(f"mix: {len(mix)} programs, {slots} eBPF slots; verifier alone: {verify_rate:,.0f} slots/s\n")
    print(f"{'backend':<9} {'compile s':>9} {'eBPF insn/s':>12} {'native insns':>12} {'native/eBPF':>11} "
          f"{'code bytes':>10} {'target':>7}")
    failed = False
    for arch in arches():
        if importlib.util.find_spec(f"jit_core.{arch}") is None:
            print(f"{arch:<9} (no backend)")
            continue
        row = measure(arch, mix, args.repeat)
        met = row["rate"] >= TARGET
        failed |= not met
        note = f"  ({row['undecoded']} bytes capstone could not decode)" if row["undecoded"] else ""
        print(f"{arch:<9} {row['seconds']:>9.3f} {row['rate']:>12,.0f} {row['native']:>12,} "
              f"{row['per_insn']:>11.2f} {row['bytes']:>10,} {'met' if met else 'MISSED':>7}{note}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
