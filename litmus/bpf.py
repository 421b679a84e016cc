"""The BPF litmus dialect: kernel BPF assembly lines translated into jit_core's eBPF IR, and the
IR's memory semantics (the source semantics the BPF model judges).

Each thread becomes an IR program ending in ``exit`` (a label at the end of a thread is that
exit). Atomics follow the BPF memory model's reading: an atomic that returns a value (fetch
forms, xchg, a successful cmpxchg) is one read-modify-write event marked fully ordered (SC);
a non-fetching atomic is one unmarked read-modify-write event; a failing cmpxchg is a plain
read. Dependencies are syntactic: a register carries the reads it was computed from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial

from jit_core import isa
from jit_core.interp import alu, condition
from jit_core.isa import Insn

from .check import Program, allocate, initial_registers
from .errors import LitmusError, LitmusSyntaxError
from .events import NO_TAINT, LoopBound, Tag, Taint, ThreadBuilder
from .syntax import Line, LitmusTest

MAX_STEPS = 1000
M64 = (1 << 64) - 1

_SIZES = {"u8": isa.SIZE_B, "u16": isa.SIZE_H, "u32": isa.SIZE_W, "u64": isa.SIZE_DW}
_ALU = {
    "+": isa.ADD,
    "-": isa.SUB,
    "*": isa.MUL,
    "/": isa.DIV,
    "%": isa.MOD,
    "&": isa.AND,
    "|": isa.OR,
    "^": isa.XOR,
    "<<": isa.LSH,
    ">>": isa.RSH,
    "s>>": isa.ARSH,
}
_JUMPS = {
    "==": isa.JEQ,
    "!=": isa.JNE,
    ">": isa.JGT,
    ">=": isa.JGE,
    "<": isa.JLT,
    "<=": isa.JLE,
    "s>": isa.JSGT,
    "s>=": isa.JSGE,
    "s<": isa.JSLT,
    "s<=": isa.JSLE,
    "&": isa.JSET,
}
_ATOMIC_ALU = {
    isa.ATOMIC_ADD: isa.ADD,
    isa.ATOMIC_OR: isa.OR,
    isa.ATOMIC_AND: isa.AND,
    isa.ATOMIC_XOR: isa.XOR,
}
_FETCH = {"add": isa.ATOMIC_ADD, "or": isa.ATOMIC_OR, "and": isa.ATOMIC_AND, "xor": isa.ATOMIC_XOR}

R = r"r(\d+)"
NUM = r"(-?(?:0x[0-9a-fA-F]+|\d+))"
MEM = r"\(\s*\(?\s*(u8|u16|u32|u64)\s*\*\s*\)\s*\(\s*" + R + r"\s*([+-])\s*(\d+)\s*\)\s*\)?"
PATTERNS = [
    ("label", re.compile(r"([A-Za-z_]\w*)\s*:$")),
    ("goto", re.compile(r"goto\s+([A-Za-z_]\w*)$")),
    (
        "if",
        re.compile(
            r"if\s+" + R + r"\s*(==|!=|s?>=?|s?<=?|&)\s*(?:" + R + "|" + NUM + r")\s+goto\s+([A-Za-z_]\w*)$"
        ),
    ),
    ("load_acquire", re.compile(R + r"\s*=\s*load_acquire\s*\(" + MEM + r"\s*\)$")),
    ("store_release", re.compile(r"store_release\s*\(" + MEM + r"\s*,\s*" + R + r"\s*\)$")),
    (
        "fetch",
        re.compile(R + r"\s*=\s*atomic_fetch_(add|or|and|xor)\s*\(" + MEM + r"\s*,\s*" + R + r"\s*\)$"),
    ),
    ("lock", re.compile(r"lock\s*\*" + MEM + r"\s*(\+|\||&|\^)=\s*" + R + "$")),
    ("xchg", re.compile(R + r"\s*=\s*xchg_(32|64)\s*\(\s*" + R + r"\s*\+\s*(\d+)\s*,\s*" + R + r"\s*\)$")),
    (
        "cmpxchg",
        re.compile(
            R + r"\s*=\s*cmpxchg_(32|64)\s*\(\s*" + R + r"\s*\+\s*(\d+)\s*,\s*r0\s*,\s*" + R + r"\s*\)$"
        ),
    ),
    ("load", re.compile(R + r"\s*=\s*\*" + MEM + "$")),
    ("store", re.compile(r"\*" + MEM + r"\s*=\s*(?:" + R + "|" + NUM + ")$")),
    ("alu", re.compile(R + r"\s*(\+|-|\*|/|%|&|\||\^|<<|s>>|>>)=\s*(?:" + R + "|" + NUM + ")$")),
    ("mov", re.compile(R + r"\s*=\s*(?:" + R + "|" + NUM + ")$")),
]


@dataclass
class BpfThread:
    """One thread as IR. ``lines[i]`` is the litmus line of slot i (None for the final exit)."""

    prog: list[Insn]
    lines: list[Line | None]


def _reg(text: str, path: str, line: Line) -> int:
    n = int(text)
    if n > 10:
        raise LitmusSyntaxError(path, line.lineno, f"expected a register r0..r10, found r{n}")
    return n


def _mem_off(sign: str, off: str) -> int:
    return -int(off) if sign == "-" else int(off)


def translate(lines: list[Line], path: str) -> BpfThread:
    """The IR of one thread's lines. Raises LitmusSyntaxError naming the line and the forms
    accepted when a line is not BPF assembly this dialect supports."""
    prog: list[Insn] = []
    where: list[Line | None] = []
    labels: dict[str, int] = {}
    jumps: list[tuple[int, str, Line]] = []
    for line in lines:
        text = line.text.strip()
        found = next(((kind, m) for kind, pattern in PATTERNS if (m := pattern.match(text))), None)
        if found is None:
            raise LitmusSyntaxError(
                path,
                line.lineno,
                f"expected a BPF instruction (rD = imm|rS, rD op= ..., "
                f"loads, stores, load_acquire, store_release, "
                f"atomic_fetch_*, lock, xchg, cmpxchg, if/goto, "
                f"LABEL:), found {text!r}",
            )
        kind, m = found
        g = m.groups()
        if kind == "label":
            labels[g[0]] = len(prog)
            continue
        if kind == "goto":
            jumps.append((len(prog), g[0], line))
            insn = Insn(isa.JMP | isa.JA)
        elif kind == "if":
            dst = _reg(g[0], path, line)
            op = _JUMPS[g[1]]
            jumps.append((len(prog), g[4], line))
            if g[2] is not None:
                insn = Insn(isa.JMP | op | isa.SRC_X, dst, _reg(g[2], path, line))
            else:
                insn = Insn(isa.JMP | op, dst, imm=int(g[3], 0))
        elif kind == "load_acquire":
            insn = Insn(
                isa.STX | isa.MODE_ATOMIC | _SIZES[g[1]],
                _reg(g[0], path, line),
                _reg(g[2], path, line),
                _mem_off(g[3], g[4]),
                isa.ATOMIC_LOAD_ACQ,
            )
        elif kind == "store_release":
            insn = Insn(
                isa.STX | isa.MODE_ATOMIC | _SIZES[g[0]],
                _reg(g[1], path, line),
                _reg(g[4], path, line),
                _mem_off(g[2], g[3]),
                isa.ATOMIC_STORE_REL,
            )
        elif kind == "fetch":
            # rD = atomic_fetch_op(mem, rS) with rD != rS is rD = rS then the IR's in-place form
            dst, src, base = _reg(g[0], path, line), _reg(g[6], path, line), _reg(g[3], path, line)
            if dst != src:
                if dst == base:
                    raise LitmusSyntaxError(
                        path,
                        line.lineno,
                        f"expected the result register of atomic_fetch_{g[1]} to differ from the base",
                    )
                prog.append(Insn(isa.ALU64 | isa.MOV | isa.SRC_X, dst, src))
                where.append(line)
            insn = Insn(
                isa.STX | isa.MODE_ATOMIC | _SIZES[g[2]],
                base,
                dst,
                _mem_off(g[4], g[5]),
                _FETCH[g[1]] | isa.ATOMIC_FETCH,
            )
        elif kind == "lock":
            op_name = {"+": "add", "|": "or", "&": "and", "^": "xor"}[g[4]]
            insn = Insn(
                isa.STX | isa.MODE_ATOMIC | _SIZES[g[0]],
                _reg(g[1], path, line),
                _reg(g[5], path, line),
                _mem_off(g[2], g[3]),
                _FETCH[op_name],
            )
        elif kind in ("xchg", "cmpxchg"):
            if kind == "xchg" and g[0] != g[4]:
                raise LitmusSyntaxError(path, line.lineno, "expected the same register on both sides of xchg")
            if kind == "cmpxchg" and g[0] != "0":
                raise LitmusSyntaxError(path, line.lineno, "expected cmpxchg's result in r0")
            size = isa.SIZE_DW if g[1] == "64" else isa.SIZE_W
            op = isa.ATOMIC_XCHG if kind == "xchg" else isa.ATOMIC_CMPXCHG
            insn = Insn(
                isa.STX | isa.MODE_ATOMIC | size,
                _reg(g[2], path, line),
                _reg(g[4], path, line),
                int(g[3]),
                op,
            )
        elif kind == "load":
            insn = Insn(
                isa.LDX | isa.MODE_MEM | _SIZES[g[1]],
                _reg(g[0], path, line),
                _reg(g[2], path, line),
                _mem_off(g[3], g[4]),
            )
        elif kind == "store":
            size, base, off = _SIZES[g[0]], _reg(g[1], path, line), _mem_off(g[2], g[3])
            if g[4] is not None:
                insn = Insn(isa.STX | isa.MODE_MEM | size, base, _reg(g[4], path, line), off)
            else:
                insn = Insn(isa.ST | isa.MODE_MEM | size, base, off=off, imm=int(g[5], 0))
        else:  # alu, mov
            dst = _reg(g[0], path, line)
            code = _ALU[g[1]] if kind == "alu" else isa.MOV
            src_reg, imm = g[-2], g[-1]
            if src_reg is not None:
                insn = Insn(isa.ALU64 | code | isa.SRC_X, dst, _reg(src_reg, path, line))
            else:
                insn = Insn(isa.ALU64 | code, dst, imm=int(imm, 0))
        prog.append(insn)
        where.append(line)
    prog.append(Insn(isa.EXIT_OPCODE))
    where.append(None)
    for index, label, line in jumps:
        if label not in labels:
            raise LitmusSyntaxError(
                path, line.lineno, f"expected a label defined in this thread, found {label!r}"
            )
        prog[index] = Insn(
            prog[index].opcode, prog[index].dst, prog[index].src, labels[label] - index - 1, prog[index].imm
        )
    return BpfThread(prog, where)


def _mask(size: int) -> int:
    return (1 << (8 * isa.SIZE_BYTES[size])) - 1


def run_ir(thread: BpfThread, builder: ThreadBuilder, *, init: dict[int, int]) -> dict[str, int]:
    """The BPF-model semantics of ``thread`` (registers start at ``init``, others 0).

    Raises LoopBound past MAX_STEPS, LitmusError on an instruction outside the dialect, and
    NeedValue from the builder."""
    regs = [init.get(k, 0) for k in range(isa.NUM_REGS)]
    taint: list[Taint] = [NO_TAINT] * isa.NUM_REGS
    prog, pc = thread.prog, 0
    for _ in range(MAX_STEPS):
        insn = prog[pc]
        line = thread.lines[pc]
        text = line.text if line else "exit"
        pc += 1
        cls, size = insn.cls, insn.opcode & 0x18
        if insn.opcode == isa.EXIT_OPCODE:
            return {f"r{k}": regs[k] for k in range(isa.NUM_REGS)}
        if cls == isa.ALU64:
            if insn.opcode & isa.SRC_X:
                b, tb = regs[insn.src], taint[insn.src]
            else:
                b, tb = insn.imm & M64, NO_TAINT
            mov = insn.opcode & 0xF0 == isa.MOV
            regs[insn.dst] = alu(insn.opcode, insn.off, insn.imm, regs[insn.dst], b)
            taint[insn.dst] = tb if mov else taint[insn.dst] | tb
        elif cls in (isa.JMP, isa.JMP32):
            if insn.opcode & 0xF0 == isa.JA:
                pc += insn.off
                continue
            b, tb = (
                (regs[insn.src], taint[insn.src]) if insn.opcode & isa.SRC_X else (insn.imm & M64, NO_TAINT)
            )
            builder.branch(taint[insn.dst] | tb)
            if condition(insn.opcode, regs[insn.dst], b):
                pc += insn.off
        elif cls == isa.LDX:
            value, eid = builder.read((regs[insn.src] + insn.off) & M64, addr=taint[insn.src], insn=text)
            regs[insn.dst], taint[insn.dst] = value & _mask(size), frozenset({eid})
        elif cls == isa.ST:
            builder.write(
                (regs[insn.dst] + insn.off) & M64, insn.imm & _mask(size), addr=taint[insn.dst], insn=text
            )
        elif insn.opcode & 0xE0 == isa.MODE_MEM:
            builder.write(
                (regs[insn.dst] + insn.off) & M64,
                regs[insn.src] & _mask(size),
                addr=taint[insn.dst],
                data=taint[insn.src],
                insn=text,
            )
        else:
            _atomic(insn, regs, taint, builder, text)
    raise LoopBound(f"thread {builder.thread} runs more than {MAX_STEPS} instructions")


def _atomic(insn: Insn, regs: list[int], taint: list[Taint], builder: ThreadBuilder, text: str) -> None:
    op, mask = insn.imm, _mask(insn.opcode & 0x18)
    if op == isa.ATOMIC_LOAD_ACQ:
        value, eid = builder.read(
            (regs[insn.src] + insn.off) & M64, addr=taint[insn.src], tags={Tag.ACQ}, insn=text
        )
        regs[insn.dst], taint[insn.dst] = value & mask, frozenset({eid})
        return
    loc, addr = (regs[insn.dst] + insn.off) & M64, taint[insn.dst]
    src = regs[insn.src] & mask
    if op == isa.ATOMIC_STORE_REL:
        builder.write(loc, src, addr=addr, data=taint[insn.src], tags={Tag.REL}, insn=text)
        return
    if op == isa.ATOMIC_CMPXCHG:
        expected = regs[0] & mask
        old, eid = builder.update(
            loc,
            lambda v: src if v == expected else None,
            addr=addr,
            data=taint[insn.src] | taint[0],
            tags={Tag.SC},
            insn=text,
        )
        regs[0], taint[0] = old, frozenset({eid})
        return
    alu_op = _ATOMIC_ALU.get(op & ~isa.ATOMIC_FETCH)
    if op != isa.ATOMIC_XCHG and alu_op is None:
        raise LitmusError(f"atomic operation {op:#x} is not in the BPF litmus dialect")

    def new(old: int) -> int:
        if alu_op is None:  # xchg
            return src
        return alu(isa.ALU64 | alu_op | isa.SRC_X, 0, 0, old, src) & mask

    fetch = bool(op & isa.ATOMIC_FETCH)
    old, eid = builder.update(
        loc, new, addr=addr, data=taint[insn.src], tags={Tag.SC} if fetch else (), insn=text
    )
    if fetch:
        regs[insn.src], taint[insn.src] = old, frozenset({eid})


def thread_registers(test: LitmusTest, thread: int, addresses: dict[str, int]) -> dict[int, int]:
    """Initial registers of ``thread`` (r0..r10 by number) from the test's initial state.

    Raises LitmusSyntaxError for a register name that is not r0..r10."""

    def number(name: str) -> int | None:
        m = re.fullmatch(R, name)
        return int(m.group(1)) if m and int(m.group(1)) <= 10 else None

    return initial_registers(test, thread, addresses, number, "a BPF register r0..r10 in the initial state")


def bpf_program(test: LitmusTest) -> tuple[Program, list[BpfThread]]:
    """The executable form of a BPF litmus test under the BPF model's semantics, and its IR.

    Raises LitmusSyntaxError on a line outside the dialect."""
    addresses, memory = allocate(test)
    threads = [translate(lines, test.path) for lines in test.threads]
    semantics = [
        partial(run_ir, ir, init=thread_registers(test, k, addresses)) for k, ir in enumerate(threads)
    ]
    return Program(test, addresses, memory, semantics), threads
