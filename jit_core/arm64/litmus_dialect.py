"""The AArch64 litmus dialect: herdtools7's assembly syntax (``MOV W0,#1``, ``LDR W2,[X3]``,
``CAS W1,W2,[X0]``, ``B.EQ label``, ``DMB SY``...) parsed into litmus.machine.Instr, run with
jit_core.arm64.semantics and checked under the Armv8 model."""

from __future__ import annotations

import re
from functools import partial

from litmus.check import Program, allocate, initial_registers
from litmus.errors import LitmusSyntaxError
from litmus.machine import Code, Instr, Operand, OperandKind
from litmus.syntax import Line, LitmusTest, split_labels, split_operands

from .memory_model import machine_semantics
from .semantics import canon

__all__ = ["M64", "litmus_program", "parse_thread"]

_REG = re.compile(r"(?:[wx](?:[0-9]|[12][0-9]|30)|wzr|xzr|sp)$")
_IMM = re.compile(r"#\s*(-?(?:0x[0-9a-f]+|\d+))$")
_BRANCHES = ("b", "cbz", "cbnz")
M64 = (1 << 64) - 1


def _memory(text: str, fail: partial[LitmusSyntaxError]) -> Operand:
    parts = [p.strip() for p in text[1:-1].split(",")]
    if not parts or not _REG.match(parts[0]):
        raise fail(f"expected a base register in {text!r}")
    base, disp, index, extend = parts[0], 0, "", ""
    for part in parts[1:]:
        imm = _IMM.match(part)
        if imm:
            disp = int(imm.group(1), 0)
        elif _REG.match(part):
            index = part
        elif part in ("sxtw", "uxtw", "lsl #0"):
            extend = part if part == "sxtw" else ""
        else:
            raise fail(f"expected '#imm', an index register or SXTW in {text!r}, found {part!r}")
    return Operand(OperandKind.MEM, base=base, disp=disp, index=index, extend=extend)


def _instr(line: Line, address: int, labels: dict[str, int], path: str) -> Instr:
    fail = partial(LitmusSyntaxError, path, line.lineno)
    text = line.text.strip().lower()
    mnemonic, _, rest = text.partition(" ")
    raw = split_operands(rest)
    cond = ""
    if mnemonic in ("dmb", "dsb"):
        return Instr(address, 4, mnemonic, (), line.text.strip(), rest.strip())
    if mnemonic == "csel":
        cond = raw.pop()
    operands: list[Operand] = []
    for k, item in enumerate(raw):
        if item.startswith("["):
            operands.append(_memory(item, fail))
        elif _REG.match(item):
            operands.append(Operand(OperandKind.REG, reg=item))
        elif _IMM.match(item):
            operands.append(Operand(OperandKind.IMM, value=int(_IMM.match(item).group(1), 0) & M64))  # type: ignore[union-attr]
        elif k == len(raw) - 1 and (mnemonic in _BRANCHES or mnemonic.startswith("b.")):
            if item not in labels:
                raise fail(f"expected a label of this thread, found {item!r}")
            operands.append(Operand(OperandKind.TARGET, value=labels[item]))
        else:
            raise fail(
                f"expected a register, '#imm', '[...]' or a label, found {item!r} in {line.text.strip()!r}"
            )
    return Instr(address, 4, mnemonic, tuple(operands), line.text.strip(), cond)


def parse_thread(lines: list[Line], path: str) -> Code:
    """A thread's instructions (4 bytes apart, labels resolved). Raises LitmusSyntaxError."""
    labels, body = split_labels(lines, 4)
    return Code([_instr(line, 4 * k, labels, path) for k, line in enumerate(body)], 4 * len(body))


def _register(name: str) -> str:
    return canon(name)[0]


def _init_register(name: str) -> str | None:
    return _register(name) if _REG.match(name.lower()) else None


def litmus_program(test: LitmusTest) -> Program:
    """The executable form of an AArch64 litmus test. Raises LitmusSyntaxError."""
    addresses, memory = allocate(test)
    results = {f"x{k}": f"x{k}" for k in range(31)}
    threads = []
    for k, lines in enumerate(test.threads):
        registers = initial_registers(test, k, addresses, _init_register, "an AArch64 register")
        threads.append(machine_semantics(parse_thread(lines, test.path), registers, results))
    return Program(test, addresses, memory, threads, register=_register)
