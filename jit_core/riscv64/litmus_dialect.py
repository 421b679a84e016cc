"""The RISCV litmus dialect: herdtools7's RISC-V assembly (``ori x5,x0,1``, ``sw x5,0(x6)``,
``lr.w x10,(x9)``, ``fence rw,rw``, ``beq x5,x0,L``...) parsed into litmus.machine.Instr, run with
jit_core.riscv64.semantics (a store-conditional may fail) and checked under RVWMO. Registers
are reported by number (``0:x10``), as herd7 does."""

from __future__ import annotations

import re

from litmus.check import Program, allocate, initial_registers
from litmus.errors import LitmusSyntaxError
from litmus.machine import Code, Instr, Operand, OperandKind
from litmus.syntax import Line, LitmusTest, split_labels

from .memory_model import machine_semantics
from .semantics import ABI_NAMES, BRANCHES, LOADS, STORES, canon

__all__ = ["M64", "litmus_program", "parse_thread"]

M64 = (1 << 64) - 1
_REG = re.compile(r"(?:x(?:[0-9]|[12][0-9]|3[01])|" + "|".join(ABI_NAMES) + r"|fp)$")
_IMM = re.compile(r"-?(?:0x[0-9a-f]+|\d+)$")
_MEM = re.compile(r"(-?(?:0x[0-9a-f]+|\d+))?\((\w+)\)$")
_KNOWN = re.compile(
    r"(fence|nop|mv|li|lui|sext\.w|addiw|addw|subw|(add|sub|and|or|xor|sll|srl)i?|"
    r"(lr|sc)\.[wd](\.(aq|rl|aqrl))?|amo(add|and|or|xor|swap)\.[wd](\.(aq|rl|aqrl))?|"
    r"(" + "|".join(LOADS) + r")(\.(aq|aqrl))?|(" + "|".join(STORES) + r")(\.(rl|aqrl))?|"
    r"beqz|bnez|j|" + "|".join(BRANCHES) + ")$"
)


def _operand(item: str, labels: dict[str, int], is_jump: bool, line: Line, path: str) -> Operand:
    if _REG.match(item):
        return Operand(OperandKind.REG, reg=item)
    if _IMM.match(item):
        return Operand(OperandKind.IMM, value=int(item, 0) & M64)
    mem = _MEM.match(item)
    if mem and _REG.match(mem.group(2)):
        return Operand(OperandKind.MEM, base=mem.group(2), disp=int(mem.group(1) or "0", 0))
    if is_jump and item in labels:
        return Operand(OperandKind.TARGET, value=labels[item])
    raise LitmusSyntaxError(
        path,
        line.lineno,
        f"expected a register, an immediate, 'off(reg)' or a label, found {item!r} in {line.text.strip()!r}",
    )


def parse_thread(lines: list[Line], path: str) -> Code:
    """A thread's instructions (4 bytes apart, labels resolved). Raises LitmusSyntaxError for an
    instruction the RISC-V semantics does not model (naming it)."""
    labels, body = split_labels(lines, 4)
    code = []
    for k, line in enumerate(body):
        text = line.text.strip().lower()
        mnemonic, _, rest = text.partition(" ")
        if not _KNOWN.match(mnemonic):
            raise LitmusSyntaxError(path, line.lineno, f"RISCV instruction {mnemonic!r} is not handled")
        if mnemonic == "fence":
            code.append(Instr(4 * k, 4, mnemonic, (), line.text.strip(), rest.strip()))
            continue
        is_jump = mnemonic in BRANCHES or mnemonic in ("beqz", "bnez", "j")
        items = [i.strip() for i in rest.split(",") if i.strip()]
        operands = tuple(_operand(i, labels, is_jump, line, path) for i in items)
        code.append(Instr(4 * k, 4, mnemonic, operands, line.text.strip()))
    return Code(code, 4 * len(body))


def _register(name: str) -> str:
    return f"x{ABI_NAMES.index(canon(name))}" if canon(name) in ABI_NAMES else name.lower()


def _init_register(name: str) -> str | None:
    return canon(name) if _REG.match(name.lower()) else None


def litmus_program(test: LitmusTest) -> Program:
    """The executable form of a RISCV litmus test. Raises LitmusSyntaxError."""
    addresses, memory = allocate(test)
    results = {f"x{k}": name for k, name in enumerate(ABI_NAMES)}
    threads = []
    for k, lines in enumerate(test.threads):
        registers = initial_registers(test, k, addresses, _init_register, "a RISC-V register")
        threads.append(
            machine_semantics(parse_thread(lines, test.path), registers, results, sc_may_fail=True)
        )
    return Program(test, addresses, memory, threads, register=_register)
